"""Service-level alerts (bot/ops/alerts.py): a customer who waits past the threshold makes an alert appear in
/api/ops/live, on a supervisor's console socket once, and at the webhook (a local stand-in HTTP server); the
app's own alerts task finds it (a small threshold and check interval in the test config)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from bot.config import load_config
from bot.dialogue.service import Inbound
from bot.handoff.agents import create_agent
from bot.ops.alerts import AlertMonitor
from bot.storage import Database
from bot.web.app import create_app

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PASSWORD = "correct horse battery"
OPS = """
handoff:
  default_group: 综合服务
  groups:
    - name: 综合服务
      hours: "00:00-24:00"
ops:
  alerts:
    oldest_wait_seconds: 1
    check_seconds: 1
    webhook_url: {webhook}
"""


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for the bank's alerting endpoint: records every JSON body POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()


def app_with(minibot: Path, minibot_assistant, url: str, webhook_url: str):
    path = minibot / f"alerts-{time.monotonic_ns()}.yml"
    path.write_text((minibot / "config.yml").read_text(encoding="utf-8") + OPS.format(webhook=webhook_url),
                    encoding="utf-8")
    database = Database(url)
    app = create_app(load_config(path, environ={}), assistant=minibot_assistant, database=database)
    app.state.desk.clock = lambda: NOON
    create_agent(database, "boss", "张主管", PASSWORD, role="supervisor", groups=[])  # serves no queue
    create_agent(database, "mgr", "刘经理", PASSWORD, role="manager")
    return app


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def frames_until(socket: Any, kind: str) -> list[dict[str, Any]]:
    frames = []
    while (frame := socket.receive_json())["type"] != kind:
        frames.append(frame)
    return [*frames, frame]


def test_a_long_wait_alerts_the_supervisor_once_in_live_on_the_console_and_at_the_webhook(
        minibot, minibot_assistant, postgres_url: str, webhook) -> None:
    hook_url, posted = webhook
    app = app_with(minibot, minibot_assistant, postgres_url, hook_url)
    with TestClient(app) as client:  # the lifespan runs the alerts task
        boss, manager = login(client, "boss"), login(client, "mgr")
        assert client.post("/api/agent/presence", json={"presence": "online"}, headers=boss).status_code == 200
        assert client.get("/api/ops/live", headers=manager).json()["alerts"] == []
        with client.websocket_connect("/api/agent/ws") as console:
            console.send_json({"type": "auth", "token": boss["Authorization"].split()[1]})
            assert console.receive_json() == {"type": "welcome"}
            client.post("/webhooks/rest/webhook", json={"sender": "waiter", "message": "转人工"})
            [alert] = [f["alert"] for f in frames_until(console, "ops_alert") if f["type"] == "ops_alert"]
            assert alert["kind"] == "oldest_wait" and alert["group"] == "综合服务" and alert["threshold"] == 1
            assert alert["value"] >= 1 and "综合服务有客户已等待" in alert["message"]
            live = client.get("/api/ops/live", headers=manager).json()
            assert live["waiting"] == 1 and live["longest_wait_s"] >= 1 and live["agents_online"] == 1
            assert [(a["kind"], a["group"], a["since"]) for a in live["alerts"]] == [
                ("oldest_wait", "综合服务", alert["since"])]
            time.sleep(2.5)  # two more checks while the customer still waits: nothing new to say
            client.post("/webhooks/rest/webhook", json={"sender": "second", "message": "转人工"})  # a queue frame
            assert [f for f in frames_until(console, "queue") if f["type"] == "ops_alert"] == []
        assert [(p["type"], p["alert"]["kind"], p["alert"]["since"]) for p in posted] == [
            ("ops_alert", "oldest_wait", alert["since"])]
        for sender in ("waiter", "second"):
            client.post("/webhooks/rest/webhook", json={"sender": sender, "message": "不用了"})
        deadline = time.monotonic() + 10
        while client.get("/api/ops/live", headers=manager).json()["alerts"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/api/ops/live", headers=manager).json()["alerts"] == []  # over once nobody waits


def test_an_unreachable_webhook_fails_nothing(minibot, minibot_assistant, postgres_url: str) -> None:
    app = app_with(minibot, minibot_assistant, postgres_url, "http://127.0.0.1:9/alerts")  # nothing listens
    app.state.conversations.handle(Inbound("web", "waiter", "转人工", None))
    monitor: AlertMonitor = app.state.ops_alerts
    monitor.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)  # five seconds on
    started = monitor.check()
    assert [a.kind for a in started] == ["oldest_wait"]
    asyncio.run(monitor.announce(started))  # logged, not raised
    assert monitor.check() == [] and [a.kind for a in monitor.active] == ["oldest_wait"]


def test_with_several_workers_only_the_lease_holder_announces(minibot, minibot_assistant, postgres_url: str,
                                                              webhook) -> None:
    """Two workers on one database both see the long wait; the one holding the `ops-alerts` lease tells the
    webhook (and the consoles), once."""
    import functools

    hook_url, posted = webhook
    first = app_with(minibot, minibot_assistant, postgres_url, hook_url)
    second = create_app(first.state.config, assistant=minibot_assistant, database=Database(postgres_url))
    for app, holder in ((first, "worker-1"), (second, "worker-2")):
        store = app.state.conversations.store
        app.state.ops_alerts.lease = functools.partial(store.take_lease, "ops-alerts", holder, 3)
    first.state.conversations.handle(Inbound("web", "waiter", "转人工", None))

    async def both_workers() -> None:
        tasks = [asyncio.create_task(app.state.ops_alerts.run()) for app in (first, second)]
        await asyncio.sleep(3.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(both_workers())
    assert [a.kind for a in first.state.ops_alerts.active] == [a.kind for a in second.state.ops_alerts.active] == [
        "oldest_wait"]  # both saw it (each worker's /api/ops/live lists it)
    assert [p["alert"]["kind"] for p in posted] == ["oldest_wait"]  # one announcement
