"""The contact centre's figures, computed from stored rows only (conversations, their events, hand-overs, agents),
so any period can be computed again at any time. One definition each, the same for /api/ops/*, /ops and
`bot report`:

- **Period**: `from`..`to` are Beijing (Asia/Shanghai) dates, both included. Conversation figures count the
  conversations *started* in the period; hand-over figures count the hand-overs *requested* in it. Days and hours
  of breakdowns are Beijing days and hours (an hour row aggregates that hour of every day of the period).
- **Same customer**: the same linked bank customer (`conversations.customer_id`, across channels) when the
  conversation has one, else the same channel identity (`identity_id`).
- **Topic** of a conversation: its main topic, as hand-over routing reads it (the latest customer intent that
  names a matter: no greeting, yes/no, request for a person or message not understood), else the category of the
  last knowledge entry it was answered from, else none. **Same topic**: equal topics (a conversation without a
  topic never counts as a return). **Skill group** of a conversation: its (first) hand-over's group, else the
  group its topic routes to (`handoff.groups`, else `handoff.default_group`).
- **containment_rate** (未转人工率) = conversations without a hand-over ÷ conversations.
  **containment_rate_24h** (自助解决率) = conversations without a hand-over and without the same customer
  starting another conversation on the same topic within `ops.return_window_hours` (24 h) of this one's last
  event ÷ conversations. Returns are looked for on every channel, also after the period's end.
- **escalation_rate** (转人工率) = conversations with at least one hand-over (a ticket left outside working hours
  included) ÷ conversations; `escalations_by_reason` counts hand-overs by reason.
- Customer turns: `user` events while no hand-over is open (waiting or with an agent), i.e. the turns the bot
  answered. **no_answer_rate** (无答案率) = turns answered by the fallback (`utter_default`, the configured
  `dialogue.fallback_response`, or an offer of a person because nothing matched) ÷ customer turns; a turn that
  started a hand-over counts as an escalation, not as a no-answer.
  **clarification_rate** (澄清率) = turns answered by a "您是不是想问" menu (source `clarify`) ÷ customer turns;
  **clarification_resolved_rate** = menus whose next customer turn chose one of the offered options (its button
  payload or title, or its number on plain-text channels; "都不是"/a person is not a choice) ÷ menus.
- **first_response_p50_s / _p90_s** (首响时长) = from the hand-over's request (`handoffs.created_at`) to the first
  message an agent sent in it, over hand-overs with such a message (nearest-rank percentiles);
  **first_response_within_rate** (首响X秒应答率) = the share of those within `ops.first_response_seconds` (X).
- **service_level** ("X% answered within Y s", `ops.service_level`) = hand-overs an agent took (first
  assignment) within Y s ÷ queued hand-overs, where a hand-over abandoned (cancelled/abandoned) before Y s is
  left out, one abandoned after Y s counts as a miss, one still waiting counts as a miss once it waited Y s and is
  left out before, and tickets (outside working hours: never queued) are left out.
- **abandonment_rate** (放弃率) = queued hand-overs (tickets left out) that left the queue before an agent took
  them: status `cancelled` (the customer took the request back) or `abandoned` (the customer left or timed out)
  ÷ queued hand-overs.
- **aht_s** (平均处理时长) = mean of (close - first acceptance) over hand-overs closed by an agent; per agent:
  the closing agent's. **concurrent_max / concurrent_avg** per agent: the most chats they held at the same
  moment, and their time-weighted average while they held at least one (a chat is held from its assignment to
  that agent to the hand-over's next change: a transfer, back to the queue, or the close).
- **csat** (满意度) = ratings 4-5 ÷ rated hand-overs; **csat_participation** (参评率) = rated ÷ hand-overs
  closed by an agent. Per agent (the closing agent), skill group and intent (the conversation's topic).

Rates are fractions 0..1 rounded to 4 places (None with a zero denominator); seconds are rounded to 1 place
(None when nothing was measured).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import BotConfig
from bot.handoff.reasons import reason_label
from bot.handoff.routing import conversation_group, main_topic
from bot.storage.database import Database
from bot.storage.models import AgentAccount, Conversation, Event, Handoff, aware_utc, utcnow

BEIJING = ZoneInfo("Asia/Shanghai")
MAX_DAYS = 366
ABANDONED = ("cancelled", "abandoned")  # left the queue before an agent took it
# nothing matched: "please say it another way", or an offer of a person instead of an answer
FALLBACK_SOURCES = {"utter_default", "utter_offer_human", "utter_offer_human_unmatched", "utter_offer_human_problem"}
CLARIFY_SOURCE = "clarify"
WAY_OUT_PAYLOAD = "/request_human"
EVENT_TYPES = ("user", "bot", "handoff")
ID_CHUNK = 500  # conversation ids per events query
BREAKDOWNS = ("day", "hour", "channel", "group", "agent", "intent")
CHANNEL_LABELS = {"web": "网页", "rest": "REST接口", "app": "手机银行App", "wechat": "微信公众号", "wecom": "企业微信",
                  "cli": "命令行", "notify": "主动通知"}


class PeriodError(ValueError):
    """A period that cannot be computed; the message (Chinese) says why."""


@dataclass(frozen=True)
class Period:
    first: dt.date
    last: dt.date
    group: str | None = None
    channel: str | None = None

    @classmethod
    def parse(cls, start: str | None, end: str | None, group: str | None = None, channel: str | None = None,
              today: dt.date | None = None) -> Period:
        today = today or utcnow().astimezone(BEIJING).date()
        try:
            first = dt.date.fromisoformat(start) if start else today
            last = dt.date.fromisoformat(end) if end else (first if start else today)
        except ValueError as e:
            raise PeriodError("日期格式应为 YYYY-MM-DD。") from e
        if last < first:
            raise PeriodError("结束日期不能早于开始日期。")
        if (last - first).days + 1 > MAX_DAYS:
            raise PeriodError(f"统计区间最长 {MAX_DAYS} 天。")
        return cls(first, last, group or None, channel or None)

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), BEIJING).astimezone(dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), BEIJING).astimezone(dt.UTC)

    def to_json(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}


@dataclass
class Segment:
    """An agent holding a chat from `start` to `end` (None: still holding)."""

    agent_id: int
    start: dt.datetime
    end: dt.datetime | None


@dataclass
class HandoverFacts:
    id: int
    conversation_id: str
    channel: str
    group: str
    reason: str
    status: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    agent_id: int | None  # who has it now, or closed it
    rating: int | None
    accepted_at: dt.datetime | None = None  # its first assignment
    first_response_s: float | None = None
    first_responder: int | None = None
    segments: list[Segment] = field(default_factory=list)
    topic: str | None = None

    @property
    def queued(self) -> bool:
        return self.status != "ticket"

    @property
    def handled(self) -> bool:
        """Closed by an agent who had taken it (not a chat handed to people outside the desk)."""
        return self.status == "closed" and self.accepted_at is not None

    @property
    def wait_s(self) -> float | None:
        return (self.accepted_at - self.created_at).total_seconds() if self.accepted_at else None

    @property
    def handle_s(self) -> float | None:
        if not self.handled or self.closed_at is None or self.accepted_at is None:
            return None
        return (self.closed_at - self.accepted_at).total_seconds()


@dataclass
class ConversationFacts:
    id: str
    channel: str
    customer_key: str
    customer_id: str | None
    started_at: dt.datetime
    ended_at: dt.datetime
    intents: list[str] = field(default_factory=list)
    category: str | None = None
    topic: str | None = None
    group: str = ""
    handovers: list[HandoverFacts] = field(default_factory=list)
    turns: int = 0
    fallback_turns: int = 0
    clarify_turns: int = 0
    clarify_resolved: int = 0
    returned: bool = False

    @property
    def escalated(self) -> bool:
        return bool(self.handovers)


@dataclass
class Dataset:
    """What a period's figures are computed from."""

    period: Period
    conversations: list[ConversationFacts]
    handovers: list[HandoverFacts]
    agents: dict[int, str]
    now: dt.datetime


