"""Personal data at rest: full card, ID and phone numbers and e-mail addresses sent through every channel, a
hand-over with an agent's reply, note and transfer, a rating comment and audit entries leave no trace in any
row of any table (SQLite and PostgreSQL) nor in the logs; the optional encrypted originals; rows stored
before input was checked still read."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import unicodedata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import MetaData, insert, select

from actions.actions import four_digits, id_last4_of
from bot.config import HandoffConfig, SecurityConfig, SkillGroupConfig
from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.agents import create_agent
from bot.handoff.context import build_context
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.security.masking import install_log_masking
from bot.storage import ConversationStore, Database
from bot.storage.models import Conversation, Event, Handoff
from bot.storage.privacy import ORIGINAL_KEY
from bot.storage.store import OriginalsKeyError

CARD_16 = "6222021234567894"  # Luhn-valid
CARD_19 = "6228480012345678903"
VISA = "4367421234567896"
ID_X = "11010519491231002X"  # valid check character
ID_DIGITS = "110108197809154025"
PHONE = "13812345678"
PHONE_2 = "13987654321"
EMAIL = "zhang.san@example.com"
SECRETS = [CARD_16, CARD_19, VISA, ID_X, ID_DIGITS, PHONE, PHONE_2, EMAIL]
CHANNELS = ["rest", "web", "app", "wechat", "wecom"]
WORKDAY_NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
HANDOFF = HandoffConfig(groups=[SkillGroupConfig(name="综合服务", hours="00:00-24:00")], default_group="综合服务")


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "0" <= c <= "9" else c for c in text)


def grouped(number: str, separator: str = " ") -> str:
    return separator.join(number[i:i + 4] for i in range(0, len(number), 4))


MESSAGES = [
    f"我的卡号是{CARD_16}，手机{PHONE}",
    f"身份证{ID_X}，邮箱{EMAIL}",
    f"卡号 {grouped(CARD_19)}，电话 +86 {PHONE_2[:3]} {PHONE_2[3:7]} {PHONE_2[7:]}",
    f"身份证号码{ID_DIGITS}，信用卡{grouped(VISA, '-')}",
    f"全角卡号{fullwidth(CARD_16)}",
]


class RecordingHub:
    """Stands in for the live hub: keeps what agents' consoles and customers' sockets would get."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def to_agents(self, frame: dict[str, Any], agent_ids: list[int] | None = None) -> int:
        self.frames.append(frame)
        return 1

    def to_customer(self, channel: str, sender: str, frame: dict[str, Any]) -> int:
        return 0

    def customer_connected(self, channel: str, sender: str) -> bool:
        return False


def assert_no_secret(text: str, where: str) -> None:
    folded = unicodedata.normalize("NFKC", text)
    squeezed = re.sub(r"[\s\-+]", "", folded)
    for secret in SECRETS:
        assert secret not in folded and secret not in squeezed, f"{secret} found in {where}"


def dump_tables(database: Database) -> str:
    """Every row of every table, as text."""
    metadata = MetaData()
    metadata.reflect(database.engine)
    lines = []
    with database.engine.connect() as connection:
        for table in metadata.sorted_tables:
            lines += [f"{table.name}: {row}" for row in connection.execute(select(table)).all()]
    return "\n".join(lines)


def run_everything(database: Database, agent: Any, hub: RecordingHub) -> tuple[ConversationService, int]:
    """Full numbers through every channel and a whole hand-over; the hand-over's id."""
    desk = AgentDesk(database, HANDOFF, clock=lambda: WORKDAY_NOON)
    store = ConversationStore(database)
    service = ConversationService(agent, store, handoff=Handover(desk, HANDOFF, hub))
    for channel in CHANNELS:
        for n, text in enumerate(MESSAGES):
            metadata = {"note": f"客户资料 {CARD_16} {PHONE}", "button_title": f"尾号{ID_X}", "n": n}
            service.handle(Inbound(channel, f"{channel}-customer", text, f"{channel}-m{n}", metadata))
    service.handle(Inbound("web", "web-customer", f"转人工，我的卡{CARD_16}被盗刷了，电话{PHONE}", "web-h1"))
    staff = create_agent(database, "wang", "小王", "correct horse battery", groups=["综合服务"])
    desk.set_presence(staff.id, "online")  # takes the waiting chat
    conversation = store.find_conversation_of("web", "web-customer")
    handoff = desk.open_handoff(conversation.id)
    sent = desk.agent_message(handoff.id, staff.id, f"请核对您的手机{PHONE_2}和身份证{ID_DIGITS}")
    assert PHONE_2 in sent["text"]  # the customer gets what the agent wrote
    desk.note(handoff.id, staff.id, f"客户卡号{CARD_19}，邮箱{EMAIL}")
    service.handle(Inbound("web", "web-customer", f"我的另一张卡{VISA}", "web-h2"))  # to the agent, live
    desk.close(handoff.id, staff.id, "已解决")
    service.handle(Inbound("web", "web-customer", f"5 很好，有事打我电话{PHONE}", "web-h3"))
    store.audit("test", "export", conversation.id, {"detail": f"card {CARD_16}", "id": ID_X})
    store.link_customer("app", "app-customer", "C0001", name="张伟", verified=True)
    store.add_bot_message("app", "app-customer", f"您尾号{CARD_16[-4:]}的卡，联系电话{PHONE}",
                          {"card_tail": CARD_16[-4:], "phone": PHONE}, "notify")
    return service, handoff.id


