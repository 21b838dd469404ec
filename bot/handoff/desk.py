"""The agent desk: the queue of hand-overs, agents' presence and load, accepting, replying and closing.

Every state change is also an event of the conversation (`handoff`, `bot` with source `agent`, `agent_note`),
so the transcript tells the whole story. What agents and customers write (replies, notes, hand-over detail,
rating comments) is stored masked, like everything else (`bot.storage.privacy`); an agent's reply reaches the
customer as written. Accepting is a conditional UPDATE (`... WHERE status = 'waiting'`):
when two agents accept the same chat at once, the database lets exactly one of them have it; accepting a chat
already given to you is a no-op.

Transfers move: to a skill group, the chat goes to another agent of it (never back to the one who transferred
it; refused when nobody else there is online with room); to a named colleague, only when they are online with
room. The note travels in the `handoff` event (`transferred`, or `assigned` with `via: transfer`), which the
receiving agent's card and chat read (`latest_transfer`). A reply that did not reach the customer is a
`delivery` event naming the reply's seq and the reason (`record_delivery`, `reply_deliveries`); it can be retried
or turned into a callback ticket (a hand-over with status `ticket`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.config import HandoffConfig
from bot.handoff.agents import DESK_ROLES
from bot.handoff.library.canned import expand as expand_canned
from bot.handoff.routing import group_named, is_open, next_opening
from bot.security.masking import mask_text
from bot.storage.database import Database
from bot.storage.models import AgentAccount, ChannelIdentity, Conversation, Event, Handoff, utcnow
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
        self._holding = threading.local()  # see changes_held

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener` after every committed change of a hand-over (accepted, reassigned, transferred, closed,
        cancelled, back in the queue, abandoned) with the conversation and the `handoff` event's data; also after
        the customer's rating is stored, with {"status": "rated", "handoff_id", "rating"} (no `handoff` event)."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def changes_held(self) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """Changes made inside the block on this thread are collected in the yielded list instead of told to the
        listeners: the caller tells them (`tell`) or says them itself (a customer's own turn that was given to an
        agent at once names the agent in its reply, after the bot's words rather than before them)."""
        outer = getattr(self._holding, "changes", None)
        held: list[tuple[str, dict[str, Any]]] = []
        self._holding.changes = held
        try:
            yield held
        finally:
            self._holding.changes = outer

    def _changed(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        held = getattr(self._holding, "changes", None)
        if held is not None:
            held.extend(changes)
            return
        self.tell(changes)

    def tell(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Tell the listeners about committed changes (see `on_change`)."""
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
            conversation_id = handoff.conversation_id
        # not a `handoff` event: listeners that only know those statuses ignore it (the inspection re-runs)
        self._changed([(conversation_id, {"status": "rated", "handoff_id": handoff_id, "rating": rating})])

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

    def accept(self, handoff_id: int, agent_id: int) -> bool:
        """The agent takes a waiting chat: True when it is newly theirs, False when it already was (e.g. given to
        them automatically a moment before they clicked 接入); `DeskError` when another agent was faster."""
        with self.database.session() as session, session.begin():
            taken = session.execute(update(Handoff).where(Handoff.id == handoff_id, Handoff.status == "waiting")
                                    .values(status="assigned", agent_id=agent_id, assigned_at=utcnow()))
            if taken.rowcount != 1:
                current = session.get(Handoff, handoff_id)
                if current is not None and current.status == "assigned" and current.agent_id == agent_id:
                    return False
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
        return True

    def assign_waiting(self) -> list[tuple[int, int]]:
        """Give waiting chats, most urgent first, to the least-loaded online agent of their group with room;
        never a transferred chat back to the agent who transferred it away."""
        assigned = []
        with self.database.session() as session:
            waiting = session.scalars(select(Handoff).where(Handoff.status == "waiting")
                                      .order_by(Handoff.priority, Handoff.created_at, Handoff.id)).all()
            plan = []
            loads = self._loads(session)
            not_back = _transferred_away(session, waiting)
            for handoff in waiting:
                candidates = [a for a in self._agents(session, handoff.group, online_only=True)
                              if loads.get(a.id, 0) < a.max_chats and a.id != not_back.get(handoff.id)]
                if candidates:
                    agent = min(candidates, key=lambda a: (loads.get(a.id, 0), a.id))
                    loads[agent.id] = loads.get(agent.id, 0) + 1
                    plan.append((handoff.id, agent.id))
        for handoff_id, agent_id in plan:
            try:
                if self.accept(handoff_id, agent_id):
                    assigned.append((handoff_id, agent_id))
            except DeskError:
                continue  # someone accepted it by hand meanwhile
        return assigned

    def agent_message(self, handoff_id: int, agent_id: int, text: str) -> dict[str, Any]:
        """The agent's reply, stored as a bot event with source `agent`; returned for delivery."""
        text = text.strip()
        if not text:
            raise DeskError("消息不能为空。")
        text = expand_canned(self.database, agent_id, text, self.config.canned)  # /hi: personal, group, global
        with self.database.session() as session, session.begin():
            handoff = self._mine(session, handoff_id, agent_id)
            agent = session.get(AgentAccount, agent_id)
            conversation = _conversation(session, handoff.conversation_id)
            name = agent.display_name if agent else ""
            data: dict[str, Any] = {"buttons": None, "source": "agent", "agent": name}
            if mask_text(text) != text:  # stored masked: the inspection (bot/ops/quality.py) flags it
                data["masked_on_store"] = True
            event = append_event(session, conversation, "bot", {"text": text, "data": data})
            return {"conversation_id": conversation.id, "text": text, "timestamp": utcnow().isoformat(),
                    "seq": event.seq, "agent": name, "employee_no": agent.employee_no if agent else None}

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
            before = session.get(AgentAccount, previous) if previous is not None else None
            handoff.status, handoff.agent_id, handoff.assigned_at = "assigned", agent_id, utcnow()
            conversation = _conversation(session, handoff.conversation_id)
            conversation.status = "human"
            payload = {"status": "assigned", "handoff_id": handoff_id, "agent_id": agent_id,
                       "agent": agent.display_name, "employee_no": agent.employee_no, "from_agent_id": previous,
                       "from_agent": before.display_name if before else None, "via": "reassign"}
            append_event(session, conversation, "handoff", payload)
            conversation_id = conversation.id
        self._changed([(conversation_id, payload)])

    def transfer(self, handoff_id: int, agent_id: int, group: str, note: str = "") -> None:
        """To another agent of `group` (the transferring agent never gets it back): queued there by its original
        request time and given at once to the least-loaded colleague with room. Refused (`DeskError`, the chat
        stays with the agent) when no other agent of the group is online with room: a customer is not left in a
        queue nobody can serve."""
        try:
            group_named(self.config, group)
        except KeyError as e:
            raise DeskError(f"没有名为“{group}”的技能组。") from e
        note = note.strip()
        with self.database.session() as session, session.begin():
            handoff = self._mine(session, handoff_id, agent_id)
            loads = self._loads(session)
            if not [a for a in self._agents(session, group, online_only=True)
                    if a.id != agent_id and loads.get(a.id, 0) < a.max_chats]:
                raise DeskError(f"{group}目前没有其他坐席可接待，会话仍由您接待。")
            handoff.status, handoff.group, handoff.agent_id = "waiting", group, None
            conversation = _conversation(session, handoff.conversation_id)
            conversation.status = "queued"
            agent = session.get(AgentAccount, agent_id)
            payload = {"status": "transferred", "handoff_id": handoff_id, "group": group, "note": note,
                       "from_agent_id": agent_id, "from_agent": agent.display_name if agent else None}
            append_event(session, conversation, "handoff", payload)
            conversation_id = conversation.id
        self._changed([(conversation_id, payload)])
        self.assign_waiting()

    def transfer_to_agent(self, handoff_id: int, agent_id: int, to_agent_id: int, note: str = "") -> str:
        """To a named colleague who is online and has room (`DeskError` otherwise, saying why); the hand-over
        keeps its group. Returns the colleague's display name."""
        note = note.strip()
        with self.database.session() as session, session.begin():
            handoff = self._mine(session, handoff_id, agent_id)
            colleague = session.get(AgentAccount, to_agent_id)
            _check_colleague(colleague, agent_id, self._loads(session))
            assert colleague is not None
            handoff.agent_id, handoff.assigned_at = to_agent_id, utcnow()
            conversation = _conversation(session, handoff.conversation_id)
            agent = session.get(AgentAccount, agent_id)
            payload = {"status": "assigned", "handoff_id": handoff_id, "agent_id": to_agent_id,
                       "agent": colleague.display_name, "employee_no": colleague.employee_no,
                       "from_agent_id": agent_id, "from_agent": agent.display_name if agent else None,
                       "note": note, "via": "transfer"}
            append_event(session, conversation, "handoff", payload)
            conversation_id, name = conversation.id, colleague.display_name
        self._changed([(conversation_id, payload)])
        return name

    def colleagues(self) -> list[dict[str, Any]]:
        """Every desk account with its presence and load (for choosing whom to transfer a chat to)."""
        with self.database.session() as session:
            loads = self._loads(session)
            agents = session.scalars(select(AgentAccount).where(AgentAccount.role.in_(DESK_ROLES))
                                     .order_by(AgentAccount.id)).all()
            return [{"id": a.id, "display_name": a.display_name, "employee_no": a.employee_no,
                     "presence": a.presence, "groups": list(a.groups or []), "load": loads.get(a.id, 0),
                     "max_chats": a.max_chats} for a in agents]

    # --- replies that did not reach the customer --------------------------------------------------------

    def record_delivery(self, conversation_id: str, reply_seq: int, delivered: bool, reason: str | None,
                        callback_handoff_id: int | None = None) -> None:
        """Whether the agent's reply (the `bot` event numbered `reply_seq`) reached the customer: a `delivery`
        event, so the transcript marks it after a reload. Only failures and retries are recorded: a reply
        without one was delivered."""
        with self.database.session() as session, session.begin():
            data: dict[str, Any] = {"reply_seq": reply_seq, "delivered": delivered, "reason": reason}
            if callback_handoff_id is not None:
                data["callback_handoff_id"] = callback_handoff_id
            append_event(session, _conversation(session, conversation_id), "delivery", data)

    def undelivered_reply(self, handoff_id: int, agent_id: int, reply_seq: int) -> dict[str, Any]:
        """The agent's own reply `reply_seq` of their open chat, when its latest delivery failed (`DeskError`
        when it was delivered: a retry never sends it twice)."""
        with self.database.session() as session:
            handoff = self._mine(session, handoff_id, agent_id)
            reply = session.scalar(select(Event).where(Event.conversation_id == handoff.conversation_id,
                                                       Event.seq == reply_seq, Event.type == "bot"))
            if reply is None or ((reply.data or {}).get("data") or {}).get("source") != "agent":
                raise DeskError("没有找到这条坐席回复。")
            state = reply_deliveries(session, handoff.conversation_id).get(reply_seq)
            if state is None or state["delivered"]:
                raise DeskError("这条消息已送达，无需重发。")
            if state.get("callback_handoff_id"):
                raise DeskError(f"这条消息已转回电工单 #{state['callback_handoff_id']}。")
            agent = session.get(AgentAccount, agent_id)
            return {"conversation_id": handoff.conversation_id, "seq": reply_seq,
                    "text": (reply.data or {}).get("text", ""), "timestamp": utcnow().isoformat(),
                    "agent": agent.display_name if agent else "", "employee_no": agent.employee_no if agent else None,
                    "reason": state.get("reason")}

    def callback_ticket(self, handoff_id: int, agent_id: int, reply_seq: int) -> int:
        """Instead of retrying, someone calls the customer back: a hand-over with status `ticket` in the chat's
        group (on the supervisors' 待回电 list), a note in the transcript, and the reply marked with it."""
        reply = self.undelivered_reply(handoff_id, agent_id, reply_seq)
        with self.database.session() as session, session.begin():
            handoff = self._mine(session, handoff_id, agent_id)
            detail = f"回电：坐席回复未送达（{reply['reason'] or '原因未知'}）：{reply['text']}"
            ticket = Handoff(conversation_id=handoff.conversation_id, group=handoff.group,
                             priority=handoff.priority, reason=handoff.reason, detail=detail[:250],
                             status="ticket", created_at=utcnow())
            session.add(ticket)
            session.flush()
            conversation = _conversation(session, handoff.conversation_id)
            append_event(session, conversation, "agent_note", {
                "text": f"已转回电工单 #{ticket.id}：请致电客户告知“{reply['text']}”", "agent_id": agent_id})
            append_event(session, conversation, "delivery", {
                "reply_seq": reply_seq, "delivered": False, "reason": reply["reason"],
                "callback_handoff_id": ticket.id})
            return ticket.id

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
            conversation_id = conversation.id
        self._changed([(conversation_id, payload)])  # the customer hears the agent leave before the survey
        with self.database.session() as session, session.begin():
            append_event(session, _conversation(session, conversation_id), "bot", {
                "text": SURVEY_PROMPT, "data": {"buttons": SURVEY_BUTTONS, "source": "satisfaction"}})
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


def _check_colleague(colleague: AgentAccount | None, agent_id: int, loads: dict[int, int]) -> None:
    if colleague is None or colleague.role not in DESK_ROLES or colleague.password_hash.startswith("!"):
        raise DeskError("没有这位坐席，无法转接。")
    if colleague.id == agent_id:
        raise DeskError("不能转接给自己。")
    if colleague.presence != "online":
        state = "小休中" if colleague.presence == "away" else "不在线"
        raise DeskError(f"{colleague.display_name}{state}，无法转接，请选择在线的同事或技能组。")
    if loads.get(colleague.id, 0) >= colleague.max_chats:
        raise DeskError(f"{colleague.display_name}的接待量已满（{loads.get(colleague.id, 0)}/{colleague.max_chats}），"
                        "请稍后再试或转接到技能组。")


def _handoff_events(session: Session, conversation_ids: list[str]) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.conversation_id.in_(conversation_ids),
                                                    Event.type == "handoff").order_by(Event.seq)))


