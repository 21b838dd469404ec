"""What the engine says on its own comes from the project's responses, with built-in ones in the project's
language: an English Rasa project never answers in Chinese, on any path where the engine writes its own text,
while the bundled bot keeps its Chinese wording. Also the engine's Rasa gaps for story-driven projects: the
policies decide what follows a form, a form without a validation action is logged every turn, and the
clarification menu offers intents that stories handle."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.assistant import Assistant
from bot.config import BotConfig, DialogueConfig
from bot.dialogue.engine import DialogueEngine, DialogueState
from bot.dialogue.responder import Reply, Responder
from bot.eval.stories import evaluate_test_stories
from bot.training_data import Example, TrainingData

sys.path.insert(0, str(Path(__file__).parent))
from test_story_dialogue import BANK, MOODBOT, Chat, project_copy, trained  # noqa: E402

CJK = re.compile(r"[\u4e00-\u9fff]")

# the bank example, plus: an action the domain declares but no code implements (it fails when run), a form
# slot without its utter_ask_<slot>, and an English cancel word (the default ones are Chinese)
CLOSE_ACCOUNT = """version: "3.1"
nlu:
- intent: close_account
  examples: |
    - close my account
    - I want to close my account
    - shut down my account
    - please close my bank account
    - how do I close my account
rules:
- rule: close an account
  steps:
  - intent: close_account
  - action: action_close_account
"""
BANK_SETTINGS = """dialogue:
  intent_answer_threshold: 0.6
  cancel_words: [cancel]
"""
MOOD_SETTINGS = "dialogue:\n  intent_answer_threshold: 0.7\n"


def edit(path: Path, *replacements: tuple[str, str]) -> None:
    text = path.read_text("utf-8")
    for old, new in replacements:
        assert old in text, f"{path.name} no longer has {old!r}"
        text = text.replace(old, new)
    path.write_text(text, "utf-8")


def shown(replies: list[Reply]) -> list[str]:
    """Everything a customer reads: texts and button titles."""
    return [text for r in replies for text in (r.text, *(b.title for b in r.buttons))]


def turn(chat: Chat, text: str) -> list[Reply]:
    parse, outcome = chat.assistant.respond(text, "web", chat.state, sender_id="tester", history=chat.history)
    chat.state = outcome.state
    chat.history += [{"event": "user", "text": text, "parse_data": dict(parse)}, *outcome.events]
    return outcome.replies


@pytest.fixture(scope="module")
def bank_en(tmp_path_factory: pytest.TempPathFactory) -> tuple[BotConfig, Assistant]:
    root = project_copy(BANK, tmp_path_factory.mktemp("bank_en"), extra={"data/close_account.yml": CLOSE_ACCOUNT,
                                                                        "bot.yml": BANK_SETTINGS})
    edit(root / "domain.yml", ("  - faq\n", "  - faq\n  - close_account\n"),
         ("  - validate_lost_card_form\n", "  - validate_lost_card_form\n  - action_close_account\n"),
         ('  utter_ask_card_last4:\n    - text: "Which card is it? Please type the last four digits of its '
          'number."\n', ""))
    return trained(root)


@pytest.fixture(scope="module")
def moodbot(tmp_path_factory: pytest.TempPathFactory) -> tuple[BotConfig, Assistant]:
    return trained(project_copy(MOODBOT, tmp_path_factory.mktemp("mood"), extra={"bot.yml": MOOD_SETTINGS}))


# --- an English project never answers in Chinese ------------------------------------------------------------


def test_every_text_the_engine_writes_itself_is_english_in_an_english_project(
        bank_en: tuple[BotConfig, Assistant]) -> None:
    agent = bank_en[1]
    said: dict[str, list[str]] = {}

    def record(chat: Chat, text: str) -> list[Reply]:
        replies = turn(chat, text)
        for reply in replies:
            said.setdefault(reply.source, []).extend(shown([reply]))
        return replies

    confused = Chat(agent)
    assert [r.source for r in record(confused, "asdf qwerty")] == ["utter_default"]
    assert [r.source for r in record(confused, "zzzz blorp")] == ["utter_offer_human"]  # second time: a person
    menu = record(Chat(agent), "balance card")
    assert menu[0].source == "clarify" and menu[0].buttons[-1].payload == "/request_human"
    form = Chat(agent)
    assert [r.source for r in record(form, "I lost my card")] == ["utter_ask_card_last4"]  # no response: built in
    assert [r.source for r in record(form, "when are you open")] == [
        "utter_branch_hours", "utter_branch_map", "lost_card_form", "utter_ask_card_last4"]  # answered, resumed
    assert [r.source for r in record(form, "cancel")] == ["utter_form_cancelled"]
    assert form.state.active_loop is None
    assert [r.source for r in record(Chat(agent), "close my account")] == ["action_close_account"]  # it failed
    several = record(Chat(agent), "I lost my card? also close my account")
    assert [r.source for r in several] == ["utter_ask_card_last4", "several_questions"]

    assert said["utter_ask_card_last4"][0] == "Please give me your card_last4."
    assert said["lost_card_form"] == ["Let's carry on where we were."]
    assert said["clarify"][-1] == "None of these, talk to a person"
    assert "close my account" in said["several_questions"][0]
    assert said["action_close_account"] == [
        "Sorry, I can't do that right now. Please try again later or ask for a person.", "Talk to a person"]
    assert not [text for texts in said.values() for text in texts if CJK.search(text)]


def test_the_moodbot_falls_back_clarifies_and_offers_a_person_in_english(moodbot: tuple[BotConfig, Assistant]) -> None:
    chat = Chat(moodbot[1])
    replies = [*turn(chat, "asdf"), *turn(chat, "blorp"), *turn(Chat(moodbot[1]), "sad happy")]
    assert [r.source for r in replies] == ["utter_default", "utter_offer_human", "clarify"]
    assert replies[1].buttons[0].title == "Talk to a person"
    assert not [text for text in shown(replies) if CJK.search(text)]


# --- the built-in responses, and the bundled bot's own wording ------------------------------------------------


def test_a_missing_response_falls_back_to_the_built_in_one_and_the_projects_own_wins() -> None:
    bare = TrainingData()
    chinese = Responder(bare, DialogueConfig())
    assert chinese.say("utter_continue_form", "web", {})[0].text == "我们继续刚才的业务。"  # the bundled bot's
    assert chinese.say("utter_ask_slot", "web", {"slot": "卡号"})[0].text == "请提供卡号。"
    assert chinese.utter("utter_continue_form", "web", {}) == []  # `utter` is the domain's alone, as in Rasa
    english = Responder(bare, DialogueConfig(), language="en")
    assert english.say("utter_action_failed", "web", {})[0].text.startswith("Sorry, I can't do that")
    own = Responder(TrainingData(responses={"utter_continue_form": [{"text": "Back to it."}]}), DialogueConfig())
    assert own.say("utter_continue_form", "web", {})[0].text == "Back to it."
    assert chinese.say("utter_no_such_thing", "web", {}) == []


def product_data(*intents: str) -> TrainingData:
    return TrainingData(examples=[Example(text=f"{name} 问题", intent=name) for name in intents],
                        responses={f"utter_{name}": [{"text": f"{name} 的答案"}] for name in intents},
                        rules=[{"rule": name, "steps": [{"intent": name}, {"action": f"utter_{name}"}]}
                               for name in intents])


def answer(data: TrainingData, text: str, intent: str) -> list[Reply]:
    config = DialogueConfig()
    engine = DialogueEngine(data, config, Responder(data, config))
    parse: dict[str, Any] = {"text": text, "intent": {"name": intent, "confidence": 0.97},
                             "intent_ranking": [{"name": intent, "confidence": 0.97}], "entities": []}
    return engine.turn(DialogueState(), parse, "web", "tester").replies


def test_the_credit_card_or_loan_question_is_only_for_a_project_with_both() -> None:
    both = answer(product_data("credit_card_limit", "loan_limit"), "额度多少", "credit_card_limit")
    assert [(r.source, r.text) for r in both] == [("clarify_product", "请问您问的是信用卡还是贷款？")]
    assert [b.payload for b in both[0].buttons] == ["信用卡额度多少", "贷款额度多少"]
    cards_only = answer(product_data("credit_card_limit", "card_fees"), "额度多少", "credit_card_limit")
    assert [(r.source, r.text) for r in cards_only] == [("utter_credit_card_limit", "credit_card_limit 的答案")]


# --- story-driven projects: forms and the menu ----------------------------------------------------------------


def test_a_form_without_a_validation_action_is_logged_each_turn_and_the_policies_say_what_follows(
        tmp_path: Path) -> None:
    """Without validate_lost_card_form the rule after the form (`action: lost_card_form`, `active_loop: null`)
    only matches when the form's run on the answering turn is in the tracker, as Rasa logs it."""
    root = project_copy(BANK, tmp_path)
    edit(root / "domain.yml", ("  - validate_lost_card_form\n", ""))
    config, agent = trained(root)
    chat = Chat(agent)
    assert chat.say("I lost my card") == ["utter_ask_card_last4"]
    assert chat.say("4821") == ["utter_card_status", "utter_ask_anything_else"]  # action_freeze_card says nothing
    answered = chat.history[[e.get("text") for e in chat.history].index("4821"):]
    assert [e["name"] for e in answered if e["event"] == "action"] == [
        "lost_card_form", "action_freeze_card", "utter_card_status", "utter_ask_anything_else"]
    result = evaluate_test_stories(config, agent, agent.model.data.test_stories)
    assert (result["passed"], result["failed"]) == (2, 0)


