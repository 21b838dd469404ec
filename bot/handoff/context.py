"""The context package an agent sees on accepting a chat: who, where, what the bot understood, why it handed
over, a one-paragraph summary, earlier conversations and suggested answers. Intents, slots and forms are
shown by their display names (`display_name` in nlu_data, kept in the trained model: `TrainedModel.display_names`);
a topic without one is shown by the customer's own words, never by its name.

What it reads is stored masked already (`bot.storage.privacy`); it masks again with the same module as it
reads, so rows stored before masking was introduced show masked too, and `scrub`s what it returns, so rows
stored before input was checked (a lone surrogate in a button title) cannot break it. No role sees more:
nothing unmasked is stored to show."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.channels.registry import channel_label
from bot.handoff.reasons import SENSITIVE, reason_label
from bot.handoff.routing import NOT_TOPICS, main_topic
from bot.security.json_guard import scrub
from bot.security.masking import mask_text
from bot.storage.database import Database
from bot.storage.models import ChannelIdentity, Conversation, Customer, Event, Handoff, aware_utc, utcnow
from bot.training_data import DisplayNames

EARLIER_LINES = 12  # lines of each earlier conversation shown to the agent
QUOTED_WORDS = 20  # characters of the customer's own words that stand for a topic without a display name
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the bank's dates, for agents
HIDDEN_SLOTS = {"requested_slot", "handoff_requested"}  # the dialogue's bookkeeping
WITHHELD_SLOTS = {"id_last4"}  # shown as provided, never its value: it is what identity checks ask for
SAID_ELSEWHERE = {"customer_id", "identity_verified"}  # the summary says who the customer is in its first words
# snake_case: an intent, slot or form name
_RAW_NAME = re.compile(r"(?<![A-Za-z0-9_])[a-z]+(?:_[a-z0-9]+)+(?![A-Za-z0-9_])")
NO_NAMES = DisplayNames()
WORDS_WEIGHT = 0.5  # how much the customer's own first question counts for suggestions, against the topic's name
PLAIN_TIER = "standard"  # a customer without a tier worth telling the agent (bot.storage.models.Customer.tier)

Suggest = Callable[[str], list[dict[str, Any]]]


def _hide(value: Any) -> str:
    return mask_text(str(value))


def topic_title(intent: str, words: str | None = None, names: DisplayNames = NO_NAMES) -> str:
    """What an intent is about, in Chinese: its display name, else the customer's own words (quoted), else a
    plain "其他业务" - never the intent's name."""
    if intent in names.intents:
        return names.intents[intent]
    if words and words.strip():
        said = words.strip()
        return f"“{said[:QUOTED_WORDS]}{'…' if len(said) > QUOTED_WORDS else ''}”"
    return "其他业务"


def _readable(text: str, names: DisplayNames) -> str:
    """Text for agents with any intent, form or slot name in it said by its display name."""
    def name(match: re.Match[str]) -> str:
        raw = match.group(0)
        return names.intents.get(raw) or names.forms.get(raw) or names.slots.get(raw) or raw
    return _RAW_NAME.sub(name, text)


def reason_text(kind: str, detail: str | None, names: DisplayNames = NO_NAMES) -> str:
    """The hand-over's reason said once: "敏感业务（疑似盗刷）", also for rows stored with an older wording
    ("敏感业务：suspected_fraud", or the kind's name repeated)."""
    label = reason_label(kind)
    said = _readable(detail or "", names).strip()
    while label and said.startswith(label) and said[len(label):len(label) + 1] in ("：", ":"):
        said = said[len(label) + 1:].strip()  # "敏感业务：敏感业务：x" -> "x"
    if not said or said == label:
        return label
    if label in said or kind != SENSITIVE:  # says its kind already: "客户要求转人工", "业务办理多次验证失败（…）"
        return said
    return f"{label}：{said}" if "（" in said else f"{label}（{said}）"


def _slot_value(name: str, value: Any, names: DisplayNames) -> str:
    if name in WITHHELD_SLOTS:
        return "已提供"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a counter: 2, not 2.0
    return _readable(_hide(value), names)


