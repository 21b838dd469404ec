"""Rasa's default actions and loop semantics, on small English projects written for these tests: the policies'
tracker drops the customer's turns inside a form as Rasa's `applied_events` does (so a Rasa 2 style "submit"
rule and a story after the form match), `action_deactivate_loop`, `action_back`, `action_two_stage_fallback`,
`action_session_start` with slots carried over, and English defaults for cancelling a form."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.assistant import Assistant
from bot.config import BotConfig
from bot.dialogue.policies.tracker import applied_events
from bot.dialogue.service import ConversationService, Inbound, TurnResult
from bot.model import train
from bot.project import load_project
from bot.storage import ConversationStore, Database
from bot.storage.models import Conversation

sys.path.insert(0, str(Path(__file__).parent))
from test_story_dialogue import Chat  # noqa: E402

CONFIG = """recipe: default.v1
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: DIETClassifier
  - name: FallbackClassifier
    threshold: 0.5
policies:
  - name: MemoizationPolicy
  - name: RulePolicy
"""

DOMAIN = """version: "3.1"
intents:
  - greet
  - request_table
  - inform
  - thanks
  - stop
  - check_hours
  - affirm
entities:
  - cuisine
  - people
slots:
  cuisine:
    type: text
    influence_conversation: false
    mappings:
    - type: from_entity
      entity: cuisine
  people:
    type: text
    influence_conversation: false
    mappings:
    - type: from_entity
      entity: people
responses:
  utter_greet:
  - text: Hello! I can book you a table.
  utter_ask_cuisine:
  - text: Which cuisine?
  utter_ask_people:
  - text: For how many people?
  utter_submit:
  - text: Booked a {cuisine} table for {people}.
  utter_welcome:
  - text: You're welcome, enjoy your meal!
  utter_hours:
  - text: We are open from noon to midnight.
  utter_stopped:
  - text: OK, no booking then.
  utter_back:
  - text: Let's go back a step.
forms:
  table_form:
    required_slots:
    - cuisine
    - people
"""

NLU = """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello
    - hi
    - good morning
    - hey there
- intent: request_table
  examples: |
    - book a table
    - I want to book a table
    - reserve a table please
    - can I get a table
- intent: inform
  examples: |
    - [italian](cuisine)
    - [chinese](cuisine) food
    - [mexican](cuisine) please
    - for [two](people)
    - [four](people) people
    - we are [two](people)
- intent: thanks
  examples: |
    - thanks
    - thank you
    - thanks a lot
    - cheers
- intent: stop
  examples: |
    - I don't want to continue
    - let's not do this
    - I changed my mind
    - no booking after all
- intent: check_hours
  examples: |
    - when are you open
    - opening hours
    - what time do you open
    - are you open tonight
- intent: affirm
  examples: |
    - yes
    - indeed
    - correct
    - that's right
"""

# a Rasa 2 formbot's rules: the form starts on request, and one "submit" rule says what follows it
RULES = """version: "3.1"
rules:
- rule: greet
  steps:
  - intent: greet
  - action: utter_greet
- rule: hours
  steps:
  - intent: check_hours
  - action: utter_hours
- rule: activate the form
  steps:
  - intent: request_table
  - action: table_form
  - active_loop: table_form
- rule: submit the form
  condition:
  - active_loop: table_form
  steps:
  - action: table_form
  - active_loop: null
  - slot_was_set:
    - requested_slot: null
  - action: utter_submit
- rule: stop the form, Rasa's way
  condition:
  - active_loop: table_form
  steps:
  - intent: stop
  - action: action_deactivate_loop
  - active_loop: null
  - action: utter_stopped
"""

# a story that goes on after the form: "thanks" is answered only here
STORIES = """version: "3.1"
stories:
- story: book, then thanks
  steps:
  - intent: request_table
  - action: table_form
  - active_loop: table_form
  - active_loop: null
  - action: utter_submit
  - intent: thanks
  - action: utter_welcome
"""


def write_project(root: Path, files: dict[str, str] | None = None) -> Path:
    texts = {"config.yml": CONFIG, "domain.yml": DOMAIN, "data/nlu.yml": NLU, "data/rules.yml": RULES,
             "data/stories.yml": STORIES, **(files or {})}
    for name, text in texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def trained(root: Path) -> tuple[BotConfig, Assistant]:
    config = load_project(root, environ={}).config
    return config, Assistant.load(config, train(config))


def user(intent: str) -> dict[str, Any]:
    return {"event": "user", "parse_data": {"intent": {"name": intent}, "entities": []}}


def act(name: str) -> dict[str, Any]:
    return {"event": "action", "name": name}


def loop(name: str | None) -> dict[str, Any]:
    return {"event": "active_loop", "name": name}


def slot(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}


@pytest.fixture(scope="module")
def formbot(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    return trained(write_project(tmp_path_factory.mktemp("formbot")))[1]


def customer_turns(history: list[dict[str, Any]]) -> list[str]:
    """The intents of the messages the policies' tracker still holds (a clarified message is read as one)."""
    events = [{**e, "event": "user"} if e["event"] == "user_clarified" else e for e in history]
    return [e["parse_data"]["intent"]["name"] for e in applied_events(events) if e["event"] == "user"]


