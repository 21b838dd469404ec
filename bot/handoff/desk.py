"""The agent desk: the queue of hand-overs, agents' presence and load, accepting, replying and closing.

Every state change is also an event of the conversation (`handoff`, `bot` with source `agent`, `agent_note`),
so the transcript tells the whole story. What agents and customers write (replies, notes, hand-over detail,
rating comments) is stored masked, like everything else (`bot.storage.privacy`); an agent's reply reaches the
customer as written. Accepting is a conditional UPDATE (`... WHERE status = 'waiting'`):
when two agents accept the same chat at once, the database lets exactly one of them have it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.config import HandoffConfig
from bot.handoff.routing import group_named, is_open, next_opening
from bot.storage.database import Database
from bot.storage.models import AgentAccount, ChannelIdentity, Conversation, Handoff, utcnow
from bot.storage.store import append_event

logger = logging.getLogger(__name__)

OPEN_STATUSES = ("waiting", "assigned")
# Told every hand-over change after it is committed: (conversation id, the `handoff` event's data)
ChangeListener = Callable[[str, dict[str, Any]], None]
SURVEY_PROMPT = "本次人工服务已结束，感谢您的耐心。请为本次服务打分（5分为非常满意），也可以附上您的意见。"
SURVEY_BUTTONS = [{"title": f"{n}分", "payload": str(n)} for n in (5, 4, 3, 2, 1)]


class DeskError(Exception):
    """An agent's request that cannot be done (taken by someone else, not theirs, closed)."""


@dataclass(frozen=True)
class QueueTicket:
    handoff_id: int
    status: str  # waiting | assigned | ticket
    group: str
    position: int  # 1 = next to be served; 0 once assigned
    eta_minutes: int
    opens_at: dt.datetime | None = None  # when the group is back, for a ticket outside working hours


