"""Quality inspection (质检) of human chats: the rules of `ops.quality` in config.yml run on every closed hand-over
(`QualityInspector` listens to the desk) and again when the customer's rating arrives after the close; each hit is
stored with its rule, the message it is about (masked, as everything stored) and the points it costs. An inspector
(ops roles) confirms or rejects each hit; that decision counts in the rule's precision (confirmed ÷ reviewed).

What the rules read is the stored transcript of the hand-over, from its request to its close, split into the
stretches each agent held it (from their acceptance, or the transfer to them, to the next transfer or the close):
    forbidden_words  a word of the lexicon in an agent's message (one hit per message)
    greeting         an agent's first message without a greeting phrase (each agent who wrote)
    closing          the closing agent's last message without a closing phrase
    first_response   an agent's first message later than N s after they got the chat (from acceptance: the wait in
                     the queue is the service level's figure); nothing written in a stretch longer than N s counts
    silence          after the agent's first message, a customer's message left N s without an agent's answer
                     (from the first unanswered one; one hit per silence; a message left unanswered at the close
                     is not one: the close ends the wait)
    negative_end     a word of the negative lexicon in the customer's last messages of the hand-over (a small
                     lexicon, not a sentiment model)
    low_rating       a rating of 1..low_rating_max (added when the rating is stored, after the close)
    transfer_note    an agent's transfer (to a group or a colleague) without a note
    personal_data    an agent's message that masking changed when it was stored (`masked_on_store`, set by the desk:
                     the agent typed an ID, card or phone number in clear; the customer got it as typed)
Hits of the customer's side (negative_end, low_rating) count against the closing agent.

A chat's score is 100 minus the points of its pending and confirmed hits (rejected ones are false alarms), at least
0; an agent's score of a chat counts only their own hits; their scorecard averages it over the chats they served.
Running the rules again adds only hits not stored yet (one per rule and message), so it is safe to repeat.
"""

from __future__ import annotations

import datetime as dt
import logging
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.config import QualityConfig
from bot.security.masking import mask_text
from bot.storage.database import Database
from bot.storage.models import AgentAccount, Event, Handoff, QualityChat, QualityHit, aware_utc, utcnow

logger = logging.getLogger(__name__)

RULE_LABELS = {
    "forbidden_words": "禁用语/不文明用语",
    "greeting": "未使用开场问候语",
    "closing": "未使用结束语",
    "first_response": "首次响应超时",
    "silence": "长时间未回复客户",
    "negative_end": "客户结束时情绪负面",
    "low_rating": "客户差评",
    "transfer_note": "转接未填写备注",
    "personal_data": "坐席明文发送个人信息",
}
HIT_STATUSES = ("pending", "confirmed", "rejected")
COUNTED_STATUSES = ("pending", "confirmed")  # hits that cost points
FULL_SCORE = 100
EXCERPT_CHARS = 200


class QualityError(Exception):
    """A review that cannot be done (no such hit, an unknown decision)."""


@dataclass(frozen=True)
class Message:
    seq: int
    at: dt.datetime
    text: str
    agent_id: int | None  # the agent holding the chat when it was written
    from_agent: bool
    masked_on_store: bool = False


@dataclass
class Stretch:
    """The chat held by one agent: from their acceptance (or a transfer to them) to the next change."""

    agent_id: int
    seq: int
    start: dt.datetime
    end: dt.datetime | None = None
    messages: list[Message] = field(default_factory=list)


@dataclass
class Chat:
    """A closed hand-over's transcript as the rules read it."""

    handoff: Handoff
    stretches: list[Stretch] = field(default_factory=list)
    customer: list[Message] = field(default_factory=list)  # every customer message of the hand-over
    transfers: list[tuple[int, int | None, str, str]] = field(default_factory=list)  # seq, from agent, note, to
    closed_seq: int = 0
    closer: int | None = None
    rating_seq: int = 0

    @property
    def agent_messages(self) -> list[Message]:
        return [m for s in self.stretches for m in s.messages if m.from_agent]


@dataclass(frozen=True)
class Finding:
    rule: str
    agent_id: int | None
    seq: int
    excerpt: str
    detail: str


