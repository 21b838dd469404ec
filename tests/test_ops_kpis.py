"""The contact centre's figures (bot/ops/kpis.py): conversations with known outcomes driven through the real
conversation service and desk on the real PostgreSQL server, every figure asserted exactly against numbers
worked out by hand; /api/ops/* answers managers and supervisors only; `bot report --json` prints what the API
returns. Every escalation reason is seeded: the minibot's turns, an app customer's VIP tier, and the bundled bank
bot's card-loss form (its identity check) on the same store and desk. Moments are placed by moving the storage
clock (`moved_clock`) between the real calls, never by editing rows."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.channels.app import AppCustomer, sign_token
from bot.config import load_config
from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.storage.models import Handoff, ManualClock, aware_utc, moved_clock, real_utcnow, utcnow
from bot.web.app import create_app

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday
BEIJING = ZoneInfo("Asia/Shanghai")
PASSWORD = "correct horse battery"
APP_SECRET = "kpis-test-secret-of-the-app-backend-0123"
HANDOFF = f"""
handoff:
  default_group: 综合服务
  groups:
    - name: 借记卡
      intents: [report_card_loss]
      hours: "00:00-24:00"
    - name: 综合服务
      hours: "00:00-24:00"
channels:
  app:
    secret: {APP_SECRET}
"""
# hand-over -> seconds after NOON: requested, taken by an agent, the agent's first message, closed
PLACES = {"h1": (0, 10, 25, 325), "h2": (100, 130, 140, 260), "h3": (200, 205, 208, 268), "h4": (300, 312, 350, 412),
          "vip": (500, 515, 520, 620), "form": (700, 760, 790, 1000)}


@pytest.fixture(scope="module")
def config_file(minibot: Path) -> Path:
    path = minibot / "kpis-config.yml"
    path.write_text((minibot / "config.yml").read_text(encoding="utf-8") + HANDOFF, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def seeded(minibot_assistant, bundled_assistant, config_file: Path):
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
        # the bundled bank bot on the same store and desk: its card-loss form checks the customer's identity
        bank = ConversationService(bundled_assistant, app.state.conversations.store, handoff=app.state.handover)
        with moved_clock(NOON - dt.timedelta(hours=2)) as clock:  # every stamp the store and desk write
            ids = seed(app, client, bank, Schedule(clock))
        yield app, client, ids, url
        database.engine.dispose()


class Schedule:
    """Moves the storage clock forward to a moment `seconds` after NOON, before the real call made then."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def at(self, seconds: float) -> None:
        wait = (NOON + dt.timedelta(seconds=seconds) - self.clock.now).total_seconds()
        assert wait >= 0, f"the schedule goes back in time at {seconds} s"
        self.clock.advance(wait)


def say(app, sender: str, *texts: str, service: ConversationService | None = None) -> str:
    service = service or app.state.conversations
    for text in texts:
        service.handle(Inbound("web", sender, text, None))
    return service.store.find_conversation_of("web", sender).id


def agent_id(app, username: str) -> int:
    return next(a["id"] for a in app.state.desk.colleagues() if a["display_name"] == username)