def readable_slots(slots: dict[str, Any], names: DisplayNames = NO_NAMES) -> dict[str, str]:
    """Slots as an agent reads them: display names, masked values, internal bookkeeping left out."""
    return {names.slots.get(k, k): _slot_value(k, v, names) for k, v in slots.items()
            if v is not None and k not in HIDDEN_SLOTS}


def topic_turns(events: list[Event]) -> list[tuple[str, str]]:
    """(intent, masked text) of the customer's own questions, in order: not answers to a form's questions, not
    greetings, yes/no, requests for a person or messages the bot did not understand."""
    turns, loop = [], None
    for event in events:
        data = event.data or {}
        if event.type == "active_loop":
            loop = data.get("name")
        elif event.type == "session_started":
            loop = None
        elif event.type == "user" and not loop:
            intent = ((data.get("parse_data") or {}).get("intent") or {}).get("name")
            if intent and intent not in NOT_TOPICS:
                turns.append((intent, _hide(customer_words(data))))
    return turns


def collected_slots(events: list[Event]) -> dict[str, Any]:
    """Every slot the bot filled since this matter began (the session's start, or the end of an earlier hand-over),
    with its latest value: what the customer gave even when a form later reset it (a wrong ID number, a form that
    gave up), and the failures that brought the person."""
    collected: dict[str, Any] = {}
    for event in events:
        data = event.data or {}
        if event.type in ("session_started", "restart") or (
                event.type == "handoff" and data.get("status") in ("closed", "cancelled", "abandoned")):
            collected = {}
        elif event.type == "slot" and data.get("value") is not None:
            collected[str(data.get("name"))] = data["value"]
    return collected


def summary_of(handoff: Handoff, now: dt.datetime | None = None) -> dict[str, Any]:
    created = aware_utc(handoff.created_at)
    return {"handoff_id": handoff.id, "conversation_id": handoff.conversation_id, "group": handoff.group,
            "priority": handoff.priority, "reason": handoff.reason, "detail": scrub(_hide(handoff.detail or "")),
            "status": handoff.status, "agent_id": handoff.agent_id,
            "waiting_seconds": int(((now or utcnow()) - created).total_seconds())}


def conversation_topics(database: Database, conversation_id: str) -> list[str]:
    """The intents of the customer's own questions so far (see `topic_turns`), for routing the conversation by
    its main topic (`bot.handoff.routing.conversation_group`)."""
    with database.session() as session:
        events = session.scalars(select(Event).where(Event.conversation_id == conversation_id)
                                 .order_by(Event.seq)).all()
        return [intent for intent, _ in topic_turns(list(events))]


def build_context(database: Database, handoff_id: int, role: str, suggest: Suggest | None = None,
                  names: DisplayNames | None = None) -> dict[str, Any]:
    """The package for hand-over `handoff_id` (`KeyError` when there is none). `role` (agent, supervisor,
    admin) is kept for callers; every role gets the same masked package. `names`: the loaded model's display
    names (`app.state.assistant.model.display_names`); without them topics are the customer's own words."""
    return scrub(_package(database, handoff_id, suggest, names or NO_NAMES))


def _package(database: Database, handoff_id: int, suggest: Suggest | None, names: DisplayNames) -> dict[str, Any]:
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
        earlier_summaries = [_earlier(session, c, names) for c in earlier]
        dialogue = (conversation.state or {}).get("dialogue") or {}
        task = dialogue.get("handed_over_task") or {}  # the form the customer was in when the person took over
        raw_slots = {**collected_slots(list(events)), **(task.get("slots") or {}),
                     **{k: v for k, v in (dialogue.get("slots") or {}).items() if v is not None}}
        checked_id = raw_slots.get("customer_id") if raw_slots.get("identity_verified") else None
        verified_customer = session.get(Customer, str(checked_id)) if customer is None and checked_id else None
    transcript = [item for e in events if (item := transcript_item(e, names)) is not None]
    topics = topic_turns(list(events))
    form = dialogue.get("active_loop") or task.get("form")
    who = _who(customer, verified_customer, raw_slots)
    reason = _hide(reason_text(handoff.reason, handoff.detail, names))
    return {
        "handoff": summary_of(handoff),
        "customer": who,
        "linked_channels": [_channel_line(i, identity) for i in linked if i is not None],
        "channel": conversation.channel,
        "reason": reason,
        "summary": summary_paragraph(conversation.channel, who, topics, raw_slots, reason, names, form),
        "slots": readable_slots(raw_slots, names),
        "active_form": form,
        "active_form_title": (names.forms.get(form) or "业务办理") if form else None,
        "transcript": transcript,
        "earlier_conversations": earlier_summaries,
        "suggestions": topic_suggestions(suggest, topics, names) if suggest else [],
    }


