"""Load and fault benchmark: many concurrent customers over REST and the widget WebSocket against a real server.

    python bench/load.py --mode embedded|scaleout --workers N --customers 50 --seconds 20 [--via-nginx]
                         [--fault kill|redis|slow-backend] [--json] [--write-results]
    python bench/load.py --all [--write-results]      # embedded; scale-out 1, 2, 4 workers; the three fault runs

Each run starts `bot run` itself (a temporary SQLite file, or a fresh PostgreSQL database and a private
redis-server for scale-out), trains the bundled bot once into .bot/load-bench/models (reused by later runs) and
drives closed-loop customers from this process (asyncio, a raw HTTP/1.1 client and `websockets`): ~70% REST, ~30%
the widget socket, FAQ questions, the card-loss form and hand-overs answered by simulated agents over /api/agent.
Everything is on loopback, bounded in time, and every process it started is killed when it ends. The server gets
a benchmark-only environment (raised rate limits, skill groups open all day, a random secret key); config.yml and
the code's defaults are untouched. `--write-results` rewrites the section between `<!-- load:start -->` and
`<!-- load:end -->` of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import http.server
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load_scenarios import (  # noqa: E402
    AGENT_REPLY,
    FAQ_WITHOUT_ACTIONS,
    RATING,
    SLOW_ACTION,
    Conversation,
    Step,
    faq,
    next_conversation,
)

BOT = REPO / ".venv" / "bin" / "bot"
MODELS_DIR = REPO / ".bot" / "load-bench" / "models"  # trained once, reused by every run
RESULTS = REPO / "bench" / "RESULTS.md"
START_MARK, END_MARK = "<!-- load:start -->", "<!-- load:end -->"
AGENT_PASSWORD = "load-bench-agent-password"
AGENTS = ("load-agent-1", "load-agent-2")
MESSAGE_TIMEOUT = 30.0  # one message's answer; longer is an error
READY_TIMEOUT = 240.0
KILL_LEASE_SECONDS = 5  # the kill run's claim lease: a message whose worker died is answered after this
SLOW_TIMEOUT = 2.0  # the slow-backend run's action_endpoint.timeout
SLOW_APOLOGY = "系统暂时无法办理"  # what the bot says when an action times out (utter_action_failed)...
SLOW_OFFER = "[转人工客服]"  # ...with the button that offers a person
SLOW_SLEEP = 8.0  # the stand-in action server answers after this, long after the timeout
REDIS_GAP = 3.0  # the redis run: seconds between killing the private redis-server and starting it again
RATE_LIMITS = {"BOT__SECURITY__RATE_LIMITS__PER_IP": "1000000", "BOT__SECURITY__RATE_LIMITS__PER_SENDER": "100000"}
TARGETS = {  # issue 14
    "embedded": {"rate": 200.0, "p99_ms": 300.0},
    "scaleout": {"rate": 400.0, "p99_ms": 150.0},
    "rss_mb": 500.0,
}


@dataclass(frozen=True)
class RunSpec:
    mode: str  # embedded | scaleout
    workers: int = 1
    customers: int = 50
    seconds: float = 20.0
    fault: str | None = None  # kill | redis | slow-backend
    via_nginx: bool = False
    websocket_share: float = 0.3
    agents: bool = True
    seed: int = 14
    code: str | None = None  # another checkout whose server to run (the baseline); None: this one
    code_label: str = ""

    @property
    def name(self) -> str:
        base = "embedded" if self.mode == "embedded" else f"scale-out, {self.workers} worker{'s' * (self.workers > 1)}"
        extras = [f"fault: {self.fault}"] if self.fault else []
        extras += ["via nginx"] if self.via_nginx else []
        extras += [f"baseline {self.code_label}"] if self.code else []
        return f"{base} ({', '.join(extras)})" if extras else base


# ---- a lean HTTP/1.1 client: the load generator shares the 2 cores with the server ------------------------------

class HttpClient:
    """One keep-alive connection; reconnects when the server closed it or it sat idle past uvicorn's keep-alive."""

    IDLE_SECONDS = 4.0  # uvicorn closes idle connections after 5 s

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._used = 0.0

    async def request(self, method: str, path: str, payload: Any = None, headers: dict[str, str] | None = None,
                      timeout: float = MESSAGE_TIMEOUT) -> tuple[int, Any]:
        """(status, the JSON body or None). Raises OSError/TimeoutError when the exchange fails."""
        if self._writer is None or time.monotonic() - self._used > self.IDLE_SECONDS:
            await self.close()
            self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
        try:
            status, raw = await asyncio.wait_for(self._exchange(method, path, payload, headers or {}), timeout)
        except BaseException:
            await self.close()
            raise
        self._used = time.monotonic()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    async def _exchange(self, method: str, path: str, payload: Any, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}",
                 "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed before the response")
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        raw = await self._body(length, chunked)
        if close or status >= 500:  # uvicorn drops the connection after an unhandled error
            await self.close()
        return status, raw

    async def _body(self, length: int | None, chunked: bool) -> bytes:
        assert self._reader is not None
        if chunked:
            parts = []
            while size := int((await self._reader.readline()).strip() or b"0", 16):
                parts.append(await self._reader.readexactly(size + 2))
            await self._reader.readline()
            return b"".join(p[:-2] for p in parts)
        if length is not None:
            return await self._reader.readexactly(length)
        return await self._reader.read()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)


# ---- what the customers saw ------------------------------------------------------------------------------------

@dataclass
class Recorder:
    started: float = field(default_factory=time.monotonic)
    latencies: list[float] = field(default_factory=list)
    channels: Counter[str] = field(default_factory=Counter)
    faq_latencies: list[float] = field(default_factory=list)  # the slow-backend run: questions needing no action
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # seconds since start, for the fault timelines
    failed_at: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)  # conversations by kind
    handovers: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    rest_log: list[dict[str, Any]] = field(default_factory=list)  # the kill run: every REST message's fate
    slow_log: list[dict[str, Any]] = field(default_factory=list)  # the slow-backend run: action turns

    def answered(self, latency: float, channel: str) -> None:
        self.latencies.append(latency)
        if channel == "rest, FAQ only":
            self.faq_latencies.append(latency)
        self.channels[channel] += 1
        self.answered_at.append(time.monotonic() - self.started)

    def failed(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        self.failed_at.append(time.monotonic() - self.started)
        sample = f"{kind}: {detail[:160]}"
        if len(self.error_samples) < 12 and sample not in self.error_samples:
            self.error_samples.append(sample)


@dataclass
class LoadContext:
    host: str
    port: int
    spec: RunSpec
    recorder: Recorder
    deadline: float
    retry_failed: bool = False  # the kill run: a failed message is sent again with its id until answered
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    agents_done: asyncio.Event = field(default_factory=asyncio.Event)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/chat"


def reply_problem(step: Step, texts: list[str]) -> str | None:
    """Why the replies are not a right answer to `step`, or None."""
    said = " ".join(texts)
    if not said.strip():
        return "no reply"
    if step.expect and not any(word in said for word in step.expect):
        return f"expected one of {step.expect}, got {said[:100]!r}"
    return None


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(share * len(ordered) + 0.5)) - 1))]