# --- loading: a bounded number of queries per period -------------------------------------------------------

def load(database: Database, config: BotConfig, period: Period, now: dt.datetime | None = None) -> Dataset:
    """The period's conversations and hand-overs with their facts: a query for conversations (the period and the
    return window after it), one for hand-overs, one per `ID_CHUNK` conversations for their events, one for
    agents."""
    now = now or utcnow()
    window = dt.timedelta(hours=config.ops.return_window_hours)
    with database.session() as session:
        rows = session.execute(select(Conversation.id, Conversation.identity_id, Conversation.customer_id,
                                      Conversation.channel, Conversation.started_at, Conversation.updated_at)
                               .where(Conversation.started_at >= period.start,
                                      Conversation.started_at < period.end + window)).all()
        handoffs = session.scalars(select(Handoff).where(Handoff.created_at >= period.start,
                                                         Handoff.created_at < period.end)
                                   .order_by(Handoff.created_at, Handoff.id)).all()
        ids = sorted({r.id for r in rows} | {h.conversation_id for h in handoffs})
        events = _events(session, ids)
        channels = dict(session.execute(select(Conversation.id, Conversation.channel)
                                        .where(Conversation.id.in_({h.conversation_id for h in handoffs}))).all()) \
            if handoffs else {}
        agents = {a.id: a.display_name for a in session.execute(select(AgentAccount.id, AgentAccount.display_name))}
    conversations = {r.id: _conversation_facts(r, events.get(r.id, []), config) for r in rows}
    all_handovers = [_handover_facts(h, channels.get(h.conversation_id, ""), events.get(h.conversation_id, []))
                     for h in handoffs]
    for handover in all_handovers:
        facts = conversations.get(handover.conversation_id)
        if facts is not None:
            facts.handovers.append(handover)
    for facts in conversations.values():
        facts.group = facts.handovers[0].group if facts.handovers else \
            conversation_group(config.handoff, list(facts.intents), [facts.category] if facts.category else []).name
    _mark_returns(list(conversations.values()), window)
    topics = {c.id: c.topic for c in conversations.values()}
    for handover in all_handovers:
        handover.topic = topics.get(handover.conversation_id) or _topic_of(events.get(handover.conversation_id, []))
    chosen = [c for c in conversations.values() if period.start <= c.started_at < period.end
              and _matches(period, c.channel, c.group)]
    handovers = [h for h in all_handovers if _matches(period, h.channel, h.group)]
    return Dataset(period, sorted(chosen, key=lambda c: (c.started_at, c.id)), handovers, agents, aware_utc(now))


