"""The context package an agent sees on accepting a chat: who, where, what the bot understood, why it handed
over, a short summary, earlier conversations and suggested answers. Card, ID and phone numbers are masked
unless the agent's role may see them."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from bot.storage.database import Database
from bot.storage.models import ChannelIdentity, Conversation, Customer, Event, Handoff, utcnow

UNMASKED_ROLES = {"supervisor", "admin"}
CHANNEL_NAMES = {"web": "网页", "app": "手机银行App", "wechat": "微信", "wecom": "微信客服", "rest": "接口"}
EARLIER_LINES = 12  # lines of each earlier conversation shown to the agent
_CARD = re.compile(r"(?<!\d)(\d{12,15})(\d{4})(?!\d)")
_ID = re.compile(r"(?<![\dXx])(\d{6})\d{8}(\d{3}[\dXx])(?![\dXx])")
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")

Suggest = Callable[[str], list[dict[str, Any]]]


def mask(text: str) -> str:
    """6222021234567890123 -> ****************0123-style: keep only what an agent needs to confirm."""
    text = _ID.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    text = _CARD.sub(lambda m: "*" * len(m.group(1)) + m.group(2), text)
    return _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def summary_of(handoff: Handoff, now: dt.datetime | None = None) -> dict[str, Any]:
    created = handoff.created_at if handoff.created_at.tzinfo else handoff.created_at.replace(tzinfo=dt.UTC)
    return {"handoff_id": handoff.id, "conversation_id": handoff.conversation_id, "group": handoff.group,
            "priority": handoff.priority, "reason": handoff.reason, "detail": handoff.detail,
            "status": handoff.status, "agent_id": handoff.agent_id,
            "waiting_seconds": int(((now or utcnow()) - created).total_seconds())}


def build_context(database: Database, handoff_id: int, role: str, suggest: Suggest | None = None) -> dict[str, Any]:
    hide = (lambda t: t) if role in UNMASKED_ROLES else mask
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
        earlier_summaries = [_earlier(session, c, hide) for c in earlier]
    transcript = [item for e in events if (item := _transcript_item(e, hide)) is not None]
    dialogue = (conversation.state or {}).get("dialogue") or {}
    slots = {k: hide(str(v)) for k, v in (dialogue.get("slots") or {}).items()
             if v is not None and k != "requested_slot"}
    last_question = next((t["text"] for t in reversed(transcript) if t["role"] == "user"), "")
    return {
        "handoff": summary_of(handoff),
        "customer": None if customer is None else {"id": customer.id, "name": customer.name, "tier": customer.tier,
                                                   "verified": customer.verified},
        "linked_channels": [{"channel": i.channel, "id": hide(i.external_id)} for i in linked],
        "channel": conversation.channel,
        "reason": handoff.detail or handoff.reason,
        "summary": _summary(conversation.channel, customer, events, handoff, slots),
        "slots": slots,
        "active_form": dialogue.get("active_loop"),
        "transcript": transcript,
        "earlier_conversations": earlier_summaries,
        "suggestions": (suggest(last_question) if suggest and last_question else []),
    }


def _earlier(session: Any, conversation: Conversation, hide: Callable[[str], str]) -> dict[str, Any]:
    """Another conversation of the same customer (any linked channel): its topics and its last lines."""
    events = session.scalars(select(Event).where(Event.conversation_id == conversation.id,
                                                 Event.type.in_(("user", "bot"))).order_by(Event.seq)).all()
    lines = [item for e in events if (item := _transcript_item(e, hide)) is not None]
    return {"conversation_id": conversation.id, "channel": conversation.channel,
            "started_at": conversation.started_at.isoformat(), "summary": _topics([e for e in events
                                                                                  if e.type == "user"]),
            "transcript": lines[-EARLIER_LINES:]}


def _transcript_item(event: Event, hide: Callable[[str], str]) -> dict[str, Any] | None:
    stamp = event.timestamp if event.timestamp.tzinfo else event.timestamp.replace(tzinfo=dt.UTC)
    data, when = event.data or {}, stamp.isoformat()
    if event.type == "user":
        parse = data.get("parse_data") or {}
        intent = parse.get("intent")
        entities = [{"entity": e["entity"], "value": hide(str(e["value"]))} for e in parse.get("entities") or []]
        shown = (data.get("metadata") or {}).get("button_title") or data.get("text", "")  # a button: its title
        return {"role": "user", "text": hide(shown), "timestamp": when, "intent": intent, "entities": entities}
    if event.type == "bot":
        extra = data.get("data") or {}
        role = "agent" if extra.get("source") == "agent" else "bot"
        return {"role": role, "text": data.get("text", ""), "timestamp": when, "intent": None, "entities": [],
                "author": extra.get("agent") if role == "agent" else None}
    if event.type == "agent_note":
        return {"role": "note", "text": data.get("text", ""), "timestamp": when, "intent": None, "entities": []}
    if event.type == "handoff":
        text = {"waiting": f"转人工排队（{data.get('detail') or data.get('reason')}）", "assigned":
                f"{data.get('agent') or '坐席'}已接入", "closed": f"会话结束：{data.get('disposition')}",
                "transferred": f"转接至{data.get('group')}：{data.get('note') or ''}",
                "ticket": "非工作时间，已留言待回电", "abandoned": "客户已离开"}.get(data.get("status"), "")
        return {"role": "system", "text": text, "timestamp": when, "intent": None, "entities": []}
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
            f"转人工原因：{handoff.detail or handoff.reason}。")
