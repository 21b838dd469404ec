"""deploy/nginx/bankbot.conf, run by nginx (bench/nginx_proxy.py) in front of two `bot run` processes on two ports:
two "hosts" of one installation on one fresh PostgreSQL database and one Redis database number (12). Through
nginx: readiness, a REST turn, the widget's WebSocket (upgraded) hearing an agent's replies stored on either host,
forwarded headers as the app documents them, /metrics for the internal network only, the trainer's API on one
host, the body limits. Also: the example environment file names real settings.

Clients that must look like the internet connect from 127.0.0.2 (any 127.x address is the loopback): nginx then
sees a caller outside the networks its /metrics rule allows, and the app, which trusts 127.0.0.1 (nginx) as a
proxy, must name 127.0.0.2 as the customer. Messages written for these tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML
from sqlalchemy import select

from bench.nginx_proxy import free_port, nginx_binary, nginx_in_front, render_site
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.storage.models import AuditEntry
from tests.postgres_support import fresh_postgres_url
from tests.redis_support import delete_keys
from tests.test_live_bus import PASSWORD, eventually, log_in, receive_until
from tests.test_turn_ordering import wait_ready

REDIS_URL = "redis://127.0.0.1:6379/12"  # this file's database number: other tests use theirs
OUTSIDE = "127.0.0.2"  # a customer on the internet, as nginx and the app see it
SECRET_KEY = "deploy-test-secret-key-shared-by-every-host-0123456789"
METRICS_TOKEN = "deploy-test-metrics-token-0123456789"

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed and `make nginx` was not run")


@dataclass
class Deployment:
    base_url: str  # nginx
    hosts: list[str]  # each bot host's own base URL
    database: Database
    access_log: Path


def always_open_groups(project_root: Path) -> str:
    """config.yml's skill groups, open around the clock (a hand-over must reach the queue whenever this runs)."""
    groups = YAML(typ="safe").load((project_root / "config.yml").read_text("utf-8"))["handoff"]["groups"]
    for group in groups:
        group["hours"], group["days"] = "00:00-24:00", list(range(7))
    return json.dumps(groups, ensure_ascii=False)


def host_environment(bundled_assistant: Any, database_url: str, project_root: Path) -> dict:
    """What deploy/bankbot.env.example sets on every host, for this test."""
    config = bundled_assistant.config
    return {**{k: v for k, v in os.environ.items() if not k.startswith("BOT__")},
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "BOT__MODELS_DIR": str(config.path(config.models_dir)),  # one trained model, the same on every host
            "BOT__SECURITY__SECRET_KEY": SECRET_KEY,  # a visitor credential from one host works on the other
            "BOT__SECURITY__METRICS_TOKEN": METRICS_TOKEN,
            "BOT__SERVER__TRUSTED_PROXIES": '["127.0.0.1"]',  # the nginx host
            "BOT__HANDOFF__GROUPS": always_open_groups(project_root)}


def start_host(port: int, workers: int, env: dict, project_root: Path, log: Path) -> subprocess.Popen:
    """`bot run --port P --workers N`, as deploy/systemd/bankbot.service runs it; its output in `log`. Each host
    has a metrics directory of its own, here in the test's folder rather than a new one in /tmp."""
    metrics = log.with_suffix(".metrics")
    metrics.mkdir()
    with log.open("wb") as output:
        return subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--port", str(port), "--workers",
                                 str(workers)], cwd=project_root, env={**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
                                stdout=output, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def deployment(bundled_assistant: Any, project_root: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("deploy")
    with fresh_postgres_url() as database_url:
        database = Database(database_url)  # migrations once, before any host starts (deploy/README.md)
        every_group = [group.name for group in bundled_assistant.config.handoff.groups]
        create_agent(database, "wang", "小王", PASSWORD, groups=every_group)
        env = host_environment(bundled_assistant, database_url, project_root)
        ports = [free_port(), free_port()]
        # the first host runs two workers, as `bot run --workers N` does in production; the second one
        logs = [workdir / f"host-{index + 1}.log" for index in range(len(ports))]
        hosts = [start_host(port, workers, env, project_root, log)
                 for port, workers, log in zip(ports, (2, 1), logs, strict=True)]
        try:
            for port, host, log in zip(ports, hosts, logs, strict=True):
                try:
                    wait_ready(port, host)
                except (AssertionError, TimeoutError) as e:
                    raise AssertionError(f"host on port {port}: {e}\n{log.read_text('utf-8')[-3000:]}") from e
            with nginx_in_front([f"127.0.0.1:{port}" for port in ports], workdir / "nginx") as base_url:
                yield Deployment(base_url, [f"http://127.0.0.1:{port}" for port in ports], database,
                                 workdir / "nginx" / "logs" / "bankbot.access.log")
        finally:
            for host in hosts:
                host.terminate()
            for host in hosts:
                host.wait(timeout=60)
            database.dispose()
            delete_keys(REDIS_URL, "bankbot:*")


def from_outside() -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=OUTSIDE), timeout=60)