def test_a_story_says_what_follows_a_form_done_on_a_later_turn(tmp_path: Path) -> None:
    """No rule says what follows the form: the story does, as in Rasa (the engine asks the policies once the
    form is done, instead of running only rules' submit actions)."""
    story = """version: "3.1"
stories:
- story: a lost card, then nothing more
  steps:
  - intent: report_lost_card
  - action: lost_card_form
  - active_loop: lost_card_form
  - active_loop: null
  - action: action_freeze_card
  - action: utter_card_status
  - action: utter_ask_anything_else
"""
    root = project_copy(BANK, tmp_path, extra={"data/stories.yml": story})
    rules = (root / "data" / "rules.yml").read_text("utf-8")
    (root / "data" / "rules.yml").write_text(rules[: rules.index("- rule: freeze the card")], "utf-8")
    chat = Chat(trained(root)[1])
    chat.say("I lost my card")
    assert chat.say("4821") == ["utter_card_status", "utter_ask_anything_else"]


def test_the_menu_offers_an_intent_only_a_story_handles(bank_en: tuple[BotConfig, Assistant],
                                                         moodbot: tuple[BotConfig, Assistant]) -> None:
    """check_balance and mood_unhappy have stories, no rules: unsure of them, the bot offers them."""
    chat = Chat(bank_en[1])
    menu = turn(chat, "balance card")
    assert "/check_balance" in [b.payload for b in menu[0].buttons]
    assert [r.source for r in turn(chat, "/check_balance")] == ["action", "utter_ask_anything_else"]
    mood = turn(Chat(moodbot[1]), "sad happy")
    assert "/mood_unhappy" in [b.payload for b in mood[0].buttons]