# ---- REST customers ----------------------------------------------------------------------------------------------

async def rest_customer(index: int, ctx: LoadContext, faq_only: bool = False) -> None:
    rng = random.Random(ctx.spec.seed * 1000 + index)
    client = HttpClient(ctx.host, ctx.port)
    number = 0
    try:
        while ctx.running():
            conversation = faq(rng, FAQ_WITHOUT_ACTIONS) if faq_only else next_conversation(rng, websocket=False)
            ctx.recorder.kinds[conversation.kind] += 1
            sender = f"load-{ctx.run_id}-r{index}-{number}"
            number += 1
            for turn, step in enumerate(conversation.steps):
                if not ctx.running() or not await rest_turn(client, ctx, sender, f"{sender}-{turn}", step,
                                                            "rest, FAQ only" if faq_only else "rest"):
                    break  # after a failure the conversation's state is unknown: start a new one
    finally:
        await client.close()


async def rest_turn(client: HttpClient, ctx: LoadContext, sender: str, message_id: str, step: Step,
                    channel: str = "rest") -> bool:
    started = time.monotonic()
    body = {"sender": sender, "message": step.text, "message_id": message_id}
    attempts, first_ok = 0, None
    while True:
        attempts += 1
        error, texts = await _post_message(client, body)
        first_ok = (error is None) if first_ok is None else first_ok
        if error is None or not ctx.retry_failed or time.monotonic() - started > 90:
            break
        ctx.recorder.retries += 1
        await asyncio.sleep(0.5)
    if ctx.retry_failed:
        ctx.recorder.rest_log.append({"sender": sender, "message_id": message_id, "first_ok": first_ok,
                                      "attempts": attempts, "answered": error is None})
    if error is not None:
        ctx.recorder.failed(error.split(":")[0], error)
        await asyncio.sleep(0.2)  # a client backs off a little before its next conversation
        return False
    problem = reply_problem(step, texts)
    if problem is not None and not ctx.retry_failed:
        ctx.recorder.failed("wrong reply", f"{sender} {step.text} -> {problem}")
        return False
    ctx.recorder.answered(time.monotonic() - started, channel)
    return True


async def _post_message(client: HttpClient, body: dict[str, Any]) -> tuple[str | None, list[str]]:
    try:
        status, replies = await client.request("POST", "/webhooks/rest/webhook", body)
    except TimeoutError:
        return "timeout", []
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        return f"connection: {type(e).__name__}", []
    if status != 200:
        detail = replies.get("detail") if isinstance(replies, dict) else replies
        return f"http {status}: {detail}", []
    return None, [_shown(r) for r in replies or []]


def _shown(reply: dict[str, Any]) -> str:
    """A reply as the customer sees it: its text, then its buttons' titles in brackets."""
    buttons = reply.get("buttons") or []
    titles = f" [{' | '.join(str(b.get('title', '')) for b in buttons)}]" if buttons else ""
    return f"{reply.get('text', '')}{titles}"


# ---- widget customers ----------------------------------------------------------------------------------------

