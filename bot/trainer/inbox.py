"""The review inbox: the customer messages a trainer should look at, the most important first.

stored turns of a period → why each needs a trainer → hide what was reviewed → filter → group near-identical
messages (`bot.trainer.clusters`) → rank the groups → one page.

A turn is a customer message the bot parsed and the bot's replies to it; its outcome is `classify_turn`'s
(answer, clarify, handoff, out_of_scope, fallback). Why a message is in the inbox, and what each reason adds
to its score (`WEIGHTS`; a group's score is the sum of its messages', so frequent problems rise):

- `clarify_rejected` 5: after a "您是不是想问…" menu the customer's next message picked none of its options
  ("都不是，转人工" = `/request_human`, or anything else that is not an option's title, payload or number);
- `agent_corrected` 5: the bot answered directly in the turn just before the one that handed over, and an agent
  then replied: the answer probably did not help;
- `low_rating` 4: every bot turn before a hand-over the customer rated 1 or 2;
- `handoff_avoidable` 4: "could have handled": a hand-over the customer asked for, or one after fallbacks
  (reasons request, fallback, vip; never sensitive, anger or failed verification, which need a person), whose
  first topical message (not a greeting, a thanks, a request for a person, nor understood as "none fits") had an
  intent or a knowledge entry at or above the menu level (`dialogue.menu_min_confidence`): that message is
  marked;
- `fallback` 3: the fallback response, a request to rephrase, no reply, or an offer of a person after them;
- `low_confidence` 2: the bot answered although its confidence was below the `high` band;
- `clarified` 1: the bot asked with a menu.

A turn's `confidence` is its best candidate's: the top intent other than `nlu_fallback`, or the top knowledge
entry, whichever is higher; its band is `low` below 0.5, `medium` below 0.8, else `high`. Not reviewed: button
payloads (`/intent`), requests for a person (`request_human`), reminders (`EXTERNAL: …`), messages written to
a person or rating one. A message whose key (`bot.trainer.keys.message_key`) has a `ReviewMark` is hidden unless
the status filter asks for that status. Dates are UTC days; the period defaults to the last 30 days, and at most
`MAX_CONVERSATIONS` (the newest) conversations of it are read. Texts are masked again on the way out.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.dialogue.responder import CONVERSATIONAL_INTENTS
from bot.eval.replay import HANDOFF_SOURCES, classify_turn
from bot.nlu.classifier import FALLBACK_INTENT, OOS_INTENTS
from bot.security.masking import mask_text
from bot.storage.models import Conversation, Event, Handoff, ReviewMark, aware_utc, utcnow
from bot.trainer.clusters import DEFAULT_THRESHOLD, Encode, cluster
from bot.trainer.keys import message_key

if TYPE_CHECKING:
    from bot.assistant import Assistant
    from bot.storage import ConversationStore, Database

WEIGHTS = {"clarify_rejected": 5, "agent_corrected": 5, "low_rating": 4, "handoff_avoidable": 4, "fallback": 3,
           "low_confidence": 2, "clarified": 1}
Reason = Literal["clarify_rejected", "agent_corrected", "low_rating", "handoff_avoidable", "fallback",
                 "low_confidence", "clarified"]
Band = Literal["low", "medium", "high"]
Outcome = Literal["answer", "clarify", "out_of_scope", "handoff", "fallback"]
Status = Literal["open", "dismissed", "fixed", "out_of_scope", "all"]
LOW_BELOW, HIGH_FROM = 0.5, 0.8
DEFAULT_DAYS = 30
MAX_CONVERSATIONS = 5000
LOW_RATING = 2
AVOIDABLE_HANDOFFS = {"request", "fallback", "vip"}
WAY_OUT = "/request_human"
NOT_REVIEWED_INTENTS = {"request_human"}
NO_TOPIC_INTENTS = CONVERSATIONAL_INTENTS | OOS_INTENTS | {"chitchat"}
OFFER_HUMAN = tuple(s for s in HANDOFF_SOURCES if s != "handoff")
CHUNK = 500


class InboxFilters(BaseModel):
    """What to show: a period (UTC days, `until` included), a channel, the parsed intent, a confidence band,
    the turn's outcome, a reason, the review status (`open`: not reviewed yet), and a page of groups."""

    since: dt.date | None = None
    until: dt.date | None = None
    channel: str | None = Field(None, max_length=32)
    intent: str | None = Field(None, max_length=128)
    band: Band | None = None
    outcome: Outcome | None = None
    reason: Reason | None = None
    status: Status = "open"
    page: int = Field(1, ge=1, le=10_000)
    page_size: int = Field(20, ge=1, le=100)


class Count(BaseModel):
    name: str
    count: int


class EntryCount(BaseModel):
    id: str
    question: str
    count: int