def topic_suggestions(suggest: Suggest, turns: list[tuple[str, str]], names: DisplayNames,
                      most: int = 5) -> list[dict[str, Any]]:
    """Knowledge answers for the conversation's matter, not its last message: searched with the customer's first
    question on the main topic and with the topic's display name, ranked by their confidence summed over both
    searches (an answer both find comes first; the customer's words, often vague - "我的卡丢了" - count half).
    Nothing when no matter was named."""
    topic = main_topic([intent for intent, _ in turns])
    if topic is None:
        return []
    first = scrub(next(words for intent, words in turns if intent == topic))
    searches = [(first, WORDS_WEIGHT), *([(names.intents[topic], 1.0)] if topic in names.intents else [])]
    found: dict[Any, dict[str, Any]] = {}
    score: dict[Any, float] = {}
    for query, weight in searches:
        for item in suggest(query) if query.strip() else []:
            key = item.get("id")
            found.setdefault(key, item)
            score[key] = score.get(key, 0.0) + weight * float(item.get("confidence") or 0.0)
    return sorted(found.values(), key=lambda item: -score[item.get("id")])[:most]


def _who(customer: Customer | None, verified_customer: Customer | None,
         slots: dict[str, Any]) -> dict[str, Any] | None:
    """The customer, as far as the facts go: the one the conversation is linked to, else the one whose identity
    the bot checked in this conversation (a form's identity check sets `customer_id` and `identity_verified`)."""
    checked = bool(slots.get("identity_verified"))
    if customer is not None:
        return {"id": customer.id, "name": customer.name, "tier": customer.tier,
                "verified": bool(customer.verified or (checked and slots.get("customer_id") == customer.id)),
                "source": "linked"}
    if verified_customer is not None:
        return {"id": verified_customer.id, "name": verified_customer.name, "tier": verified_customer.tier,
                "verified": True, "source": "identity_check"}
    if checked and slots.get("customer_id"):
        return {"id": str(slots["customer_id"]), "name": None, "tier": None, "verified": True,
                "source": "identity_check"}
    return None


def _channel_line(linked: ChannelIdentity, current: ChannelIdentity | None) -> dict[str, Any]:
    """A channel identity as agents see it: the channel's Chinese name and when the customer was last there
    ("微信（11月28日）"), never the visitor id or credential behind it."""
    name = channel_label(linked.channel)
    here = current is not None and linked.id == current.id
    seen = aware_utc(linked.last_seen_at)
    date = f"{seen.astimezone(SHANGHAI).month}月{seen.astimezone(SHANGHAI).day}日"
    return {"channel": linked.channel, "name": name, "current": here, "date": date,
            "text": f"{name}（{'本次会话' if here else date}）", "id": "本次会话" if here else date}


def _earlier(session: Any, conversation: Conversation, names: DisplayNames) -> dict[str, Any]:
    """Another conversation of the same customer (any linked channel): its topics and its last lines."""
    events = session.scalars(select(Event).where(Event.conversation_id == conversation.id,
                                                 Event.type.in_(("user", "bot", "active_loop", "session_started")))
                             .order_by(Event.seq)).all()
    lines = [item for e in events if (item := transcript_item(e, names)) is not None]
    return {"conversation_id": conversation.id, "channel": conversation.channel,
            "started_at": conversation.started_at.isoformat(),
            "summary": _topics(topic_turns(list(events)), names) or "未说明具体业务",
            "transcript": lines[-EARLIER_LINES:]}


def customer_words(data: dict[str, Any]) -> str:
    """What a stored user event's customer sent as they saw it: a button's title rather than its payload
    (e.g. "/request_human")."""
    return (data.get("metadata") or {}).get("button_title") or data.get("text") or ""