class WidgetSession:
    """One widget visitor's socket; reopened with the same visitor credential when it drops (the kill run)."""

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.socket: Any = None
        self.visitor: str | None = None
        self.pushed: list[dict[str, Any]] = []  # frames not answering a message: agents' replies, the survey

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.socket = await connect(self.ctx.ws_url, compression=None, ping_interval=None, open_timeout=10,
                                    max_size=2**20, close_timeout=1)
        hello = {"type": "hello", **({"visitor": self.visitor} if self.visitor else {})}
        await self.socket.send(json.dumps(hello))
        welcome = json.loads(await asyncio.wait_for(self.socket.recv(), 10))
        if welcome.get("type") != "welcome":
            raise ConnectionError(f"no welcome: {welcome}")
        self.visitor = welcome["visitor"]

    async def close(self) -> None:
        if self.socket is not None:
            with contextlib.suppress(Exception):
                await self.socket.close()
            self.socket = None

    async def say(self, step: Step, message_id: str) -> tuple[str | None, list[str]]:
        """(error or None, the bot's texts) for one message: frames up to its ack."""
        await self.socket.send(json.dumps({"type": "message", "text": step.text, "message_id": message_id},
                                          ensure_ascii=False))
        texts: list[str] = []
        while True:
            frame = json.loads(await asyncio.wait_for(self.socket.recv(), MESSAGE_TIMEOUT))
            kind = frame.get("type")
            if kind == "ack" and frame.get("message_id") == message_id:
                return None, texts
            if kind == "error" and frame.get("message_id") in (message_id, None):
                return f"error frame: {frame.get('message')}", texts
            if kind == "bot" and frame.get("reply_to") == message_id:
                texts.append(str(frame.get("text", "")))
            elif kind in ("bot", "handoff"):
                self.pushed.append(frame)

    async def wait_push(self, predicate: Any, seconds: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + seconds
        while True:
            found = next((f for f in self.pushed if predicate(f)), None)
            if found is not None:
                self.pushed.remove(found)
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                frame = json.loads(await asyncio.wait_for(self.socket.recv(), left))
            except TimeoutError:
                return None
            if frame.get("type") in ("bot", "handoff"):
                self.pushed.append(frame)


async def widget_customer(index: int, ctx: LoadContext) -> None:
    rng = random.Random(ctx.spec.seed * 1000 + 500 + index)
    number = 0
    while ctx.running():
        conversation = next_conversation(rng, websocket=True)
        ctx.recorder.kinds[conversation.kind] += 1
        session = WidgetSession(ctx)
        try:
            await session.open()
            prefix = f"w{ctx.run_id}-{index}-{number}"
            number += 1
            finished = True
            for turn, step in enumerate(conversation.steps):
                if not ctx.running() or not await widget_turn(session, ctx, step, f"{prefix}-{turn}"):
                    finished = False
                    break
            if finished and conversation.kind == "handover":
                await finish_handover(session, ctx, prefix)
        except Exception as e:  # noqa: BLE001 - a socket that could not open or broke: an error, a new conversation
            ctx.recorder.failed("socket", f"{type(e).__name__}: {e}")
            await asyncio.sleep(0.2)
        finally:
            await session.close()


async def widget_turn(session: WidgetSession, ctx: LoadContext, step: Step, message_id: str) -> bool:
    started = time.monotonic()
    while True:
        try:
            error, texts = await session.say(step, message_id)
        except TimeoutError:
            error, texts = "timeout", []
        except Exception as e:  # noqa: BLE001 - the socket dropped (its worker was killed)
            error, texts = f"socket: {type(e).__name__}", []
        if error is None or not ctx.retry_failed or time.monotonic() - started > 90:
            break
        ctx.recorder.retries += 1
        await asyncio.sleep(0.5)
        with contextlib.suppress(Exception):
            await session.close()
            await session.open()  # same visitor, same message id: answered once
    if error is not None:
        ctx.recorder.failed(error.split(":")[0], error)
        await asyncio.sleep(0.2)
        return False
    problem = reply_problem(step, texts)
    if problem is not None and not ctx.retry_failed:
        ctx.recorder.failed("wrong reply", f"{step.text} -> {problem}")
        return False
    ctx.recorder.answered(time.monotonic() - started, "websocket")
    return True


async def finish_handover(session: WidgetSession, ctx: LoadContext, prefix: str) -> None:
    """After 转人工: the simulated agent's reply arrives on the socket, then (closed) the rating prompt."""
    handovers = ctx.recorder.handovers
    handovers["requested"] += 1
    waited = time.monotonic()
    patience = max(1.0, min(20.0, ctx.deadline - waited + 3))  # once the run is over nobody waits long
    agent = await session.wait_push(lambda f: f.get("type") == "bot" and f.get("source") == "agent", patience)
    if agent is None:
        if ctx.running():
            ctx.recorder.failed("hand-over not answered", f"no agent reply within {patience:.0f} s")
        return
    handovers["agent replied"] += 1
    handovers["wait ms total"] += int((time.monotonic() - waited) * 1000)
    survey = await session.wait_push(lambda f: f.get("type") == "bot" and "打分" in str(f.get("text")), patience)
    if survey is None or not ctx.running():
        return
    if await widget_turn(session, ctx, RATING, f"{prefix}-rating"):
        handovers["rated"] += 1


# ---- simulated agents -------------------------------------------------------------------------------------------

async def simulated_agent(username: str, ctx: LoadContext, errors: Counter[str]) -> None:
    """Logs in, goes online, takes every waiting chat it may, answers each once and closes it a moment later."""
    client = HttpClient(ctx.host, ctx.port)
    try:
        status, body = await client.request("POST", "/api/agent/login",
                                            {"username": username, "password": AGENT_PASSWORD})
        if status != 200:
            errors[f"login {status}"] += 1
            return
        auth = {"Authorization": f"Bearer {body['token']}"}
        await client.request("POST", "/api/agent/presence", {"presence": "online"}, auth)
        answered: dict[int, float] = {}
        while not ctx.agents_done.is_set():
            try:
                await _agent_round(client, auth, answered, errors)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:  # a killed worker: carry on
                errors[type(e).__name__] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.agents_done.wait(), 0.3)
    except Exception as e:  # noqa: BLE001 - reported with the run, never fatal to it
        errors[type(e).__name__] += 1
    finally:
        await client.close()


async def _agent_round(client: HttpClient, auth: dict[str, str], answered: dict[int, float],
                       errors: Counter[str]) -> None:
    status, queue = await client.request("GET", "/api/agent/queue", headers=auth)
    if status != 200:
        errors[f"queue {status}"] += 1
        return
    for waiting in queue["waiting"]:
        await client.request("POST", f"/api/agent/handoffs/{waiting['handoff_id']}/accept", headers=auth)
    for mine in queue["mine"]:
        handoff_id = mine["handoff_id"]
        if handoff_id not in answered:
            status, _ = await client.request("POST", f"/api/agent/handoffs/{handoff_id}/messages",
                                             {"text": AGENT_REPLY}, auth)
            answered[handoff_id] = time.monotonic()
            if status != 200:
                errors[f"reply {status}"] += 1
        elif time.monotonic() - answered[handoff_id] > 0.5:
            await client.request("POST", f"/api/agent/handoffs/{handoff_id}/close", {"disposition": "已解决"}, auth)


# ---- the slow-backend run's customers -------------------------------------------------------------------------

async def slow_action_customer(index: int, ctx: LoadContext) -> None:
    """Asks what needs the (slow) action server: a balance, the card-loss form; records every reply and its time."""
    client = HttpClient(ctx.host, ctx.port)
    number = 0
    try:
        while ctx.running():
            conversation: Conversation = SLOW_ACTION[(index + number) % len(SLOW_ACTION)]
            sender = f"slow-{ctx.run_id}-{index}-{number}"
            number += 1
            for turn, step in enumerate(conversation.steps):
                started = time.monotonic()
                error, texts = await _post_message(client, {"sender": sender, "message": step.text,
                                                            "message_id": f"{sender}-{turn}"})
                latency = time.monotonic() - started
                reply = " / ".join(texts)
                ctx.recorder.slow_log.append({"text": step.text, "latency": latency, "error": error,
                                              "reply": reply, "conversation": sender})
                if error is not None:
                    ctx.recorder.failed(error.split(":")[0], error)
                    break
                ctx.recorder.answered(latency, "rest, actions")
                if SLOW_APOLOGY in reply:  # told the system cannot do it now: the customer stops here
                    break
    finally:
        await client.close()