class QualityInspector:
    """The desk's listener: inspect a hand-over when it closes, and again when its rating is stored. Never fails
    the desk's change: an error is logged (the desk logs a listener's failure too)."""

    def __init__(self, database: Database, config: QualityConfig) -> None:
        self.database = database
        self.config = config

    def __call__(self, conversation_id: str, payload: dict[str, Any]) -> None:
        if not self.config.enabled or payload.get("status") not in ("closed", "rated"):
            return
        handoff_id = payload.get("handoff_id")
        if not isinstance(handoff_id, int):
            return
        try:
            self.inspect(handoff_id)
        except Exception:  # noqa: BLE001 - the inspection never undoes or fails a close
            logger.exception("quality inspection of hand-over %s failed", handoff_id)

    def inspect(self, handoff_id: int) -> list[int]:
        """Run the rules on a closed hand-over; store the hits not stored yet. Returns the new hits' ids."""
        with self.database.session() as session:
            chat = read_chat(session, handoff_id)
            if chat is None:
                return []
            findings = run_rules(chat, self.config)
        try:
            return self._store(chat, findings)
        except IntegrityError:  # another worker stored the same hits at the same moment
            return []

    def _store(self, chat: Chat, findings: list[Finding]) -> list[int]:
        handoff = chat.handoff
        with self.database.session() as session, session.begin():
            known = {(r, s) for r, s in session.execute(select(QualityHit.rule, QualityHit.event_seq)
                                                        .where(QualityHit.handoff_id == handoff.id))}
            served = set(session.scalars(select(QualityChat.agent_id).where(QualityChat.handoff_id == handoff.id)))
            for agent_id in dict.fromkeys(s.agent_id for s in chat.stretches):
                if agent_id not in served:
                    session.add(QualityChat(handoff_id=handoff.id, conversation_id=handoff.conversation_id,
                                            agent_id=agent_id, closed_at=aware_utc(handoff.closed_at or utcnow())))
            new = [QualityHit(handoff_id=handoff.id, conversation_id=handoff.conversation_id, agent_id=f.agent_id,
                              rule=f.rule, event_seq=f.seq, excerpt=_excerpt(f.excerpt), detail=f.detail[:256],
                              points=self.config.points[f.rule], status="pending", created_at=utcnow())
                   for f in findings if (f.rule, f.seq) not in known]
            session.add_all(new)
            session.flush()
            return [hit.id for hit in new]


# --- reading the transcript -------------------------------------------------------------------------------------


def read_chat(session: Session, handoff_id: int) -> Chat | None:
    """The closed hand-over's transcript, or None when it is not closed or no agent ever held it."""
    handoff = session.get(Handoff, handoff_id)
    if handoff is None or handoff.status != "closed":
        return None
    events = session.scalars(select(Event).where(Event.conversation_id == handoff.conversation_id)
                             .order_by(Event.seq)).all()
    chat = Chat(handoff)
    started = False
    for event in events:
        data = event.data or {}
        if event.type == "satisfaction" and data.get("handoff_id") == handoff_id:
            chat.rating_seq = event.seq
        if chat.closed_seq:
            continue
        if event.type == "handoff" and data.get("handoff_id") == handoff_id:
            started = True
            _handoff_change(chat, event, data)
        elif started:
            _message(chat, event, data)
    return chat if chat.stretches and chat.closed_seq else None


def _handoff_change(chat: Chat, event: Event, data: dict[str, Any]) -> None:
    at, status = aware_utc(event.timestamp), data.get("status")
    if chat.stretches and chat.stretches[-1].end is None and status in ("assigned", "transferred", "waiting",
                                                                        "closed"):
        chat.stretches[-1].end = at
    if status == "assigned" and isinstance(data.get("agent_id"), int):
        chat.stretches.append(Stretch(data["agent_id"], event.seq, at))
        if data.get("via") == "transfer":
            chat.transfers.append((event.seq, data.get("from_agent_id"), data.get("note") or "",
                                   data.get("agent") or ""))
    elif status == "transferred":
        chat.transfers.append((event.seq, data.get("from_agent_id"), data.get("note") or "", data.get("group") or ""))
    elif status == "closed":
        chat.closed_seq, chat.closer = event.seq, data.get("agent_id")


def _message(chat: Chat, event: Event, data: dict[str, Any]) -> None:
    holding = chat.stretches[-1] if chat.stretches and chat.stretches[-1].end is None else None
    text = str(data.get("text") or "")
    if event.type == "user":
        message = Message(event.seq, aware_utc(event.timestamp), text, holding.agent_id if holding else None, False)
        chat.customer.append(message)
        if holding:
            holding.messages.append(message)
        return
    meta = data.get("data") or {}
    if event.type == "bot" and isinstance(meta, dict) and meta.get("source") == "agent" and holding:
        holding.messages.append(Message(event.seq, aware_utc(event.timestamp), text, holding.agent_id, True,
                                        bool(meta.get("masked_on_store"))))