def handovers_between(database: Database, start: dt.datetime, end: dt.datetime) -> list[HandoverFacts]:
    """The hand-overs requested in [start, end) with their facts (three queries; for the live figures)."""
    with database.session() as session:
        rows = session.execute(select(Handoff, Conversation.channel)
                               .join(Conversation, Conversation.id == Handoff.conversation_id)
                               .where(Handoff.created_at >= start, Handoff.created_at < end)
                               .order_by(Handoff.created_at, Handoff.id)).all()
        events = _events(session, sorted({handoff.conversation_id for handoff, _ in rows}), ("handoff", "bot"))
        return [_handover_facts(handoff, channel, events.get(handoff.conversation_id, [])) for handoff, channel in rows]


def _matches(period: Period, channel: str, group: str) -> bool:
    return (period.channel is None or channel == period.channel) and (period.group is None or group == period.group)


def _events(session: Session, ids: list[str], types: tuple[str, ...] = EVENT_TYPES
            ) -> dict[str, list[tuple[str, dict[str, Any], dt.datetime]]]:
    found: dict[str, list[tuple[str, dict[str, Any], dt.datetime]]] = defaultdict(list)
    for chunk in range(0, len(ids), ID_CHUNK):
        query = (select(Event.conversation_id, Event.type, Event.data, Event.timestamp)
                 .where(Event.conversation_id.in_(ids[chunk:chunk + ID_CHUNK]), Event.type.in_(types))
                 .order_by(Event.conversation_id, Event.seq))
        for conversation_id, kind, data, timestamp in session.execute(query):
            found[conversation_id].append((kind, data or {}, aware_utc(timestamp)))
    return found


def _source(data: dict[str, Any]) -> str:
    return str((data.get("data") or {}).get("source") or "")


def _intent(data: dict[str, Any]) -> str | None:
    return ((data.get("parse_data") or {}).get("intent") or {}).get("name")


def _topic_of(events: list[tuple[str, dict[str, Any], dt.datetime]]) -> str | None:
    intents = [i for kind, data, _ in events if kind == "user" and (i := _intent(data))]
    return main_topic(list(intents))