class GroupMessage(BaseModel):
    key: str  # message_key: what `POST /api/trainer/inbox/dismiss` and a fix's ReviewMark take
    text: str  # masked
    count: int
    status: str  # open | dismissed | fixed | out_of_scope


class InboxGroup(BaseModel):
    group_id: str  # "g" + the first 16 hex digits of its leading message's key: the same while that one leads
    score: int
    count: int  # customer messages
    keys: list[str]  # every member's message_key
    messages: list[GroupMessage]  # one per key, the most important first
    samples: list[str]  # up to 3 member texts, masked
    channels: dict[str, int]
    first_at: dt.datetime
    last_at: dt.datetime
    reasons: dict[str, int]  # reason → messages with it
    outcomes: dict[str, int]
    bands: dict[str, int]
    intents: list[Count]  # the intents the bot parsed, most frequent first (at most 3): suggestions
    knowledge: list[EntryCount]  # the knowledge entries retrieval ranked first (at most 3): suggestions
    conversations: list[str]  # up to 5 conversation ids, newest first, for drill-down


class InboxPage(BaseModel):
    since: dt.date
    until: dt.date
    total_groups: int
    total_messages: int
    page: int
    page_size: int
    groups: list[InboxGroup]


@dataclass(frozen=True)
class InboxContext:
    """What the inbox needs from the loaded bot: its knowledge entries (id → standard question), its
    sentence encoder (None: no grouping beyond identical texts), its fallback response and menu level."""

    questions: dict[str, str]
    encode: Encode | None
    fallback_response: str = "utter_default"
    menu_level: float = 0.35
    threshold: float = DEFAULT_THRESHOLD

    @classmethod
    def from_assistant(cls, assistant: Assistant) -> InboxContext:
        retriever, nlu = assistant.model.retriever, assistant.model.nlu
        encoder = nlu.encoder
        encode = None if encoder is None else (lambda texts: encoder.encode([nlu.prepare(t)[0] for t in texts]))
        dialogue = assistant.config.dialogue
        return cls(questions={e.id: e.question for e in retriever.entries} if retriever else {}, encode=encode,
                   fallback_response=dialogue.fallback_response, menu_level=dialogue.menu_min_confidence)


@dataclass
class InboxItem:
    """One customer message of the inbox."""

    event_id: int
    conversation_id: str
    channel: str
    at: dt.datetime
    text: str
    parse: dict[str, Any]
    replies: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "fallback"
    knowledge_top: str | None = None
    reasons: set[str] = field(default_factory=set)
    status: str = "open"

    @property
    def key(self) -> str:
        return message_key(self.text)

    @property
    def intent(self) -> str | None:
        return (self.parse.get("intent") or {}).get("name")

    @property
    def confidence(self) -> float:
        ranking = self.parse.get("intent_ranking") or [self.parse.get("intent") or {}]
        intent = next((float(i.get("confidence") or 0) for i in ranking if i.get("name") != FALLBACK_INTENT), 0.0)
        top = (self.parse.get("retrieval") or {}).get("top") or {}
        return max(intent, float(top.get("confidence") or 0))

    @property
    def band(self) -> str:
        return "low" if self.confidence < LOW_BELOW else "medium" if self.confidence < HIGH_FROM else "high"

    @property
    def score(self) -> int:
        return sum(WEIGHTS[r] for r in self.reasons)

    @property
    def reviewable(self) -> bool:
        text = self.text.strip()
        return not text.startswith(("/", "EXTERNAL: ")) and self.intent not in NOT_REVIEWED_INTENTS

    @property
    def topical(self) -> bool:
        return self.reviewable and self.intent not in NO_TOPIC_INTENTS


@dataclass
class _Handover:
    turn: int  # index of the turn that handed over
    handoff_id: int | None
    reason: str
    agent_replied: bool = False


# --- reading and classifying --------------------------------------------------------------------------------


def inbox_items(database: Database, context: InboxContext, since: dt.date, until: dt.date,
                channel: str | None = None) -> list[InboxItem]:
    """Every reviewable message of the period with at least one reason, with its review status."""
    start, end = _day(since), _day(until) + dt.timedelta(days=1)
    with database.session() as session:
        found = select(Event.conversation_id).join(Conversation).where(
            Event.type == "user", Event.timestamp >= start, Event.timestamp < end)
        if channel:
            found = found.where(Conversation.channel == channel)
        newest = select(Conversation.id, Conversation.channel).where(Conversation.id.in_(found)) \
            .order_by(Conversation.updated_at.desc()).limit(MAX_CONVERSATIONS)
        channels = {cid: channel for cid, channel in session.execute(newest)}
        events: dict[str, list[Event]] = {cid: [] for cid in channels}
        ratings: dict[int, int | None] = {}
        for ids in _chunks(list(channels)):
            for event in session.scalars(select(Event).where(Event.conversation_id.in_(ids),
                                                             Event.type.in_(("user", "bot", "handoff")))
                                         .order_by(Event.conversation_id, Event.seq)):
                events[event.conversation_id].append(event)
            ratings.update((hid, rating) for hid, rating in session.execute(
                select(Handoff.id, Handoff.rating).where(Handoff.conversation_id.in_(ids))))
    items = [item for cid, rows in events.items()
             for item in _conversation_items(cid, channels[cid], rows, ratings, context)
             if item.reviewable and item.reasons and start <= aware_utc(item.at) < end]
    marks = review_marks(database, {i.key for i in items})
    for item in items:
        item.status = marks.get(item.key, "open")
    return items