# --- the rules --------------------------------------------------------------------------------------------------


def run_rules(chat: Chat, config: QualityConfig) -> list[Finding]:
    findings: list[Finding] = []
    for rule in config.rules:
        findings.extend(RULES[rule](chat, config))
    return findings


def _forbidden_words(chat: Chat, config: QualityConfig) -> list[Finding]:
    found = []
    for message in chat.agent_messages:
        words = _found(message.text, config.forbidden_words)
        if words:
            found.append(Finding("forbidden_words", message.agent_id, message.seq, message.text,
                                 f"禁用语：{'、'.join(words)}"))
    return found


def _greeting(chat: Chat, config: QualityConfig) -> list[Finding]:
    first: dict[int, Message] = {}
    for message in chat.agent_messages:
        if message.agent_id is not None:
            first.setdefault(message.agent_id, message)
    return [Finding("greeting", m.agent_id, m.seq, m.text, "坐席首句未使用问候语")
            for m in first.values() if not _found(m.text, config.greetings)]


def _closing(chat: Chat, config: QualityConfig) -> list[Finding]:
    closer = chat.closer if chat.closer is not None else chat.stretches[-1].agent_id
    own = [m for m in chat.agent_messages if m.agent_id == closer]
    if not own:
        return [Finding("closing", closer, chat.closed_seq, "（坐席未发送任何消息即结束会话）",
                        "结束会话前未使用结束语")]
    last = own[-1]
    return [] if _found(last.text, config.closings) else [
        Finding("closing", closer, last.seq, last.text, "坐席最后一句未使用结束语")]


def _first_response(chat: Chat, config: QualityConfig) -> list[Finding]:
    limit, found = config.first_response_seconds, []
    for stretch in chat.stretches:
        first = next((m for m in stretch.messages if m.from_agent), None)
        if first is not None:
            delay = (first.at - stretch.start).total_seconds()
            if delay > limit:
                found.append(Finding("first_response", stretch.agent_id, first.seq, first.text,
                                     f"接入后{int(delay)}秒才首次回复（标准{limit}秒）"))
        elif stretch.end is not None and (stretch.end - stretch.start).total_seconds() > limit:
            held = (stretch.end - stretch.start).total_seconds()
            found.append(Finding("first_response", stretch.agent_id, stretch.seq, "（接入后未回复客户）",
                                 f"接入{int(held)}秒未回复（标准{limit}秒）"))
    return found


def _silence(chat: Chat, config: QualityConfig) -> list[Finding]:
    limit, found = config.silence_seconds, []
    for stretch in chat.stretches:
        answered_once, waiting = False, None
        for message in stretch.messages:
            if message.from_agent:
                if waiting is not None and (wait := (message.at - waiting.at).total_seconds()) > limit:
                    found.append(Finding("silence", stretch.agent_id, waiting.seq, waiting.text,
                                         f"客户等待{int(wait)}秒未获回复（标准{limit}秒）"))
                answered_once, waiting = True, None
            elif answered_once and waiting is None:
                waiting = message
    return found


def _negative_end(chat: Chat, config: QualityConfig) -> list[Finding]:
    for message in reversed(chat.customer[-config.negative_last_messages:]):
        words = _found(message.text, config.negative_words)
        if words:
            return [Finding("negative_end", _closer(chat), message.seq, message.text,
                            f"客户结束时情绪负面：{'、'.join(words)}")]
    return []


def _low_rating(chat: Chat, config: QualityConfig) -> list[Finding]:
    rating = chat.handoff.rating
    if rating is None or rating > config.low_rating_max:
        return []
    comment = chat.handoff.comment or ""
    return [Finding("low_rating", _closer(chat), chat.rating_seq, f"{rating}分" + (f"：{comment}" if comment else ""),
                    f"客户评分{rating}分（{config.low_rating_max}分及以下为差评）")]


def _transfer_note(chat: Chat, config: QualityConfig) -> list[Finding]:
    return [Finding("transfer_note", from_agent, seq, f"转接至{to}" if to else "转接", "转接时未填写备注")
            for seq, from_agent, note, to in chat.transfers if not note.strip()]


