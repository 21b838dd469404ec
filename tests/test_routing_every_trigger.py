"""Issue 13: one routing decision per hand-over. Whatever triggers it - a plain 转人工, the offered button after
turns not understood, a failed identity check in the card-loss form, anger, a complaint, a sensitive word,
pressing 0 twice, too many turns not understood, a VIP's first one - a conversation about a lost card goes to
the card team, because the group comes from the conversation's topic (bot/handoff/routing.py). One conversation
of the bundled bot, driven through the real ConversationService and AgentDesk; an agent closes each hand-over
before the next trigger."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.agents import create_agent
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.storage import ConversationStore, Database
from bot.storage.models import Handoff

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday: every group is at work
SENDER = "card-loss-customer"
CARD_TEAM = "借记卡与账户"

# (what the customer says, the trigger's kind); the topic, a lost card, is raised first and never changes
TRIGGERS = [
    (["我的卡丢了", "转人工"], "request"),  # a plain request during the card-loss form
    (["zxcvb", "qwpoiu", "/request_human"], "request"),  # the 转人工 button the bot offers after two misses
    (["我的卡丢了", "6688", "1111", "2222", "3333"], "form_failed"),  # the ID check failed three times
    (["卡丢了都办不好，气死我了"], "anger"),
    (["你们这服务太差劲了"], "sensitive"),  # a complaint: a sensitive intent, but not the conversation's matter
    (["我的卡被偷了"], "sensitive"),  # a sensitive word
    (["0", "0"], "request"),  # "press 0 for a person", twice
    (["asdfgh", "qwerty", "zxcvbn"], "fallback"),  # handoff.max_fallbacks turns not understood
    (["VIP", "hjkl"], "vip"),  # a 白金卡 customer: the first turn not understood
]


@pytest.fixture
def bank(bundled_assistant, tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    config = bundled_assistant.config.handoff
    desk = AgentDesk(database, config, clock=lambda: NOON)
    service = ConversationService(bundled_assistant, ConversationStore(database), handoff=Handover(desk, config))
    agent = create_agent(database, "li", "小李", "correct horse battery", groups=[g.name for g in config.groups])
    return desk, service, agent.id


def test_every_trigger_routes_a_card_loss_conversation_to_the_card_team(bank) -> None:
    desk, service, agent_id = bank
    seen = []
    for lines, kind in TRIGGERS:
        for text in lines:
            if text == "VIP":
                service.store.link_customer("web", SENDER, "C0900", name="王芳", tier="白金卡", verified=True)
                continue
            service.handle(Inbound("web", SENDER, text, None))
        conversation = service.store.find_conversation(SENDER)
        handoff = desk.open_handoff(conversation.id)
        assert handoff is not None, f"{lines} did not hand over"
        seen.append((handoff.reason, handoff.group))
        assert (handoff.reason, handoff.group) == (kind, CARD_TEAM), f"{lines}: {seen}"
        desk.set_presence(agent_id, "online")  # takes the waiting chat
        desk.close(handoff.id, agent_id, "已解决")
        desk.set_presence(agent_id, "offline")
    with desk.database.session() as session:
        handoffs = session.query(Handoff).filter_by(conversation_id=conversation.id).all()
    assert len(handoffs) == len(TRIGGERS) and {h.group for h in handoffs} == {CARD_TEAM}
    assert {h.conversation_id for h in handoffs} == {conversation.id}  # one conversation throughout


def test_a_fraud_report_goes_to_the_fraud_team_whatever_follows(bank) -> None:
    desk, service, agent_id = bank
    service.handle(Inbound("web", "fraud", "我的卡被盗了", None))
    first = desk.open_handoff(service.store.find_conversation("fraud").id)
    assert (first.reason, first.group) == ("sensitive", "投诉与反诈")
    desk.set_presence(agent_id, "online")
    desk.close(first.id, agent_id, "已解决")
    desk.set_presence(agent_id, "offline")
    service.handle(Inbound("web", "fraud", "转人工", None))  # the same matter, asked for again
    again = desk.open_handoff(service.store.find_conversation("fraud").id)
    assert (again.reason, again.group) == ("request", "投诉与反诈")
