"""Quality inspection (质检, issue 15): real hand-overs through the real service, desk and HTTP API, on SQLite and
PostgreSQL; every rule's hit, the chat's score, the scorecards, a review and the rules' precision asserted exactly.

Time passes on the storage clock (`moved_clock`): the test advances it between the real calls, so the desk and
the store stamp each message as if it came that much later; no stored row is edited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.config import QualityConfig
from bot.handoff.agents import create_agent
from bot.ops.quality import QualityInspector
from bot.storage import Database
from bot.storage.models import AuditEntry, ManualClock, QualityHit, moved_clock, real_utcnow
from bot.web.app import create_app

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PASSWORD = "correct horse battery"
BOTH = ["借记卡与账户", "综合服务"]


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, bundled_assistant, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'bot.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url)
    app = create_app(bundled_assistant.config, assistant=bundled_assistant, database=database)
    app.state.desk.clock = lambda: NOON  # groups work 09:00-22:00 Beijing time
    create_agent(database, "wang", "小王", PASSWORD, groups=BOTH)
    create_agent(database, "li", "小李", PASSWORD, groups=BOTH)
    create_agent(database, "boss", "张经理", PASSWORD, role="manager")
    create_agent(database, "trainer", "训练师", PASSWORD, role="trainer")
    yield app
    database.engine.dispose()


@pytest.fixture
def clock(app) -> Iterator[ManualClock]:
    """The storage clock, standing still from now (whole seconds) until the test advances it; real again after."""
    with moved_clock(real_utcnow().replace(microsecond=0)) as moved:
        yield moved


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def customer(client: TestClient, sender: str, text: str) -> list[dict[str, Any]]:
    response = client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text})
    assert response.status_code == 200, response.text
    return response.json()


def say(client: TestClient, headers: dict[str, str], handoff_id: int, text: str) -> None:
    response = client.post(f"/api/agent/handoffs/{handoff_id}/messages", json={"text": text}, headers=headers)
    assert response.status_code == 200, response.text


def close(client: TestClient, headers: dict[str, str], handoff_id: int) -> None:
    response = client.post(f"/api/agent/handoffs/{handoff_id}/close", json={"disposition": "已解决"}, headers=headers)
    assert response.status_code == 200, response.text


def waiting_id(client: TestClient, headers: dict[str, str]) -> int:
    [chat] = client.get("/api/agent/queue", headers=headers).json()["waiting"]
    return int(chat["handoff_id"])


def hits_of(client: TestClient, headers: dict[str, str], **filters: Any) -> list[dict[str, Any]]:
    response = client.get("/api/ops/quality/hits", params=filters, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def bad_chat(app: Any, clock: ManualClock, client: TestClient, wang: dict[str, str], li: dict[str, str]) -> int:
    """小王 accepts late, skips the greeting, swears, goes silent, types a phone number in clear and transfers
    without a note; 小李 takes over, the customer is angry at the end, 小李 closes without a closing phrase; the
    customer rates 1 after the close."""
    customer(client, "rest-bad", "转人工")
    handoff_id = waiting_id(client, wang)  # nobody online: it waits until accepted
    assert client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=wang).status_code == 200
    clock.advance(95)
    say(client, wang, handoff_id, "请提供一下您的身份证号")  # 95 s after accepting; no greeting
    customer(client, "rest-bad", "我的卡被锁了")
    clock.advance(150)
    say(client, wang, handoff_id, "你自己看短信，听不懂吗")  # 150 s of silence; two forbidden words
    say(client, wang, handoff_id, "烦不烦，您的手机号是13812345678吗")  # forbidden word and a phone in clear
    assert client.post("/api/agent/presence", json={"presence": "online"}, headers=li).status_code == 200
    group = client.get("/api/agent/queue", headers=wang).json()["mine"][0]["group"]
    moved = client.post(f"/api/agent/handoffs/{handoff_id}/transfer", json={"group": group, "note": "  "},
                        headers=wang)
    assert moved.status_code == 200, moved.text
    say(client, li, handoff_id, "您好，我是小李，继续为您处理")
    customer(client, "rest-bad", "你们服务太差了，我要投诉")
    say(client, li, handoff_id, "好的，已经为您解锁")  # the last message: no closing phrase
    close(client, li, handoff_id)
    return handoff_id


def clean_chat(client: TestClient, wang: dict[str, str], li: dict[str, str]) -> int:
    assert client.post("/api/agent/presence", json={"presence": "offline"}, headers=li).status_code == 200
    customer(client, "rest-good", "转人工")
    handoff_id = waiting_id(client, wang)
    assert client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=wang).status_code == 200
    say(client, wang, handoff_id, "您好，很高兴为您服务，请问有什么可以帮您？")
    customer(client, "rest-good", "我想查一下余额")
    say(client, wang, handoff_id, "好的，已为您查询，余额已通过短信发送")
    say(client, wang, handoff_id, "感谢您的耐心等待，祝您生活愉快，再见")
    close(client, wang, handoff_id)
    assert customer(client, "rest-good", "5")[0]["text"] == "感谢您的评价！如还有其他问题，可以随时问我。"
    return handoff_id


def test_every_rule_hits_a_bad_chat_and_none_a_clean_one_with_scores_scorecards_reviews_and_precision(
        app, clock: ManualClock) -> None:
    client = TestClient(app)
    wang, li, boss = login(client, "wang"), login(client, "li"), login(client, "boss")
    bad = bad_chat(app, clock, client, wang, li)
    ids = _agent_ids(app)

    before_rating = {h["rule"] for h in hits_of(client, boss)}
    assert "low_rating" not in before_rating and len(before_rating) == 8  # the rating comes after the close
    assert customer(client, "rest-bad", "1分 态度太差")[0]["text"] == "感谢您的评价！如还有其他问题，可以随时问我。"
    good = clean_chat(client, wang, li)

    rows = hits_of(client, boss)
    found = [(h["rule"], h["agent"], h["score"], h["excerpt"], h["detail"], h["status"]) for h in rows]
    assert sorted(found) == sorted([
        ("greeting", "小王", 5, "请提供一下您的身份证号", "坐席首句未使用问候语", "pending"),
        ("first_response", "小王", 10, "请提供一下您的身份证号", "接入后95秒才首次回复（标准60秒）", "pending"),
        ("silence", "小王", 10, "我的卡被锁了", "客户等待150秒未获回复（标准120秒）", "pending"),
        ("forbidden_words", "小王", 20, "你自己看短信，听不懂吗", "禁用语：听不懂吗、你自己看", "pending"),
        ("forbidden_words", "小王", 20, "烦不烦，您的手机号是138****5678吗", "禁用语：烦不烦", "pending"),
        ("personal_data", "小王", 20, "烦不烦，您的手机号是138****5678吗",
         "坐席明文发送了证件号、卡号或手机号等个人信息（已脱敏存储）", "pending"),
        ("transfer_note", "小王", 5, f"转接至{_group_of(app, bad)}", "转接时未填写备注", "pending"),
        ("negative_end", "小李", 10, "你们服务太差了，我要投诉", "客户结束时情绪负面：投诉、太差", "pending"),
        ("closing", "小李", 5, "好的，已经为您解锁", "坐席最后一句未使用结束语", "pending"),
        ("low_rating", "小李", 15, "1分：态度太差", "客户评分1分（2分及以下为差评）", "pending"),
    ])
    assert {h["handoff_id"] for h in rows} == {bad}  # the clean chat has no hit
    assert all(h["rule_label"] and h["conversation_id"] for h in rows)

    assert client.get(f"/api/ops/quality/chats/{bad}", headers=boss).json()["score"] == 0  # 120 points: floor 0
    clean = client.get(f"/api/ops/quality/chats/{good}", headers=boss).json()
    assert clean["score"] == 100 and clean["hits"] == []

    today = clock.now.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    cards = _cards(client, boss, today)
    assert cards["小王"] == {"agent": "小王", "agent_id": ids["wang"], "chats": 2, "score_avg": 55.0,  # (10 + 100) / 2
                            "hits_by_rule": {"first_response": 1, "forbidden_words": 2, "greeting": 1,
                                             "personal_data": 1, "silence": 1, "transfer_note": 1},
                            "hits": 7, "pending": 7, "confirmed": 0, "rejected": 0}
    assert cards["小李"]["chats"] == 1 and cards["小李"]["score_avg"] == 70.0  # 100 - 10 - 5 - 15

    # the inspector's decisions: one swear word confirmed, the other rejected, the angry ending rejected
    swear_one, swear_two = sorted((h for h in rows if h["rule"] == "forbidden_words"), key=lambda h: h["event_seq"])
    angry = next(h for h in rows if h["rule"] == "negative_end")
    confirmed = review(client, boss, swear_one["id"], "confirm", "确认不文明用语")
    assert confirmed["status"] == "confirmed" and confirmed["reviewer"] == "张经理"
    assert confirmed["note"] == "确认不文明用语" and confirmed["reviewed_at"]
    assert review(client, boss, swear_two["id"], "reject", "")["status"] == "rejected"
    assert review(client, boss, angry["id"], "reject", "客户针对的是系统故障")["status"] == "rejected"
    with app.state.database.session() as session:
        audits = session.scalars(select(AuditEntry).where(AuditEntry.action == "quality_review")
                                 .order_by(AuditEntry.id)).all()
        assert [(a.actor, a.target, a.details["decision"], a.details["previous"]) for a in audits] == [
            ("agent:boss", f"quality_hit:{swear_one['id']}", "confirm", "pending"),
            ("agent:boss", f"quality_hit:{swear_two['id']}", "reject", "pending"),
            ("agent:boss", f"quality_hit:{angry['id']}", "reject", "pending")]

    assert [h["id"] for h in hits_of(client, boss, status="confirmed")] == [swear_one["id"]]
    assert len(hits_of(client, boss, status="pending")) == 7
    assert {h["rule"] for h in hits_of(client, boss, agent=ids["li"])} == {"negative_end", "closing", "low_rating"}
    assert len(hits_of(client, boss, rule="forbidden_words", **{"from": today, "to": today})) == 2
    assert client.get(f"/api/ops/quality/chats/{bad}", headers=boss).json()["score"] == 10  # 90 points count

    rules = {r["rule"]: r for r in client.get("/api/ops/quality/rules", headers=boss).json()["rows"]}
    assert rules["forbidden_words"] == {"rule": "forbidden_words", "label": "禁用语/不文明用语", "points": 20,
                                        "enabled": True, "hits": 2, "pending": 0, "confirmed": 1, "rejected": 1,
                                        "precision": 0.5}
    assert rules["negative_end"]["precision"] == 0.0 and rules["negative_end"]["rejected"] == 1
    assert rules["greeting"]["precision"] is None and rules["greeting"]["hits"] == 1
    assert [r["rule"] for r in rules.values()] == list(QualityConfig().rules)

    cards = _cards(client, boss, today)
    assert cards["小王"]["score_avg"] == 65.0  # the rejected swear word no longer counts: (30 + 100) / 2
    assert cards["小王"]["confirmed"] == 1 and cards["小王"]["rejected"] == 1
    assert cards["小王"]["hits_by_rule"]["forbidden_words"] == 1
    assert cards["小李"]["score_avg"] == 80.0 and cards["小李"]["rejected"] == 1  # 100 - 5 - 15


def review(client: TestClient, headers: dict[str, str], hit_id: int, decision: str, note: str) -> dict[str, Any]:
    response = client.post(f"/api/ops/quality/hits/{hit_id}/review", json={"decision": decision, "note": note},
                           headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _cards(client: TestClient, headers: dict[str, str], day: str) -> dict[str, dict[str, Any]]:
    response = client.get("/api/ops/quality/scorecards", params={"from": day, "to": day}, headers=headers)
    assert response.status_code == 200, response.text
    return {row["agent"]: row for row in response.json()["rows"]}


def _agent_ids(app: Any) -> dict[str, int]:
    from bot.storage.models import AgentAccount

    with app.state.database.session() as session:
        return {a.username: a.id for a in session.scalars(select(AgentAccount))}


def _group_of(app: Any, handoff_id: int) -> str:
    from bot.storage.models import Handoff

    with app.state.database.session() as session:
        handoff = session.get(Handoff, handoff_id)
        assert handoff is not None
        return handoff.group


def test_quality_routes_are_for_supervisors_managers_and_admins_only(app) -> None:
    client = TestClient(app)
    routes = [("GET", "/api/ops/quality/hits"), ("POST", "/api/ops/quality/hits/1/review"),
              ("GET", "/api/ops/quality/scorecards"), ("GET", "/api/ops/quality/rules"),
              ("GET", "/api/ops/quality/chats/1")]
    body = {"decision": "confirm", "note": ""}
    for username, expected in (("wang", 403), ("trainer", 403), (None, 401)):
        headers = login(client, username) if username else {}
        for method, url in routes:
            response = client.request(method, url, json=body if method == "POST" else None, headers=headers)
            assert response.status_code == expected, (username, url, response.text)
    boss = login(client, "boss")
    assert client.get("/api/ops/quality/rules", headers=boss).status_code == 200
    assert client.post("/api/ops/quality/hits/1/review", json=body, headers=boss).status_code == 404  # no such hit
    assert client.get("/api/ops/quality/chats/1", headers=boss).status_code == 404
    wrong = client.get("/api/ops/quality/scorecards", params={"from": "2026-12-01", "to": "2026-11-01"},
                       headers=boss)
    assert wrong.status_code == 400 and wrong.json()["detail"] == "结束日期不能早于开始日期。"


def test_an_inspection_that_fails_never_fails_the_close_and_a_rerun_adds_nothing(app) -> None:
    """A broken inspector (here: a rule's points missing) is logged; the close still answers 200. Running the
    rules again on the same hand-over stores no second hit."""
    broken = QualityInspector(app.state.database, QualityConfig())
    broken.config.points.pop("greeting")  # the inspector fails with a KeyError on the greeting hit
    app.state.desk.on_change(broken)
    client = TestClient(app)
    wang = login(client, "wang")
    customer(client, "rest-rerun", "转人工")
    handoff_id = waiting_id(client, wang)
    assert client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=wang).status_code == 200
    say(client, wang, handoff_id, "请稍等")  # no greeting, no closing phrase
    close(client, wang, handoff_id)
    inspector = QualityInspector(app.state.database, app.state.config.ops.quality)
    assert inspector.inspect(handoff_id) == []  # the app's own inspector stored them at the close
    with app.state.database.session() as session:
        stored = session.scalars(select(QualityHit.rule).where(QualityHit.handoff_id == handoff_id)).all()
    assert sorted(stored) == ["closing", "greeting"]