def _conversation_facts(row: Any, events: list[tuple[str, dict[str, Any], dt.datetime]],
                        config: BotConfig) -> ConversationFacts:
    key = f"customer:{row.customer_id}" if row.customer_id else f"identity:{row.identity_id}"
    facts = ConversationFacts(row.id, row.channel, key, row.customer_id, aware_utc(row.started_at),
                              aware_utc(row.updated_at))
    fallbacks = FALLBACK_SOURCES | {config.dialogue.fallback_response}
    open_handoffs: set[int] = set()
    turn: _Turn | None = None  # the customer turn the bot is answering
    for kind, data, _ in events:
        if kind == "handoff":
            if turn is not None and data.get("status") in ("waiting", "ticket"):
                turn.handed_over = True
            _track_open(open_handoffs, data)
        elif kind == "user" and not open_handoffs:
            menu = _finish(facts, turn, fallbacks)
            if menu is not None and _chose(str(data.get("text") or ""), menu):
                facts.clarify_resolved += 1
            turn = _Turn()
            facts.turns += 1
            if intent := _intent(data):
                facts.intents.append(intent)
            retrieval = (data.get("parse_data") or {}).get("retrieval") or {}
            if retrieval.get("decision") == "answer" and (retrieval.get("top") or {}).get("category"):
                facts.category = retrieval["top"]["category"]
        elif kind == "bot" and turn is not None and not open_handoffs:
            turn.sources.add(_source(data))
            if _source(data) == CLARIFY_SOURCE:
                turn.menu = [b for b in (data.get("data") or {}).get("buttons") or []
                             if b.get("payload") != WAY_OUT_PAYLOAD]
    _finish(facts, turn, fallbacks)
    facts.topic = main_topic(list(facts.intents)) or (f"kb:{facts.category}" if facts.category else None)
    return facts


@dataclass
class _Turn:
    sources: set[str] = field(default_factory=set)
    handed_over: bool = False
    menu: list[dict[str, Any]] | None = None


def _finish(facts: ConversationFacts, turn: _Turn | None, fallbacks: set[str]) -> list[dict[str, Any]] | None:
    """Count the turn that just ended; the options of its menu (when it ended with one) for the next turn."""
    if turn is None or turn.handed_over:
        return None  # a turn that started a hand-over counts as an escalation, not as a no-answer
    if turn.sources & fallbacks:
        facts.fallback_turns += 1
    if turn.menu is not None:
        facts.clarify_turns += 1
    return turn.menu


def _track_open(open_handoffs: set[int], data: dict[str, Any]) -> None:
    handoff_id = data.get("handoff_id")
    if not isinstance(handoff_id, int):
        return
    if data.get("status") in ("waiting", "assigned", "transferred"):
        open_handoffs.add(handoff_id)
    else:
        open_handoffs.discard(handoff_id)


def _chose(text: str, options: list[dict[str, Any]]) -> bool:
    text = text.strip()
    if text.isdigit():
        return 1 <= int(text) <= len(options)
    return any(text in (str(o.get("payload") or ""), str(o.get("title") or "")) for o in options)


def _handover_facts(handoff: Handoff, channel: str,
                    events: list[tuple[str, dict[str, Any], dt.datetime]]) -> HandoverFacts:
    facts = HandoverFacts(handoff.id, handoff.conversation_id, channel, handoff.group, handoff.reason,
                          handoff.status, aware_utc(handoff.created_at),
                          aware_utc(handoff.closed_at) if handoff.closed_at else None, handoff.agent_id,
                          handoff.rating)
    inside = False
    for kind, data, timestamp in events:
        if kind == "handoff" and data.get("handoff_id") == handoff.id:
            inside = _follow(facts, data, timestamp)
        elif kind == "bot" and inside and facts.first_response_s is None and _source(data) == "agent":
            facts.first_response_s = (timestamp - facts.created_at).total_seconds()
            facts.first_responder = facts.segments[-1].agent_id if facts.segments else facts.agent_id
    if facts.segments and facts.segments[-1].end is None and facts.closed_at is not None:
        facts.segments[-1].end = facts.closed_at
    return facts


def _follow(facts: HandoverFacts, data: dict[str, Any], timestamp: dt.datetime) -> bool:
    """Apply one of the hand-over's own events; whether it is still open after it."""
    status = data.get("status")
    if facts.segments and facts.segments[-1].end is None:
        facts.segments[-1].end = timestamp  # any change of the hand-over ends the current agent's holding it
    if status == "assigned" and isinstance(data.get("agent_id"), int):
        facts.accepted_at = facts.accepted_at or timestamp
        facts.segments.append(Segment(int(data["agent_id"]), timestamp, None))
    return status in ("waiting", "assigned", "transferred")