class SlowActionServer:
    """A stand-in action server (and the bank behind it) that answers long after the bot's action timeout."""

    def __init__(self, delay: float) -> None:
        delay_seconds = delay
        self.calls: Counter[str] = Counter()
        calls = self.calls

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with contextlib.suppress(ValueError):
                    calls[json.loads(body).get("next_action", "?")] += 1
                time.sleep(delay_seconds)
                with contextlib.suppress(OSError):
                    reply = b'{"events": [], "responses": []}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- the server under test ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server on its own port (the redis run kills and restarts it); no persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def fresh_database(workdir: Path, mode: str) -> Iterator[str]:
    if mode == "embedded":
        yield f"sqlite:///{workdir / 'bot.db'}"
        return
    from tests.postgres_support import fresh_postgres_url

    with fresh_postgres_url("bankbot_load") as url:
        yield url


def all_day_groups() -> str:
    """config.yml's skill groups open all day, every day: the simulated agents take hand-overs at any hour."""
    import yaml

    groups = yaml.safe_load((REPO / "config.yml").read_text("utf-8"))["handoff"]["groups"]
    for group in groups:
        group.update(hours="00:00-24:00", days=[0, 1, 2, 3, 4, 5, 6])
    return json.dumps(groups, ensure_ascii=False)


def group_names() -> list[str]:
    return [g["name"] for g in json.loads(all_day_groups())]