def seed(app, client: TestClient, bank: ConversationService, schedule: Schedule) -> dict[str, Any]:
    desk, service = app.state.desk, app.state.conversations
    ids: dict[str, Any] = {}
    # two hours before noon, every agent offline: answered by the bot, or left waiting
    ids["a1"] = say(app, "a1", "余额")  # contained
    ids["r1"] = say(app, "r1", "查一下余额")  # the same customer comes back on the same topic: not contained at 24 h
    schedule.clock.advance(service.store.session_expiry.total_seconds() + 1)  # the next message: a new conversation
    ids["r2"] = say(app, "r1", "我卡里还有多少钱")
    ids["m1"] = say(app, "m1", "钱", "/check_balance")  # a "您是不是想问" menu, an option chosen
    ids["m2"] = say(app, "m2", "营业", "asdf")  # a menu, then a message not understood
    ids["ab"] = say(app, "ab", "转人工", "不用了")  # cancelled while waiting: abandoned at once
    ids["ab2"] = say(app, "ab2", "转人工")
    schedule.clock.advance(45)
    desk.customer_left(ids["ab2"])  # left the queue after 45 s: after the 20 s of the service level
    client.post("/webhooks/rest/webhook", json={"sender": "rest1", "message": "网点几点开门"})  # another channel
    ids["rest1"] = service.store.find_conversation_of("rest", "rest1").id
    # from noon (PLACES), the agents take each chat from the queue by hand
    wang, li = agent_id(app, "小王"), agent_id(app, "小李")
    vip_token = sign_token(AppCustomer(customer_id="C0900", name="王芳", tier="白金卡"), APP_SECRET)

    def vip_asks() -> str:  # a 白金卡 customer in the app: the first turn not understood (vip_max_fallbacks 1)
        turn = client.post("/channels/app/messages", json={"message": "asdf"},
                           headers={"Authorization": f"Bearer {vip_token}"})
        assert turn.status_code == 200, turn.text
        return turn.json()["conversation_id"]

    requests: dict[str, Callable[[], str]] = {
        "h1": lambda: say(app, "h1", "转人工"),
        "h2": lambda: say(app, "h2", "你们再不处理我就去曝光"),
        "h3": lambda: say(app, "h3", "我的卡被盗刷了"),
        "h4": lambda: say(app, "h4", "asdf", "qwer", "zxcv"),
        "vip": vip_asks,
        "form": lambda: say(app, "form", "我的卡丢了", "6688", "1111", "2222", "3333", service=bank),  # 3 wrong IDs
    }
    agents = {"h1": wang, "h2": wang, "h3": li, "h4": wang, "vip": wang, "form": li}
    ratings = {"h1": "5", "h2": "2", "h4": "4", "form": "5"}
    steps = sorted((moment, step, key) for key, moments in PLACES.items() for step, moment in enumerate(moments))
    handoffs: dict[str, int] = {}
    for moment, step, key in steps:
        schedule.at(moment)
        if step == 0:
            ids[key] = requests[key]()
            handoff = desk.open_handoff(ids[key])
            assert handoff is not None and handoff.status == "waiting", key
            handoffs[key] = handoff.id
        elif step == 1:
            assert desk.accept(handoffs[key], agents[key]), key
        elif step == 2:
            desk.agent_message(handoffs[key], agents[key], "您好，请问有什么可以帮您？")
        else:
            desk.close(handoffs[key], agents[key], "已解决")
            if key in ratings:
                say(app, key, ratings[key], service=bank if key == "form" else None)
    return ids


def period() -> dict[str, str]:
    """The Beijing day of the seeded moments."""
    return {"from": NOON.date().isoformat(), "to": NOON.date().isoformat()}


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