def _mark_returns(conversations: list[ConversationFacts], window: dt.timedelta) -> None:
    by_customer: dict[str, list[ConversationFacts]] = defaultdict(list)
    for facts in conversations:
        by_customer[facts.customer_key].append(facts)
    for mine in by_customer.values():
        mine.sort(key=lambda c: c.started_at)
        for index, facts in enumerate(mine):
            facts.returned = facts.topic is not None and any(
                later.topic == facts.topic and later.started_at - facts.ended_at <= window
                for later in mine[index + 1:])


# --- the figures, one function per family -------------------------------------------------------------------

def rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least `share` of the values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def containment(conversations: list[ConversationFacts]) -> dict[str, Any]:
    contained = [c for c in conversations if not c.escalated]
    return {"conversations": len(conversations), "containment_rate": rate(len(contained), len(conversations)),
            "containment_rate_24h": rate(len([c for c in contained if not c.returned]), len(conversations))}


def escalation(conversations: list[ConversationFacts], handovers: list[HandoverFacts]) -> dict[str, Any]:
    by_reason: dict[str, int] = defaultdict(int)
    for handover in handovers:
        by_reason[handover.reason] += 1
    return {"escalation_rate": rate(len([c for c in conversations if c.escalated]), len(conversations)),
            "handovers": len(handovers), "escalations_by_reason": dict(sorted(by_reason.items()))}


def answers(conversations: list[ConversationFacts]) -> dict[str, Any]:
    turns = sum(c.turns for c in conversations)
    menus = sum(c.clarify_turns for c in conversations)
    return {"no_answer_rate": rate(sum(c.fallback_turns for c in conversations), turns),
            "clarification_rate": rate(menus, turns),
            "clarification_resolved_rate": rate(sum(c.clarify_resolved for c in conversations), menus)}


def first_response(handovers: list[HandoverFacts], within_s: int) -> dict[str, Any]:
    times = [h.first_response_s for h in handovers if h.first_response_s is not None]
    return {"first_response_p50_s": seconds(percentile(times, 0.5)),
            "first_response_p90_s": seconds(percentile(times, 0.9)),
            "first_response_within_rate": rate(len([t for t in times if t <= within_s]), len(times)),
            "first_response_seconds": within_s}


def service_level(handovers: list[HandoverFacts], within_s: int, now: dt.datetime) -> float | None:
    answered = missed = 0
    for handover in handovers:
        if not handover.queued:
            continue
        wait = handover.wait_s
        if wait is not None:
            answered, missed = answered + (wait <= within_s), missed + (wait > within_s)
            continue
        left = handover.closed_at or now  # abandoned (or handed elsewhere) then, or still waiting
        if (left - handover.created_at).total_seconds() > within_s:
            missed += 1
    return rate(answered, answered + missed)


def abandonment(handovers: list[HandoverFacts]) -> dict[str, Any]:
    queued = [h for h in handovers if h.queued]
    return {"abandonment_rate": rate(len([h for h in queued if h.status in ABANDONED]), len(queued))}


def handle_time(handovers: list[HandoverFacts]) -> dict[str, Any]:
    times = [t for h in handovers if (t := h.handle_s) is not None]
    return {"aht_s": seconds(sum(times) / len(times)) if times else None}


def satisfaction(handovers: list[HandoverFacts]) -> dict[str, Any]:
    rated = [h for h in handovers if h.rating is not None]
    return {"csat": rate(len([h for h in rated if h.rating >= 4]), len(rated)),
            "csat_participation": rate(len(rated), len([h for h in handovers if h.handled]))}


def concurrency(segments: list[Segment], now: dt.datetime) -> dict[str, Any]:
    """The most chats held at once, and the time-weighted average while at least one was held."""
    segments = [s for s in segments if (s.end or now) >= s.start]
    points = sorted([(s.start, 1) for s in segments] + [(s.end or now, -1) for s in segments],
                    key=lambda p: (p[0], p[1]))
    held = top = 0
    busy = weighted = 0.0
    previous: dt.datetime | None = None
    for moment, step in points:
        if previous is not None and held:
            span = (moment - previous).total_seconds()
            busy, weighted = busy + span, weighted + span * held
        held += step
        top = max(top, held)
        previous = moment
    return {"concurrent_max": top, "concurrent_avg": round(weighted / busy, 2) if busy else None}


