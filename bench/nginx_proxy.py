"""The shipped nginx configuration (deploy/nginx/bankbot.conf), run locally without privileges in front of bot
processes, for the tests and the load benchmark.

    with nginx_in_front(["127.0.0.1:8001", "127.0.0.1:8002"], workdir) as base_url:
        httpx.get(f"{base_url}/ready")

The shipped file is used as it is, with substitutions that each must match (else the file changed shape and this
module says so): the `server` lines of upstream `bankbot` (all the given upstreams) and `bankbot_trainer` (the
first one), the `listen` lines, and the log paths. A minimal main config
around it keeps the pid file, logs and temp files in `workdir` and runs nginx in the foreground.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED_SITE = REPO / "deploy" / "nginx" / "bankbot.conf"
SYSTEM_LOG_DIR = "/var/log/nginx/"
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
UPSTREAM_SERVER = re.compile(r"^(?P<indent>\s+)server \S+(?P<params>[^;\n]*);\n", re.MULTILINE)
LISTEN_V4 = re.compile(r"^(?P<indent>[ \t]+)listen 80;$", re.MULTILINE)  # commented lines start with '#'
LISTEN_V6 = re.compile(r"^[ \t]+listen \[::\]:80;\n", re.MULTILINE)


class NginxConfigChanged(RuntimeError):
    """deploy/nginx/bankbot.conf no longer has a part this module substitutes."""


def nginx_binary() -> str | None:
    """The nginx executable (Debian puts it in /usr/sbin, which is not on every user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def render_site(upstreams: list[str], listen: str, log_dir: Path, site: Path = SHIPPED_SITE) -> str:
    """The shipped site with `upstreams` ("host:port") as its servers, listening on `listen` ("127.0.0.1:8080")
    and logging into `log_dir`."""
    if not upstreams:
        raise ValueError("at least one upstream is needed")
    text = site.read_text("utf-8")
    text = _substitute_upstreams(text, "bankbot", upstreams)
    text = _substitute_upstreams(text, "bankbot_trainer", upstreams[:1])  # the trainer's host: the first one
    text, count = LISTEN_V4.subn(lambda m: f"{m['indent']}listen {listen};", text)
    _expect(count == 1, f"one uncommented 'listen 80;' line, found {count}")
    text, count = LISTEN_V6.subn("", text)  # one address is enough locally (and IPv6 may be off)
    _expect(count == 1, f"one uncommented 'listen [::]:80;' line, found {count}")
    _expect(text.count(SYSTEM_LOG_DIR) == 2, f"an access_log and an error_log under {SYSTEM_LOG_DIR}")
    return text.replace(SYSTEM_LOG_DIR, f"{log_dir}/")


def _substitute_upstreams(text: str, name: str, upstreams: list[str]) -> str:
    block = re.search(rf"^upstream {name} \{{\n(?P<body>.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    _expect(block is not None, f"an 'upstream {name} {{ ... }}' block")
    assert block is not None
    body = block["body"]
    servers = list(UPSTREAM_SERVER.finditer(body))
    _expect(bool(servers), f"'server host:port ...;' lines in upstream {name}")
    first = servers[0]
    ours = "".join(f"{first['indent']}server {address}{first['params']};\n" for address in upstreams)
    new_body = body[: first.start()] + ours + UPSTREAM_SERVER.sub("", body[first.end():])
    return text[: block.start("body")] + new_body + text[block.end("body"):]


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise NginxConfigChanged(f"{SHIPPED_SITE.relative_to(REPO)}: expected {what}")


def render_main(workdir: Path, site_file: Path, worker_processes: int = 1) -> str:
    """A main config for an unprivileged nginx: everything it writes lives in `workdir`."""
    open_files = _open_file_limit()
    lines = [
        "daemon off;",
        f"worker_processes {worker_processes};",
        f"worker_rlimit_nofile {open_files};",
        f"pid {workdir}/nginx.pid;",
        f"error_log {workdir}/logs/error.log warn;",
        f"events {{ worker_connections {max(512, open_files // 2)}; }}",  # a proxied socket holds two
        "http {",
        "    default_type application/octet-stream;",
        *(f"    {kind}_temp_path {workdir}/temp/{kind};" for kind in TEMP_KINDS),
        f"    include {site_file};",
        "}",
    ]
    if os.geteuid() == 0:  # a root master would run its workers as 'nobody', who cannot enter a private workdir
        lines.insert(0, "user root;")
    return "\n".join(lines) + "\n"


def _open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 16384
    return wanted if hard == resource.RLIM_INFINITY or hard >= wanted else hard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def nginx_in_front(upstreams: list[str], workdir: Path, listen_port: int | None = None,
                   worker_processes: int = 1, start_seconds: float = 15.0) -> Iterator[str]:
    """nginx with the shipped site in front of `upstreams` ("127.0.0.1:8001", ...), on 127.0.0.1:`listen_port`
    (a free port when None); yields its base URL and stops it afterwards. The configuration is checked with
    `nginx -t` first, so a broken file fails here with nginx's message."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed (make nginx)")
    port = listen_port or free_port()
    main_file = _write_config(upstreams, workdir, port, worker_processes)
    command = [binary, "-p", str(workdir), "-e", str(workdir / "logs" / "error.log"), "-c", str(main_file)]
    checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx -t refused the configuration:\n{checked.stderr}")
    error_log = workdir / "logs" / "error.log"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, start_seconds, error_log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def _write_config(upstreams: list[str], workdir: Path, port: int, worker_processes: int) -> Path:
    for folder in ("logs", "temp", *(f"temp/{kind}" for kind in TEMP_KINDS)):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    site_file = workdir / "bankbot.conf"
    site_file.write_text(render_site(upstreams, f"127.0.0.1:{port}", workdir / "logs"), "utf-8")
    main_file = workdir / "nginx.conf"
    main_file.write_text(render_main(workdir, site_file, worker_processes), "utf-8")
    return main_file


def _wait_listening(port: int, process: subprocess.Popen[bytes], seconds: float, error_log: Path) -> None:
    """Until nginx accepts connections. A bare TCP connect, not a request: a request would reach an upstream
    that may not be ready yet and count as one of its failures (max_fails)."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}: {error_log.read_text('utf-8', 'replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx did not listen on port {port} within {seconds} s") from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM: nginx's fast shutdown, which also closes open sockets (SIGQUIT would wait for them to end)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # never seen; a killed master would leave its workers behind
            process.kill()
            process.wait(timeout=10)