def _transferred_away(session: Session, waiting: Any) -> dict[int, int]:
    """hand-over id -> the agent who transferred it, for waiting hand-overs whose latest change is a transfer
    (so it is not handed straight back to them)."""
    if not waiting:
        return {}
    latest: dict[int, dict[str, Any]] = {}
    for event in _handoff_events(session, sorted({h.conversation_id for h in waiting})):
        data = event.data or {}
        if isinstance(data.get("handoff_id"), int):
            latest[data["handoff_id"]] = data
    return {h.id: int(latest[h.id]["from_agent_id"]) for h in waiting
            if latest.get(h.id, {}).get("status") == "transferred" and latest[h.id].get("from_agent_id")}


def latest_transfer(session: Session, handoff: Handoff) -> dict[str, Any] | None:
    """Where the agent who has (or will get) the chat got it from: the latest transfer or reassignment of this
    hand-over, as {"from_agent", "note", "group", "via"} (the note is stored masked)."""
    for event in reversed(_handoff_events(session, [handoff.conversation_id])):
        data = event.data or {}
        if data.get("handoff_id") != handoff.id:
            continue
        if data.get("status") == "transferred" or data.get("via") in ("transfer", "reassign"):
            return {"from_agent": data.get("from_agent"), "note": data.get("note") or "",
                    "group": data.get("group") or handoff.group, "via": data.get("via") or "transfer",
                    "at": event.timestamp.isoformat()}
        if data.get("status") == "waiting" and data.get("from_agent_id"):
            return None  # back in the queue after a disconnect: no transfer to tell about
    return None


def reply_deliveries(session: Session, conversation_id: str) -> dict[int, dict[str, Any]]:
    """reply seq -> its latest `delivery` record ({"delivered", "reason", "callback_handoff_id"?})."""
    states: dict[int, dict[str, Any]] = {}
    for event in session.scalars(select(Event).where(Event.conversation_id == conversation_id,
                                                     Event.type == "delivery").order_by(Event.seq)):
        data = event.data or {}
        if isinstance(data.get("reply_seq"), int):
            states[data["reply_seq"]] = {"delivered": bool(data.get("delivered")), "reason": data.get("reason"),
                                         "callback_handoff_id": data.get("callback_handoff_id")}
    return states


def set_employee_no(database: Database, username: str, employee_no: str | None) -> None:
    """工号 of an account (told to customers with the agent's name)."""
    with database.session() as session, session.begin():
        account = session.scalar(select(AgentAccount).where(AgentAccount.username == username))
        if account is None:
            raise DeskError(f"no agent called {username!r}")
        account.employee_no = employee_no


def _conversation(session: Session, conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise DeskError(f"conversation {conversation_id} not found")
    return conversation