def test_the_rendered_config_is_the_shipped_one_with_only_addresses_and_logs_changed(tmp_path: Path) -> None:
    shipped = (Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "bankbot.conf").read_text("utf-8")
    rendered = render_site(["127.0.0.1:9001", "127.0.0.1:9002"], "127.0.0.1:9000", tmp_path)
    changed = {line.strip() for line in set(rendered.splitlines()) ^ set(shipped.splitlines())}
    assert changed == {"server 10.0.0.11:8000 max_fails=3 fail_timeout=10s;",
                       "server 10.0.0.12:8000 max_fails=3 fail_timeout=10s;",
                       "server 10.0.0.13:8000 max_fails=3 fail_timeout=10s;",
                       "server 127.0.0.1:9001 max_fails=3 fail_timeout=10s;",
                       "server 127.0.0.1:9002 max_fails=3 fail_timeout=10s;",
                       "server 10.0.0.11:8000;", "server 127.0.0.1:9001;",  # the trainer's host
                       "listen 80;", "listen [::]:80;", "listen 127.0.0.1:9000;",
                       "access_log /var/log/nginx/bankbot.access.log bankbot;",
                       f"access_log {tmp_path}/bankbot.access.log bankbot;",
                       "error_log /var/log/nginx/bankbot.error.log warn;",
                       f"error_log {tmp_path}/bankbot.error.log warn;"}


def test_the_example_environment_file_names_real_settings(project_root: Path) -> None:
    """Every variable of deploy/bankbot.env.example, read as systemd and sh read it, is a valid setting."""
    from bot.config import load_config

    example = (project_root / "deploy" / "bankbot.env.example").read_text("utf-8")
    environ = {name: shlex.split(value)[0] for name, value in
               (line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))}
    config = load_config(project_root / "config.yml", environ=environ)
    assert config.storage.url.startswith("postgresql+psycopg://") and config.security.redis_url == environ["REDIS_URL"]
    assert config.server.trusted_proxies == ["10.0.0.5", "10.0.0.6"] and config.security.secret_key
    assert config.server.allowed_origins == ["https://www.bank.example"] and not config.server.docs
    assert int(environ["BOT_WORKERS"]) >= 2  # read by deploy/systemd/bankbot.service


def test_ready_and_a_rest_turn_through_nginx_with_a_request_id(deployment: Deployment) -> None:
    with from_outside() as client:
        ready = client.get(f"{deployment.base_url}/ready")
        assert ready.status_code == 200, ready.text
        assert re.fullmatch(r"[0-9a-f]{32}", ready.headers["x-request-id"])  # nginx's $request_id, echoed by the app
        chosen = client.get(f"{deployment.base_url}/ready", headers={"X-Request-ID": "lb-7f3a9c21d4e8"})
        assert chosen.headers["x-request-id"] == "lb-7f3a9c21d4e8"  # a balancer's id in front is kept

        replies = client.post(f"{deployment.base_url}/webhooks/rest/webhook",
                              json={"sender": "deploy-rest", "message": "网点营业时间是几点", "message_id": "d-1"})
    assert replies.status_code == 200, replies.text
    assert replies.json() and all(r["recipient_id"] == "deploy-rest" and r["text"] for r in replies.json())


