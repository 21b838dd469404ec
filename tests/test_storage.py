"""The conversation store and service on a real SQLite file and the real PostgreSQL server: every message is
stored before it is answered, duplicates are answered once, state survives a restart."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, inspect, select, text

from bot.dialogue.service import ConversationService, Inbound, MessageRejected, clean_text
from bot.storage import ConversationStore, Database
from bot.storage.models import Event, InboundMessage


class FailingAgent:
    """An agent whose NLU crashes, to show the message is kept anyway."""

    def respond(self, text: str, *args, **kwargs):
        raise RuntimeError("model file unreadable")


def service_for(url: str, agent, expiry: dt.timedelta = dt.timedelta(hours=1)) -> ConversationService:
    return ConversationService(agent, ConversationStore(Database(url), session_expiry=expiry), duplicate_wait=5)


def count(database: Database, model, **where) -> int:
    with database.session() as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return int(session.scalar(query) or 0)


def test_migrations_create_the_schema_once(database_url: str) -> None:
    database = Database(database_url)
    Database(database_url)  # a second start finds the schema current
    tables = set(inspect(database.engine).get_table_names())
    assert {"customers", "channel_identities", "conversations", "events", "inbound_messages", "audit_log",
            "agents", "handoffs", "channel_cursors", "binding_codes", "agent_sessions", "reminders", "review_marks",
            "model_versions", "quality_hits", "quality_chats",
            "alembic_version"} <= tables
    with database.engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == "0010"


def test_a_turn_is_stored_with_its_parse_and_replies(database_url: str, minibot_assistant) -> None:
    service = service_for(database_url, minibot_assistant)
    turn = service.handle(Inbound("web", "visitor-1", "我的卡丢了", "m-1"))
    assert turn.replies and not turn.duplicate
    events = service.store.events(turn.conversation_id)
    assert [e["event"] for e in events] == ["session_started", "user", "action", "bot"]
    assert events[2]["name"] == "utter_report_card_loss"
    user = events[1]
    assert user["text"] == "我的卡丢了" and user["message_id"] == "m-1" and user["input_channel"] == "web"
    assert user["parse_data"]["intent"]["name"] == "report_card_loss"
    assert events[3]["text"] == turn.replies[0]["text"]
    assert events[0]["timestamp"] <= events[1]["timestamp"] <= events[3]["timestamp"]


def test_duplicate_message_id_gets_the_original_reply_and_is_not_processed(database_url: str,
                                                                           minibot_assistant) -> None:
    service = service_for(database_url, minibot_assistant)
    first = service.handle(Inbound("web", "visitor-2", "补卡要多少钱", "same-id"))
    again = service.handle(Inbound("web", "visitor-2", "补卡要多少钱", "same-id"))
    assert again.duplicate and again.replies == first.replies
    assert count(service.store.database, Event, conversation_id=first.conversation_id, type="user") == 1
    other_sender = service.handle(Inbound("web", "visitor-3", "补卡要多少钱", "same-id"))
    assert not other_sender.duplicate  # message ids are scoped to the sender


def test_concurrent_deliveries_from_two_workers_are_processed_once(database_url: str, minibot_assistant) -> None:
    workers = [service_for(database_url, minibot_assistant) for _ in range(2)]  # two processes' worth of state
    results, errors = [], []

    def deliver(service: ConversationService) -> None:
        try:
            results.append(service.handle(Inbound("wechat", "openid-9", "你好", "wx-msg-1")))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=deliver, args=(workers[i % 2],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(results) == 6 and sum(not r.duplicate for r in results) == 1
    assert len({str(r.replies) for r in results}) == 1
    assert count(workers[0].store.database, InboundMessage) == 1
    assert count(workers[0].store.database, Event, type="user") == 1


def test_message_is_kept_when_answering_fails_and_a_retry_is_processed(database_url: str, minibot_assistant) -> None:
    broken = service_for(database_url, FailingAgent())
    with pytest.raises(RuntimeError):
        broken.handle(Inbound("app", "user-7", "信用卡怎么还款", "app-1"))
    events = broken.store.sender_events("app", "user-7")
    assert [e["event"] for e in events] == ["session_started", "user", "error"]
    assert events[1]["text"] == "信用卡怎么还款" and "model file unreadable" in events[2]["reason"]

    fixed = service_for(database_url, minibot_assistant)
    turn = fixed.handle(Inbound("app", "user-7", "信用卡怎么还款", "app-1"))
    assert not turn.duplicate and turn.replies
    kinds = [e["event"] for e in fixed.store.events(turn.conversation_id)]
    assert kinds.count("user") == 1 and kinds[-1] == "bot"


def test_conversation_survives_a_restart(database_url: str, minibot_assistant) -> None:
    before = service_for(database_url, minibot_assistant)
    first = before.handle(Inbound("web", "visitor-4", "你好", "a"))
    before.store.database.dispose()

    after = service_for(database_url, minibot_assistant)
    second = after.handle(Inbound("web", "visitor-4", "我的卡丢了", "b"))
    assert second.conversation_id == first.conversation_id
    history = after.history("web", "visitor-4")
    assert [(h["role"], h["text"]) for h in history][:1] == [("user", "你好")]
    assert [h["role"] for h in history] == ["user", "bot", "user", "bot"]


def test_silence_longer_than_the_session_expiry_starts_a_new_conversation(database_url: str,
                                                                          minibot_assistant) -> None:
    service = service_for(database_url, minibot_assistant, expiry=dt.timedelta(0))
    first = service.handle(Inbound("web", "visitor-5", "你好", "1"))
    second = service.handle(Inbound("web", "visitor-5", "你好", "2"))
    assert first.conversation_id != second.conversation_id
    assert len(service.history("web", "visitor-5")) == 4  # history spans both conversations


@pytest.mark.parametrize(("raw", "problem"), [("", "空"), (" \n\t ", "空"), ("\x00\x07", "空"),
                                              ("卡" * 2001, "太长")])
def test_unusable_messages_are_refused_in_chinese(raw: str, problem: str) -> None:
    with pytest.raises(MessageRejected, match=problem):
        clean_text(raw)


def test_control_characters_are_removed_but_text_kept() -> None:
    assert clean_text("  我的\x00卡\x1b丢了\n ") == "我的卡丢了"
    assert clean_text("🙂🙂") == "🙂🙂"