def test_full_numbers_through_every_channel_leave_no_trace(database_url: str, minibot_assistant,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    install_log_masking()
    database = Database(database_url)
    hub = RecordingHub()
    service, handoff_id = run_everything(database, minibot_assistant, hub)
    logging.getLogger("bot.test").warning("customer wrote %s and %s", CARD_16, {"phone": PHONE})
    try:
        raise RuntimeError(f"could not handle {ID_X}")
    except RuntimeError:
        logging.getLogger("bot.test").exception("turn failed for %s", EMAIL)

    rows = dump_tables(database)
    assert "handoffs:" in rows and "audit_log:" in rows and "inbound_messages:" in rows
    assert_no_secret(rows, "the database")
    assert f"{'*' * 12}{CARD_16[-4:]}" in rows and "**************002X" in rows and "138****5678" in rows
    assert "z***@example.com" in rows
    if database.is_sqlite:  # not even in the file's free pages or its write-ahead log
        path = Path(database.engine.url.database)
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert all(secret.encode() not in raw for secret in SECRETS)
    context = build_context(database, handoff_id, "supervisor")
    assert_no_secret(json.dumps(context, ensure_ascii=False), "the context package")
    assert_no_secret(json.dumps(hub.frames, ensure_ascii=False), "the agents' live view")
    assert any(f"{'*' * 12}{VISA[-4:]}" in str(frame.get("text")) for frame in hub.frames)
    assert_no_secret(json.dumps(service.history("web", "web-customer"), ensure_ascii=False), "the history")
    assert caplog.records and "bot.test" in caplog.text
    assert_no_secret(caplog.text, "the log")
    assert_no_secret("\n".join(r.getMessage() for r in caplog.records), "log records")


def test_forms_keep_what_they_need(database_url: str, minibot_assistant) -> None:
    """The stored user text keeps a card's and an ID's last four, which is all the forms read."""
    service = ConversationService(minibot_assistant, ConversationStore(Database(database_url)))
    turn = service.handle(Inbound("web", "v-form", f"身份证{ID_X}，卡号{CARD_16}", "f-1"))
    user = next(e for e in service.store.events(turn.conversation_id) if e["event"] == "user")
    assert user["text"] == f"身份证**************002X，卡号{'*' * 12}{CARD_16[-4:]}"
    assert user["message_id"] == "f-1"  # kept as sent: a retry must match it
    assert all(not _has_secret(str(e)) for e in user["parse_data"]["entities"])
    assert id_last4_of(user["text"]) == "002X" and four_digits(user["text"]) == CARD_16[-4:]  # what forms read


def _has_secret(text: str) -> bool:
    return any(secret in text for secret in SECRETS)


# --- encrypted originals --------------------------------------------------------------------------------------


def test_originals_are_kept_encrypted_only_when_asked_and_only_revealed_audited(
        database_url: str, minibot_assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("BANK_ORIGINALS", key)
    security = SecurityConfig(keep_originals_encrypted=True, originals_key_env="BANK_ORIGINALS")
    database = Database(database_url)
    service = ConversationService(minibot_assistant, ConversationStore(database, security=security))
    text = f"我的卡号是{CARD_16}，手机{PHONE}"
    turn = service.handle(Inbound("web", "v-orig", text, "o-1"))

    assert_no_secret(dump_tables(database), "the database")
    events = service.store.events(turn.conversation_id)
    assert all(ORIGINAL_KEY not in e for e in events)
    assert all(ORIGINAL_KEY not in e for e in service.store.sender_events("web", "v-orig"))
    with database.session() as session:
        event_id = session.scalar(select(Event.id).where(Event.conversation_id == turn.conversation_id,
                                                         Event.type == "user"))
    assert service.store.reveal_original(event_id, "auditor:li", "客户投诉核查 #2031") == text
    assert "reveal_original" in dump_tables(database) and "客户投诉核查 #2031" in dump_tables(database)
    with pytest.raises(ValueError):
        service.store.reveal_original(event_id, "auditor:li", " ")
    plain = ConversationStore(database)  # the option off: nothing to decrypt with
    assert plain.reveal_original(event_id, "auditor:li", "复核") is None


def test_start_up_refuses_the_option_without_a_valid_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    security = SecurityConfig(keep_originals_encrypted=True)
    monkeypatch.delenv("BOT_ORIGINALS_KEY", raising=False)
    with pytest.raises(OriginalsKeyError, match="BOT_ORIGINALS_KEY is not set"):
        ConversationStore(database, security=security)
    monkeypatch.setenv("BOT_ORIGINALS_KEY", "not-a-key")
    with pytest.raises(OriginalsKeyError, match="not a Fernet key"):
        ConversationStore(database, security=security)
    monkeypatch.delenv("BOT_ORIGINALS_KEY")
    ConversationStore(database, security=SecurityConfig())  # off by default: no key needed


# --- rows stored before input was checked --------------------------------------------------------------------


def test_rows_stored_before_input_was_checked_still_read(database_url: str, minibot_assistant) -> None:
    database = Database(database_url)
    store = ConversationStore(database)
    service = ConversationService(minibot_assistant, store)
    turn = service.handle(Inbound("web", "v-old", "你好", "old-1"))
    with database.session() as session, session.begin():  # what the old server let through, written as it did
        conversation = session.get(Conversation, turn.conversation_id)
        seq = conversation.next_seq
        session.execute(insert(Event), [
            {"conversation_id": conversation.id, "seq": seq, "type": "user", "timestamp": WORKDAY_NOON,
             "data": {"text": "坏\ud800", "message_id": "old-2", "metadata": {"button_title": "\udfff",
                                                                               "\ud800key": "x"},
                      "parse_data": {"intent": {"name": "greet"}, "entities": [{"entity": "city",
                                                                                "value": "\ud800"}]}}},
            {"conversation_id": conversation.id, "seq": seq + 1, "type": "bot", "timestamp": WORKDAY_NOON,
             "data": {"text": "选一个", "data": {"buttons": [{"title": "按钮\ud800", "payload": "/greet"}]}}},
        ])
        conversation.next_seq = seq + 2
        conversation.state = {"dialogue": {"slots": {"city": "\ud800"}}}
        session.execute(insert(Handoff).values(conversation_id=conversation.id, group="综合服务", reason="request",
                                               detail=f"卡号{CARD_16}", status="waiting", priority=3,
                                               created_at=WORKDAY_NOON))
    with database.session() as session:
        handoff_id = session.scalar(select(Handoff.id).where(Handoff.conversation_id == turn.conversation_id))

    for value in (store.events(turn.conversation_id), store.sender_events("web", "v-old"),
                  service.history("web", "v-old"), build_context(database, handoff_id, "agent")):
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # serialisable: what an API would send
        assert "\ufffd" in json.dumps(value, ensure_ascii=False)
    assert_no_secret(json.dumps(build_context(database, handoff_id, "agent"), ensure_ascii=False), "the context")
    assert service.handle(Inbound("web", "v-old", "你好", "old-3")).replies  # the conversation goes on


def test_which_model_answered_is_stored_as_given_and_the_rest_of_the_parse_masked() -> None:
    """A model version named by its training time can look like a card number; masked, an experiment could no
    longer count the candidate's turns (bot/trainer/registry.py matches the version)."""
    from bot.storage.privacy import mask_event_data

    version = "20261130-021607-519501"  # its first 14 digits pass the Luhn check
    data = {"text": "卡号4111111111111111", "parse_data": {
        "text": "卡号4111111111111111", "model": {"version": version, "arm": "candidate"}}}
    stored = mask_event_data(data)
    assert stored["parse_data"]["model"] == {"version": version, "arm": "candidate"}
    assert "4111111111111111" not in str(stored)
