"""Finding past conversations and reading one again, for the agent desk's 历史会话.

Everything stored is masked already (`bot.storage.privacy`), so a phone number or card is found by the last
four digits its masked form keeps: `138****6688`, `************6688`, and what customers write themselves
("尾号6688", "卡号后四位6688", or just "6688" answering the bot's question). Free text and those tails are
matched with SQL LIKE on the events' JSON text fields (`JSON_EXTRACT` on SQLite, `->>` on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select
from sqlalchemy.orm import Session

from bot.channels.registry import channel_label
from bot.handoff.agents import SUPERVISING_ROLES, Reacher
from bot.handoff.context import customer_words, transcript_item
from bot.handoff.library import NotVisible
from bot.handoff.reasons import reason_label
from bot.security.json_guard import scrub
from bot.security.masking import mask_text, mask_value
from bot.storage.database import Database
from bot.storage.models import AgentAccount, Conversation, ConversationLabel, Customer, Event, Handoff, aware_utc

PAGE_SIZE = 20
SUMMARY_CHARS = 60
TEXT_EVENTS = ("user", "bot")
STATUS_LABELS = {"bot": "智能客服", "queued": "排队中", "human": "人工服务中", "closed": "已结束"}
HANDOFF_STATUS_LABELS = {"waiting": "排队中", "assigned": "接待中", "closed": "已结束", "abandoned": "客户已离开",
                         "cancelled": "客户取消", "ticket": "已留言"}
# how customers and the bot put a number's last four digits, besides the masked forms' "****"
TAIL_PREFIXES = ("****", "尾号", "尾号是", "尾号为", "后四位", "后四位是", "后四位为", "后4位", "后4位是")
TAIL = re.compile(r"^\d{4}$")


@dataclass(frozen=True)
class Filters:
    """What the agent searches by; every given filter narrows the result."""

    customer: str | None = None  # the bank's customer number (or part of it), or part of the name
    phone_tail: str | None = None  # the last four digits of a phone or card number
    date_from: dt.date | None = None  # started on or after this day (the bank's time zone)
    date_to: dt.date | None = None  # started on or before this day
    label: str | None = None
    text: str | None = None  # in what the customer or the bot wrote
    page: int = 1


def search(database: Database, viewer: Reacher, filters: Filters, zone: ZoneInfo) -> dict[str, Any]:
    """The conversations `viewer` may see that match `filters`, newest first, one page."""
    query = _matching(viewer, filters, zone)
    with database.session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(Conversation.started_at.desc(), Conversation.id.desc())
                               .offset((filters.page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
        items = [_result(session, c) for c in rows]
    return {"items": scrub(items), "page": filters.page, "page_size": PAGE_SIZE, "total": total}


def may_see(database: Database, viewer: Reacher, conversation_id: str) -> bool:
    with database.session() as session:
        return _visible(session, viewer, conversation_id)


def conversation(database: Database, viewer: Reacher, conversation_id: str) -> dict[str, Any]:
    """One conversation read-only: its transcript (masked as the desk's context is), labels and hand-overs.
    `NotVisible` when there is none or `viewer` may not see it."""
    with database.session() as session:
        if not _visible(session, viewer, conversation_id):
            raise NotVisible(conversation_id)
        found = session.get(Conversation, conversation_id)
        assert found is not None
        events = session.scalars(select(Event).where(Event.conversation_id == conversation_id)
                                 .order_by(Event.seq)).all()
        handoffs = session.scalars(select(Handoff).where(Handoff.conversation_id == conversation_id)
                                   .order_by(Handoff.id)).all()
        names = _agent_names(session, [h.agent_id for h in handoffs])
        result = {**_result(session, found),
                  "transcript": [item for e in events if (item := transcript_item(e)) is not None],
                  "handoffs": [_handoff(h, names) for h in handoffs]}
    return scrub(mask_value(result))


def labels_of(session: Session, conversation_id: str) -> list[str]:
    return list(session.scalars(select(ConversationLabel.label).where(
        ConversationLabel.conversation_id == conversation_id).order_by(ConversationLabel.id)))


# --- who sees what ------------------------------------------------------------------------------------------

def _visible(session: Session, viewer: Reacher, conversation_id: str) -> bool:
    query = select(Conversation.id).where(Conversation.id == conversation_id)
    rule = visibility(viewer)
    if rule is not None:
        query = query.where(rule)
    return session.scalar(query) is not None


def visibility(viewer: Reacher) -> ColumnElement[bool] | None:
    """None for supervisors and admins (everything); for an agent: a hand-over of the conversation is in one of
    their groups or theirs now, or its history (`handoff` events) says it was queued for one of their groups,
    transferred to one, or assigned to them."""
    if viewer.role in SUPERVISING_ROLES:
        return None
    groups = list(viewer.groups)
    in_group: ColumnElement[bool] = Handoff.group.in_(groups) if groups else false()
    by_row = exists().where(Handoff.conversation_id == Conversation.id,
                            or_(in_group, Handoff.agent_id == viewer.agent_id))
    event_group: ColumnElement[bool] = Event.data["group"].as_string().in_(groups) if groups else false()
    by_history = exists().where(Event.conversation_id == Conversation.id, Event.type == "handoff",
                                or_(event_group, Event.data["agent_id"].as_integer() == viewer.agent_id))
    return or_(by_row, by_history)


# --- the filters ----------------------------------------------------------------------------------------------

def _matching(viewer: Reacher, filters: Filters, zone: ZoneInfo) -> Select[tuple[Conversation]]:
    query = select(Conversation).outerjoin(Customer, Customer.id == Conversation.customer_id)
    conditions = [c for c in (visibility(viewer), _by_customer(filters.customer),
                              _by_tail(filters.phone_tail), _by_label(filters.label), _by_text(filters.text),
                              *_by_dates(filters.date_from, filters.date_to, zone)) if c is not None]
    return query.where(and_(*conditions)) if conditions else query


def _by_customer(customer: str | None) -> ColumnElement[bool] | None:
    if not customer:
        return None
    verified_id = Conversation.state[("dialogue", "slots", "customer_id")].as_string()
    return or_(Conversation.customer_id.contains(customer, autoescape=True),
               Customer.name.contains(customer, autoescape=True), verified_id == customer)


def _by_tail(tail: str | None) -> ColumnElement[bool] | None:
    if not tail:
        return None
    text = Event.data["text"].as_string()
    said = or_(text == tail, *[text.contains(prefix + tail, autoescape=True) for prefix in TAIL_PREFIXES])
    slot = and_(Event.type == "slot", Event.data["name"].as_string() == "card_tail",
                Event.data["value"].as_string() == tail)
    return exists().where(Event.conversation_id == Conversation.id,
                          or_(and_(Event.type.in_(TEXT_EVENTS), said), slot))


def _by_label(label: str | None) -> ColumnElement[bool] | None:
    if not label:
        return None
    return exists().where(ConversationLabel.conversation_id == Conversation.id, ConversationLabel.label == label)


def _by_text(text: str | None) -> ColumnElement[bool] | None:
    """In what the customer wrote (or the button they pressed) and what the bot or an agent answered. The
    term is masked as stored text is, so a full phone number finds its masked form."""
    if not text:
        return None
    term = mask_text(text)
    written = Event.data["text"].as_string().icontains(term, autoescape=True)
    pressed = Event.data[("metadata", "button_title")].as_string().icontains(term, autoescape=True)
    return exists().where(Event.conversation_id == Conversation.id, Event.type.in_(TEXT_EVENTS),
                          or_(written, pressed))


def _by_dates(first: dt.date | None, last: dt.date | None, zone: ZoneInfo) -> list[ColumnElement[bool]]:
    """Whole days in the bank's time zone; started_at is stored in UTC."""
    conditions = []
    if first is not None:
        conditions.append(Conversation.started_at >= _day_start(first, zone))
    if last is not None:
        conditions.append(Conversation.started_at < _day_start(last + dt.timedelta(days=1), zone))
    return conditions


def _day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


# --- what a result says -----------------------------------------------------------------------------------------

def _result(session: Session, found: Conversation) -> dict[str, Any]:
    customer = session.get(Customer, found.customer_id) if found.customer_id else None
    handoff = session.scalar(select(Handoff).where(Handoff.conversation_id == found.id)
                             .order_by(Handoff.id.desc()).limit(1))
    names = _agent_names(session, [handoff.agent_id] if handoff else [])
    return {
        "conversation_id": found.id,
        "channel": found.channel,
        "channel_label": channel_label(found.channel),
        "started_at": aware_utc(found.started_at).isoformat(),
        "customer": _customer(found, customer),
        "status": found.status,
        "status_label": STATUS_LABELS.get(found.status, found.status),
        "labels": labels_of(session, found.id),
        "handoff": _handoff(handoff, names) if handoff else None,
        "summary": mask_text(_first_message(session, found.id)),
    }


def _customer(found: Conversation, customer: Customer | None) -> dict[str, Any] | None:
    if customer is not None:
        return {"id": mask_text(customer.id), "name": mask_text(customer.name or "") or None}
    verified_id = (((found.state or {}).get("dialogue") or {}).get("slots") or {}).get("customer_id")
    return {"id": mask_text(str(verified_id)), "name": None} if verified_id else None


def _first_message(session: Session, conversation_id: str) -> str:
    first = session.scalar(select(Event).where(Event.conversation_id == conversation_id, Event.type == "user")
                           .order_by(Event.seq).limit(1))
    if first is None:
        return ""
    data = first.data or {}
    said = str(customer_words(data)).strip()
    line = " ".join(said.split())
    return line if len(line) <= SUMMARY_CHARS else line[:SUMMARY_CHARS] + "…"


def _handoff(handoff: Handoff, names: dict[int, str]) -> dict[str, Any]:
    return {"handoff_id": handoff.id, "group": handoff.group, "status": handoff.status,
            "status_label": HANDOFF_STATUS_LABELS.get(handoff.status, handoff.status),
            "reason": reason_label(handoff.reason), "agent": names.get(handoff.agent_id or 0),
            "created_at": aware_utc(handoff.created_at).isoformat(),
            "closed_at": aware_utc(handoff.closed_at).isoformat() if handoff.closed_at else None,
            "disposition": handoff.disposition, "rating": handoff.rating,
            "comment": mask_text(handoff.comment) if handoff.comment else None}


def _agent_names(session: Session, ids: Sequence[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(AgentAccount.id, AgentAccount.display_name).where(AgentAccount.id.in_(wanted)))
    return {int(r[0]): str(r[1]) for r in rows}