def server_env(database_url: str, workdir: Path, redis_url: str | None, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT__") and k not in ("DATABASE_URL", "REDIS_URL")}
    (workdir / "metrics").mkdir(exist_ok=True)
    env.update(RATE_LIMITS, DATABASE_URL=database_url, BOT__MODELS_DIR=str(MODELS_DIR),
               BOT__SECURITY__SECRET_KEY=secrets.token_hex(32), BOT__HANDOFF__GROUPS=all_day_groups(),
               PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"), BOT_AGENT_PASSWORD=AGENT_PASSWORD)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


class Server:
    """`bot run` as a subprocess in its own process group (killed whole at the end)."""

    def __init__(self, spec: RunSpec, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.code = Path(spec.code) if spec.code else REPO
        self.env = {**env, "PYTHONPATH": str(self.code)} if spec.code else env
        command = [*self.bot("run"), "--port", str(self.port)]
        if spec.workers > 1:
            command += ["--workers", str(spec.workers)]
        self.log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=self.code, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def bot(self, *words: str) -> list[str]:
        """`bot <words> --config …` of the checkout this server runs (a baseline's: its code on PYTHONPATH)."""
        config = ["--config", str(self.code / "config.yml")]
        if self.code == REPO:
            return [str(BOT), *words, *config]
        return [str(REPO / ".venv" / "bin" / "python"), "-m", "bot.cli", *words, *config]

    def wait_ready(self, workers: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = Path(self.log.name).read_text("utf-8", errors="replace")[-600:]
                raise RuntimeError(f"bot run exited with {self.process.returncode}: {tail}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2)
                if workers <= 1 or self.started_workers() >= workers:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"the server was not ready in {READY_TIMEOUT:.0f} s; see {self.log.name}")

    def started_workers(self) -> int:
        """Workers that finished starting (uvicorn logs each one's startup): only then do all take connections."""
        return Path(self.log.name).read_bytes().count(b"Application startup complete")

    def add_agents(self) -> None:
        groups = [arg for name in group_names() for arg in ("--group", name)]
        for username in AGENTS:
            subprocess.run([*self.bot("agents", "add", username), "--name", f"压测{username[-1]}号", *groups,
                            "--max-chats", "10"],
                           cwd=self.code, env=self.env, check=True, capture_output=True, timeout=120)

    def pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]

    def workers(self) -> list[int]:
        """uvicorn's worker processes (children of `bot run`), not multiprocessing's resource tracker."""
        return [pid for pid in descendants(self.process.pid) if "resource_tracker" not in cmdline(pid)]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.log.close()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


class Sampler:
    """Every half second: the RSS of every server process (max per pid) and their CPU time."""

    def __init__(self, server: Server, database_url: str) -> None:
        self.server = server
        self.max_rss: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.postgres_peak = 0  # connections the server holds to its PostgreSQL database, at most
        self._postgres = None
        if database_url.startswith("postgresql"):
            import psycopg

            self._database = database_url.rsplit("/", 1)[1]
            self._postgres = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")
                                             .rsplit("/", 1)[0] + "/postgres", autocommit=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(5)
        if self._postgres is not None:
            self._postgres.close()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()
            if self._postgres is not None:
                with contextlib.suppress(Exception):
                    count = self._postgres.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                                   (self._database,)).fetchone()
                    self.postgres_peak = max(self.postgres_peak, count[0] if count else 0)

    def sample(self) -> None:
        for pid in self.server.pids():
            if (rss := rss_mb(pid)) is not None:
                self.max_rss[pid] = max(rss, self.max_rss.get(pid, 0.0))
                self.cpu[pid] = max(cpu_seconds(pid), self.cpu.get(pid, 0.0))

    def worker_rss(self) -> tuple[float, float]:
        """(max RSS of one worker, of the `bot run` parent); embedded: the one process is the worker."""
        parent = self.server.process.pid
        workers = [mb for pid, mb in self.max_rss.items() if pid != parent and "resource_tracker" not in cmdline(pid)]
        own = self.max_rss.get(parent, 0.0)
        return (max(workers) if workers else own), own


# ---- one run ------------------------------------------------------------------------------------------------------

def ensure_model() -> None:
    """Train the bundled bot once into MODELS_DIR; `bot run` retrains by itself when the data changed."""
    if any(MODELS_DIR.glob("*/metadata.json")):
        return
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT__")}
    subprocess.run([str(BOT), "train", "--config", str(REPO / "config.yml")], cwd=REPO, check=True,
                   env={**env, "BOT__MODELS_DIR": str(MODELS_DIR)}, timeout=600)


def run(spec: RunSpec) -> dict[str, Any]:
    """Start the stack, warm it, drive the load (and the fault), measure, tear everything down."""
    ensure_model()
    workdir = Path(tempfile.mkdtemp(prefix="bankbot-load-"))
    redis: RedisServer | None = None
    slow: SlowActionServer | None = None
    server: Server | None = None
    try:
        extra: dict[str, str] = {}
        if spec.fault == "kill":
            extra["BOT__STORAGE__CLAIM_LEASE_SECONDS"] = str(KILL_LEASE_SECONDS)
        if spec.fault == "slow-backend":
            slow = SlowActionServer(SLOW_SLEEP)
            extra.update(BOT__ACTION_ENDPOINT__URL=slow.url, BOT__ACTION_ENDPOINT__TIMEOUT=str(SLOW_TIMEOUT))
        if spec.mode == "scaleout":
            redis = RedisServer(workdir)
        with fresh_database(workdir, spec.mode) as database_url:
            env = server_env(database_url, workdir, redis.url if redis else None, extra)
            server = Server(spec, env, workdir)
            server.wait_ready(spec.workers)
            server.add_agents()
            with proxied(spec, server, workdir) as (host, port):
                result = asyncio.run(asyncio.wait_for(drive(spec, server, host, port, redis, database_url),
                                                      spec.seconds + 180))
            if spec.fault == "kill":
                result["kill"].update(check_stored(database_url, result.pop("rest_log")))
                result["targets"] = judge(result)
            if slow is not None:
                result["slow"]["action_calls"] = dict(slow.calls)
            return result
    finally:
        if server is not None:
            server.stop()
            keep_log(spec, Path(server.log.name))
        if redis is not None:
            redis.kill()
        if slow is not None:
            slow.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def keep_log(spec: RunSpec, log: Path) -> None:
    """The server's log of the run, for a look afterwards: results/load/<run>.log (results/ is not committed)."""
    target = REPO / "results" / "load"
    target.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "-" for c in spec.name).strip("-")
    with contextlib.suppress(OSError):
        shutil.copyfile(log, target / f"{name}.log")


@contextlib.contextmanager
def proxied(spec: RunSpec, server: Server, workdir: Path) -> Iterator[tuple[str, int]]:
    """The address customers use: the server, or nginx in front of it (`--via-nginx`, bench/nginx_proxy.py)."""
    if not spec.via_nginx:
        yield "127.0.0.1", server.port
        return
    try:
        from bench.nginx_proxy import nginx_in_front
    except ImportError as e:
        raise SystemExit(f"--via-nginx needs bench/nginx_proxy.py (nginx_in_front), which is missing: {e}") from e
    from urllib.parse import urlsplit

    (workdir / "nginx").mkdir(exist_ok=True)
    with nginx_in_front([f"127.0.0.1:{server.port}"], workdir / "nginx") as base_url:
        address = urlsplit(base_url)
        yield address.hostname or "127.0.0.1", address.port or 80


async def drive(spec: RunSpec, server: Server, host: str, port: int, redis: RedisServer | None,
                database_url: str) -> dict[str, Any]:
    await warm_up(host, port, spec.workers)
    load_average = os.getloadavg()[0]  # other work on the machine before the run: the numbers depend on it
    recorder = Recorder()
    ctx = LoadContext(host, port, spec, recorder, deadline=time.monotonic() + spec.seconds,
                      retry_failed=spec.fault == "kill")
    agent_errors: Counter[str] = Counter()
    agents = [asyncio.create_task(simulated_agent(name, ctx, agent_errors)) for name in AGENTS] if spec.agents else []
    fault_log: dict[str, Any] = {}
    client_cpu = sum(os.times()[:2])
    with Sampler(server, database_url) as sampler:
        server_cpu = sum(sampler.cpu.values())
        recorder.started = started = time.monotonic()
        customers = customer_tasks(spec, ctx)
        fault = asyncio.create_task(inject_fault(spec, server, redis, fault_log))
        await asyncio.gather(*customers)
        wall = time.monotonic() - started
        fault.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fault
        sampler.sample()
        server_cpu = sum(sampler.cpu.values()) - server_cpu
        client_cpu = sum(os.times()[:2]) - client_cpu
        ctx.agents_done.set()
        await asyncio.gather(*agents)
        workers_after = len(server.workers())
    worker_rss, parent_rss = sampler.worker_rss()
    result = summarise(spec, recorder, wall, worker_rss, parent_rss, client_cpu, server_cpu, agent_errors,
                       fault_log, workers_after)
    return {**result, "load_average_before": round(load_average, 2), "postgres_connections_peak": sampler.postgres_peak}


def customer_tasks(spec: RunSpec, ctx: LoadContext) -> list[asyncio.Task[None]]:
    widgets = round(spec.customers * spec.websocket_share)
    tasks = []
    for index in range(spec.customers):
        if spec.fault == "slow-backend":  # half ask what needs the slow back end, half FAQ questions
            coroutine = slow_action_customer(index, ctx) if index % 2 == 0 else rest_customer(index, ctx, True)
        elif index < widgets:
            coroutine = widget_customer(index, ctx)
        else:
            coroutine = rest_customer(index, ctx)
        tasks.append(asyncio.create_task(coroutine))
    return tasks


async def warm_up(host: str, port: int, workers: int) -> None:
    """A few conversations per worker first: lazy imports and caches are not what is measured."""
    rng = random.Random(0)

    async def one(index: int) -> None:
        client = HttpClient(host, port)
        try:
            for number, step in enumerate(faq(rng, FAQ_WITHOUT_ACTIONS).steps):
                await client.request("POST", "/webhooks/rest/webhook",
                                     {"sender": f"warm-{index}", "message": step.text,
                                      "message_id": f"warm-{index}-{number}"}, timeout=60)
        finally:
            await client.close()

    await asyncio.gather(*(one(i) for i in range(4 * max(1, workers))))


async def inject_fault(spec: RunSpec, server: Server, redis: RedisServer | None, log: dict[str, Any]) -> None:
    if spec.fault not in ("kill", "redis"):
        return
    await asyncio.sleep(spec.seconds / 2)
    log["at_seconds"] = round(spec.seconds / 2, 1)
    if spec.fault == "kill":
        workers = sorted(server.workers(), key=cpu_seconds)  # the busiest: it surely holds customers' connections
        log["workers_before"] = len(workers)
        if workers:
            os.kill(workers[-1], signal.SIGKILL)
            log["killed_pid"] = workers[-1]
        return
    assert redis is not None
    redis.kill()
    await asyncio.sleep(REDIS_GAP)
    await asyncio.to_thread(redis.start)
    log["gap_seconds"] = REDIS_GAP


def check_stored(database_url: str, rest_log: list[dict[str, Any]]) -> dict[str, Any]:
    """The kill run's promise, checked in the database: every REST message answered (first time or after its
    retries) has its user event stored once and exactly the replies it was given stored once."""
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    stored: dict[str, tuple[str, int, int, int]] = {}
    with psycopg.connect(url) as connection:
        rows = connection.execute("""
            SELECT i.message_id, i.status, coalesce(json_array_length(i.replies), -1),
                   (SELECT count(*) FROM events e WHERE e.conversation_id = i.conversation_id AND e.type = 'user'
                    AND e.data->>'message_id' = i.message_id),
                   (SELECT count(*) FROM events b, events u WHERE u.id = i.user_event_id
                    AND b.conversation_id = u.conversation_id AND b.type = 'bot' AND b.seq > u.seq
                    AND b.seq < coalesce((SELECT min(n.seq) FROM events n WHERE n.conversation_id = u.conversation_id
                                          AND n.type = 'user' AND n.seq > u.seq), 2147483647))
            FROM inbound_messages i JOIN channel_identities c ON c.id = i.identity_id WHERE c.channel = 'rest'
        """).fetchall()
    for message_id, status, replies, users, bots in rows:
        stored[message_id] = (status, replies, users, bots)
    counts: Counter[str] = Counter()
    for entry in rest_log:
        kind = "first try" if entry["first_ok"] else "after a retry"
        if not entry["answered"]:
            counts[f"unanswered ({kind})"] += 1
            continue
        status, replies, users, bots = stored.get(entry["message_id"], ("missing", -1, 0, 0))
        good = status == "answered" and users == 1 and replies >= 1 and bots == replies
        counts[f"{'stored once' if good else 'NOT stored once'} ({kind})"] += 1
    return {"messages": len(rest_log), "outcomes": dict(counts),
            "all_stored_once": all(k.startswith("stored once") for k in counts) and bool(counts)}


def summarise(spec: RunSpec, recorder: Recorder, wall: float, worker_rss: float, parent_rss: float,
              client_cpu: float, server_cpu: float, agent_errors: Counter[str], fault_log: dict[str, Any],
              workers_after: int) -> dict[str, Any]:
    latencies = recorder.latencies
    errors = sum(recorder.errors.values())
    result: dict[str, Any] = {
        "run": spec.name, "mode": spec.mode, "workers": spec.workers, "customers": spec.customers,
        "fault": spec.fault, "via_nginx": spec.via_nginx, "seconds": round(wall, 1), "messages": len(latencies),
        "messages_per_second": round(len(latencies) / wall, 1) if wall else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1), "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1), "errors": errors, "error_kinds": dict(recorder.errors),
        "error_samples": recorder.error_samples, "by_channel": dict(recorder.channels),
        "conversations": dict(recorder.kinds), "handovers": dict(recorder.handovers),
        "agent_errors": {k: v for k, v in agent_errors.items() if v},
        "worker_rss_mb": round(worker_rss, 1), "parent_rss_mb": round(parent_rss, 1),
        "client_cpu_share": round(client_cpu / (wall * (os.cpu_count() or 1)), 3) if wall else 0.0,
        "server_cpu_share": round(server_cpu / (wall * (os.cpu_count() or 1)), 3) if wall else 0.0,
        "retries": recorder.retries,
    }
    if spec.fault == "kill":
        result["kill"] = {**fault_log, "workers_after": workers_after}
        result["rest_log"] = recorder.rest_log
    if spec.fault == "redis":
        result["redis"] = {**fault_log, **redis_timeline(recorder, spec.seconds)}
    if spec.fault == "slow-backend":
        result["slow"] = slow_summary(recorder.slow_log)
        result["slow"]["faq_p99_ms"] = round(percentile(recorder.faq_latencies, 0.99) * 1000, 1)
        result["slow"]["faq_messages"] = len(recorder.faq_latencies)
    result["targets"] = judge(result)
    return result