def _personal_data(chat: Chat, config: QualityConfig) -> list[Finding]:
    return [Finding("personal_data", m.agent_id, m.seq, m.text,
                    "坐席明文发送了证件号、卡号或手机号等个人信息（已脱敏存储）")
            for m in chat.agent_messages if m.masked_on_store]


RULES = {"forbidden_words": _forbidden_words, "greeting": _greeting, "closing": _closing,
         "first_response": _first_response, "silence": _silence, "negative_end": _negative_end,
         "low_rating": _low_rating, "transfer_note": _transfer_note, "personal_data": _personal_data}


def _closer(chat: Chat) -> int | None:
    return chat.closer if chat.closer is not None else chat.stretches[-1].agent_id


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _found(text: str, lexicon: list[str]) -> list[str]:
    folded = _fold(text)
    return [word for word in lexicon if word and _fold(word) in folded]


def _excerpt(text: str) -> str:
    text = mask_text(text)  # stored masked already; an excerpt is shown, so never in clear
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1] + "…"


# --- scores, the review queue, scorecards, precision ------------------------------------------------------------


def chat_score(points: list[tuple[str, int]]) -> int:
    """100 minus the points of the pending and confirmed hits ((status, points) each), at least 0."""
    return max(0, FULL_SCORE - sum(p for status, p in points if status in COUNTED_STATUSES))


@dataclass(frozen=True)
class Window:
    """Closed between `start` and `end` (UTC instants of Beijing dates' bounds); None: unbounded."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None


def hit_rows(database: Database, period: Window = Window(), status: str | None = None, agent_id: int | None = None,
             rule: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """The review queue: hits of hand-overs closed in the period, oldest first."""
    query = (select(QualityHit, Handoff.closed_at).join(Handoff, Handoff.id == QualityHit.handoff_id)
             .order_by(QualityHit.created_at, QualityHit.id).limit(limit))
    query = _in_period(query, period)
    if status:
        query = query.where(QualityHit.status == status)
    if agent_id is not None:
        query = query.where(QualityHit.agent_id == agent_id)
    if rule:
        query = query.where(QualityHit.rule == rule)
    with database.session() as session:
        rows = session.execute(query).all()
        names = _names(session, {hit.agent_id for hit, _ in rows})
        return [hit_row(hit, names) for hit, _ in rows]


def hit_row(hit: QualityHit, names: dict[int, str]) -> dict[str, Any]:
    return {"id": hit.id, "handoff_id": hit.handoff_id, "conversation_id": hit.conversation_id,
            "agent_id": hit.agent_id, "agent": names.get(hit.agent_id) if hit.agent_id is not None else None,
            "rule": hit.rule, "rule_label": RULE_LABELS.get(hit.rule, hit.rule), "event_seq": hit.event_seq,
            "excerpt": mask_text(hit.excerpt), "detail": hit.detail, "score": hit.points, "status": hit.status,
            "reviewer": hit.reviewer, "note": hit.note,
            "reviewed_at": aware_utc(hit.reviewed_at).isoformat() if hit.reviewed_at else None,
            "created_at": aware_utc(hit.created_at).isoformat()}


def review(database: Database, hit_id: int, decision: str, reviewer: str, note: str = "") -> tuple[dict[str, Any],
                                                                                                 str]:
    """Confirm or reject a hit (a decision can be changed: the latest counts). Returns the hit's row and its
    previous status."""
    statuses = {"confirm": "confirmed", "reject": "rejected"}
    if decision not in statuses:
        raise QualityError("decision 须为 confirm（确认）或 reject（驳回）。")
    with database.session() as session, session.begin():
        hit = session.get(QualityHit, hit_id, with_for_update=True)
        if hit is None:
            raise QualityError(f"没有编号为 {hit_id} 的质检结果。")
        previous = hit.status
        hit.status, hit.reviewer, hit.reviewed_at = statuses[decision], reviewer, utcnow()
        hit.note = mask_text(note.strip())[:1000] or None
        session.flush()
        return hit_row(hit, _names(session, {hit.agent_id})), previous


def chat_report(database: Database, handoff_id: int) -> dict[str, Any] | None:
    """A closed hand-over's score and hits (None when it was never inspected)."""
    with database.session() as session:
        handoff = session.get(Handoff, handoff_id)
        served = session.scalars(select(QualityChat).where(QualityChat.handoff_id == handoff_id)).all()
        if handoff is None or not served:
            return None
        hits = session.scalars(select(QualityHit).where(QualityHit.handoff_id == handoff_id)
                               .order_by(QualityHit.event_seq, QualityHit.id)).all()
        names = _names(session, {h.agent_id for h in hits} | {c.agent_id for c in served})
        return {"handoff_id": handoff_id, "conversation_id": handoff.conversation_id,
                "score": chat_score([(h.status, h.points) for h in hits]),
                "agents": [{"agent_id": c.agent_id, "agent": names.get(c.agent_id)} for c in served],
                "hits": [hit_row(h, names) for h in hits]}


