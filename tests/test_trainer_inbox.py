"""The review inbox: real conversations with the bundled bot (a menu, a menu the customer rejected, a fallback, a
hand-over after a direct answer that the customer rated 1, a card number) read back ranked, grouped, filtered,
dismissed and masked, through the library, the HTTP API and `bot review`; on SQLite and once on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app as cli
from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.agents import create_agent
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.storage import ConversationStore, Database
from bot.storage.models import AuditEntry, ReviewMark
from bot.trainer.inbox import InboxContext, InboxFilters, build_inbox, dismiss
from bot.trainer.keys import message_key
from bot.web.app import create_app

WORKDAY_NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # every skill group is open
CARD = "6222021234567890128"  # passes the Luhn check: masked when stored
PASSWORD = "inbox-pass-0001"
ATM = "我的卡被ATM吞了怎么办"
LIMIT_A, LIMIT_B = "我的信用卡额度不够用想调高一点", "信用卡额度不够用想调高"  # both get a menu
NONSENSE = "asdfgh qwer"
BALANCE = f"我的卡号{CARD}怎么查余额"


def converse(agent, database: Database) -> ConversationStore:
    """Five customers: a menu (web), a menu rejected with "都不是，转人工" (app), a fallback (web), a direct answer
    then a hand-over an agent served and the customer rated 1 (wechat), a message with a card number (web)."""
    config = agent.config
    desk = AgentDesk(database, config.handoff, clock=lambda: WORKDAY_NOON)
    store = ConversationStore(database)
    service = ConversationService(agent, store, handoff=Handover(desk, config.handoff))

    def say(channel: str, sender: str, text: str) -> list[dict]:
        return service.handle(Inbound(channel, sender, text, None)).replies

    person = create_agent(database, "inbox-agent", "小王", PASSWORD, groups=[g.name for g in config.handoff.groups])
    assert say("web", "menu", LIMIT_A)[0]["source"] == "clarify"
    assert say("app", "rejecter", LIMIT_B)[0]["source"] == "clarify"
    assert "handoff" in [r["source"] for r in say("app", "rejecter", "/request_human")]
    assert say("web", "lost", NONSENSE)[0]["source"] == "utter_default"
    assert say("wechat", "atm", ATM)[0]["source"] == "utter_atm_card_retained"
    assert "handoff" in [r["source"] for r in say("wechat", "atm", "转人工")]
    handoff = desk.open_handoff(store.find_conversation_of("wechat", "atm").id)
    desk.set_presence(person.id, "online")  # takes the waiting chats
    desk.agent_message(handoff.id, person.id, "您好，吞卡请带身份证到网点领取。")
    desk.close(handoff.id, person.id, "已解决")
    assert say("wechat", "atm", "1 很差")[0]["source"] == "satisfaction"
    assert say("web", "balance", BALANCE)[0]["source"] == "clarify"
    return store


@pytest.fixture
def conversations(bundled_assistant, tmp_path: Path) -> ConversationStore:
    return converse(bundled_assistant, Database(f"sqlite:///{tmp_path / 'bot.db'}"))


def inbox(store: ConversationStore, agent, **filters):
    return build_inbox(store.database, InboxContext.from_assistant(agent), InboxFilters(**filters))


def leading(page) -> list[str]:
    return [g.samples[0] for g in page.groups]


def test_ranked_by_importance_and_near_identical_messages_grouped(conversations, bundled_assistant) -> None:
    page = inbox(conversations, bundled_assistant)
    assert page.total_messages == 5 and page.total_groups == 4
    atm, limits, nonsense, balance = page.groups
    # rated 1 (4) + answered, then an agent had to reply (5) + handed over though the bot knew the topic (4)
    assert atm.samples == [ATM] and atm.score == 13 and atm.channels == {"wechat": 1}
    assert set(atm.reasons) == {"low_rating", "agent_corrected", "handoff_avoidable"}
    assert atm.intents[0].name == "atm_card_retained"
    # two wordings, one group: menus (1 + 1), one rejected (5) and handed over though a candidate was there (4)
    assert limits.count == 2 and set(limits.samples) == {LIMIT_A, LIMIT_B} and limits.score == 11
    assert limits.channels == {"web": 1, "app": 1} and limits.keys[0] == message_key(LIMIT_B)
    assert limits.reasons == {"clarified": 2, "clarify_rejected": 1, "handoff_avoidable": 1}
    assert limits.intents[0].name == "credit_card_limit" and limits.knowledge[0].id == "kb-credit-0011"
    assert limits.knowledge[0].question.startswith("信用卡") and limits.first_at <= limits.last_at
    assert nonsense.samples == [NONSENSE] and nonsense.reasons == {"fallback": 1} and nonsense.score == 3
    assert balance.outcomes == {"clarify": 1} and balance.score == 1
    assert len({g.group_id for g in page.groups}) == 4
    assert [g.group_id for g in inbox(conversations, bundled_assistant).groups] == [g.group_id for g in page.groups]


def test_personal_data_is_masked(conversations, bundled_assistant) -> None:
    page = inbox(conversations, bundled_assistant, outcome="clarify", intent="check_balance")
    assert [g.samples for g in page.groups] == [["我的卡号***************0128怎么查余额"]]
    assert CARD not in page.model_dump_json()


@pytest.mark.parametrize(("filters", "expected"), [
    ({"channel": "wechat"}, [ATM]),
    ({"channel": "app"}, [LIMIT_B]),
    ({"outcome": "fallback"}, [NONSENSE]),
    ({"intent": "credit_card_limit"}, [LIMIT_B]),
    ({"reason": "clarify_rejected"}, [LIMIT_B]),
    ({"band": "high", "outcome": "answer"}, [ATM]),
    ({"page": 2, "page_size": 3}, ["我的卡号***************0128怎么查余额"]),
])
def test_filters(conversations, bundled_assistant, filters: dict, expected: list[str]) -> None:
    assert leading(inbox(conversations, bundled_assistant, **filters)) == expected


def test_a_period_without_messages_is_empty(conversations, bundled_assistant) -> None:
    today = dt.datetime.now(dt.UTC).date()
    assert inbox(conversations, bundled_assistant, since=today + dt.timedelta(days=1)).groups == []
    assert inbox(conversations, bundled_assistant, until=today - dt.timedelta(days=1)).groups == []
    assert inbox(conversations, bundled_assistant, since=today, until=today).total_messages == 5


def test_dismissed_and_fixed_messages_leave_the_open_inbox(conversations, bundled_assistant) -> None:
    key = message_key(NONSENSE)
    assert dismiss(conversations, [key, key], "agent:7") == [key]
    assert dismiss(conversations, [key], "agent:7") == []  # already marked: unchanged, not audited twice
    with conversations.database.session() as session, session.begin():  # as a trainer's fix records it
        session.add(ReviewMark(message_key=message_key(ATM), status="fixed", action={"kind": "add_example"},
                               actor="agent:8"))
    assert NONSENSE not in leading(inbox(conversations, bundled_assistant)) and ATM not in leading(
        inbox(conversations, bundled_assistant))
    assert leading(inbox(conversations, bundled_assistant, status="dismissed")) == [NONSENSE]
    assert leading(inbox(conversations, bundled_assistant, status="fixed")) == [ATM]
    assert inbox(conversations, bundled_assistant, status="all").total_messages == 5
    with conversations.database.session() as session:
        audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "review.dismiss")).all()
    assert [(a.actor, a.target) for a in audited] == [("agent:7", key)]


def test_the_api_is_for_trainers_only(conversations, bundled_assistant) -> None:
    database = conversations.database
    for role in ("trainer", "agent"):
        create_agent(database, f"api-{role}", role, PASSWORD, role=role, groups=["综合服务"])
    client = TestClient(create_app(bundled_assistant.config, assistant=bundled_assistant, database=database))

    def token(role: str) -> dict[str, str]:
        answer = client.post("/api/agent/login", json={"username": f"api-{role}", "password": PASSWORD})
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    assert client.get("/api/trainer/inbox").status_code == 401
    assert client.get("/api/trainer/inbox", headers=token("agent")).status_code == 403
    assert client.post("/api/trainer/inbox/dismiss", json={"keys": [message_key(ATM)]},
                       headers=token("agent")).status_code == 403
    trainer = token("trainer")
    page = client.get("/api/trainer/inbox", params={"channel": "web", "status": "open"}, headers=trainer).json()
    assert [g["samples"][0] for g in page["groups"]] == [NONSENSE, "我的卡号***************0128怎么查余额", LIMIT_A]
    group = page["groups"][0]
    assert group["keys"] == [message_key(NONSENSE)] and group["messages"][0]["status"] == "open"
    assert client.get("/api/trainer/inbox", params={"band": "lukewarm"}, headers=trainer).status_code == 422
    assert client.post("/api/trainer/inbox/dismiss", json={"keys": ["not-a-key"]}, headers=trainer).status_code == 422
    done = client.post("/api/trainer/inbox/dismiss", json={"keys": group["keys"]}, headers=trainer)
    assert done.json() == {"dismissed": group["keys"], "unchanged": []}
    again = client.get("/api/trainer/inbox", params={"channel": "web"}, headers=trainer).json()
    assert NONSENSE not in [g["samples"][0] for g in again["groups"]]


def test_bot_review_prints_the_ranked_groups(conversations, bundled_assistant) -> None:
    env = {"BOT__MODELS_DIR": str(bundled_assistant.config.path(bundled_assistant.config.models_dir)),
           "BOT__STORAGE__URL": conversations.database.url}
    config = str(bundled_assistant.config.root / "config.yml")
    runner = CliRunner()
    shown = runner.invoke(cli, ["review", "--config", config, "--json", "--channel", "app"], env=env)
    assert shown.exit_code == 0, shown.output
    assert [g["samples"] for g in json.loads(shown.stdout)["groups"]] == [[LIMIT_B]]
    table = runner.invoke(cli, ["review", "--config", config], env=env)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert "4 组 groups, 5 条 messages" in lines[0]
    assert ATM in lines[2] and "low_rating" in lines[2] and LIMIT_B in lines[3] and CARD not in table.stdout
    wrong = runner.invoke(cli, ["review", "--config", config, "--status", "maybe"], env=env)
    assert wrong.exit_code == 1 and "--status" in wrong.output


def test_on_postgresql(bundled_assistant, postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        store = converse(bundled_assistant, database)
        page = inbox(store, bundled_assistant)
        assert leading(page) == [ATM, LIMIT_B, NONSENSE, "我的卡号***************0128怎么查余额"]
        assert page.groups[1].count == 2
        assert dismiss(store, [message_key(NONSENSE)], "agent:1") == [message_key(NONSENSE)]
        assert NONSENSE not in leading(inbox(store, bundled_assistant))
    finally:
        database.dispose()