# --- the policies' tracker: a form's inner turns are not dialogue turns ---------------------------------------


def test_a_form_run_again_drops_the_customers_answers_but_keeps_its_slots() -> None:
    events = [user("request_table"), act("table_form"), loop("table_form"), slot("requested_slot", "cuisine"),
              act("action_listen"), user("inform"), act("table_form"), slot("cuisine", "italian"),
              slot("requested_slot", None), loop(None), act("utter_submit")]
    assert applied_events(events) == [
        user("request_table"), act("table_form"), loop("table_form"), slot("requested_slot", "cuisine"),
        slot("cuisine", "italian"), slot("requested_slot", None), loop(None), act("utter_submit")]
    rejected = [*events[:6], {"event": "action_execution_rejected", "name": "table_form"}, act("utter_hours"),
                act("table_form")]
    assert [e.get("name") for e in applied_events(rejected) if e["event"] == "action"][-2:] == [
        "utter_hours", "table_form"]  # the unhappy path keeps what answered the customer


def test_the_submit_rule_and_a_story_say_what_follows_a_form_done_on_a_later_turn(formbot: Assistant) -> None:
    chat = Chat(formbot)
    assert chat.say("book a table") == ["utter_ask_cuisine"]
    assert chat.say("italian") == ["utter_ask_people"]
    assert chat.exchange("for two") == [("utter_submit", "Booked a italian table for two.")]
    assert chat.say("thanks") == ["utter_welcome"]  # only the story answers thanks, after the form
    assert customer_turns(chat.history) == ["request_table", "thanks"]
    assert Chat(formbot).say("thanks") == ["utter_default"]  # not after a form: no story


# --- action_deactivate_loop, English cancel words, action_back -------------------------------------------------


def test_a_rule_to_action_deactivate_loop_stops_the_form_and_keeps_what_it_collected(formbot: Assistant) -> None:
    chat = Chat(formbot)
    chat.say("book a table")
    chat.say("italian")
    assert chat.say("I changed my mind") == ["utter_stopped"]
    assert chat.state.active_loop is None
    assert chat.state.slots["requested_slot"] is None and chat.state.slots["cuisine"] == "italian"
    last = max(i for i, e in enumerate(chat.history) if e["event"] == "user")
    assert [e["name"] for e in chat.history[last:] if e["event"] == "action"] == [
        "action_deactivate_loop", "utter_stopped"]


def test_an_english_project_cancels_a_form_with_english_words_by_default(formbot: Assistant) -> None:
    chat = Chat(formbot)
    chat.say("book a table")
    assert chat.exchange("cancel") == [
        ("utter_form_cancelled", "OK, I've cancelled that. Is there anything else I can help with?")]
    assert chat.state.active_loop is None


def test_back_forgets_the_last_message_and_its_answer(formbot: Assistant) -> None:
    chat = Chat(formbot)
    assert chat.say("hello") == ["utter_greet"]
    assert chat.say("book a table") == ["utter_ask_cuisine"]
    assert chat.say("/back") == ["utter_back"]
    assert chat.state.active_loop is None and chat.state.slots.get("requested_slot") is None
    assert customer_turns(chat.history) == ["greet"]  # "book a table" and /back no longer count
    assert chat.say("book a table") == ["utter_ask_cuisine"]


# --- action_two_stage_fallback ------------------------------------------------------------------------------

TWO_STAGE_RULE = RULES + """- rule: ask what a message not understood means
  steps:
  - intent: nlu_fallback
  - action: action_two_stage_fallback
  - active_loop: action_two_stage_fallback
"""


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    return trained(write_project(tmp_path_factory.mktemp("two_stage"), {"data/rules.yml": TWO_STAGE_RULE}))[1]


def test_the_two_stage_fallback_asks_and_an_affirmed_intent_goes_on_as_if_said(two_stage: Assistant) -> None:
    chat = Chat(two_stage)
    asked = chat.assistant.respond("asdf qwerty", "web", chat.state, history=chat.history)[1].replies
    assert [r.source for r in asked] == ["utter_ask_affirmation"]
    assert asked[0].text == "Did you mean one of these?"
    assert asked[0].buttons[-1].model_dump() == {"title": "No", "payload": "/out_of_scope"}
    assert "/inform" in [b.payload for b in asked[0].buttons]  # the likeliest intent after nlu_fallback
    assert chat.say("asdf qwerty") == ["utter_ask_affirmation"]
    assert chat.state.active_loop == "action_two_stage_fallback"
    assert chat.say("/request_table") == ["utter_ask_cuisine"]  # as if the customer had asked for a table
    assert chat.state.active_loop == "table_form"
    assert customer_turns(chat.history) == ["request_table"]  # the unclear exchange is forgotten


