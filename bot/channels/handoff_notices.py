"""Hand-over notices delivered: `HandoffNotices` listens to the desk (`AgentDesk.on_change`), stores each notice
(`bot.handoff.notices` says what it is) in the conversation and pushes it to the customer's channel; `state_frames`
tells a (re)connecting widget or app socket where its hand-over stands."""

from __future__ import annotations

import logging
from typing import Any

from bot.channels.outbound import push_to_customer
from bot.handoff.notices import AGENT_JOINED, Notice, notice_for, queue_frame
from bot.storage.models import AgentAccount, ChannelIdentity, Conversation, utcnow
from bot.storage.store import append_event

log = logging.getLogger(__name__)


class HandoffNotices:
    """The desk's listener: store, then push, the notice of each hand-over change."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, conversation_id: str, payload: dict[str, Any]) -> None:
        database = self.app.state.database
        with database.session() as session, session.begin():
            agent_id = payload.get("agent_id")
            agent = session.get(AgentAccount, agent_id) if agent_id is not None else None
            notice = notice_for(payload, agent)
            if notice is None:
                return
            conversation = session.get(Conversation, conversation_id, with_for_update=True)
            if conversation is None:
                return
            identity = session.get(ChannelIdentity, conversation.identity_id)
            assert identity is not None
            channel, sender = identity.channel, identity.external_id
            append_event(session, conversation, "bot", notice.event_data())
        delivered = push_to_customer(self.app, channel, sender, notice.frame(utcnow().isoformat()))
        if not delivered:  # stored either way: the customer sees it with their history
            log.info("hand-over notice (%s) not delivered to %s now", notice.status, channel)


def state_frames(app: Any, channel: str, sender: str) -> list[dict[str, Any]]:
    """What a socket that (re)connects is told after its history: the queue place while waiting (sent directly:
    `Handover` only repeats a place that moved), who serves the customer while an agent has the chat."""
    desk = getattr(app.state, "desk", None)
    if desk is None:
        return []
    conversation = app.state.conversations.store.find_conversation_of(channel, sender)
    handoff = desk.open_handoff(conversation.id) if conversation is not None else None
    if handoff is None:
        return []
    if handoff.status == "waiting":
        ticket = desk.ticket(handoff.id)
        return [queue_frame(ticket)] if ticket.status == "waiting" else []
    with app.state.database.session() as session:
        agent = session.get(AgentAccount, handoff.agent_id) if handoff.agent_id is not None else None
        name, number = (agent.display_name, agent.employee_no) if agent else (None, None)
    return [Notice(AGENT_JOINED, "", name, number).frame(utcnow().isoformat())]  # no text: nothing new to show
