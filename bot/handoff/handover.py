"""The conversation service's side of a hand-over: escalate when a trigger fires, tell the customer where they
stand while people have the conversation, and take the satisfaction rating afterwards."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from bot.config import HandoffConfig
from bot.dialogue.engine import DialogueState
from bot.dialogue.responder import Reply
from bot.handoff.context import conversation_topics
from bot.handoff.desk import AgentDesk, QueueTicket
from bot.handoff.notices import SOURCE as NOTICE_SOURCE
from bot.handoff.notices import notice_for, queue_frame
from bot.handoff.routing import conversation_group, group_named, priority
from bot.handoff.triggers import Escalation, TurnFacts, cancels_handoff, detect_escalation
from bot.ops import metrics
from bot.security.masking import mask_text
from bot.storage import TurnStart
from bot.storage.models import utcnow
from bot.training_data import DisplayNames

CANCELLED_TEXT = "好的，已为您取消转人工，您可以继续向我提问。"
RATING_WORDS = {"非常满意": 5, "很满意": 5, "满意": 4, "一般": 3, "非常不满意": 1, "很不满意": 1, "不满意": 2}


@dataclass(frozen=True)
class Escalated:
    """A hand-over just requested: why, and what the customer is told about it (queue place, or hours)."""

    escalation: Escalation
    replies: list[Reply]


class Handover:
    def __init__(self, desk: AgentDesk, config: HandoffConfig, hub: Any = None) -> None:
        self.desk = desk
        self.config = config
        self.hub = hub  # bot.live.LiveBus: tells agents about new chats and customers' messages live
        # hand-over id -> (the queue place its customer's socket was last told, channel, customer's id)
        self._told: dict[int, tuple[int, str, str]] = {}
        self._told_lock = threading.Lock()

    def queue_changed(self) -> None:
        """Agents' consoles refresh their queues; waiting customers with an open chat socket (web, app) hear
        their new place when it moved, and, with place 0, that they are out of the queue."""
        if self.hub is None:
            return
        self.hub.to_agents({"type": "queue"})
        waiting = self.desk.waiting_customers()
        with self._told_lock:
            still = {handoff_id for handoff_id, _, _ in waiting}
            gone = [self._told.pop(h) for h in list(self._told) if h not in still]
        for _, channel, sender in gone:
            self.hub.to_customer(channel, sender, {"type": "queue", "position": 0, "text": ""})
        for handoff_id, channel, sender in waiting:
            if self.hub.customer_connected(channel, sender):
                self._tell_place(handoff_id, channel, sender)

    def _tell_place(self, handoff_id: int, channel: str, sender: str) -> None:
        ticket = self.desk.ticket(handoff_id)
        with self._told_lock:
            told = self._told.get(handoff_id)
            if ticket.status != "waiting" or (told and told[0] == ticket.position):
                return
            self._told[handoff_id] = (ticket.position, channel, sender)
        self.hub.to_customer(channel, sender, queue_frame(ticket))

    def escalate_if_needed(self, start: TurnStart, text: str, parse: dict[str, Any], state: DialogueState,
                           names: DisplayNames | None = None) -> Escalated | None:
        """Queue the conversation for a person when a trigger fires on this turn's facts. The caller resets the
        dialogue's counters (`DialogueState.start_afresh`) when it returns a hand-over."""
        previous = (start.state.get("dialogue") or {}).get("latest_text")
        facts = TurnFacts(text=text, parse=parse, slots=dict(state.slots), fallbacks=state.fallbacks,
                          tier=start.customer_tier, previous_text=previous, active_loop=state.active_loop,
                          names=names or DisplayNames())
        escalation = detect_escalation(self.config, facts)
        if escalation is None:
            return None
        group = self.group_for(start, parse)
        with self.desk.changes_held() as changes:  # given to an agent at once: said after the bot's words
            ticket = self.desk.request(start.conversation_id, group, priority(self.config, escalation.kind,
                                                                             start.customer_tier),
                                       escalation.kind, escalation.detail)
        metrics.handed_over(escalation.kind)  # bot_handovers_total{reason}; the turn counts as handed_over
        joined = [payload for conversation_id, payload in changes
                  if conversation_id == start.conversation_id and payload.get("status") == "assigned"]
        self.desk.tell([change for change in changes if change[1] not in joined])  # other chats it made room for
        self.queue_changed()  # the customer's socket (if any) gets their place as a status line too
        replies = [Reply(text=self.describe(ticket), source="handoff")]
        replies += [Reply(text=notice.text, source=NOTICE_SOURCE) for payload in joined
                    if (notice := notice_for(payload, None)) is not None]
        return Escalated(escalation, replies)

    def group_for(self, start: TurnStart, parse: dict[str, Any]) -> str:
        """The skill group for this conversation: its main topic decides (`routing.conversation_group`), whatever
        triggered the hand-over - a request, the offered button, a failed form, anger, a sensitive word."""
        top = (parse.get("retrieval") or {}).get("top") or {}
        topics = conversation_topics(self.desk.database, start.conversation_id)
        if not (start.state.get("dialogue") or {}).get("active_loop"):  # a question of its own, not a form answer
            topics.append(parse.get("intent", {}).get("name"))
        return conversation_group(self.config, topics, [top["category"]] if top.get("category") else []).name

    def describe(self, ticket: QueueTicket) -> str:
        if ticket.status == "assigned":
            return f"已为您接通{ticket.group}人工客服，客服已看到您和智能客服的对话，请稍候。"
        if ticket.status == "ticket":
            hours = group_named(self.config, ticket.group).hours
            opens = ticket.opens_at.strftime("%m月%d日 %H:%M") if ticket.opens_at else "工作时间"
            return (f"{ticket.group}人工客服的服务时间是每天{hours}，现在暂时无人值守。您的问题已记录，"
                    f"请直接留言并留下方便联系的时间，我们会在{opens}后尽快回电。")
        ahead = ticket.position - 1
        queue = f"您前面还有{ahead}位客户" if ahead else "您是下一位"
        return f"正在为您转接{ticket.group}人工客服，{queue}，预计等待约{ticket.eta_minutes}分钟。"

    def while_with_people(self, start: TurnStart, text: str) -> list[Reply]:
        """The customer wrote while waiting (told their place, or taken off the queue when they cancel) or while
        an agent has the chat (no bot reply: the agent's console gets the message live, masked as the stored
        transcript is)."""
        handoff = self.desk.open_handoff(start.conversation_id)
        if handoff is None:
            return []
        if handoff.status == "waiting" and cancels_handoff(text):
            if self.desk.customer_cancelled(start.conversation_id) is not None:
                self.queue_changed()  # agents' queues drop it; the customer's socket hears place 0
                return [Reply(text=CANCELLED_TEXT, source="handoff_cancelled")]
            handoff = self.desk.open_handoff(start.conversation_id)  # accepted meanwhile: the agent has it
            if handoff is None:
                return []
        if handoff.status != "waiting":
            if self.hub is not None and handoff.agent_id is not None:
                self.hub.to_agents({"type": "message", "handoff_id": handoff.id, "text": mask_text(text),
                                    "timestamp": utcnow().isoformat()}, [handoff.agent_id])
            return []
        return [Reply(text=self.describe(self.desk.ticket(handoff.id)), source="handoff")]

    def take_rating(self, handoff_id: int, text: str) -> list[Reply] | None:
        rating = parse_rating(text)
        if rating is None:
            return None
        comment = re.sub(r"^\s*[1-5]\s*分?[,，。.\s]*", "", text).strip() or None
        self.desk.rate(handoff_id, rating, comment)
        return [Reply(text="感谢您的评价！如还有其他问题，可以随时问我。", source="satisfaction")]


def parse_rating(text: str) -> int | None:
    """1-5 from "5", "4分", "非常满意" and the like; None when the text is not a rating."""
    match = re.match(r"^\s*([1-5])\s*(分|星)?(\D|$)", text)
    if match:
        return int(match.group(1))
    return next((v for w, v in sorted(RATING_WORDS.items(), key=lambda i: -len(i[0])) if w in text), None)
