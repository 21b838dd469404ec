"""The live-event bus: `LocalBus` for one process, `RedisBus` across workers through the real Redis at
127.0.0.1:6379 (database 14, keys and channels under names of these tests, removed afterwards). End to end: two apps
on one PostgreSQL database, each served by uvicorn, stand for two workers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import select

from bot.handoff.agents import create_agent
from bot.live import LocalBus, after_grace, make_bus
from bot.live.redis_bus import RedisBus
from bot.storage import Database
from bot.storage.models import AgentAccount
from bot.web.app import create_app
from tests.browser_support import served
from tests.redis_support import delete_keys

REDIS_URL = "redis://127.0.0.1:6379/14"  # this file's database number: other tests use theirs
APP_NAMESPACE = "bankbot:live:14"  # what apps configured with REDIS_URL use
PASSWORD = "correct horse battery"
WORKDAY_NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday: the desk is open


# --- sockets on an event loop of their own, as uvicorn's would be ---------------------------------------------

class RecordingSocket:
    """A socket that keeps what it is sent."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def send_json(self, data: Any) -> None:
        self.frames.append(data)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> Any:
    """`call()` run on `loop` (adding a socket needs the loop that serves it)."""
    async def run() -> Any:
        return call()
    return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=5)


def eventually(condition: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return result


@pytest.fixture
def namespace() -> Iterator[str]:
    """Keys and channel of one test's buses; removed afterwards."""
    name = f"test-live:{uuid.uuid4().hex[:10]}"
    yield name
    delete_keys(REDIS_URL, f"{name}:*")


@pytest.fixture
def workers(namespace: str) -> Iterator[Callable[..., RedisBus]]:
    """Makes RedisBus instances on one namespace, as the workers of one installation; all stopped afterwards."""
    made: list[RedisBus] = []

    def make(presence_seconds: float = 30.0, start: bool = True) -> RedisBus:
        bus = RedisBus(REDIS_URL, namespace=namespace, presence_seconds=presence_seconds)
        made.append(bus)
        if start:
            bus.start()
            assert bus.listening.wait(5)
        return bus

    yield make
    for bus in made:
        bus.stop()


# --- one process ------------------------------------------------------------------------------------------------

def test_the_local_bus_reaches_the_sockets_it_holds(loop: asyncio.AbstractEventLoop) -> None:
    bus = LocalBus()
    phone, laptop, agent_one, agent_two = (RecordingSocket() for _ in range(4))
    on_loop(loop, lambda: bus.add_customer("web", "v-1", phone))
    on_loop(loop, lambda: bus.add_customer("web", "v-1", laptop))
    on_loop(loop, lambda: bus.add_agent(1, agent_one))
    on_loop(loop, lambda: bus.add_agent(2, agent_two))

    assert bus.to_customer("web", "v-1", {"type": "bot", "text": "您好"}) == 2
    assert bus.to_customer("web", "someone-else", {"type": "bot"}) == 0
    assert bus.to_customer("app", "v-1", {"type": "bot"}) == 0  # same id, another channel: not this customer
    assert bus.to_agents({"type": "queue"}) == 2
    assert bus.to_agents({"type": "message"}, [2]) == 1
    eventually(lambda: len(phone.frames) == 1 and len(laptop.frames) == 1 and len(agent_two.frames) == 2)
    assert phone.frames == [{"type": "bot", "text": "您好"}] and agent_one.frames == [{"type": "queue"}]

    bus.remove_customer("web", "v-1", phone)
    assert bus.customer_connected("web", "v-1") and bus.to_customer("web", "v-1", {"type": "bot"}) == 1
    bus.remove_customer("web", "v-1", laptop)
    assert not bus.customer_connected("web", "v-1") and bus.to_customer("web", "v-1", {"type": "bot"}) == 0
    bus.remove_agent(1, agent_one)
    assert not bus.agent_connected(1) and bus.agent_connected(2) and bus.customers_here() == []
    eventually(lambda: len(laptop.frames) == 2 and len(phone.frames) == 1)


def test_without_redis_the_app_gets_the_local_bus() -> None:
    assert isinstance(make_bus(None), LocalBus) and isinstance(make_bus(""), LocalBus)
    bus = make_bus(REDIS_URL)
    assert isinstance(bus, RedisBus) and bus.namespace == APP_NAMESPACE


def test_after_grace_acts_only_when_still_gone() -> None:
    acted: list[str] = []
    asyncio.run(after_grace(0.01, lambda: True, lambda: acted.append("gone")))
    asyncio.run(after_grace(0.01, lambda: False, lambda: acted.append("back")))
    assert acted == ["gone"]


# --- two workers through Redis ------------------------------------------------------------------------------------

def test_a_push_on_one_worker_reaches_a_socket_on_another(loop: asyncio.AbstractEventLoop,
                                                          workers: Callable[..., RedisBus]) -> None:
    first, second = workers(), workers()
    customer, agent = RecordingSocket(), RecordingSocket()
    on_loop(loop, lambda: first.add_customer("web", "v-2", customer))
    on_loop(loop, lambda: first.add_agent(7, agent))

    eventually(lambda: second.customer_connected("web", "v-2") and second.agent_connected(7))  # claims: written soon
    assert not second.customer_connected("web", "v-3") and not second.agent_connected(8)
    assert second.to_customer("web", "v-2", {"type": "bot", "text": "人工客服小王为您服务"}) == 1  # one worker has it
    assert second.to_customer("web", "v-3", {"type": "bot", "text": "无人"}) == 0
    second.to_agents({"type": "queue"})
    second.to_agents({"type": "message", "handoff_id": 1}, [8])  # another agent: not for this console
    eventually(lambda: customer.frames and agent.frames)
    time.sleep(0.2)  # anything else published would have arrived by now
    assert customer.frames == [{"type": "bot", "text": "人工客服小王为您服务"}]
    assert agent.frames == [{"type": "queue"}]

    first.to_customer("web", "v-2", {"type": "bot", "text": "本机"})  # the worker's own push: delivered once
    time.sleep(0.2)
    assert [f["text"] for f in customer.frames] == ["人工客服小王为您服务", "本机"]

    first.remove_customer("web", "v-2", customer)
    eventually(lambda: not second.customer_connected("web", "v-2"))
    assert second.to_customer("web", "v-2", {"type": "bot"}) == 0
    first.stop()  # a clean shutdown withdraws its consoles at once
    assert not second.agent_connected(7)


def test_a_crashed_workers_sockets_stop_counting_within_the_expiry(loop: asyncio.AbstractEventLoop,
                                                                   workers: Callable[..., RedisBus]) -> None:
    alive, crashed, other = workers(presence_seconds=1.2), workers(presence_seconds=1.2, start=False), workers()
    on_loop(loop, lambda: alive.add_customer("web", "kept", RecordingSocket()))
    on_loop(loop, lambda: crashed.add_customer("web", "lost", RecordingSocket()))  # never refreshed: a dead worker
    eventually(lambda: other.customer_connected("web", "kept") and other.customer_connected("web", "lost"))
    time.sleep(2.0)
    assert other.customer_connected("web", "kept")  # refreshed while its socket is open
    assert not other.customer_connected("web", "lost") and other.to_customer("web", "lost", {"type": "bot"}) == 0


def test_the_listener_reconnects_by_itself(loop: asyncio.AbstractEventLoop, workers: Callable[..., RedisBus]) -> None:
    listener, pusher = workers(), workers()
    customer = RecordingSocket()
    on_loop(loop, lambda: listener.add_customer("web", "v-4", customer))
    admin = redis.Redis.from_url(REDIS_URL)
    killed = sum(admin.client_kill_filter(_id=client["id"]) for client in admin.client_list(_type="pubsub")
                 if client["name"] == listener.client_name)  # as when Redis restarts
    assert killed == 1

    def heard_again() -> bool:  # a frame published before the listener is back is lost (it is stored anyway)
        pusher.to_customer("web", "v-4", {"type": "bot", "text": "重连之后"})
        time.sleep(0.1)
        return bool(customer.frames)

    eventually(heard_again, 15)
    assert customer.frames[0] == {"type": "bot", "text": "重连之后"}
    assert [c for c in admin.client_list(_type="pubsub") if c["name"] == listener.client_name]  # subscribed again
    admin.close()


def test_without_reachable_redis_the_workers_own_sockets_still_get_their_frames(
        loop: asyncio.AbstractEventLoop) -> None:
    bus = RedisBus("redis://127.0.0.1:1/14", namespace="test-live:nowhere")  # nothing listens on port 1
    bus.start()
    customer = RecordingSocket()
    try:
        on_loop(loop, lambda: bus.add_customer("web", "v-5", customer))
        started = time.monotonic()
        assert bus.to_customer("web", "v-5", {"type": "bot", "text": "本机照常"}) == 1
        assert bus.to_customer("web", "v-6", {"type": "bot"}) == 0 and not bus.customer_connected("web", "v-6")
        assert bus.customer_connected("web", "v-5") and time.monotonic() - started < 2
        eventually(lambda: customer.frames == [{"type": "bot", "text": "本机照常"}])
        assert not bus.listening.is_set()
    finally:
        bus.stop()


# --- two apps on one PostgreSQL database ----------------------------------------------------------------------

def make_app(bundled_assistant: Any, database_url: str) -> FastAPI:
    config = bundled_assistant.config
    config = config.model_copy(update={"security": config.security.model_copy(update={"redis_url": REDIS_URL})})
    app = create_app(config, assistant=bundled_assistant, database=Database(database_url))
    app.state.desk.clock = lambda: WORKDAY_NOON
    return app


@pytest.fixture
def two_workers(bundled_assistant: Any, postgres_url: str) -> Iterator[tuple[tuple[FastAPI, str], tuple[FastAPI, str]]]:
    """(app, base URL) twice: two workers of one installation, one database, one Redis."""
    first, second = make_app(bundled_assistant, postgres_url), make_app(bundled_assistant, postgres_url)
    create_agent(first.state.database, "wang", "小王", PASSWORD, groups=["借记卡与账户", "综合服务"])
    try:
        with served(first) as first_url, served(second) as second_url:
            assert first.state.hub.listening.wait(5) and second.state.hub.listening.wait(5)
            yield (first, first_url), (second, second_url)
    finally:
        delete_keys(REDIS_URL, f"{APP_NAMESPACE}:*")
        delete_keys(REDIS_URL, "bankbot:limit:*")
        for app in (first, second):
            app.state.database.engine.dispose()


def log_in(url: str) -> dict[str, str]:
    response = httpx.post(f"{url}/api/agent/login", json={"username": "wang", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def receive_until(socket: Any, wanted: Callable[[dict[str, Any]], bool], seconds: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        frame = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if wanted(frame):
            return frame


def test_an_agents_reply_on_one_worker_reaches_the_customers_socket_on_the_other(two_workers: Any) -> None:
    from websockets.sync.client import connect

    (first, first_url), (second, second_url) = two_workers
    agent = log_in(second_url)
    with connect(f"{first_url.replace('http', 'ws')}/ws/chat", origin=first_url) as customer:
        customer.send(json.dumps({"type": "hello"}))
        visitor = json.loads(customer.recv(timeout=10))["visitor"]
        sender = visitor.split(".")[1]
        customer.send(json.dumps({"type": "message", "text": "转人工", "message_id": "x-1"}))
        receive_until(customer, lambda f: f["type"] == "ack")
        eventually(lambda: second.state.hub.customer_connected("web", sender))  # the socket is on the first worker

        waiting = httpx.get(f"{second_url}/api/agent/queue", headers=agent).json()["waiting"]
        handoff_id = waiting[0]["handoff_id"]
        assert httpx.post(f"{second_url}/api/agent/handoffs/{handoff_id}/accept", headers=agent).status_code == 200
        sent = httpx.post(f"{second_url}/api/agent/handoffs/{handoff_id}/messages", headers=agent,
                          json={"text": "您好，我是小王，请问有什么可以帮您？"}).json()
        assert sent["delivered"] is True and sent["warning"] is None, sent
        live = receive_until(customer, lambda f: f["type"] == "bot" and f.get("from") == "agent")
        assert live["text"] == "您好，我是小王，请问有什么可以帮您？" and live["agent"] == "小王"

    eventually(lambda: not second.state.hub.customer_connected("web", sender))
    assert not first.state.hub.customer_connected("web", sender)
    later = httpx.post(f"{second_url}/api/agent/handoffs/{handoff_id}/messages", headers=agent,
                       json={"text": "您还在吗？"}).json()
    assert later["delivered"] is False and later["warning"]  # nobody on any worker: marked undelivered


def test_an_agents_console_hears_a_chat_queued_on_the_other_worker(two_workers: Any) -> None:
    from websockets.sync.client import connect

    (first, first_url), (second, second_url) = two_workers
    agent = log_in(first_url)
    with connect(f"{first_url.replace('http', 'ws')}/api/agent/ws", origin=first_url) as console:
        console.send(json.dumps({"type": "auth", "token": agent["Authorization"].split()[1]}))
        assert json.loads(console.recv(timeout=10)) == {"type": "welcome"}
        with first.state.database.session() as db:
            agent_id = db.scalar(select(AgentAccount.id).where(AgentAccount.username == "wang"))
        eventually(lambda: second.state.hub.agent_connected(agent_id))
        reply = httpx.post(f"{second_url}/webhooks/rest/webhook", json={"sender": "rest-live", "message": "转人工"})
        assert reply.status_code == 200
        assert receive_until(console, lambda f: f["type"] == "queue") == {"type": "queue"}
    eventually(lambda: not second.state.hub.agent_connected(agent_id))


def test_redis_url_configures_the_shared_redis_and_the_bot_variable_still_wins() -> None:
    from pathlib import Path

    from bot.config import load_config

    config_file = Path(__file__).resolve().parents[1] / "config.yml"
    assert load_config(config_file, environ={}).security.redis_url is None
    plain = load_config(config_file, environ={"REDIS_URL": "redis://127.0.0.1:6379/3"})
    assert plain.security.redis_url == "redis://127.0.0.1:6379/3"
    both = load_config(config_file, environ={"REDIS_URL": "redis://127.0.0.1:6379/3",
                                             "BOT__SECURITY__REDIS_URL": "redis://127.0.0.1:6379/4"})
    assert both.security.redis_url == "redis://127.0.0.1:6379/4"
