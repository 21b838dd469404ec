"""Issue 13: a customer waiting in the queue can take back the hand-over ("不等了", "取消转人工"); the ticket
leaves the queue as `cancelled` with its time, agents' queues drop it, and the bot answers again. Driven through
the real ConversationService and AgentDesk, on SQLite and PostgreSQL like tests/test_handoff.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.agents import create_agent
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import CANCELLED_TEXT, Handover
from bot.handoff.triggers import TurnFacts, cancels_handoff, detect_escalation
from bot.storage import ConversationStore, Database
from bot.storage.models import Handoff
from tests.test_handoff import CONFIG, WORKDAY_NOON, parse


class FakeHub:
    """Records what the hand-over tells agents' consoles and customers' sockets."""

    def __init__(self) -> None:
        self.agents: list[dict] = []
        self.customers: list[tuple[str, str, dict]] = []

    def to_agents(self, message: dict, agent_ids=None) -> None:
        self.agents.append(message)

    def to_customer(self, channel: str, sender: str, message: dict) -> None:
        self.customers.append((channel, sender, message))

    def customer_connected(self, channel: str, sender: str) -> bool:
        return True


@pytest.fixture
def setup(database_url: str, minibot_assistant):
    database = Database(database_url)
    desk = AgentDesk(database, CONFIG, clock=lambda: WORKDAY_NOON)
    hub = FakeHub()
    service = ConversationService(minibot_assistant, ConversationStore(database), handoff=Handover(desk, CONFIG, hub))
    return desk, service, hub


def say(service: ConversationService, text: str, sender: str = "cust-1") -> str:
    return "\n".join(r["text"] for r in service.handle(Inbound("web", sender, text, None)).replies)


def waiting_ids(desk: AgentDesk) -> set[int]:
    return {handoff_id for handoff_id, _, _ in desk.waiting_customers()}


@pytest.mark.parametrize("text", ["不等了", "取消转人工", "不用人工了", "算了不等了", "不需要人工", "cancel",
                                  "Cancel.", "取消", "不等了，取消转人工"])
def test_cancel_phrases(text: str) -> None:
    assert cancels_handoff(text)


@pytest.mark.parametrize("text", ["还要等多久", "取消信用卡自动还款", "我想取消我的信用卡年费和分期",
                                  "cancel my credit card", "转人工", "我的卡丢了", ""])
def test_not_cancel_phrases(text: str) -> None:
    assert not cancels_handoff(text)


def test_cancelling_words_do_not_ask_for_a_person() -> None:
    assert detect_escalation(CONFIG, TurnFacts("取消转人工", parse("nlu_fallback"))) is None
    assert detect_escalation(CONFIG, TurnFacts("转人工", parse("nlu_fallback"))).kind == "request"


@pytest.mark.parametrize("text", ["不等了，取消转人工", "不等了", "不用人工了", "cancel"])
def test_cancel_while_waiting_leaves_the_queue_and_the_bot_answers(setup, text: str) -> None:
    desk, service, hub = setup
    assert "您是下一位" in say(service, "转人工")
    conversation_id = service.store.find_conversation("cust-1").id
    handoff_id = desk.open_handoff(conversation_id).id
    assert handoff_id in waiting_ids(desk)
    hub.agents.clear()

    assert say(service, text) == CANCELLED_TEXT
    assert desk.open_handoff(conversation_id) is None
    assert handoff_id not in waiting_ids(desk)  # the desk's queue no longer lists it
    assert {"type": "queue"} in hub.agents  # agents' consoles were told to refresh their queues
    assert ("web", "cust-1", {"type": "queue", "position": 0, "text": ""}) in hub.customers
    assert service.store.find_conversation("cust-1").status == "bot"
    with desk.database.session() as session:
        handoff = session.scalar(select(Handoff).where(Handoff.id == handoff_id))
        assert handoff.status == "cancelled" and handoff.closed_at is not None  # countable as abandonment
    events = [e for e in service.store.events(conversation_id) if e["event"] == "handoff"]
    assert [e["status"] for e in events] == ["waiting", "cancelled"]

    reply = say(service, "我的卡丢了")  # the bot has the conversation back
    assert "挂失" in reply and "排队" not in reply and "转接" not in reply

    agent = create_agent(desk.database, "wang", "小王", "correct horse battery", groups=["综合服务"])
    desk.set_presence(agent.id, "online")  # an agent coming online does not pick the cancelled chat up
    assert desk.open_handoff(conversation_id) is None


def test_a_message_that_does_not_cancel_keeps_the_customer_waiting(setup) -> None:
    desk, service, _ = setup
    say(service, "转人工")
    conversation_id = service.store.find_conversation("cust-1").id
    for text in ("还要等多久", "取消信用卡自动还款"):
        reply = say(service, text)
        assert "您是下一位" in reply and CANCELLED_TEXT not in reply  # today's queue message
        assert desk.open_handoff(conversation_id).status == "waiting"


def test_cancel_after_an_agent_accepted_does_not_cancel(setup) -> None:
    desk, service, hub = setup
    say(service, "转人工")
    conversation_id = service.store.find_conversation("cust-1").id
    handoff_id = desk.open_handoff(conversation_id).id
    agent = create_agent(desk.database, "wang", "小王", "correct horse battery", groups=["综合服务"])
    desk.accept(handoff_id, agent.id)
    hub.agents.clear()

    assert say(service, "不等了，取消转人工") == ""  # the agent holds the chat: the bot stays quiet
    handoff = desk.open_handoff(conversation_id)
    assert handoff.id == handoff_id and handoff.status == "assigned" and handoff.agent_id == agent.id
    assert service.store.find_conversation("cust-1").status == "human"
    assert any(m.get("type") == "message" and m.get("handoff_id") == handoff_id for m in hub.agents)  # relayed


def test_the_desk_cancels_only_a_waiting_hand_over(setup) -> None:
    desk, service, _ = setup
    say(service, "转人工")
    conversation_id = service.store.find_conversation("cust-1").id
    handoff_id = desk.open_handoff(conversation_id).id
    agent = create_agent(desk.database, "wang", "小王", "correct horse battery", groups=["综合服务"])
    desk.accept(handoff_id, agent.id)
    assert desk.customer_cancelled(conversation_id) is None  # the race lost: accepted first
    assert desk.open_handoff(conversation_id).status == "assigned"
