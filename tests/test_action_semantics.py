"""Custom actions behave as in Rasa 3.6, whichever way they run: every test runs once with the actions
in-process (`InProcessActionRunner`) and once on a real rasa_sdk action server (`RemoteActionRunner`), over
the same actions module (tests/fixtures/semantics_actions). Reminders run through the real conversation
service on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bot.assistant import Assistant
from bot.config import ActionEndpointConfig, DialogueConfig
from bot.dialogue.actions import ActionRunner, InProcessActionRunner, RemoteActionRunner
from bot.dialogue.engine import DialogueEngine, DialogueState, TurnOutcome
from bot.dialogue.responder import Button, Responder
from bot.dialogue.service import ConversationService
from bot.storage import ConversationStore, Database
from bot.training_data import TrainingData
from bot.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tests.fixtures.semantics_actions"


def _rule(intent: str, *actions: str) -> dict[str, Any]:
    return {"rule": intent, "steps": [{"intent": intent}, *({"action": a} for a in actions)]}


def _entity_slot(entity: str, **mapping: Any) -> dict[str, Any]:
    return {"type": "text", "mappings": [{"type": "from_entity", "entity": entity, **mapping}]}


FORM = "sem_form"
DATA = TrainingData(
    responses={
        "utter_sem_done": [{"text": "{name}您好，尾号{card_tail}的卡已处理。"}],
        "utter_sem_menu": [{"text": "还有什么可以帮您？", "buttons": [{"title": "查余额", "payload": "/balance"}]}],
        "utter_sem_topic": [{"text": "您问的是{topic}。"}],
        "utter_sem_hello": [{"text": "您好{name}。"}],
        "utter_restart": [{"text": "已为您重新开始。"}],
        "utter_ask_account": [{"text": "账户？"}],
        "utter_ask_sem_form_account": [{"text": "请提供转出账户。"}],
        "utter_ask_amount": [{"text": "金额？"}],
        "utter_ask_note": [{"text": "请填写备注。"}],
        "utter_sem_transferred": [{"text": "已向{account}转账{amount}元，备注：{note}。"}],
        "utter_sem_chitchat": [{"text": "我是小智。"}],
    },
    rules=[
        _rule("sem_clear", "action_sem_clear_card"), _rule("sem_rich", "action_sem_rich"),
        _rule("sem_restart", "action_sem_restart"), _rule("restart", "action_restart"),
        _rule("sem_reset", "action_sem_reset"), _rule("sem_pause", "action_sem_pause"),
        _rule("sem_forget", "action_sem_revert"), _rule("sem_undo", "action_sem_undo"),
        _rule("sem_followup", "action_sem_followup"), _rule("sem_intro", "utter_sem_hello"),
        _rule("sem_remind_me", "action_sem_remind"), _rule("sem_reminded", "action_sem_reminded"),
        _rule("sem_cancel_name", "action_sem_cancel_name"), _rule("sem_cancel_intent", "action_sem_cancel_intent"),
        _rule("sem_transfer", FORM), _rule("sem_chitchat", "utter_sem_chitchat"),
        {"rule": "submit", "condition": [{"active_loop": FORM}],
         "steps": [{"action": FORM}, {"active_loop": None}, {"action": "utter_sem_transferred"}]},
    ],
    slots={
        "name": _entity_slot("name"),
        "card_tail": _entity_slot("card_tail"),
        "topic": {"type": "text", "mappings": [{"type": "custom"}]},
        "note": {"type": "text", "mappings": [{"type": "from_text", "conditions": [
            {"active_loop": FORM, "requested_slot": "note"}]}]},
        "lang": {"type": "text", "initial_value": "zh", "mappings": [{"type": "custom"}]},
        "account": _entity_slot("account"),
        "amount": _entity_slot("amount"),
        "transfer_kind": {"type": "text", "mappings": [{"type": "from_trigger_intent", "intent": "sem_transfer",
                                                        "value": "online", "conditions": [{"active_loop": FORM}]}]},
        "from_city": _entity_slot("city", role="from"),
        "to_city": _entity_slot("city", role="to"),
        "first_size": _entity_slot("size", group="1"),
        "any_city": _entity_slot("city", not_intent=["sem_chitchat"]),
        "agreed": {"type": "bool", "mappings": [{"type": "from_intent", "intent": "sem_affirm", "value": True}]},
        "customer_id": {"type": "text", "mappings": [{"type": "custom"}]},
    },
    forms={FORM: ["account", "amount", "note"]},
    actions=["action_sem_clear_card", "action_sem_rich", "action_sem_restart", "action_sem_reset", "action_sem_pause",
             "action_sem_resume", "action_sem_revert", "action_sem_undo", "action_sem_followup", "action_sem_remind",
             "action_sem_reminded", "action_sem_cancel_name", "action_sem_cancel_intent",
             "action_ask_sem_form_amount"],
)
DATA.form_ignored_intents = {FORM: ["sem_chitchat"]}  # type: ignore[attr-defined]  # Rasa 3's form option


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def action_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m rasa_sdk` serving the test actions module, as a Rasa user would run it."""
    port = free_port()
    log = (tmp_path_factory.mktemp("semantics_server") / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", PACKAGE, "--port", str(port)],
                              cwd=ROOT, env={**os.environ, "SANIC_HOST": "127.0.0.1"}, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"action server did not start; see {log.name}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()


@pytest.fixture(params=["in_process", "action_server"])
def path(request: pytest.FixtureRequest) -> str:
    return request.param


def make_runner(path: str, request: pytest.FixtureRequest) -> ActionRunner:
    if path == "in_process":
        return InProcessActionRunner(PACKAGE)
    return RemoteActionRunner(request.getfixturevalue("action_server"))


class Chat:
    """A conversation with the engine, one understood message at a time."""

    def __init__(self, runner: ActionRunner) -> None:
        config = DialogueConfig()
        self.engine = DialogueEngine(DATA, config, Responder(DATA, config, random.Random(0)), runner)
        self.state, self.history = DialogueState(), []
        self.outcome: TurnOutcome | None = None

    def say(self, intent: str, text: str | None = None, **entities: Any) -> list[str]:
        found = [{"entity": name.split("__")[0], "value": value, "start": 0, "end": 0,
                  **_role_or_group(name)} for name, value in entities.items()]
        parse = {"text": text or intent, "intent": {"name": intent, "confidence": 1.0},
                 "intent_ranking": [{"name": intent, "confidence": 1.0}], "entities": found}
        self.outcome = self.engine.turn(self.state, parse, "web", "tester", self.history)
        self.history += [{"event": "user", "text": parse["text"], "parse_data": parse}, *self.outcome.events]
        self.state = self.outcome.state
        return [r.text for r in self.outcome.replies]


def _role_or_group(name: str) -> dict[str, str]:
    """`city__role_from` is a city entity with role "from"; `size__group_1` one in group "1"."""
    _, _, tag = name.partition("__")
    kind, _, value = tag.partition("_")
    return {kind: value} if kind else {}


@pytest.fixture
def chat(path: str, request: pytest.FixtureRequest) -> Chat:
    return Chat(make_runner(path, request))


# ---- messages: rendered before the events apply, keyword arguments first -------------------------------

def test_messages_are_rendered_before_the_action_events_apply(chat: Chat) -> None:
    chat.say("sem_intro", name="王先生")
    replies = chat.say("sem_clear", card_tail="1234")
    # name: the slot as it was before the action cleared it; card_tail: the keyword argument beats the slot
    assert replies == ["王先生您好，尾号6688的卡已处理。"]
    assert chat.state.slots["card_tail"] is None and chat.state.slots["name"] is None


def test_text_image_custom_attachment_and_buttons_are_kept(chat: Chat) -> None:
    chat.say("sem_rich")
    bill, menu = chat.outcome.replies  # a response the domain lacks is skipped, as Rasa does
    assert bill.text == "这是您的账单" and bill.image == "https://bank.example/bill.png"
    assert bill.custom == {"type": "bill", "month": "2026-11"} and bill.attachment == "bill.pdf"
    assert bill.buttons == [Button(title="分期", payload="/instalment")]
    assert menu.text == "还有什么可以帮您？" and menu.source == "utter_sem_menu"
    assert [b.title for b in menu.buttons] == ["查余额", "转人工"]  # the message's buttons add to the response's


# ---- forms: how a slot is asked for, and Rasa 3 slot mappings -------------------------------------------

def test_form_asks_with_the_forms_own_response_then_a_custom_ask_action(chat: Chat) -> None:
    assert chat.say("sem_transfer") == ["请提供转出账户。"]  # utter_ask_sem_form_account before utter_ask_account
    assert chat.state.slots["transfer_kind"] == "online"  # from_trigger_intent: the intent that started the form
    # action_ask_sem_form_amount before utter_ask_amount; it sees requested_slot already set
    assert chat.say("inform", account="6222") == ["请问转账金额是多少？（已请求：amount）"]
    assert chat.say("inform", amount="500") == ["请填写备注。"]
    assert chat.say("inform", text="房租") == ["已向6222转账500元，备注：房租。"]
    assert chat.state.active_loop is None


def test_ignored_intents_and_conditions_while_a_form_runs(chat: Chat) -> None:
    chat.say("sem_transfer")
    replies = chat.say("sem_chitchat", account="6222")  # an intent the form ignores fills none of its slots
    assert "我是小智。" in replies and chat.state.slots.get("account") is None
    chat.say("inform", account="6222")
    assert chat.state.slots.get("note") is None  # from_text waits until its condition's slot is requested


def test_roles_groups_intents_and_custom_mappings(chat: Chat) -> None:
    chat.say("sem_travel", city__role_from="北京", city__role_to="上海", size__group_1="大", customer_id="C9")
    slots = chat.state.slots
    assert (slots["from_city"], slots["to_city"], slots["first_size"]) == ("北京", "上海", "大")
    assert "any_city" not in slots  # an entity with a role fills only a mapping naming that role
    assert "customer_id" not in slots  # a custom mapping is filled by actions only
    chat.say("sem_chitchat", city="广州")
    assert "any_city" not in chat.state.slots  # not_intent
    chat.say("sem_ask", city="广州")
    assert chat.state.slots["any_city"] == "广州"
    chat.say("sem_affirm")
    assert chat.state.slots["agreed"] is True  # from_intent


# ---- events --------------------------------------------------------------------------------------------

def test_restarted_resets_everything(chat: Chat) -> None:
    chat.say("sem_intro", name="王先生")
    chat.say("sem_transfer")
    replies = chat.say("sem_restart")
    assert replies == []  # mid-form: no "let's continue", nothing else runs after the restart
    assert chat.state == DialogueState(slots={"lang": "zh"})  # slots at their initial values, no form, no counters
    assert chat.outcome.events[-1]["event"] == "restart"


def test_all_slots_reset_keeps_initial_values(chat: Chat) -> None:
    chat.say("sem_intro", name="王先生")
    chat.say("sem_reset")
    assert chat.state.slots == {"lang": "zh"} and chat.state.latest_intent == "sem_reset"


def test_a_paused_conversation_runs_no_action_until_restart(chat: Chat) -> None:
    chat.say("sem_pause")
    assert chat.state.paused
    assert chat.say("sem_intro", name="王先生") == [] and chat.outcome.events == []
    assert chat.say("restart") == ["已为您重新开始。"]
    assert not chat.state.paused and chat.say("sem_intro", name="王先生") == ["您好王先生。"]


def test_user_utterance_reverted_undoes_the_message(chat: Chat) -> None:
    chat.say("sem_intro", name="王先生")
    replies = chat.say("sem_forget", name="李女士")
    assert replies == ["这句我先不算。"]  # what was said stays said
    assert chat.state.slots["name"] == "王先生"  # the slot the message set is undone
    assert chat.state.latest_intent == "sem_intro"  # the message no longer counts


def test_action_reverted_undoes_the_action(chat: Chat) -> None:
    chat.say("sem_undo")
    assert chat.state.slots.get("topic") is None and chat.state.slots["note"] == "撤销后"


def test_followup_action_runs_next(chat: Chat) -> None:
    assert chat.say("sem_followup") == ["您问的是还款。"]


def test_reminder_events_are_handed_to_the_service(chat: Chat) -> None:
    chat.say("sem_remind_me")
    (scheduled,) = chat.outcome.reminders
    assert (scheduled["event"], scheduled["name"], scheduled["intent"]) == ("reminder", "pay", "sem_reminded")
    chat.say("sem_cancel_name")
    assert chat.outcome.reminders == [{"event": "cancel_reminder", "timestamp": None, "intent": None,
                                       "entities": None, "name": "pay"}]


def test_both_paths_give_identical_replies_and_events(request: pytest.FixtureRequest) -> None:
    turns = [("sem_intro", {"name": "王先生"}), ("sem_clear", {"card_tail": "1234"}), ("sem_rich", {}),
             ("sem_transfer", {}), ("inform", {"account": "6222"}), ("sem_forget", {}), ("sem_undo", {}),
             ("sem_followup", {}), ("sem_remind_me", {}), ("sem_restart", {})]
    seen = []
    for path in ("in_process", "action_server"):
        chat, said = Chat(make_runner(path, request)), []
        for intent, entities in turns:
            chat.say(intent, **entities)
            events = [{k: v for k, v in e.items() if k != "date_time"} for e in chat.outcome.events]
            said.append(([r.model_dump() for r in chat.outcome.replies], events))
        seen.append(said)
    assert seen[0] == seen[1]


# ---- reminders through the real service -----------------------------------------------------------------

@pytest.fixture
def assistant(path: str, request: pytest.FixtureRequest, minibot_assistant: Assistant) -> Assistant:
    """The fixture bot's NLU with this module's domain and actions, in-process or on the action server."""
    endpoint = ActionEndpointConfig(url=request.getfixturevalue("action_server")) if path == "action_server" else None
    config = minibot_assistant.config.model_copy(update={"actions_package": PACKAGE, "action_endpoint": endpoint})
    return Assistant(dataclasses.replace(minibot_assistant.model, data=DATA), config)


def service_for(assistant: Assistant, url: str) -> ConversationService:
    return ConversationService(assistant, ConversationStore(Database(url)))


def bot_texts(service: ConversationService, sender: str) -> list[str]:
    conversation = service.store.find_conversation_of("rest", sender)
    assert conversation is not None
    return [e["text"] for e in service.store.events(conversation.id) if e["event"] == "bot"]


def test_a_reminder_fires_when_due_and_survives_a_restart(assistant: Assistant, database_url: str) -> None:
    service = service_for(assistant, database_url)
    assert service.trigger_intent("rest", "r-1", "sem_remind_me").replies[0]["text"] == "好的，稍后提醒您。"
    assert service.reminders.pending("rest", "r-1") == ["pay"]
    assert service.fire_due_reminders() == 0  # not yet
    time.sleep(1.2)
    restarted = service_for(assistant, database_url)  # a new process: the reminder is in the database
    assert restarted.fire_due_reminders() == 1 and service.fire_due_reminders() == 0  # once only
    assert bot_texts(restarted, "r-1")[-1] == "提醒您：信用卡还款"
    users = [e for e in restarted.store.events(restarted.store.find_conversation_of("rest", "r-1").id)
             if e["event"] == "user"]
    assert users[-1]["text"] == "EXTERNAL: sem_reminded"
    assert users[-1]["parse_data"]["entities"] == [{"entity": "topic", "value": "信用卡还款"}]


def test_a_reminder_is_killed_by_a_later_message_and_cancelled_by_name_intent_or_restart(
        assistant: Assistant, database_url: str) -> None:
    from bot.dialogue.service import Inbound

    service = service_for(assistant, database_url)
    service.trigger_intent("rest", "r-2", "sem_remind_me", {"kill": "yes"})
    service.handle(Inbound("rest", "r-2", "你好", "m-1"))  # the customer wrote after it was scheduled
    time.sleep(1.2)
    assert service.fire_due_reminders() == 0 and "提醒您：信用卡还款" not in bot_texts(service, "r-2")
    for cancel in ("sem_cancel_name", "sem_cancel_intent", "sem_restart"):
        service.trigger_intent("rest", "r-3", "sem_remind_me")
        assert service.reminders.pending("rest", "r-3") == ["pay"]
        service.trigger_intent("rest", "r-3", cancel)
        assert service.reminders.pending("rest", "r-3") == [], cancel


def test_the_server_fires_reminders_while_it_runs(assistant: Assistant, minibot_assistant: Assistant,
                                                  tmp_path: Path) -> None:
    config = minibot_assistant.config.model_copy(update={"root": tmp_path})
    app = create_app(config, assistant=assistant, database=Database(f"sqlite:///{tmp_path / 'bot.db'}"))
    with TestClient(app):
        service: ConversationService = app.state.conversations
        service.trigger_intent("rest", "r-4", "sem_remind_me")
        deadline = time.monotonic() + 6
        while "提醒您：信用卡还款" not in bot_texts(service, "r-4") and time.monotonic() < deadline:
            time.sleep(0.2)
    assert bot_texts(service, "r-4")[-1] == "提醒您：信用卡还款"