def redis_timeline(recorder: Recorder, seconds: float) -> dict[str, Any]:
    """Answers per second before the kill, in the gap (and a second after), and in the last quarter of the run."""
    kill = seconds / 2

    def rate(times: list[float], start: float, end: float) -> float:
        return round(sum(start <= t < end for t in times) / max(end - start, 1e-9), 1)

    return {"rate_before": rate(recorder.answered_at, 1.0, kill),
            "rate_during_gap": rate(recorder.answered_at, kill, kill + REDIS_GAP + 1),
            "rate_last": rate(recorder.answered_at, seconds * 0.75, seconds),
            "errors_during_gap": sum(kill <= t < kill + REDIS_GAP + 1 for t in recorder.failed_at),
            "errors_after_gap": sum(t >= kill + REDIS_GAP + 1 for t in recorder.failed_at)}


def slow_summary(log: list[dict[str, Any]]) -> dict[str, Any]:
    """Per message of the action conversations: how long it took at most and what the customer was told."""
    by_text: dict[str, dict[str, Any]] = {}
    for entry in log:
        seen = by_text.setdefault(entry["text"], {"count": 0, "max_latency_s": 0.0, "replies": Counter()})
        seen["count"] += 1
        seen["max_latency_s"] = round(max(seen["max_latency_s"], entry["latency"]), 2)
        seen["replies"][entry["error"] or entry["reply"][:120]] += 1
    for seen in by_text.values():
        seen["replies"] = dict(seen["replies"].most_common(3))
    conversations: dict[str, list[dict[str, Any]]] = {}
    for entry in log:
        conversations.setdefault(entry["conversation"], []).append(entry)
    told = [any(SLOW_APOLOGY in e["reply"] and SLOW_OFFER in e["reply"] for e in turns)
            for turns in conversations.values() if all(e["error"] is None for e in turns)]
    return {"timeout_s": SLOW_TIMEOUT, "stand_in_sleep_s": SLOW_SLEEP, "steps": by_text,
            "max_latency_s": round(max((e["latency"] for e in log), default=0.0), 2),
            "conversations": len(conversations), "told_and_offered": sum(told),
            "final_replies_polite_with_person": bool(told) and all(told) and len(told) == len(conversations)}