def figures(conversations: list[ConversationFacts], handovers: list[HandoverFacts], config: BotConfig,
            now: dt.datetime) -> dict[str, Any]:
    """Every figure of /api/ops/kpis over these conversations and hand-overs."""
    ops = config.ops
    return {**containment(conversations), **escalation(conversations, handovers), **answers(conversations),
            **first_response(handovers, ops.first_response_seconds),
            "service_level": service_level(handovers, ops.service_level.seconds, now),
            "service_level_target": {"percent": ops.service_level.percent, "seconds": ops.service_level.seconds},
            **abandonment(handovers), **handle_time(handovers), **satisfaction(handovers)}


def summary(data: Dataset, config: BotConfig) -> dict[str, Any]:
    return {"period": data.period.to_json(), **figures(data.conversations, data.handovers, config, data.now)}


# --- breakdowns and drill-down ----------------------------------------------------------------------------

def _beijing(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(BEIJING)


KEYS: dict[str, tuple[Callable[[ConversationFacts], str], Callable[[HandoverFacts], str]]] = {
    "day": (lambda c: _beijing(c.started_at).date().isoformat(), lambda h: _beijing(h.created_at).date().isoformat()),
    "hour": (lambda c: f"{_beijing(c.started_at).hour:02d}", lambda h: f"{_beijing(h.created_at).hour:02d}"),
    "channel": (lambda c: c.channel, lambda h: h.channel),
    "group": (lambda c: c.group, lambda h: h.group),
    "intent": (lambda c: c.topic or "", lambda h: h.topic or ""),
}


def label(by: str, key: str, intent_names: dict[str, str], agents: dict[int, str]) -> str:
    if by == "channel":
        return CHANNEL_LABELS.get(key, key)
    if by == "hour":
        return f"{key}:00"
    if by == "intent":
        if not key:
            return "未识别主题"
        return f"知识库：{key[3:]}" if key.startswith("kb:") else intent_names.get(key, key)
    if by == "agent":
        return agents.get(int(key), f"坐席{key}") if key.isdigit() else key
    return key


def breakdown(data: Dataset, config: BotConfig, by: str, intent_names: dict[str, str] | None = None
              ) -> list[dict[str, Any]]:
    """One row per key of `by` (see `BREAKDOWNS`), with the figures that apply to it."""
    names = intent_names or {}
    if by == "agent":
        return _agent_rows(data, names)
    if by not in KEYS:
        raise PeriodError(f"by 只能是 {'/'.join(BREAKDOWNS)} 之一。")
    conversation_key, handover_key = KEYS[by]
    conversations = _grouped(data.conversations, conversation_key)
    handovers = _grouped(data.handovers, handover_key)
    keys = sorted(set(conversations) | set(handovers))
    return [{"key": key, "label": label(by, key, names, data.agents),
             **figures(conversations.get(key, []), handovers.get(key, []), config, data.now)} for key in keys]


def _grouped(items: Iterable[Any], key: Callable[[Any], str]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        grouped[key(item)].append(item)
    return grouped


def _agent_rows(data: Dataset, names: dict[str, str]) -> list[dict[str, Any]]:
    closed = _grouped([h for h in data.handovers if h.handled and h.agent_id is not None], lambda h: str(h.agent_id))
    responded = _grouped([h for h in data.handovers if h.first_responder is not None],
                         lambda h: str(h.first_responder))
    segments: dict[str, list[Segment]] = defaultdict(list)
    for handover in data.handovers:
        for segment in handover.segments:
            segments[str(segment.agent_id)].append(segment)
    rows = []
    for key in sorted(set(closed) | set(responded) | set(segments), key=int):
        mine = closed.get(key, [])
        times = [h.first_response_s for h in responded.get(key, []) if h.first_response_s is not None]
        rows.append({"key": key, "label": label("agent", key, names, data.agents), "chats": len(mine),
                     **handle_time(mine), "first_response_p50_s": seconds(percentile(times, 0.5)),
                     **satisfaction(mine), **concurrency(segments.get(key, []), data.now)})
    return rows


FIGURES = ("conversations", "not_escalated", "contained", "returned", "escalated", "abandoned", "no_answer",
           "clarified", "rated", "low_rating")


def drill(data: Dataset, figure: str, by: str | None = None, key: str | None = None) -> list[ConversationFacts]:
    """The conversations behind a figure (of one breakdown row when `by` and `key` are given)."""
    if figure not in FIGURES:
        raise PeriodError(f"figure 只能是 {'/'.join(FIGURES)} 之一。")
    chosen = [c for c in data.conversations if _shows(c, figure)]
    if by and key is not None:
        if by == "agent":
            chosen = [c for c in chosen if any(str(h.agent_id) == key or any(str(s.agent_id) == key
                                                                             for s in h.segments)
                                               for h in c.handovers)]
        elif by in KEYS:
            chosen = [c for c in chosen if KEYS[by][0](c) == key]
        else:
            raise PeriodError(f"by 只能是 {'/'.join(BREAKDOWNS)} 之一。")
    return chosen


def _shows(facts: ConversationFacts, figure: str) -> bool:
    tests: dict[str, Callable[[ConversationFacts], bool]] = {
        "conversations": lambda c: True,
        "not_escalated": lambda c: not c.escalated,  # behind containment_rate (returns not subtracted)
        "contained": lambda c: not c.escalated and not c.returned,
        "returned": lambda c: not c.escalated and c.returned,
        "escalated": lambda c: c.escalated,
        "abandoned": lambda c: any(h.status in ABANDONED for h in c.handovers),
        "no_answer": lambda c: c.fallback_turns > 0,
        "clarified": lambda c: c.clarify_turns > 0,
        "rated": lambda c: any(h.rating is not None for h in c.handovers),
        "low_rating": lambda c: any(h.rating is not None and h.rating <= 2 for h in c.handovers),
    }
    return tests[figure](facts)


def outcome(facts: ConversationFacts) -> str:
    """The conversation's outcome in a word or two (Chinese, for the drill-down)."""
    if not facts.handovers:
        return "24小时内再次咨询" if facts.returned else "自助解决"
    last = facts.handovers[-1]
    return {"closed": "人工已解决" if last.accepted_at else "转其他渠道", "cancelled": "客户取消转人工",
            "abandoned": "排队中离开", "waiting": "排队中", "assigned": "人工接待中",
            "ticket": "留言待回电"}.get(last.status, last.status)


# --- `bot report` ------------------------------------------------------------------------------------------

MARKDOWN_ROWS = (
    ("conversations", "会话量", "count"), ("containment_rate", "未转人工率", "rate"),
    ("containment_rate_24h", "自助解决率（含24小时回访修正）", "rate"), ("escalation_rate", "转人工率", "rate"),
    ("handovers", "转人工量", "count"), ("no_answer_rate", "无答案率", "rate"),
    ("clarification_rate", "澄清率", "rate"),
    ("clarification_resolved_rate", "澄清后选择选项比例", "rate"), ("first_response_p50_s", "首响时长 P50", "s"),
    ("first_response_p90_s", "首响时长 P90", "s"), ("first_response_within_rate", "首响{x}秒应答率", "rate"),
    ("service_level", "服务水平{sl}", "rate"), ("abandonment_rate", "放弃率", "rate"), ("aht_s", "平均处理时长", "s"),
    ("csat", "满意度", "rate"), ("csat_participation", "参评率", "rate"))


def markdown(figures: dict[str, Any]) -> str:
    """The figures of `summary` as a Markdown report."""
    period = figures["period"]
    target = figures["service_level_target"]
    lines = [f"# 运营报表 {period['from']} 至 {period['to']}", "", "| 指标 | 数值 |", "| --- | --- |"]
    for key, name, kind in MARKDOWN_ROWS:
        title = name.format(x=figures["first_response_seconds"],
                            sl=f"（{target['percent']:g}%/{target['seconds']}秒）")
        lines.append(f"| {title} | {_shown(figures[key], kind)} |")
    lines += ["", "## 转人工原因", "", "| 原因 | 次数 |", "| --- | --- |"]
    lines += [f"| {reason_label(kind)} | {count} |" for kind, count in figures["escalations_by_reason"].items()] \
        or ["| （无） | 0 |"]
    return "\n".join(lines)


def _shown(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "rate":
        return f"{value * 100:.2f}%"
    if kind == "s":
        return f"{value} 秒"
    return str(value)