def _conversation_items(conversation_id: str, channel: str, events: list[Event], ratings: dict[int, int | None],
                        context: InboxContext) -> list[InboxItem]:
    turns, handovers = _turns(conversation_id, channel, events)
    by_question = {q: i for i, q in context.questions.items()}
    for turn in turns:
        seen = classify_turn(turn.replies, turn.parse, by_question, frozenset(context.questions),
                             context.fallback_response)
        turn.outcome, turn.knowledge_top = seen.outcome, seen.knowledge_top
        _own_reasons(turn)
    for now, after in zip(turns, turns[1:], strict=False):
        if now.outcome == "clarify" and _rejects(after.text, now.replies):
            now.reasons.add("clarify_rejected")
    first = 0
    for handover in handovers:
        _handover_reasons(turns[first:handover.turn + 1], handover, ratings.get(handover.handoff_id or -1), context)
        first = handover.turn + 1
    return turns


def _turns(conversation_id: str, channel: str, events: list[Event]) -> tuple[list[InboxItem], list[_Handover]]:
    """The bot's turns (a parsed message and the bot's replies up to the next message) and the hand-overs."""
    turns: list[InboxItem] = []
    handovers: list[_Handover] = []
    current: InboxItem | None = None
    for event in events:
        data = event.data or {}
        if event.type == "user":
            parse = data.get("parse_data")
            current = None if parse is None else InboxItem(event.id, conversation_id, channel, event.timestamp,
                                                          str(data.get("text") or ""), parse)
            if current is not None:
                turns.append(current)
        elif event.type == "bot":
            reply = data.get("data") or {}
            if reply.get("source") == "agent":
                if handovers:
                    handovers[-1].agent_replied = True
            elif current is not None:
                current.replies.append({"text": data.get("text"), "buttons": reply.get("buttons"),
                                        "source": reply.get("source")})
        elif data.get("status") == "waiting" and turns:
            handovers.append(_Handover(len(turns) - 1, data.get("handoff_id"), str(data.get("reason") or "")))
    return turns, handovers


def _own_reasons(turn: InboxItem) -> None:
    offered = any(str(r.get("source") or "").startswith(OFFER_HUMAN) for r in turn.replies)
    if turn.outcome == "fallback" or offered:
        turn.reasons.add("fallback")
    elif turn.outcome == "clarify":
        turn.reasons.add("clarified")
    elif turn.outcome == "answer" and turn.band != "high":
        turn.reasons.add("low_confidence")


def _rejects(text: str, menu: list[dict[str, Any]]) -> bool:
    """Whether the customer's next message took none of the menu's options (title, payload or number)."""
    buttons = [b for r in menu for b in r.get("buttons") or [] if b.get("payload") != WAY_OUT]
    picks = {str(b.get(k) or "").strip() for b in buttons for k in ("title", "payload")}
    picks |= {str(n) for n in range(1, len(buttons) + 1)}
    return text.strip() not in picks


def _handover_reasons(before: list[InboxItem], handover: _Handover, rating: int | None,
                      context: InboxContext) -> None:
    """Reasons a hand-over gives the bot's turns that led to it (`before`, its own turn last)."""
    topic = next((t for t in before if t.topical), None)
    if handover.reason in AVOIDABLE_HANDOFFS and topic is not None and topic.confidence >= context.menu_level:
        topic.reasons.add("handoff_avoidable")
    if rating is not None and rating <= LOW_RATING:
        for turn in before:
            turn.reasons.add("low_rating")
    if handover.agent_replied and len(before) >= 2 and before[-2].outcome == "answer":
        before[-2].reasons.add("agent_corrected")


def review_marks(database: Database, keys: Iterable[str]) -> dict[str, str]:
    """message_key → ReviewMark status, for the keys that have one."""
    marks: dict[str, str] = {}
    with database.session() as session:
        for chunk in _chunks(sorted(keys)):
            rows = session.execute(select(ReviewMark.message_key, ReviewMark.status)
                                   .where(ReviewMark.message_key.in_(chunk)))
            marks.update((key, status) for key, status in rows)
    return marks