def judge(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each met or missed (the fault runs: their own promises)."""
    checks: list[dict[str, Any]] = []
    fault = result["fault"]
    if fault is None:
        goal = TARGETS[result["mode"]]
        checks += [
            {"target": f"messages/s ≥ {goal['rate']:.0f}", "value": result["messages_per_second"],
             "met": result["messages_per_second"] >= goal["rate"]},
            {"target": f"p99 ≤ {goal['p99_ms']:.0f} ms", "value": result["p99_ms"],
             "met": result["p99_ms"] <= goal["p99_ms"]},
            {"target": "zero errors", "value": result["errors"], "met": result["errors"] == 0},
        ]
    checks.append({"target": f"RSS per worker ≤ {TARGETS['rss_mb']:.0f} MB", "value": result["worker_rss_mb"],
                   "met": result["worker_rss_mb"] <= TARGETS["rss_mb"]})
    if fault == "kill" and "outcomes" in result["kill"]:  # known once the database is checked
        kill = result["kill"]
        checks.append({"target": "every REST message answered and stored exactly once", "value": kill["outcomes"],
                       "met": kill["all_stored_once"]})
    if fault == "redis":
        redis = result["redis"]
        recovered = redis["rate_last"] >= 0.7 * redis["rate_before"] and redis["errors_after_gap"] == 0
        checks.append({"target": "recovers by itself (last-quarter rate ≥ 70% of before, no errors after the gap)",
                       "value": f"{redis['rate_before']} → {redis['rate_last']} msg/s, "
                                f"{redis['errors_after_gap']} errors after", "met": recovered})
    if fault == "slow-backend":
        slow = result["slow"]
        bound = 2 * SLOW_TIMEOUT + 2  # a turn may wait on two actions (a form's validation, then its submit)
        checks += [{"target": f"no hang: every action turn answered within {bound:.0f} s",
                    "value": slow["max_latency_s"], "met": slow["max_latency_s"] <= bound},
                   {"target": "every action conversation told politely, with a 转人工客服 button (balance, card loss)",
                    "value": f"{slow['told_and_offered']} of {slow['conversations']}",
                    "met": slow["final_replies_polite_with_person"]}]
    return checks


# ---- the standard matrix and RESULTS.md -----------------------------------------------------------------------------

def standard_matrix(customers: int, seconds: float, via_nginx: bool) -> list[RunSpec]:
    fault_seconds = min(seconds, 20.0)
    return [
        RunSpec("embedded", 1, customers, seconds),
        *(RunSpec("scaleout", n, customers, seconds, via_nginx=via_nginx) for n in (1, 2, 4)),
        RunSpec("scaleout", 2, customers, fault_seconds, fault="kill"),
        RunSpec("scaleout", 2, customers, fault_seconds, fault="redis"),
        RunSpec("embedded", 1, 10, 15.0, fault="slow-backend"),
    ]


def markdown(results: list[dict[str, Any]]) -> str:
    command = " ".join(sys.argv[1:]) or "--all --write-results"
    lines = [
        START_MARK,
        "## Load and fault benchmark",
        "",
        f"`python bench/load.py {command}`, {dt.date.today()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; the load client runs on the same machine (its CPU share below). Closed-loop "
        "customers (each sends its next message after the answer), ~70% REST and ~30% the widget WebSocket: FAQ "
        "questions, the card-loss form (挂失 → 尾号 → 身份证后4位 → 确认) and hand-overs (转人工) answered by two "
        "simulated agents over `/api/agent`. A message's latency runs from sending to the reply (REST: the response; "
        "widget: the `ack` after its replies). Errors: non-200, timeouts, error frames, wrong or missing replies.",
        "",
        "Benchmark-only server settings (environment of the benchmark's own server; config.yml and the defaults are "
        f"untouched): rate limits raised (`per_ip` {RATE_LIMITS['BOT__SECURITY__RATE_LIMITS__PER_IP']}, "
        f"`per_sender` {RATE_LIMITS['BOT__SECURITY__RATE_LIMITS__PER_SENDER']}: every customer comes from 127.0.0.1), "
        "skill groups open all day (the agents answer at any hour), a random `secret_key`, a fresh database per run "
        "(SQLite file; PostgreSQL database + a private redis-server for scale-out); the kill run: "
        f"`claim_lease_seconds` {KILL_LEASE_SECONDS}; the slow-backend run: `action_endpoint` a stand-in answering "
        f"after {SLOW_SLEEP:.0f} s, `timeout` {SLOW_TIMEOUT:.0f} s.",
        "",
        "| run | customers | s | messages | msg/s | p50 ms | p95 ms | p99 ms | errors | RSS/worker MB | CPU server / "
        "client | load avg before | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "failed" in r:
            lines.append(f"| {r['run']} | – | – | – | – | – | – | – | – | – | – | – | **run failed**: {r['failed']} |")
            continue
        verdicts = "; ".join(f"{c['target']}: **{'met' if c['met'] else 'missed'}**" for c in r["targets"])
        lines.append(f"| {r['run']} | {r['customers']} | {r['seconds']} | {r['messages']} | "
                     f"{r['messages_per_second']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['errors']} | "
                     f"{r['worker_rss_mb']} | {r['server_cpu_share']:.0%} / {r['client_cpu_share']:.0%} | "
                     f"{r.get('load_average_before', '–')} | {verdicts} |")
    lines += ["", *scaling_lines(results), *handover_lines(results), *fault_lines(results), END_MARK]
    return "\n".join(lines) + "\n"


def scaling_lines(results: list[dict[str, Any]]) -> list[str]:
    plain = {r["workers"]: r for r in results
             if r.get("mode") == "scaleout" and not r.get("fault") and "failed" not in r
             and "baseline" not in r.get("run", "")}
    if not plain:
        return []
    steps = ", ".join(f"{n} worker{'s' * (n > 1)}: {plain[n]['messages_per_second']} msg/s "
                      f"(server CPU {plain[n]['server_cpu_share']:.0%})" for n in sorted(plain))
    best = max(plain.values(), key=lambda r: r["messages_per_second"])
    growth = [plain[n]["messages_per_second"] for n in sorted(plain)]
    stops = next((n for n, now, nxt in zip(sorted(plain), growth, growth[1:], strict=False) if nxt < now * 1.1),
                 None)
    where = (f"it stops growing after {stops} worker{'s' * (stops > 1)} (the next step adds under 10%)"
             if stops is not None else "it grows at every step measured")
    peaks = ", ".join(f"{n}: {plain[n].get('postgres_connections_peak')}" for n in sorted(plain))
    return [f"Scale-out throughput: {steps}; best {best['messages_per_second']} msg/s with {best['workers']} "
            f"worker(s); {where} on these {os.cpu_count()} cores, which client and server share (CPU columns: "
            f"share of all cores). PostgreSQL connections held at the peak, by workers: {peaks}.", ""]


def handover_lines(results: list[dict[str, Any]]) -> list[str]:
    said = []
    for r in results:
        h = r.get("handovers") or {}
        if h.get("requested"):
            wait = h.get("wait ms total", 0) / max(h.get("agent replied", 0), 1) / 1000
            said.append(f"{r['run']}: {h.get('requested')} requested, {h.get('agent replied', 0)} answered by an "
                        f"agent (average wait {wait:.1f} s), {h.get('rated', 0)} rated")
    return [f"Hand-overs (转人工, two simulated agents polling every 0.3 s): {'; '.join(said)}.", ""] if said else []


def fault_lines(results: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for r in results:
        if "failed" in r:
            continue
        if r.get("kill"):
            k = r["kill"]
            lines.append(f"- **kill**: worker pid {k.get('killed_pid')} SIGKILLed at {k.get('at_seconds')} s of "
                         f"{r['seconds']} s ({k.get('workers_before')} workers before, {k.get('workers_after')} at the "
                         f"end: uvicorn respawns); {k['messages']} REST messages: {k['outcomes']}; "
                         f"{r['retries']} retries with the same message id.")
        if r.get("redis"):
            x = r["redis"]
            lines.append(f"- **redis**: the private redis-server killed at {x.get('at_seconds')} s, started again "
                         f"{x.get('gap_seconds')} s later; {x['rate_before']} msg/s before, {x['rate_during_gap']} in "
                         f"the gap, {x['rate_last']} in the last quarter; errors in the gap "
                         f"{x['errors_during_gap']} ({r['error_kinds']}), after it {x['errors_after_gap']}.")
        if r.get("slow"):
            s = r["slow"]
            said = "; ".join(f"{text} → {list(v['replies'])[:2]} (max {v['max_latency_s']} s)"
                             for text, v in s["steps"].items())
            lines.append(f"- **slow back end** (action timeout {s['timeout_s']} s): {said}. Action server calls: "
                         f"{s.get('action_calls')}. Meanwhile {s['faq_messages']} FAQ questions (no action) "
                         f"answered, p99 {s['faq_p99_ms']} ms.")
    return [*(["### Fault runs", ""] if lines else []), *lines, *([""] if lines else [])]


def write_results(results: list[dict[str, Any]], path: Path = RESULTS) -> None:
    """Replace the load section of `path` (appended, with its markers, when there is none)."""
    section = markdown(results)
    text = path.read_text("utf-8") if path.exists() else "# Benchmark results\n"
    if START_MARK in text and END_MARK in text:
        before, rest = text.split(START_MARK, 1)
        text = before + section.rstrip("\n") + rest.split(END_MARK, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, "utf-8")


def print_result(result: dict[str, Any]) -> None:
    if "failed" in result:
        print(f"{result['run']}: FAILED {result['failed']}", flush=True)
        return
    print(f"{result['run']}: {result['messages']} messages in {result['seconds']} s = {result['messages_per_second']} "
          f"msg/s, p50 {result['p50_ms']} / p95 {result['p95_ms']} / p99 {result['p99_ms']} ms, "
          f"{result['errors']} errors {result['error_kinds']}, RSS/worker {result['worker_rss_mb']} MB "
          f"(parent {result['parent_rss_mb']}), CPU client {result['client_cpu_share']:.0%} "
          f"server {result['server_cpu_share']:.0%}, load average before {result.get('load_average_before')}, "
          f"PostgreSQL connections peak {result.get('postgres_connections_peak')}", flush=True)
    for check in result["targets"]:
        print(f"  {'met   ' if check['met'] else 'MISSED'} {check['target']}: {check['value']}", flush=True)
    for key in ("handovers", "agent_errors", "kill", "redis", "slow"):
        if result.get(key):
            print(f"  {key}: {json.dumps(result[key], ensure_ascii=False)}", flush=True)
    for sample in result["error_samples"]:
        print(f"  error: {sample}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "scaleout"), default="embedded")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--via-nginx", action="store_true", help="scale-out: customers go through nginx")
    parser.add_argument("--fault", choices=("kill", "redis", "slow-backend"))
    parser.add_argument("--all", action="store_true", help="the standard matrix (about 8 minutes)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--write-results", action="store_true", help="rewrite the load section of bench/RESULTS.md")
    parser.add_argument("--baseline", metavar="GIT_REF",
                        help="also run the server of this commit (a git worktree): with --all its embedded and "
                             "2-worker runs, else the one run")
    args = parser.parse_args()
    if args.fault in ("kill", "redis") and args.mode != "scaleout":
        parser.error(f"--fault {args.fault} needs --mode scaleout")
    if args.via_nginx and args.mode != "scaleout" and not args.all:
        parser.error("--via-nginx is for --mode scaleout")
    specs = (standard_matrix(args.customers, args.seconds, args.via_nginx) if args.all else
             [RunSpec(args.mode, args.workers, args.customers, args.seconds, args.fault, args.via_nginx)])
    with contextlib.ExitStack() as stack:
        if args.baseline:
            code, label = stack.enter_context(baseline_checkout(args.baseline))
            chosen = [s for s in specs if s.fault is None and s.workers <= 2 and
                      (s.mode == "embedded" or s.workers == 2)] if args.all else specs
            baseline = [dataclasses.replace(s, code=str(code), code_label=label) for s in chosen]
            specs = [*specs, *baseline] if args.all else baseline
        results = run_all(specs, args.json)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], ensure_ascii=False, indent=2))
    if args.write_results:
        write_results(results)


@contextlib.contextmanager
def baseline_checkout(ref: str) -> Iterator[tuple[Path, str]]:
    """A temporary git worktree of `ref` (removed afterwards) and its short commit id."""
    label = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], check=True, capture_output=True,
                           text=True).stdout.strip()
    where = Path(tempfile.mkdtemp(prefix="bankbot-baseline-")) / "code"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), ref], check=True,
                   capture_output=True)
    try:
        yield where, label
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], capture_output=True)


def run_all(specs: list[RunSpec], quiet: bool) -> list[dict[str, Any]]:
    results = []
    for spec in specs:
        try:
            result = run(spec)
        except Exception as e:  # noqa: BLE001 - one failed run is reported, the matrix goes on
            result = {"run": spec.name, "failed": f"{type(e).__name__}: {e}"}
        results.append(result)
        if not quiet:
            print_result(result)
    return results


if __name__ == "__main__":
    main()
