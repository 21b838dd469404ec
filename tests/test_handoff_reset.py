"""Issue 13: after a hand-over every counter of the bot's attempt starts from zero, in one place
(`DialogueState.start_afresh`), so a customer back with the bot after an agent closed the chat is not offered a
person, handed over again or asked to confirm on the strength of what happened before; and the bot offers a
person `handoff.max_fallbacks - 1` turns not understood in a row (not a number of its own)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot.config import HandoffConfig
from bot.dialogue.engine import OFFER_HUMAN_AFTER, DialogueEngine, DialogueState, offer_threshold
from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.agents import create_agent
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.storage import ConversationStore, Database

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SENDER = "returning"


@pytest.fixture
def bank(bundled_assistant, tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    config = bundled_assistant.config.handoff
    desk = AgentDesk(database, config, clock=lambda: NOON)
    service = ConversationService(bundled_assistant, ConversationStore(database), handoff=Handover(desk, config))
    agent = create_agent(database, "li", "小李", "correct horse battery", groups=[g.name for g in config.groups])
    return desk, service, agent.id


def say(service: ConversationService, *lines: str) -> list[dict]:
    replies: list[dict] = []
    for text in lines:
        replies = service.handle(Inbound("web", SENDER, text, None)).replies
    return replies


def dialogue(service: ConversationService) -> DialogueState:
    return DialogueState.model_validate(service.store.find_conversation(SENDER).state["dialogue"])


def close_the_chat(desk: AgentDesk, service: ConversationService, agent_id: int) -> None:
    handoff = desk.open_handoff(service.store.find_conversation(SENDER).id)
    assert handoff is not None
    desk.set_presence(agent_id, "online")
    desk.close(handoff.id, agent_id, "已解决")
    desk.set_presence(agent_id, "offline")


def test_a_customer_back_with_the_bot_after_an_agent_closed_the_chat_starts_from_zero(bank) -> None:
    desk, service, agent_id = bank
    assert say(service, "zxcvb", "qwpoiu")[-1]["source"] == "utter_offer_human"  # two misses: a person offered
    say(service, "/request_human")
    state = dialogue(service)
    assert (state.fallbacks, state.human_offered, state.slots.get("handoff_requested")) == (0, False, None)
    close_the_chat(desk, service, agent_id)

    replies = say(service, "asdfgh")  # one miss after the chat: the first, not the third
    assert [r["source"] for r in replies] == ["utter_default"]
    assert dialogue(service).fallbacks == 1
    assert desk.open_handoff(service.store.find_conversation(SENDER).id) is None


def test_a_failed_form_is_forgotten_after_the_hand_over(bank) -> None:
    desk, service, agent_id = bank
    say(service, "我的卡丢了", "6688", "1111", "2222", "3333")  # the identity check failed three times
    state = dialogue(service)
    assert state.active_loop is None and state.loop_slots == []
    assert not any(state.slots.get(name) for name in ("identity_failed", "id_attempts", "card_tail", "id_last4"))
    close_the_chat(desk, service, agent_id)

    replies = say(service, "我的卡丢了")  # a fresh start of the form, not an immediate second hand-over
    assert [r["source"] for r in replies] == ["utter_card_loss_start", "utter_ask_card_tail"]
    assert desk.open_handoff(service.store.find_conversation(SENDER).id) is None


def test_pressing_zero_after_the_chat_does_not_pair_with_the_zero_before_it(bank) -> None:
    desk, service, agent_id = bank
    say(service, "0", "0")
    close_the_chat(desk, service, agent_id)
    say(service, "0")
    assert desk.open_handoff(service.store.find_conversation(SENDER).id) is None


def test_start_afresh_resets_every_counter_and_keeps_the_form_for_the_agent() -> None:
    state = DialogueState(slots={"card_tail": "6688", "id_attempts": 2.0, "identity_failed": True,
                                 "handoff_requested": "report_card_loss", "requested_slot": "id_last4", "city": "上海"},
                          active_loop="card_loss_form", loop_slots=["card_tail", "id_attempts", "identity_failed"],
                          fallbacks=2, human_offered=True, latest_text="0", latest_intent="nlu_fallback")
    reset = state.start_afresh(["identity_failed"])
    assert set(reset) == {"card_tail", "id_attempts", "identity_failed", "handoff_requested", "requested_slot"}
    assert state.handed_over_task == {"form": "card_loss_form", "slots": {"card_tail": "6688", "id_attempts": 2.0,
                                                                          "identity_failed": True}}
    assert (state.fallbacks, state.human_offered, state.active_loop, state.latest_text) == (0, False, None, None)
    assert state.slots["city"] == "上海"  # what the customer told about themselves outside the form stays


def test_the_offer_of_a_person_follows_handoff_max_fallbacks(bundled_assistant) -> None:
    assert offer_threshold(HandoffConfig().max_fallbacks) == OFFER_HUMAN_AFTER == 2  # config.yml: 3 misses
    assert offer_threshold(1) == 1 and offer_threshold(5) == 4
    model, config = bundled_assistant.model, bundled_assistant.config
    patient = DialogueEngine(model.data, config.dialogue, bundled_assistant.responder,
                             offer_human_after=offer_threshold(4))
    state, sources = DialogueState(), []
    for text in ("zxcvb", "qwpoiu", "mnbvcx"):
        outcome = patient.turn(state, dict(bundled_assistant.parse(text)), "web", "patient")
        state = outcome.state
        sources.append([r.source for r in outcome.replies])
    assert state.fallbacks == 3
    assert "utter_offer_human" not in sources[0] + sources[1] and sources[2] == ["utter_offer_human"]


def test_the_assistant_takes_the_offer_threshold_from_its_config(bundled_assistant) -> None:
    from bot.assistant import Assistant

    config = bundled_assistant.config
    patient = config.model_copy(update={"handoff": config.handoff.model_copy(update={"max_fallbacks": 5})})
    assert Assistant(bundled_assistant.model, patient).engine.offer_human_after == 4
    assert bundled_assistant.engine.offer_human_after == offer_threshold(config.handoff.max_fallbacks)