def scorecards(database: Database, period: Window) -> list[dict[str, Any]]:
    """Per agent, over the hand-overs closed in the period that they served: chats, the average of their score
    of each chat (only their own hits count), their hits by rule (not rejected), confirmed and rejected."""
    with database.session() as session:
        chats = session.scalars(_in_period(select(QualityChat), period, QualityChat.closed_at)).all()
        handoffs = {c.handoff_id for c in chats}
        hits = session.scalars(select(QualityHit).where(QualityHit.handoff_id.in_(handoffs))).all() if handoffs \
            else []
        names = _names(session, {c.agent_id for c in chats})
    own: dict[tuple[int, int], list[QualityHit]] = defaultdict(list)
    for hit in hits:
        if hit.agent_id is not None:
            own[(hit.agent_id, hit.handoff_id)].append(hit)
    served: dict[int, list[int]] = defaultdict(list)
    for chat in chats:
        served[chat.agent_id].append(chat.handoff_id)
    rows = [_scorecard(agent_id, names.get(agent_id, ""), [own[(agent_id, h)] for h in handoff_ids])
            for agent_id, handoff_ids in served.items()]
    return sorted(rows, key=lambda r: (r["score_avg"], r["agent_id"]))


def _scorecard(agent_id: int, name: str, chats: list[list[QualityHit]]) -> dict[str, Any]:
    scores = [chat_score([(h.status, h.points) for h in hits]) for hits in chats]
    flat = [h for hits in chats for h in hits]
    by_rule = Counter(h.rule for h in flat if h.status != "rejected")
    return {"agent": name, "agent_id": agent_id, "chats": len(chats),
            "score_avg": round(sum(scores) / len(scores), 1) if scores else None,
            "hits_by_rule": dict(sorted(by_rule.items())), "hits": sum(by_rule.values()),
            "pending": sum(h.status == "pending" for h in flat),
            "confirmed": sum(h.status == "confirmed" for h in flat),
            "rejected": sum(h.status == "rejected" for h in flat)}


def rule_rows(database: Database, config: QualityConfig, period: Window = Window()) -> list[dict[str, Any]]:
    """Per rule (the configured ones, then any other with hits): label, points, hits, confirmed, rejected and
    precision = confirmed ÷ (confirmed + rejected), None before any review."""
    query = _in_period(select(QualityHit.rule, QualityHit.status).join(Handoff, Handoff.id == QualityHit.handoff_id),
                       period)
    with database.session() as session:
        counts = Counter((rule, status) for rule, status in session.execute(query))
    rules = list(dict.fromkeys([*config.rules, *sorted({rule for rule, _ in counts})]))
    rows = []
    for rule in rules:
        confirmed, rejected = counts[(rule, "confirmed")], counts[(rule, "rejected")]
        reviewed = confirmed + rejected
        rows.append({"rule": rule, "label": RULE_LABELS.get(rule, rule), "points": config.points.get(rule),
                     "enabled": rule in config.rules,
                     "hits": sum(counts[(rule, s)] for s in HIT_STATUSES), "pending": counts[(rule, "pending")],
                     "confirmed": confirmed, "rejected": rejected,
                     "precision": round(confirmed / reviewed, 4) if reviewed else None})
    return rows


def _in_period(query: Any, period: Window, column: Any = Handoff.closed_at) -> Any:
    if period.start is not None:
        query = query.where(column >= period.start)
    if period.end is not None:
        query = query.where(column < period.end)
    return query


def _names(session: Session, agent_ids: set[int | None]) -> dict[int, str]:
    ids = {i for i in agent_ids if i is not None}
    if not ids:
        return {}
    return {a.id: a.display_name for a in session.scalars(select(AgentAccount).where(AgentAccount.id.in_(ids)))}
