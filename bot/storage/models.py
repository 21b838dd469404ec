"""The tables: customers, their channel identities, conversations, every event in order, inbound messages
(for de-duplication) and the audit log. The schema itself is created by the Alembic migrations next to this file.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def real_utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Where `utcnow()` reads the time: the real clock, except inside a test's `moved_clock()`. A plain module global read
# at each call: every thread (a TestClient's event loop included) sees a test's move at once.
_clock: Callable[[], dt.datetime] = real_utcnow


def utcnow() -> dt.datetime:
    """Now, in UTC: every moment the store, the desk, the hand-over and the ops code stamp or compare with (claim
    leases included). Waits that must measure real elapsed time (locks, retries) use `time` and ignore it."""
    return _clock()


class ManualClock:
    """A clock that stands still until the test moves it (tests only, through `moved_clock`)."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start.astimezone(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


@contextmanager
def moved_clock(start: dt.datetime) -> Iterator[ManualClock]:
    """Tests only: `utcnow()` answers `start` (an aware moment) until the test calls `advance`, and the real clock
    again when the block ends, even on a failure, so a moved clock never leaks into another test. Not for
    production code: one clock for the whole process, not one per thread."""
    global _clock
    previous, clock = _clock, ManualClock(start)
    _clock = clock
    try:
        yield clock
    finally:
        _clock = previous


def aware_utc(moment: dt.datetime) -> dt.datetime:
    """A stored timestamp with its zone: SQLite hands them back without one, and they were stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[dict[str, Any]]: JSON, list[str]: JSON,
                           dt.datetime: DateTime(timezone=True)}


class Customer(Base):
    """A bank customer; `id` is the bank's customer number when known, else generated."""

    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(32), default="standard")
    verified: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ChannelIdentity(Base):
    """Who is writing on a channel: a web visitor id, an app user id, a WeChat openid."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_identity_channel_external"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    """One conversation of an identity; `state` holds the dialogue state (slots, active form) between turns."""

    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identities.id"), index=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="bot")  # bot | queued | human | closed
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    next_seq: Mapped[int] = mapped_column(default=1)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Event(Base):
    """One tracker event in Rasa's vocabulary (`user`, `bot`, `slot`, `action`, `active_loop`, `handoff`, ...)."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("conversation_id", "seq", name="uq_event_conversation_seq"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    seq: Mapped[int] = mapped_column()
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timestamp: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InboundMessage(Base):
    """A customer message by its client or channel message id: a duplicate gets the stored replies."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("identity_id", "message_id", name="uq_inbound_identity_message"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identities.id"))
    message_id: Mapped[str] = mapped_column(String(128))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    user_event_id: Mapped[int] = mapped_column(BigId, ForeignKey("events.id"))
    status: Mapped[str] = mapped_column(String(16), default="received")  # received | answered | failed
    replies: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # "api": the replies went out asynchronously (WeChat's customer-service API), so a retry must not repeat them
    delivered_by: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    # who is answering it ("<worker>/<claim token>") and until when: a claim whose lease ran out (its worker died
    # mid-turn) is taken over by a retry of the message or by the sweep (bot.dialogue.service)
    claimed_by: Mapped[str | None] = mapped_column(String(96))
    lease_until: Mapped[dt.datetime | None] = mapped_column(index=True)


class AuditEntry(Base):
    """Who did what to which object, for the bank's auditors."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    note: Mapped[str | None] = mapped_column(Text)


class AgentAccount(Base):
    """A person at the agent desk: agent, supervisor or admin."""

    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="agent")  # agent | supervisor | admin
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)  # skill groups it serves
    max_chats: Mapped[int] = mapped_column(default=3)
    presence: Mapped[str] = mapped_column(String(16), default="offline")  # online | away | offline
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    employee_no: Mapped[str | None] = mapped_column(String(16))  # 工号, told to customers with the name


class AgentSessionRecord(Base):
    """A signed-in agent desk session. Only the token's SHA-256 is kept, so reading the table gives no session;
    every worker sharing the database knows it, and it outlives a restart until it expires or is revoked."""

    __tablename__ = "agent_sessions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # the account's role at login: a changed role ends the session
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column()


class Handoff(Base):
    """One hand-over of a conversation to a person, from the request to the customer's rating."""

    __tablename__ = "handoffs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    group: Mapped[str] = mapped_column(String(64), index=True)
    priority: Mapped[int] = mapped_column(default=3)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(16), default="waiting", index=True)
    # waiting | assigned | closed | abandoned | ticket (left a message outside working hours)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    assigned_at: Mapped[dt.datetime | None] = mapped_column()
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    disposition: Mapped[str | None] = mapped_column(String(64))
    rating: Mapped[int | None] = mapped_column()
    comment: Mapped[str | None] = mapped_column(Text)