# Worked out by hand from the seeded conversations:
# 14 conversations (a1 r1 r2 m1 m2 ab ab2 rest1 h1-h4 vip form); 8 with a hand-over; r1 came back on the same
# topic (r2): contained 6/14, at 24 h 5/14; escalated 8/14.
# customer turns the bot answered: a1 1, r1 1, r2 1, m1 2, m2 2, ab 1 ("不用了" came while waiting), ab2 1,
# rest1 1, h1 2 (the rating), h2 2, h3 1, h4 4, vip 1, form 6 (the loss, the card's tail, three wrong IDs, the
# rating) = 26; fallbacks: m2's "asdf", h4's "asdf" and "qwer" = 3 (h4's "zxcv" and vip's "asdf" started their
# hand-overs: escalations, not no-answers); menus: m1, m2 = 2, one option chosen (m1).
# first responses (PLACES: first message - request) 25, 40, 8, 50, 20, 90 s: nearest-rank p50 the 3rd of 6
# sorted = 25, p90 the 6th = 90; within 30 s: 25, 8, 20 = 3 of 6.
# service level (20 s): h1 10 s, h3 5 s, h4 12 s, vip 15 s answered; h2 30 s, form 60 s and ab2 (left after 45 s)
# missed; ab (left at once) left out: 4 / 7. Abandoned: ab, ab2 of 8 queued.
# AHT (closed - taken): (315 + 130 + 63 + 100 + 105 + 240) / 6 = 953 / 6 = 158.8.
# ratings 5, 2, 4, 5 (h1 h2 h4 form) of 6 chats an agent closed: CSAT (4 or 5) 3/4, participation 4/6.
EXPECTED = {"conversations": 14, "containment_rate": 0.4286, "containment_rate_24h": 0.3571, "escalation_rate": 0.5714,
            "no_answer_rate": 0.1154, "clarification_rate": 0.0769, "clarification_resolved_rate": 0.5,
            "first_response_p50_s": 25.0, "first_response_p90_s": 90.0, "first_response_within_rate": 0.5,
            "first_response_seconds": 30, "service_level": 0.5714,
            "service_level_target": {"percent": 80, "seconds": 20}, "abandonment_rate": 0.25, "aht_s": 158.8,
            "csat": 0.75, "csat_participation": 0.6667, "handovers": 8,
            "escalations_by_reason": {"anger": 1, "fallback": 1, "form_failed": 1, "request": 3, "sensitive": 1,
                                      "vip": 1}}


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
    # 小王 held h1 [10, 325], h2 [130, 260], h4 [312, 412], vip [515, 620]: two at once at most; 650 chat-seconds
    # over 507 s busy (10-412 and 515-620); AHT 650 / 4; first responses 25, 40, 50, 20: the 2nd of 4 sorted; rated
    # 5, 2, 4 (vip not rated)
    assert {k: by_name["小王"][k] for k in ("chats", "aht_s", "first_response_p50_s", "csat", "csat_participation",
                                           "concurrent_max", "concurrent_avg")} == {
        "chats": 4, "aht_s": 162.5, "first_response_p50_s": 25.0, "csat": 0.6667, "csat_participation": 0.75,
        "concurrent_max": 2, "concurrent_avg": 1.28}
    # 小李 held h3 [205, 268] and form [760, 1000]: AHT (63 + 240) / 2; first responses 8, 90; form rated 5
    assert {k: by_name["小李"][k] for k in ("chats", "aht_s", "first_response_p50_s", "csat", "csat_participation",
                                           "concurrent_max")} == {
        "chats": 2, "aht_s": 151.5, "first_response_p50_s": 8.0, "csat": 1.0, "csat_participation": 0.5,
        "concurrent_max": 1}
    groups = {r["key"]: r for r in client.get("/api/ops/breakdown", params={**period(), "by": "group"},
                                              headers=manager).json()["rows"]}
    assert groups["借记卡"]["conversations"] == 2 and groups["借记卡"]["service_level"] == 0.5  # h3 5 s, form 60 s
    assert groups["借记卡"]["escalations_by_reason"] == {"form_failed": 1, "sensitive": 1}
    assert groups["综合服务"]["conversations"] == 12 and groups["综合服务"]["service_level"] == 0.6  # h1 h4 vip of 5
    assert groups["综合服务"]["escalations_by_reason"] == {"anger": 1, "fallback": 1, "request": 3, "vip": 1}
    channels = {r["key"]: (r["label"], r["conversations"]) for r in client.get(
        "/api/ops/breakdown", params={**period(), "by": "channel"}, headers=manager).json()["rows"]}
    assert channels == {"app": ("手机银行App", 1), "rest": ("REST接口", 1), "web": ("网页", 12)}
    only_app = client.get("/api/ops/kpis", params={**period(), "channel": "app"}, headers=manager).json()
    assert only_app["escalations_by_reason"] == {"vip": 1} and only_app["first_response_p50_s"] == 20.0
    only_rest = client.get("/api/ops/kpis", params={**period(), "channel": "rest"}, headers=manager).json()
    assert only_rest["conversations"] == 1 and only_rest["containment_rate"] == 1.0 and only_rest["handovers"] == 0
    intents = {r["key"]: r["conversations"] for r in client.get(
        "/api/ops/breakdown", params={**period(), "by": "intent"}, headers=manager).json()["rows"]}
    assert intents["check_balance"] == 4 and intents["report_card_loss"] == 2  # a1, r1, r2, m1; h3, form