def transcript_item(event: Event, names: DisplayNames = NO_NAMES) -> dict[str, Any] | None:
    stamp = aware_utc(event.timestamp)
    data, when = event.data or {}, stamp.isoformat()
    if event.type == "user":
        parse = data.get("parse_data") or {}
        intent = parse.get("intent")
        entities = [{"entity": e["entity"], "value": _hide(str(e["value"]))} for e in parse.get("entities") or []]
        return {"role": "user", "text": _hide(customer_words(data)), "timestamp": when, "intent": intent,
                "entities": entities, "attachment": data.get("attachment")}  # an image or file: its stored summary
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
                "ticket": "非工作时间，已留言待回电", "abandoned": "客户已离开",
                "cancelled": "客户取消转人工"}.get(data.get("status"), "")
        return {"role": "system", "text": _hide(_readable(text, names)), "timestamp": when, "intent": None,
                "entities": []}
    return None


def _topics(turns: list[tuple[str, str]], names: DisplayNames, most: int = 5) -> str:
    """The conversation's topics in the order the customer raised them, each once."""
    titles: list[str] = []
    for intent, words in turns:
        title = topic_title(intent, words, names)
        if title not in titles:
            titles.append(title)
    return "、".join(titles[:most])


# --- the summary paragraph -------------------------------------------------------------------------------


def summary_paragraph(channel: str, who: dict[str, Any] | None, turns: list[tuple[str, str]],
                      slots: dict[str, Any], reason: str, names: DisplayNames, form: str | None = None) -> str:
    """What an agent reads first, in one paragraph of plain Chinese: who (as far as the bot knows), where, the
    matter (the main topic first), what the customer provided, what failed, and why a person is needed.
    E.g. "张伟（已核验身份）通过网页咨询挂失银行卡，已提供卡号后四位（6688）、身份证后四位，身份核验未通过。
    转人工原因：业务办理多次验证失败（身份核验未通过）。"
    """
    topic = main_topic([intent for intent, _ in turns])
    matter = topic_title(topic, next(w for i, w in reversed(turns) if i == topic), names) if topic else None
    others = _topics([(i, w) for i, w in turns if i != topic], names, most=3)
    asked = f"咨询{matter}" if matter else "联系人工客服，未说明具体业务"
    clauses = [f"{_person(who)}通过{channel_label(channel)}{asked}"]
    if others:
        clauses.append(f"此前还问了{others}")
    if form and names.forms.get(form) and names.forms.get(form) != matter:
        clauses.append(f"正在办理{names.forms[form]}")
    provided = _provided(slots, names)
    if provided:
        clauses.append(f"已提供{provided}")
    failed = [names.slots.get(k, k) for k, v in slots.items() if v is True and k not in SAID_ELSEWHERE]
    clauses += failed
    return f"{'，'.join(clauses)}。转人工原因：{reason}。"


def _person(who: dict[str, Any] | None) -> str:
    """The customer as the summary's first words, agreeing with what the bot knows (never "未登录客户" for a
    customer it identified)."""
    if who is None:
        return "未登录客户"
    name = who.get("name") or f"客户{who['id']}"
    tier = who.get("tier") if who.get("tier") != PLAIN_TIER else None
    details = [d for d in (tier, "已核验身份" if who.get("verified") else "未核验身份") if d]
    if who.get("name"):
        details.insert(0, f"客户号{who['id']}")
    return f"{name}（{'，'.join(details)}）"


def _provided(slots: dict[str, Any], names: DisplayNames) -> str:
    """What the customer gave the bot: text slots by display name with masked values ("卡号后四位（6688）"),
    withheld ones only named; states (yes/no) and counters are not something the customer provided."""
    items = []
    for name, value in slots.items():
        if value is None or isinstance(value, bool | int | float) or name in HIDDEN_SLOTS | SAID_ELSEWHERE:
            continue
        shown = names.slots.get(name, name)
        items.append(shown if name in WITHHELD_SLOTS else f"{shown}（{_slot_value(name, value, names)}）")
    return "、".join(items)