def reviewed_since(database: Database, since: dt.datetime, statuses: Iterable[str] = ("fixed", "out_of_scope")
                   ) -> set[str]:
    """The message keys a trainer gave one of `statuses` at `since` or later."""
    with database.session() as session:
        return set(session.scalars(select(ReviewMark.message_key).where(
            ReviewMark.status.in_(tuple(statuses)), ReviewMark.at >= since)))


# --- the page -----------------------------------------------------------------------------------------------


def build_inbox(database: Database, context: InboxContext, filters: InboxFilters,
                today: dt.date | None = None) -> InboxPage:
    """The ranked groups of `filters`' page."""
    until = filters.until or (today or utcnow().date())
    since = filters.since or until - dt.timedelta(days=DEFAULT_DAYS)
    items = [i for i in inbox_items(database, context, since, until, filters.channel) if _kept(i, filters)]
    groups = group_items(items, context)
    first = (filters.page - 1) * filters.page_size
    return InboxPage(since=since, until=until, total_groups=len(groups), total_messages=len(items),
                     page=filters.page, page_size=filters.page_size, groups=groups[first:first + filters.page_size])


def _kept(item: InboxItem, filters: InboxFilters) -> bool:
    if filters.status != "all" and item.status != filters.status:
        return False
    if filters.reason is not None and filters.reason not in item.reasons:
        return False
    asked = {"intent": item.intent, "band": item.band, "outcome": item.outcome}
    return all(getattr(filters, name) in (None, value) for name, value in asked.items())


def group_items(items: list[InboxItem], context: InboxContext) -> list[InboxGroup]:
    """Messages with one key together, then near-identical keys clustered; ranked by score, then size."""
    by_key: dict[str, list[InboxItem]] = {}
    for item in sorted(items, key=lambda i: (-i.score, -aware_utc(i.at).timestamp())):
        by_key.setdefault(item.key, []).append(item)
    keys = sorted(by_key, key=lambda k: (-sum(i.score for i in by_key[k]), -len(by_key[k]), k))
    clusters = cluster([by_key[k][0].text for k in keys], context.encode, context.threshold)
    groups = [_group([keys[i] for i in members], by_key, context) for members in clusters]
    return sorted(groups, key=lambda g: (-g.score, -g.count, -g.last_at.timestamp(), g.group_id))


def _group(keys: list[str], by_key: dict[str, list[InboxItem]], context: InboxContext) -> InboxGroup:
    members = [i for k in keys for i in by_key[k]]
    moments = [aware_utc(i.at) for i in members]
    entries = Counter(i.knowledge_top for i in members if i.knowledge_top in context.questions)
    newest = sorted(members, key=lambda i: aware_utc(i.at), reverse=True)
    return InboxGroup(
        group_id=f"g{keys[0][:16]}", score=sum(i.score for i in members), count=len(members), keys=keys,
        messages=[GroupMessage(key=k, text=mask_text(by_key[k][0].text), count=len(by_key[k]),
                               status=by_key[k][0].status) for k in keys],
        samples=[mask_text(by_key[k][0].text) for k in keys[:3]],
        channels=dict(Counter(i.channel for i in members).most_common()), first_at=min(moments),
        last_at=max(moments), reasons=dict(Counter(r for i in members for r in i.reasons).most_common()),
        outcomes=dict(Counter(i.outcome for i in members).most_common()),
        bands=dict(Counter(i.band for i in members).most_common()),
        intents=[Count(name=n, count=c) for n, c in Counter(i.intent for i in members if i.intent).most_common(3)],
        knowledge=[EntryCount(id=e, question=context.questions[e], count=c)
                   for e, c in entries.most_common(3) if e is not None],
        conversations=list(dict.fromkeys(i.conversation_id for i in newest))[:5])


# --- reviewing ----------------------------------------------------------------------------------------------


def dismiss(store: ConversationStore, keys: list[str], actor: str) -> list[str]:
    """Mark each key dismissed (audited as `review.dismiss`); the keys newly dismissed. A key with a mark
    already (dismissed, fixed, out of scope) keeps it."""
    done = []
    for key in dict.fromkeys(keys):
        try:
            with store.database.session() as session, session.begin():
                if session.scalar(select(ReviewMark.id).where(ReviewMark.message_key == key)) is not None:
                    continue
                session.add(ReviewMark(message_key=key, status="dismissed", action={"kind": "dismiss"}, actor=actor))
        except IntegrityError:  # marked by someone else a moment ago
            continue
        store.audit(actor, "review.dismiss", key)
        done.append(key)
    return done


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(values), CHUNK):
        yield values[i:i + CHUNK]


def _day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)