class ChannelCursor(Base):
    """A position in a channel's message stream that must survive restarts (WeCom's `kf/sync_msg` cursor)."""

    __tablename__ = "channel_cursors"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(512), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BindingCode(Base):
    """A short-lived code a signed-in customer (app) sends on another channel (WeChat) to link the two."""

    __tablename__ = "binding_codes"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column()
    used_by: Mapped[str | None] = mapped_column(String(160))  # channel:external id that sent it


class Reminder(Base):
    """A Rasa `ReminderScheduled` waiting for its time: the server then handles its intent and entities as if the
    customer had sent them (an external trigger). Stored, so that it survives a restart and fires once."""

    __tablename__ = "reminders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    intent: Mapped[str] = mapped_column(String(128))
    entities: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    kill_on_user_message: Mapped[bool] = mapped_column(default=True)
    scheduled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    due_at: Mapped[dt.datetime] = mapped_column(index=True)
    # pending | fired | cancelled (by ReminderCancelled, a restart, or a reminder of the same name) | killed
    # (the customer wrote after it was scheduled) | skipped (a person holds the conversation)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    fired_at: Mapped[dt.datetime | None] = mapped_column()


class ReviewMark(Base):
    """A trainer's decision on an inbox message (all messages with the same key: the same normalised text), so
    that it does not come back: dismissed, fixed (added to an intent or an entry), or out of scope."""

    __tablename__ = "review_marks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # SHA-256 of the normalised text
    status: Mapped[str] = mapped_column(String(16))  # dismissed | fixed | out_of_scope
    action: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what was done: {"kind", "target", ...}
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """A trained model (its directory under models_dir is named `version`): what it was trained from, how it
    scored, who trained and who activated it. One row is `active`; a candidate may get an experiment share."""

    __tablename__ = "model_versions"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # training | ready | failed | active | retired
    data_fingerprint: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # {"step", "done", "total"}
    error: Mapped[str | None] = mapped_column(Text)
    trained_by: Mapped[str] = mapped_column(String(128))
    trained_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    activated_by: Mapped[str | None] = mapped_column(String(128))
    activated_at: Mapped[dt.datetime | None] = mapped_column()
    experiment_share: Mapped[float] = mapped_column(default=0.0)  # of new conversations, while a candidate


class ConversationLabel(Base):
    """A label an agent put on a conversation (e.g. 投诉, 已回访), for search and reports."""

    __tablename__ = "conversation_labels"
    __table_args__ = (UniqueConstraint("conversation_id", "label", name="uq_label_conversation_label"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    label: Mapped[str] = mapped_column(String(32), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CannedReply(Base):
    """A reply agents insert by its short code: for everyone (no group, no owner), one skill group, or one
    agent's own (`owner_id`)."""

    __tablename__ = "canned_replies"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), index=True)
    text: Mapped[str] = mapped_column(Text)
    group: Mapped[str | None] = mapped_column(String(64))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Attachment(Base):
    """An image or file a customer sent (WeChat, WeCom, the app), kept in the database within the size and type
    limits of `attachments` in config.yml; the transcript's event refers to it by `id`."""

    __tablename__ = "attachments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # image | file
    mime: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column()
    filename: Mapped[str | None] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class QualityHit(Base):
    """One match of a quality-inspection rule (质检, bot/ops/quality.py) in a closed hand-over: the message it is
    about (`event_seq`, 0 for the chat as a whole) and its masked excerpt, the points it costs, and the
    inspector's review (pending | confirmed | rejected)."""

    __tablename__ = "quality_hits"
    __table_args__ = (UniqueConstraint("handoff_id", "rule", "event_seq", name="uq_quality_hit_handoff_rule_seq"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    handoff_id: Mapped[int] = mapped_column(BigId, ForeignKey("handoffs.id"), index=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    agent_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("agents.id"), index=True)
    rule: Mapped[str] = mapped_column(String(32))
    event_seq: Mapped[int] = mapped_column()
    excerpt: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(String(256))
    points: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reviewer: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class QualityChat(Base):
    """An agent who served a closed hand-over that was inspected: the chats an agent's scorecard counts."""

    __tablename__ = "quality_chats"
    __table_args__ = (UniqueConstraint("handoff_id", "agent_id", name="uq_quality_chat_handoff_agent"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    handoff_id: Mapped[int] = mapped_column(BigId, ForeignKey("handoffs.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    agent_id: Mapped[int] = mapped_column(BigId, ForeignKey("agents.id"), index=True)
    closed_at: Mapped[dt.datetime] = mapped_column(index=True)
    checked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