def test_the_conversations_behind_a_figure(seeded) -> None:
    _, client, ids, _ = seeded
    manager = login(client, "mgr")

    def behind(figure: str, **more: str) -> set[str]:
        answer = client.get("/api/ops/conversations", params={**period(), "figure": figure, **more}, headers=manager)
        assert answer.status_code == 200, answer.text
        return {row["conversation_id"] for row in answer.json()["rows"]}

    assert behind("returned") == {ids["r1"]}
    bot_only = {ids[k] for k in ("a1", "r1", "r2", "m1", "m2", "rest1")}  # behind containment_rate: 6 of 14
    assert behind("not_escalated") == bot_only and behind("contained") == bot_only - {ids["r1"]}
    assert behind("abandoned") == {ids["ab"], ids["ab2"]}
    assert behind("low_rating") == {ids["h2"]}
    assert behind("clarified") == {ids["m1"], ids["m2"]}
    assert behind("escalated", by="agent", key=str(agent_id(seeded[0], "小李"))) == {ids["h3"], ids["form"]}
    assert behind("escalated", by="channel", key="app") == {ids["vip"]}
    rows = client.get("/api/ops/conversations", params={**period(), "figure": "rated", "limit": 1},
                      headers=manager).json()
    assert rows["total"] == 4 and len(rows["rows"]) == 1
    [h2] = client.get("/api/ops/conversations", params={**period(), "figure": "low_rating"}, headers=manager).json()[
        "rows"]
    assert {k: h2[k] for k in ("channel_label", "group", "agent", "reason", "outcome", "rating",
                               "first_response_s")} == {
        "channel_label": "网页", "group": "综合服务", "agent": "小王", "reason": "情绪/投诉", "outcome": "人工已解决",
        "rating": 2, "first_response_s": 40.0}
    csv = client.get("/api/ops/export.csv", params={**period(), "by": "channel"}, headers=manager)
    assert csv.status_code == 200 and csv.text.startswith("\ufeff维度值,名称,会话量")
    assert "web,网页,12," in csv.text and "app,手机银行App,1," in csv.text
    bad = client.get("/api/ops/kpis", params={"from": "2025-01-01", "to": "2026-06-01"}, headers=manager)
    assert bad.status_code == 400 and "366" in bad.json()["detail"]


def test_the_moved_clock_stamps_rows_and_goes_back_to_real_time_even_after_a_failure(seeded) -> None:
    app, _, ids, _ = seeded
    with app.state.database.session() as session:
        closed = session.scalar(select(Handoff.closed_at).where(Handoff.conversation_id == ids["form"]))
    assert aware_utc(closed) == NOON + dt.timedelta(seconds=PLACES["form"][3])
    with pytest.raises(RuntimeError), moved_clock(NOON) as clock:
        clock.advance(60)
        assert utcnow() == NOON + dt.timedelta(seconds=60)
        raise RuntimeError("a test failing while the clock is moved")
    assert abs(utcnow() - real_utcnow()) < dt.timedelta(seconds=5)


OPS_PATHS = ["/api/ops/kpis", "/api/ops/breakdown?by=day", "/api/ops/conversations?figure=contained",
             "/api/ops/export.csv?by=group", "/api/ops/live"]


@pytest.mark.parametrize("path", OPS_PATHS)
def test_only_managers_and_supervisors_see_the_figures(seeded, path: str) -> None:
    _, client, _, _ = seeded
    assert client.get(path).status_code == 401
    customer = sign_token(AppCustomer(customer_id="C0001"), APP_SECRET)
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
    assert "| 会话量 | 2 |" in markdown.stdout and "| 敏感业务 | 1 |" in markdown.stdout
    assert "| 验证失败 | 1 |" in markdown.stdout
    assert "| 首响30秒应答率 | 50.00% |" in markdown.stdout  # h3 8 s, form 90 s
