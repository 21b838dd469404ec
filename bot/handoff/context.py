"""The context package an agent sees on accepting a chat: who, where, what the bot understood, why it handed
over, a short summary, earlier conversations and suggested answers.

What it reads is stored masked already (`bot.storage.privacy`); it masks again with the same module as it
reads, so rows stored before masking was introduced show masked too, and `scrub`s what it returns, so rows
stored before input was checked (a lone surrogate in a button title) cannot break it. No role sees more:
nothing unmasked is stored to show."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from bot.security.json_guard import scrub
from bot.security.masking import mask_text
from bot.storage.database import Database
from bot.storage.models import ChannelIdentity, Conversation, Customer, Event, Handoff, utcnow

CHANNEL_NAMES = {"web": "网页", "app": "手机银行App", "wechat": "微信", "wecom": "微信客服", "rest": "接口"}
EARLIER_LINES = 12  # lines of each earlier conversation shown to the agent

Suggest = Callable[[str], list[dict[str, Any]]]


def _hide(value: Any) -> str:
    return mask_text(str(value))


def summary_of(handoff: Handoff, now: dt.datetime | None = None) -> dict[str, Any]:
    created = handoff.created_at if handoff.created_at.tzinfo else handoff.created_at.replace(tzinfo=dt.UTC)
    return {"handoff_id": handoff.id, "conversation_id": handoff.conversation_id, "group": handoff.group,
            "priority": handoff.priority, "reason": handoff.reason, "detail": scrub(_hide(handoff.detail or "")),
            "status": handoff.status, "agent_id": handoff.agent_id,
            "waiting_seconds": int(((now or utcnow()) - created).total_seconds())}


def build_context(database: Database, handoff_id: int, role: str, suggest: Suggest | None = None) -> dict[str, Any]:
    """The package for hand-over `handoff_id` (`KeyError` when there is none). `role` (agent, supervisor,
    admin) is kept for callers; every role gets the same masked package."""
    return scrub(_package(database, handoff_id, suggest))


def _package(database: Database, handoff_id: int, suggest: Suggest | None) -> dict[str, Any]:
    with database.session() as session:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            raise KeyError(handoff_id)
        conversation = session.get(Conversation, handoff.conversation_id)
        assert conversation is not None
        identity = session.get(ChannelIdentity, conversation.identity_id)
        customer = session.get(Customer, conversation.customer_id) if conversation.customer_id else None
        events = session.scalars(select(Event).where(Event.conversation_id == conversation.id)
                                 .order_by(Event.seq)).all()
        linked = session.scalars(select(ChannelIdentity).where(ChannelIdentity.customer_id == customer.id)).all() \
            if customer else [identity]
        earlier = session.scalars(select(Conversation).where(Conversation.customer_id == customer.id,
                                                             Conversation.id != conversation.id)
                                  .order_by(Conversation.started_at.desc()).limit(5)).all() if customer else []
        earlier_summaries = [_earlier(session, c) for c in earlier]
    transcript = [item for e in events if (item := _transcript_item(e)) is not None]
    dialogue = (conversation.state or {}).get("dialogue") or {}
    task = dialogue.get("handed_over_task") or {}  # the form the customer was in when the person took over
    slots = {k: _hide(str(v)) for k, v in {**(dialogue.get("slots") or {}), **(task.get("slots") or {})}.items()
             if v is not None and k != "requested_slot"}
    last_question = scrub(next((t["text"] for t in reversed(transcript) if t["role"] == "user"), ""))
    return {
        "handoff": summary_of(handoff),
        "customer": None if customer is None else {"id": customer.id, "name": customer.name, "tier": customer.tier,
                                                   "verified": customer.verified},
        "linked_channels": [{"channel": i.channel, "id": _hide(i.external_id)} for i in linked],
        "channel": conversation.channel,
        "reason": _hide(handoff.detail or handoff.reason),
        "summary": _summary(conversation.channel, customer, events, handoff, slots),
        "slots": slots,
        "active_form": dialogue.get("active_loop") or task.get("form"),
        "transcript": transcript,
        "earlier_conversations": earlier_summaries,
        "suggestions": (suggest(last_question) if suggest and last_question else []),
    }


def _earlier(session: Any, conversation: Conversation) -> dict[str, Any]:
    """Another conversation of the same customer (any linked channel): its topics and its last lines."""
    events = session.scalars(select(Event).where(Event.conversation_id == conversation.id,
                                                 Event.type.in_(("user", "bot"))).order_by(Event.seq)).all()
    lines = [item for e in events if (item := _transcript_item(e)) is not None]
    return {"conversation_id": conversation.id, "channel": conversation.channel,
            "started_at": conversation.started_at.isoformat(), "summary": _topics([e for e in events
                                                                                  if e.type == "user"]),
            "transcript": lines[-EARLIER_LINES:]}


def _transcript_item(event: Event) -> dict[str, Any] | None:
    stamp = event.timestamp if event.timestamp.tzinfo else event.timestamp.replace(tzinfo=dt.UTC)
    data, when = event.data or {}, stamp.isoformat()
    if event.type == "user":
        parse = data.get("parse_data") or {}
        intent = parse.get("intent")
        entities = [{"entity": e["entity"], "value": _hide(str(e["value"]))} for e in parse.get("entities") or []]
        shown = (data.get("metadata") or {}).get("button_title") or data.get("text", "")  # a button: its title
        return {"role": "user", "text": _hide(shown), "timestamp": when, "intent": intent, "entities": entities}
    if event.type == "bot":
        extra = data.get("data") or {}
        role = "agent" if extra.get("source") == "agent" else "bot"
        return {"role": role, "text": _hide(data.get("text", "")), "timestamp": when, "intent": None, "entities": [],
                "author": extra.get("agent") if role == "agent" else None}
    if event.type == "agent_note":
        return {"role": "note", "text": _hide(data.get("text", "")), "timestamp": when, "intent": None, "entities": []}
    if event.type == "handoff":
        text = {"waiting": f"转人工排队（{data.get('detail') or data.get('reason')}）", "assigned":
                f"{data.get('agent') or '坐席'}已接入", "closed": f"会话结束：{data.get('disposition')}",
                "transferred": f"转接至{data.get('group')}：{data.get('note') or ''}",
                "ticket": "非工作时间，已留言待回电", "abandoned": "客户已离开"}.get(data.get("status"), "")
        return {"role": "system", "text": _hide(text), "timestamp": when, "intent": None, "entities": []}
    return None


def _topics(user_events: list[Event]) -> str:
    intents = []
    for event in user_events:
        name = ((event.data or {}).get("parse_data") or {}).get("intent", {}).get("name")
        if name and name not in intents and name != "nlu_fallback":
            intents.append(name)
    return "、".join(intents[:5]) or "（无识别出的业务）"


def _summary(channel: str, customer: Customer | None, events: list[Event], handoff: Handoff,
             slots: dict[str, str]) -> str:
    who = f"{customer.name or customer.id}（{customer.tier}）" if customer else "未登录客户"
    asked = _topics([e for e in events if e.type == "user"])
    filled = "，已提供：" + "、".join(f"{k}={v}" for k, v in slots.items()) if slots else ""
    return (f"{who}通过{CHANNEL_NAMES.get(channel, channel)}咨询：{asked}{filled}。"
            f"转人工原因：{_hide(handoff.detail or handoff.reason)}。")
