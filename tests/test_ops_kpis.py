"""The contact centre's figures (bot/ops/kpis.py): conversations with known outcomes driven through the real
conversation service and desk on the real PostgreSQL server, every figure asserted exactly against numbers
worked out by hand; /api/ops/* answers managers and supervisors only; `bot report --json` prints what the API
returns."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.channels.app import AppCustomer, sign_token
from bot.config import load_config
from bot.dialogue.service import Inbound
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.storage.models import Event, Handoff
from bot.web.app import create_app

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
BEIJING = ZoneInfo("Asia/Shanghai")
PASSWORD = "correct horse battery"
HANDOFF = """
handoff:
  default_group: 综合服务
  groups:
    - name: 借记卡
      intents: [report_card_loss]
      hours: "00:00-24:00"
    - name: 综合服务
      hours: "00:00-24:00"
"""
# hand-over -> seconds after the base moment: requested, first taken by an agent, the agent's first message, closed
PLACES = {"h1": (0, 10, 25, 325), "h2": (100, 130, 140, 260), "h3": (200, 205, 208, 268), "h4": (300, 312, 350, 412)}


@pytest.fixture(scope="module")
def config_file(minibot: Path) -> Path:
    path = minibot / "kpis-config.yml"
    path.write_text((minibot / "config.yml").read_text(encoding="utf-8") + HANDOFF, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def seeded(minibot_assistant, config_file: Path):
    """One PostgreSQL database with the conversations below, for every test of the module."""
    from tests.postgres_support import fresh_postgres_url

    with fresh_postgres_url() as url:
        config = load_config(config_file, environ={})
        database = Database(url)
        app = create_app(config, assistant=minibot_assistant, database=database)
        app.state.desk.clock = lambda: NOON  # groups are judged open at a weekday noon whatever the time now
        for username, name, role, groups in (("wang", "小王", "agent", ["综合服务"]),
                                              ("li", "小李", "agent", ["借记卡"]),
                                              ("boss", "张主管", "supervisor", ["综合服务"]),
                                              ("mgr", "刘经理", "manager", []), ("tina", "陈训练师", "trainer", [])):
            create_agent(database, username, name, PASSWORD, role=role, groups=groups)
        client = TestClient(app)
        ids = seed(app, client)
        yield app, client, ids, url
        database.engine.dispose()


def say(app, sender: str, *texts: str) -> str:
    service = app.state.conversations
    for text in texts:
        service.handle(Inbound("web", sender, text, None))
    return service.store.find_conversation_of("web", sender).id


def agent_id(app, username: str) -> int:
    return next(a["id"] for a in app.state.desk.colleagues() if a["display_name"] == username)


def seed(app, client: TestClient) -> dict[str, Any]:
    desk, service = app.state.desk, app.state.conversations
    ids: dict[str, Any] = {}
    # no agent online yet: answered by the bot, or left waiting
    ids["a1"] = say(app, "a1", "余额")  # contained
    ids["r1"] = say(app, "r1", "查一下余额")  # the same customer comes back on the same topic: not contained at 24 h
    expiry = service.store.session_expiry
    service.store.session_expiry = dt.timedelta(0)  # the next message starts a new conversation of the same visitor
    ids["r2"] = say(app, "r1", "我卡里还有多少钱")
    service.store.session_expiry = expiry
    ids["m1"] = say(app, "m1", "钱", "/check_balance")  # a "您是不是想问" menu, an option chosen
    ids["m2"] = say(app, "m2", "营业", "asdf")  # a menu, then a message not understood
    ids["ab"] = say(app, "ab", "转人工", "不用了")  # cancelled while waiting: abandoned at once
    ids["ab2"] = say(app, "ab2", "转人工")
    desk.customer_left(ids["ab2"])  # left the queue (placed at 45 s below: after the 20 s of the service level)
    client.post("/webhooks/rest/webhook", json={"sender": "rest1", "message": "网点几点开门"})  # another channel
    ids["rest1"] = service.store.find_conversation_of("rest", "rest1").id
    # agents online: each hand-over is given at once
    wang, li = agent_id(app, "小王"), agent_id(app, "小李")
    desk.set_presence(wang, "online")
    desk.set_presence(li, "online")
    chats = (("h1", ["转人工"], wang, "5"), ("h2", ["你们再不处理我就去曝光"], wang, "2"),
             ("h3", ["我的卡被盗刷了"], li, None), ("h4", ["asdf", "qwer", "zxcv"], wang, "4"))
    for key, texts, agent, rating in chats:
        ids[key] = say(app, key, *texts)
        handoff = desk.open_handoff(ids[key])
        assert handoff is not None and handoff.agent_id == agent, key
        desk.agent_message(handoff.id, agent, "您好，请问有什么可以帮您？")
        desk.close(handoff.id, agent, "已解决")
        if rating:
            say(app, key, rating)
    place(app, ids)
    return ids


def place(app, ids: dict[str, Any]) -> None:
    """Put the hand-overs' moments where the expected figures need them. The desk stamps its rows and events with
    the wall clock (`utcnow()`; its injectable clock only judges working hours), so a row edit is the only way to
    place them exactly: the request time, the first assignment's event, the agent's first message and the close
    (row and event)."""
    with app.state.database.session() as session, session.begin():
        base = session.scalar(select(Handoff.created_at).where(Handoff.conversation_id == ids["h1"]))
        for key, (requested, taken, replied, closed) in PLACES.items():
            handoff = session.scalar(select(Handoff).where(Handoff.conversation_id == ids[key]))
            handoff.created_at = base + dt.timedelta(seconds=requested)
            handoff.closed_at = base + dt.timedelta(seconds=closed)
            events = session.scalars(select(Event).where(Event.conversation_id == ids[key]).order_by(Event.seq)).all()
            assigned = next(e for e in events if e.type == "handoff" and e.data.get("status") == "assigned")
            assigned.timestamp = base + dt.timedelta(seconds=taken)
            reply = next(e for e in events if e.type == "bot" and e.data.get("data", {}).get("source") == "agent")
            reply.timestamp = base + dt.timedelta(seconds=replied)
            ended = next(e for e in events if e.type == "handoff" and e.data.get("status") == "closed")
            ended.timestamp = handoff.closed_at
        left = session.scalar(select(Handoff).where(Handoff.conversation_id == ids["ab2"]))
        left.closed_at = left.created_at + dt.timedelta(seconds=45)


def period() -> dict[str, str]:
    """Yesterday to tomorrow in Beijing: the seeded moments fall inside whenever the test runs."""
    today = dt.datetime.now(BEIJING).date()
    return {"from": (today - dt.timedelta(days=1)).isoformat(), "to": (today + dt.timedelta(days=1)).isoformat()}


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


# Worked out by hand from the seeded conversations:
# 12 conversations (a1 r1 r2 m1 m2 ab ab2 rest1 h1-h4); 6 with a hand-over; r1 came back on the same topic (r2).
# customer turns the bot answered: a1 1, r1 1, r2 1, m1 2, m2 2, ab 1 ("不用了" came while waiting), ab2 1,
# rest1 1, h1 2 (the rating), h2 2, h3 1, h4 4 = 19; fallbacks: m2's "asdf", h4's "asdf" and "qwer" (the third
# started the hand-over) = 3; menus: m1, m2 = 2, one option chosen (m1).
# first responses 25, 40, 8, 50 s: p50 25, p90 50, within 30 s: 2 of 4.
# service level (20 s): h1 10 s, h3 5 s, h4 12 s answered; h2 30 s and ab2 (left after 45 s) missed; ab (left at
# once) left out: 3 / 5. Abandoned: ab, ab2 of 6 queued. AHT: (315 + 130 + 63 + 100) / 4 = 152.
# ratings 5, 2, 4 of 4 chats an agent closed: CSAT 2/3, participation 3/4.
EXPECTED = {"conversations": 12, "containment_rate": 0.5, "containment_rate_24h": 0.4167, "escalation_rate": 0.5,
            "no_answer_rate": 0.1579, "clarification_rate": 0.1053, "clarification_resolved_rate": 0.5,
            "first_response_p50_s": 25.0, "first_response_p90_s": 50.0, "first_response_within_rate": 0.5,
            "first_response_seconds": 30, "service_level": 0.6, "service_level_target": {"percent": 80, "seconds": 20},
            "abandonment_rate": 0.3333, "aht_s": 152.0, "csat": 0.6667, "csat_participation": 0.75, "handovers": 6,
            "escalations_by_reason": {"anger": 1, "fallback": 1, "request": 3, "sensitive": 1}}


def test_every_figure_of_the_period_exactly(seeded) -> None:
    _, client, _, _ = seeded
    answer = client.get("/api/ops/kpis", params=period(), headers=login(client, "mgr"))
    assert answer.status_code == 200, answer.text
    figures = answer.json()
    assert figures.pop("period") == period()
    assert figures == EXPECTED


def test_agents_groups_and_channels(seeded) -> None:
    _, client, _, _ = seeded
    manager = login(client, "mgr")
    agents = client.get("/api/ops/breakdown", params={**period(), "by": "agent"}, headers=manager).json()["rows"]
    by_name = {row["label"]: row for row in agents}
    # 小王 held h1 [10, 325], h2 [130, 260], h4 [312, 412]: two at once at most; 545 chat-seconds over 402 s busy
    assert {k: by_name["小王"][k] for k in ("chats", "aht_s", "first_response_p50_s", "csat", "csat_participation",
                                           "concurrent_max", "concurrent_avg")} == {
        "chats": 3, "aht_s": 181.7, "first_response_p50_s": 40.0, "csat": 0.6667, "csat_participation": 1.0,
        "concurrent_max": 2, "concurrent_avg": 1.36}
    assert {k: by_name["小李"][k] for k in ("chats", "aht_s", "first_response_p50_s", "csat", "concurrent_max")} == {
        "chats": 1, "aht_s": 63.0, "first_response_p50_s": 8.0, "csat": None, "concurrent_max": 1}
    groups = {r["key"]: r for r in client.get("/api/ops/breakdown", params={**period(), "by": "group"},
                                              headers=manager).json()["rows"]}
    assert groups["借记卡"]["conversations"] == 1 and groups["借记卡"]["escalations_by_reason"] == {"sensitive": 1}
    assert groups["综合服务"]["conversations"] == 11 and groups["综合服务"]["service_level"] == 0.5  # 2 of 4
    channels = {r["key"]: (r["label"], r["conversations"]) for r in client.get(
        "/api/ops/breakdown", params={**period(), "by": "channel"}, headers=manager).json()["rows"]}
    assert channels == {"rest": ("REST接口", 1), "web": ("网页", 11)}
    only_rest = client.get("/api/ops/kpis", params={**period(), "channel": "rest"}, headers=manager).json()
    assert only_rest["conversations"] == 1 and only_rest["containment_rate"] == 1.0 and only_rest["handovers"] == 0
    intents = {r["key"]: r["conversations"] for r in client.get(
        "/api/ops/breakdown", params={**period(), "by": "intent"}, headers=manager).json()["rows"]}
    assert intents["check_balance"] == 4  # a1, r1, r2, m1


def test_the_conversations_behind_a_figure(seeded) -> None:
    _, client, ids, _ = seeded
    manager = login(client, "mgr")

    def behind(figure: str, **more: str) -> set[str]:
        answer = client.get("/api/ops/conversations", params={**period(), "figure": figure, **more}, headers=manager)
        assert answer.status_code == 200, answer.text
        return {row["conversation_id"] for row in answer.json()["rows"]}

    assert behind("returned") == {ids["r1"]}
    assert behind("abandoned") == {ids["ab"], ids["ab2"]}
    assert behind("low_rating") == {ids["h2"]}
    assert behind("clarified") == {ids["m1"], ids["m2"]}
    assert behind("escalated", by="agent", key=str(agent_id(seeded[0], "小李"))) == {ids["h3"]}
    rows = client.get("/api/ops/conversations", params={**period(), "figure": "rated", "limit": 1},
                      headers=manager).json()
    assert rows["total"] == 3 and len(rows["rows"]) == 1
    [h2] = client.get("/api/ops/conversations", params={**period(), "figure": "low_rating"}, headers=manager).json()[
        "rows"]
    assert {k: h2[k] for k in ("channel_label", "group", "agent", "reason", "outcome", "rating",
                               "first_response_s")} == {
        "channel_label": "网页", "group": "综合服务", "agent": "小王", "reason": "情绪/投诉", "outcome": "人工已解决",
        "rating": 2, "first_response_s": 40.0}
    csv = client.get("/api/ops/export.csv", params={**period(), "by": "channel"}, headers=manager)
    assert csv.status_code == 200 and csv.text.startswith("\ufeff维度值,名称,会话量")
    assert "web,网页,11," in csv.text
    bad = client.get("/api/ops/kpis", params={"from": "2025-01-01", "to": "2026-06-01"}, headers=manager)
    assert bad.status_code == 400 and "366" in bad.json()["detail"]


OPS_PATHS = ["/api/ops/kpis", "/api/ops/breakdown?by=day", "/api/ops/conversations?figure=contained",
             "/api/ops/export.csv?by=group", "/api/ops/live"]


@pytest.mark.parametrize("path", OPS_PATHS)
def test_only_managers_and_supervisors_see_the_figures(seeded, path: str) -> None:
    _, client, _, _ = seeded
    assert client.get(path).status_code == 401
    customer = sign_token(AppCustomer(customer_id="C0001"), "kpis-test-secret-of-the-app-backend-0123")
    assert client.get(path, headers={"Authorization": f"Bearer {customer}"}).status_code == 401
    for refused in ("wang", "tina"):
        assert client.get(path, headers=login(client, refused)).status_code == 403, refused
    for allowed in ("mgr", "boss"):
        assert client.get(path, headers=login(client, allowed)).status_code == 200, allowed


def test_bot_report_prints_the_apis_figures(seeded, config_file: Path, project_root: Path) -> None:
    _, client, _, url = seeded
    args = ["--from", period()["from"], "--to", period()["to"], "--config", str(config_file)]
    env = {**os.environ, "BOT__STORAGE__URL": url}
    printed = subprocess.run([sys.executable, "-m", "bot.cli", "report", *args, "--json"], capture_output=True,
                             text=True, env=env, cwd=project_root, timeout=120, check=True)
    api = client.get("/api/ops/kpis", params=period(), headers=login(client, "mgr")).json()
    assert json.loads(printed.stdout) == api
    markdown = subprocess.run([sys.executable, "-m", "bot.cli", "report", *args, "--group", "借记卡"],
                              capture_output=True, text=True, env=env, cwd=project_root, timeout=120, check=True)
    assert "| 会话量 | 1 |" in markdown.stdout and "| 敏感业务 | 1 |" in markdown.stdout
    assert "| 首响30秒应答率 | 100.00% |" in markdown.stdout