class AgentDesk:
    def __init__(self, database: Database, config: HandoffConfig,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.database = database
        self.config = config
        self.clock = clock  # working hours are judged by it; tests set the time of day
        self._listeners: list[ChangeListener] = []

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener` after every committed change of a hand-over (accepted, reassigned, transferred, closed,
        cancelled, back in the queue, abandoned) with the conversation and the `handoff` event's data."""
        self._listeners.append(listener)

    def _changed(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        for conversation_id, payload in changes:
            for listener in self._listeners:
                try:
                    listener(conversation_id, payload)
                except Exception:  # a listener's failure (e.g. a closed socket) never undoes the desk's change
                    logger.exception("hand-over listener failed for %s", conversation_id)

    # --- the customer's side ----------------------------------------------------------------------------

    def request(self, conversation_id: str, group: str, priority: int, reason: str, detail: str,
                now: dt.datetime | None = None) -> QueueTicket:
        """Queue the conversation for a person of `group` (or record a ticket when the group is not at work)."""
        now = now or self.clock()
        settings = group_named(self.config, group)
        working = is_open(settings, now)
        with self.database.session() as session, session.begin():
            handoff = Handoff(conversation_id=conversation_id, group=group, priority=priority, reason=reason,
                              detail=detail, status="waiting" if working else "ticket", created_at=utcnow())
            session.add(handoff)
            conversation = _conversation(session, conversation_id)
            conversation.status = "queued" if working else "bot"
            session.flush()
            append_event(session, conversation, "handoff", {"status": handoff.status, "handoff_id": handoff.id,
                                                      "group": group, "reason": reason, "detail": detail})
            handoff_id = handoff.id
        if not working:
            return QueueTicket(handoff_id, "ticket", group, 0, 0, next_opening(settings, now))
        self.assign_waiting()
        return self.ticket(handoff_id)

    def ticket(self, handoff_id: int) -> QueueTicket:
        """Where a hand-over stands: its place in its group's queue and the estimated wait."""
        with self.database.session() as session:
            handoff = session.get(Handoff, handoff_id)
            if handoff is None:
                raise DeskError(f"hand-over {handoff_id} not found")
            if handoff.status != "waiting":
                return QueueTicket(handoff.id, handoff.status, handoff.group, 0, 0)
            ahead = session.scalar(select(func.count()).select_from(Handoff).where(
                Handoff.group == handoff.group, Handoff.status == "waiting",
                (Handoff.priority < handoff.priority) |
                ((Handoff.priority == handoff.priority) & (Handoff.created_at < handoff.created_at)) |
                ((Handoff.priority == handoff.priority) & (Handoff.created_at == handoff.created_at) &
                 (Handoff.id < handoff.id)))) or 0
            agents = max(1, len(self._agents(session, handoff.group, online_only=True)))
            eta = math.ceil((ahead + 1) * self.config.average_handle_minutes / agents)
            return QueueTicket(handoff.id, "waiting", handoff.group, ahead + 1, eta)

    def open_handoff(self, conversation_id: str) -> Handoff | None:
        with self.database.session() as session:
            return session.scalar(select(Handoff).where(Handoff.conversation_id == conversation_id,
                                                        Handoff.status.in_(OPEN_STATUSES))
                                  .order_by(Handoff.id.desc()).limit(1))

    def waiting_customers(self) -> list[tuple[int, str, str]]:
        """(hand-over id, channel, customer's id on it) of everyone waiting in a queue."""
        with self.database.session() as session:
            rows = session.execute(select(Handoff.id, ChannelIdentity.channel, ChannelIdentity.external_id)
                                   .join(Conversation, Conversation.id == Handoff.conversation_id)
                                   .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
                                   .where(Handoff.status == "waiting"))
            return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def customer_left(self, conversation_id: str) -> None:
        """A customer who leaves while waiting is taken off the queue."""
        changes: list[tuple[str, dict[str, Any]]] = []
        with self.database.session() as session, session.begin():
            for handoff in session.scalars(select(Handoff).where(Handoff.conversation_id == conversation_id,
                                                                 Handoff.status == "waiting")):
                handoff.status, handoff.closed_at = "abandoned", utcnow()
                conversation = _conversation(session, conversation_id)
                conversation.status = "bot"
                payload = {"status": "abandoned", "handoff_id": handoff.id}
                append_event(session, conversation, "handoff", payload)
                changes.append((conversation_id, payload))
        self._changed(changes)

    def customer_cancelled(self, conversation_id: str) -> int | None:
        """The waiting customer took back the request for a person: the hand-over leaves the queue as
        `cancelled` (with `closed_at`, so abandonment can be counted) and the bot has the conversation again.
        A conditional UPDATE, like accepting: None when no hand-over was waiting (an agent was faster)."""
        with self.database.session() as session, session.begin():
            handoff = session.scalar(select(Handoff).where(Handoff.conversation_id == conversation_id,
                                                           Handoff.status == "waiting")
                                     .order_by(Handoff.id.desc()).limit(1))
            if handoff is None:
                return None
            handoff_id = handoff.id
            taken = session.execute(update(Handoff).where(Handoff.id == handoff_id, Handoff.status == "waiting")
                                    .values(status="cancelled", closed_at=utcnow(), disposition="客户取消转人工"))
            if taken.rowcount != 1:
                return None
            conversation = _conversation(session, conversation_id)
            conversation.status = "bot"
            payload = {"status": "cancelled", "handoff_id": handoff_id, "disposition": "客户取消转人工"}
            append_event(session, conversation, "handoff", payload)
        self._changed([(conversation_id, payload)])
        return handoff_id

    def handed_elsewhere(self, conversation_id: str, disposition: str) -> None:
        """The waiting customer went to people outside this desk (e.g. WeCom's own servicers): the hand-over
        is closed with `disposition` saying where, and the conversation is the bot's again on our side."""
        changes: list[tuple[str, dict[str, Any]]] = []
        with self.database.session() as session, session.begin():
            for handoff in session.scalars(select(Handoff).where(Handoff.conversation_id == conversation_id,
                                                                 Handoff.status == "waiting")):
                handoff.status, handoff.closed_at, handoff.disposition = "closed", utcnow(), disposition
                conversation = _conversation(session, conversation_id)
                conversation.status = "bot"
                payload = {"status": "closed", "handoff_id": handoff.id, "disposition": disposition}
                append_event(session, conversation, "handoff", payload)
                changes.append((conversation_id, payload))
        self._changed(changes)

    def rate(self, handoff_id: int, rating: int, comment: str | None = None) -> None:
        with self.database.session() as session, session.begin():
            handoff = session.get(Handoff, handoff_id)
            if handoff is None:
                raise DeskError(f"hand-over {handoff_id} not found")
            handoff.rating, handoff.comment = rating, comment
            append_event(session, _conversation(session, handoff.conversation_id), "satisfaction",
                   {"handoff_id": handoff_id, "rating": rating, "comment": comment})

    # --- the agents' side -------------------------------------------------------------------------------

    def set_presence(self, agent_id: int, presence: str) -> None:
        if presence not in ("online", "away", "offline"):
            raise DeskError(f"presence must be online, away or offline, not {presence!r}")
        with self.database.session() as session, session.begin():
            agent = session.get(AgentAccount, agent_id)
            if agent is None:
                raise DeskError(f"agent {agent_id} not found")
            agent.presence, agent.last_seen_at = presence, utcnow()
        if presence == "online":
            self.assign_waiting()

    def release_agent(self, agent_id: int) -> list[int]:
        """An agent who went away (disconnected past the grace period): offline, and their chats go back to the
        front of their queues (their original request time keeps their place)."""
        returned = []
        changes: list[tuple[str, dict[str, Any]]] = []
        with self.database.session() as session, session.begin():
            agent = session.get(AgentAccount, agent_id)
            if agent is not None:
                agent.presence = "offline"
            for handoff in session.scalars(select(Handoff).where(Handoff.agent_id == agent_id,
                                                                 Handoff.status == "assigned")):
                handoff.status, handoff.agent_id = "waiting", None
                conversation = _conversation(session, handoff.conversation_id)
                conversation.status = "queued"
                payload = {"status": "waiting", "handoff_id": handoff.id, "detail": "坐席断线，重新排队",
                           "from_agent_id": agent_id}
                append_event(session, conversation, "handoff", payload)
                changes.append((handoff.conversation_id, payload))
                returned.append(handoff.id)
        self._changed(changes)
        self.assign_waiting()
        return returned

    def accept(self, handoff_id: int, agent_id: int) -> None:
        """The agent takes a waiting chat; `DeskError` when another agent was faster."""
        with self.database.session() as session, session.begin():
            taken = session.execute(update(Handoff).where(Handoff.id == handoff_id, Handoff.status == "waiting")
                                    .values(status="assigned", agent_id=agent_id, assigned_at=utcnow()))
            if taken.rowcount != 1:
                raise DeskError("这个会话已被其他坐席接起或已结束。")
            handoff = session.get(Handoff, handoff_id)
            assert handoff is not None
            conversation = _conversation(session, handoff.conversation_id)
            conversation.status = "human"
            agent = session.get(AgentAccount, agent_id)
            payload = {"status": "assigned", "handoff_id": handoff_id, "agent_id": agent_id,
                       "agent": agent.display_name if agent else None,
                       "employee_no": agent.employee_no if agent else None}
            append_event(session, conversation, "handoff", payload)
            conversation_id = conversation.id
        self._changed([(conversation_id, payload)])

    def assign_waiting(self) -> list[tuple[int, int]]:
        """Give waiting chats, most urgent first, to the least-loaded online agent of their group with room."""
        assigned = []
        with self.database.session() as session:
            waiting = session.scalars(select(Handoff).where(Handoff.status == "waiting")
                                      .order_by(Handoff.priority, Handoff.created_at, Handoff.id)).all()
            plan = []
            loads = self._loads(session)
            for handoff in waiting:
                candidates = [a for a in self._agents(session, handoff.group, online_only=True)
                              if loads.get(a.id, 0) < a.max_chats]
                if candidates:
                    agent = min(candidates, key=lambda a: (loads.get(a.id, 0), a.id))
                    loads[agent.id] = loads.get(agent.id, 0) + 1
                    plan.append((handoff.id, agent.id))
        for handoff_id, agent_id in plan:
            try:
                self.accept(handoff_id, agent_id)
                assigned.append((handoff_id, agent_id))
            except DeskError:
                continue  # someone accepted it by hand meanwhile
        return assigned

    def agent_message(self, handoff_id: int, agent_id: int, text: str) -> dict[str, Any]:
        """The agent's reply, stored as a bot event with source `agent`; returned for delivery."""
        text = text.strip()
        if not text:
            raise DeskError("消息不能为空。")
        text = self.config.canned.get(text, text)  # a short code like /hi becomes its canned text
        with self.database.session() as session, session.begin():
            handoff = self._mine(session, handoff_id, agent_id)
            agent = session.get(AgentAccount, agent_id)
            conversation = _conversation(session, handoff.conversation_id)
            name = agent.display_name if agent else ""
            append_event(session, conversation, "bot", {"text": text, "data": {"buttons": None, "source": "agent",
                                                                          "agent": name}})
            return {"conversation_id": conversation.id, "text": text, "timestamp": utcnow().isoformat()}

    def note(self, handoff_id: int, agent_id: int, text: str) -> None:
        """An internal note: in the transcript for agents, never sent to the customer."""
        with self.database.session() as session, session.begin():
            handoff = self._mine(session, handoff_id, agent_id)
            append_event(session, _conversation(session, handoff.conversation_id), "agent_note",
                   {"text": text.strip(), "agent_id": agent_id})

    def reassign(self, handoff_id: int, agent_id: int) -> None:
        """A supervisor gives an open chat to another agent."""
        with self.database.session() as session, session.begin():
            handoff = session.get(Handoff, handoff_id, with_for_update=True)
            agent = session.get(AgentAccount, agent_id)
            if handoff is None or handoff.status not in OPEN_STATUSES:
                raise DeskError("这个会话已结束，无法重新分配。")
            if agent is None:
                raise DeskError(f"没有编号为 {agent_id} 的坐席。")
            previous = handoff.agent_id
            handoff.status, handoff.agent_id, handoff.assigned_at = "assigned", agent_id, utcnow()
            conversation = _conversation(session, handoff.conversation_id)
            conversation.status = "human"
            payload = {"status": "assigned", "handoff_id": handoff_id, "agent_id": agent_id,
                       "agent": agent.display_name, "employee_no": agent.employee_no, "from_agent_id": previous}
            append_event(session, conversation, "handoff", payload)
            conversation_id = conversation.id
        self._changed([(conversation_id, payload)])

    def transfer(self, handoff_id: int, agent_id: int, group: str, note: str = "") -> None:
        """Back to the queue of another group (keeping its place by the original request time)."""
        group_named(self.config, group)
        with self.database.session() as session, session.begin():
            handoff = self._mine(session, handoff_id, agent_id)
            handoff.status, handoff.group, handoff.agent_id = "waiting", group, None
            conversation = _conversation(session, handoff.conversation_id)
            conversation.status = "queued"
            payload = {"status": "transferred", "handoff_id": handoff_id, "group": group, "note": note,
                       "from_agent_id": agent_id}
            append_event(session, conversation, "handoff", payload)
            conversation_id = conversation.id
        self._changed([(conversation_id, payload)])
        self.assign_waiting()

    def close(self, handoff_id: int, agent_id: int, disposition: str) -> str:
        """The agent ends the chat; the bot takes the conversation back and asks for a rating."""
        with self.database.session() as session, session.begin():
            handoff = self._mine(session, handoff_id, agent_id)
            handoff.status, handoff.closed_at, handoff.disposition = "closed", utcnow(), disposition
            conversation = _conversation(session, handoff.conversation_id)
            conversation.status = "bot"
            conversation.state = {**(conversation.state or {}), "survey_handoff": handoff_id}
            payload = {"status": "closed", "handoff_id": handoff_id, "disposition": disposition,
                       "agent_id": agent_id}
            append_event(session, conversation, "handoff", payload)
            append_event(session, conversation, "bot", {"text": SURVEY_PROMPT, "data": {"buttons": SURVEY_BUTTONS,
                                                                                   "source": "satisfaction"}})
            conversation_id = conversation.id
        self._changed([(conversation_id, payload)])
        return conversation_id

    # --- helpers ----------------------------------------------------------------------------------------

    def _mine(self, session: Session, handoff_id: int, agent_id: int) -> Handoff:
        handoff = session.get(Handoff, handoff_id, with_for_update=True)
        if handoff is None or handoff.status != "assigned" or handoff.agent_id != agent_id:
            raise DeskError("这个会话不在您的接待列表中。")
        return handoff

    def _agents(self, session: Session, group: str, online_only: bool) -> list[AgentAccount]:
        agents = session.scalars(select(AgentAccount)).all()
        return [a for a in agents if group in (a.groups or []) and (a.presence == "online" or not online_only)]

    def _loads(self, session: Session) -> dict[int, int]:
        rows = session.execute(select(Handoff.agent_id, func.count()).where(Handoff.status == "assigned")
                               .group_by(Handoff.agent_id))
        return {int(agent_id): int(count) for agent_id, count in rows if agent_id is not None}


def _conversation(session: Session, conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise DeskError(f"conversation {conversation_id} not found")
    return conversation