def test_a_denied_suggestion_asks_to_rephrase_and_the_rephrased_message_is_answered(two_stage: Assistant) -> None:
    chat = Chat(two_stage)
    assert chat.say("asdf qwerty") == ["utter_ask_affirmation"]
    assert chat.say("/out_of_scope") == ["utter_ask_rephrase"]
    assert chat.say("when are you open") == ["utter_hours"]
    assert chat.state.active_loop is None


@pytest.mark.parametrize("messages", [["zzzz blorp"], ["/out_of_scope", "zzzz blorp", "/out_of_scope"]])
def test_a_second_failure_gives_up_with_the_default_fallback(two_stage: Assistant, messages: list[str]) -> None:
    chat = Chat(two_stage)
    chat.say("asdf qwerty")
    answers = [chat.say(text) for text in messages]
    assert answers[-1] == ["utter_default"] and chat.state.active_loop is None
    assert [e["name"] for e in chat.history if e["event"] == "action"][-1] == "action_default_fallback"


def test_the_two_stage_fallback_as_the_core_fallback_action(tmp_path: Path) -> None:
    config = CONFIG.replace("  - name: RulePolicy\n", "  - name: RulePolicy\n    core_fallback_action_name: "
                                                        "action_two_stage_fallback\n")
    agent = trained(write_project(tmp_path, {"config.yml": config}))[1]
    chat = Chat(agent)
    assert chat.say("asdf qwerty") == ["utter_ask_affirmation"]
    assert chat.say("/check_hours") == ["utter_hours"]


# --- action_session_start -----------------------------------------------------------------------------------

SESSION_ACTIONS = '''from rasa_sdk import Action
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet


class ActionSessionStart(Action):
    """Keeps only the cuisine of the previous session, and says so."""

    def name(self):
        return "action_session_start"

    async def run(self, dispatcher, tracker, domain):
        cuisine = tracker.get_slot("cuisine")
        dispatcher.utter_message(text=f"Welcome back! Still fancy {cuisine}?")
        return [SessionStarted(), SlotSet("cuisine", cuisine), ActionExecuted("action_listen")]
'''


def session_service(assistant: Assistant, database: Path) -> ConversationService:
    """Every message opens a new conversation (no silence is short enough), so each is a new session."""
    store = ConversationStore(Database(f"sqlite:///{database}"), session_expiry=dt.timedelta(0))
    return ConversationService(assistant, store)


def two_sessions(assistant: Assistant, database: Path, sender: str) -> tuple[TurnResult, list[dict[str, Any]]]:
    """Book half a table ("italian" while the form asks for the people), then come back in a new session."""
    service = session_service(assistant, database)
    chat = Chat(assistant)
    chat.say("book a table")  # the form's first session, played directly: its state is stored below
    chat.say("italian")
    first = service.handle(Inbound("rest", sender, "hello", None))
    with service.store.database.session() as session, session.begin():
        session.get(Conversation, first.conversation_id).state = {"dialogue": chat.state.model_dump()}
    second = service.handle(Inbound("rest", sender, "when are you open", None))
    assert second.conversation_id != first.conversation_id
    return second, service.store.events(second.conversation_id)


def test_a_new_session_carries_the_slots_over_by_rasas_default(formbot: Assistant, tmp_path: Path) -> None:
    assert formbot.engine.carry_over_slots  # no session_config in the domain: Rasa's default
    result, events = two_sessions(formbot, tmp_path / "bot.db", "carry")
    assert [r["source"] for r in result.replies] == ["utter_hours"]
    assert [e["event"] for e in events][:4] == ["session_started", "user", "action", "slot"]
    assert events[2]["name"] == "action_session_start"
    assert {"name": "cuisine", "value": "italian"} in [{k: e[k] for k in ("name", "value")}
                                                        for e in events if e["event"] == "slot"]


def test_a_domain_that_says_no_carries_nothing(tmp_path: Path) -> None:
    domain = DOMAIN + "session_config:\n  session_expiration_time: 60\n  carry_over_slots_to_new_session: false\n"
    agent = trained(write_project(tmp_path / "project", {"domain.yml": domain}))[1]
    assert not agent.engine.starts_sessions
    _, events = two_sessions(agent, tmp_path / "bot.db", "fresh")
    assert [e["event"] for e in events] == ["session_started", "user", "action", "bot"]


def test_the_projects_own_action_session_start_runs_with_the_previous_slots(tmp_path: Path) -> None:
    domain = DOMAIN + "actions:\n  - action_session_start\n"
    root = write_project(tmp_path / "project", {"domain.yml": domain, "actions/__init__.py": "",
                                                "actions/actions.py": SESSION_ACTIONS})
    agent = trained(root)[1]
    result, events = two_sessions(agent, tmp_path / "bot.db", "own")
    assert [r["text"] for r in result.replies] == ["Welcome back! Still fancy italian?",
                                                   "We are open from noon to midnight."]
    slots = [(e["name"], e["value"]) for e in events if e["event"] == "slot"]
    assert slots == [("cuisine", "italian")]  # its choice: requested_slot is not carried


def test_the_bundled_bots_sessions_start_afresh(bundled_assistant: Assistant) -> None:
    assert not bundled_assistant.engine.carry_over_slots and not bundled_assistant.engine.starts_sessions