def test_the_widget_socket_through_nginx_hears_agent_replies_stored_on_either_host(deployment: Deployment) -> None:
    """The socket lands on one host (nginx picks); the agent replies once through each host directly, so one of
    the two replies is stored on the other host and must reach the socket through Redis."""
    from websockets.sync.client import connect

    socket_url = f"{deployment.base_url.replace('http', 'ws')}/ws/chat"
    first_host, second_host = deployment.hosts
    agent = log_in(first_host)
    with connect(socket_url, origin=deployment.base_url, source_address=(OUTSIDE, 0)) as customer:
        customer.send(json.dumps({"type": "hello"}))
        welcome = json.loads(customer.recv(timeout=30))
        assert welcome["type"] == "welcome", welcome  # upgraded, proxied, and the Origin matched the Host nginx sent
        customer.send(json.dumps({"type": "message", "text": "转人工", "message_id": "deploy-ws-1"}))
        receive_until(customer, lambda f: f["type"] == "ack")

        def waiting() -> list[dict[str, Any]]:
            return httpx.get(f"{first_host}/api/agent/queue", headers=agent).json()["waiting"]

        handoff_id = eventually(waiting)[0]["handoff_id"]
        accepted = httpx.post(f"{first_host}/api/agent/handoffs/{handoff_id}/accept", headers=agent)
        assert accepted.status_code == 200, accepted.text
        texts = {host: f"您好，这条回复存于主机{index + 1}" for index, host in enumerate(deployment.hosts)}
        for host, text in texts.items():
            sent = httpx.post(f"{host}/api/agent/handoffs/{handoff_id}/messages", headers=agent,
                              json={"text": text}).json()
            assert sent["delivered"] is True, sent
            heard = receive_until(customer, lambda f: f["type"] == "bot" and f.get("from") == "agent")
            assert heard["text"] == text and heard["agent"] == "小王"

    upgrades = eventually(lambda: [line for line in deployment.access_log.read_text("utf-8").splitlines()
                                   if '"GET /ws/chat HTTP/1.1" 101' in line])
    assert len(upgrades) == 1 and upgrades[0].startswith(OUTSIDE)
    assert any(f"upstream={host.removeprefix('http://')} " in upgrades[0] for host in (first_host, second_host))


def test_x_forwarded_for_from_nginx_names_the_customer_and_a_forged_one_is_ignored(deployment: Deployment) -> None:
    forged = {"X-Forwarded-For": "203.0.113.9"}
    wrong = {"username": "wang", "password": "not the password"}
    with from_outside() as client:
        through_nginx = client.post(f"{deployment.base_url}/api/agent/login", json=wrong, headers=forged)
        direct = client.post(f"{deployment.hosts[1]}/api/agent/login", json=wrong, headers=forged)
    assert through_nginx.status_code == direct.status_code == 401
    with deployment.database.session() as session:
        actors = list(session.scalars(select(AuditEntry.actor).where(AuditEntry.action == "login_failed")))
    # through nginx (a trusted proxy): the address nginx saw, not nginx's own, not the forged one; directly from
    # an address that is no proxy: the header is not believed at all
    assert actors == [OUTSIDE, OUTSIDE]


def test_metrics_only_from_the_internal_network_and_still_with_the_token(deployment: Deployment) -> None:
    with from_outside() as client:
        refused = client.get(f"{deployment.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert refused.status_code == 403 and "nginx" in refused.text  # nginx's own refusal: the app never saw it
    assert httpx.get(f"{deployment.base_url}/metrics").status_code == 401  # internal, but no token
    scraped = httpx.get(f"{deployment.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200 and "bot_messages_total" in scraped.text


def test_the_trainers_api_goes_to_one_host(deployment: Deployment) -> None:
    for _ in range(4):
        assert httpx.get(f"{deployment.base_url}/api/trainer/models").status_code == 401  # reached the app

    def logged() -> list[str]:  # nginx writes a line just after the response
        lines = deployment.access_log.read_text("utf-8").splitlines()
        return found if len(found := [line for line in lines if "/api/trainer/models" in line]) == 4 else []

    first_host = deployment.hosts[0].removeprefix("http://")
    assert all(f"upstream={first_host} " in line for line in eventually(logged))


def test_body_limits_leave_the_apps_own_answers_to_the_app(deployment: Deployment) -> None:
    with from_outside() as client:
        over_the_app = client.post(f"{deployment.base_url}/webhooks/rest/webhook", content=b"x" * 200_000,
                                   headers={"Content-Type": "application/json"})
        over_nginx = client.post(f"{deployment.base_url}/webhooks/rest/webhook", content=b"x" * 2_000_000,
                                 headers={"Content-Type": "application/json"})
        upload = client.post(f"{deployment.base_url}/channels/app/attachments",
                             files={"file": ("scan.pdf", b"%PDF-1.4\n" + b"0" * 5_000_000, "application/pdf")})
    assert over_the_app.status_code == 413 and "too large" in over_the_app.json()["detail"]  # the app explains
    assert over_nginx.status_code == 413 and "nginx" in over_nginx.text
    assert "nginx" not in upload.text and upload.status_code != 413  # a 5 MB file reaches the app
