"""Stories drive the dialogue: a Rasa project's trained policies choose the next actions, end to end through
NLU, the engine and real rasa_sdk actions, and its test stories are scored the way `rasa test` does."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.assistant import Assistant
from bot.config import BotConfig
from bot.dialogue.engine import DialogueState
from bot.eval.stories import evaluate_test_stories
from bot.model import train
from bot.project import load_project
from bot.training_data import TrainingDataError

ROOT = Path(__file__).resolve().parents[1]
MOODBOT = Path(__file__).parent / "fixtures" / "rasa_moodbot"
BANK = ROOT / "examples" / "rasa_bank_en"
CHINESE = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Chat:
    """One conversation, its history kept as the conversation service stores it."""

    assistant: Assistant
    state: DialogueState = field(default_factory=DialogueState)
    history: list[dict[str, Any]] = field(default_factory=list)

    def say(self, text: str) -> list[str]:
        """The names of the responses (or "action") the bot answered with."""
        return [source for source, _ in self.exchange(text)]

    def exchange(self, text: str) -> list[tuple[str, str]]:
        parse, outcome = self.assistant.respond(text, "web", self.state, sender_id="tester", history=self.history)
        self.state = outcome.state
        self.history += [{"event": "user", "text": text, "parse_data": dict(parse)}, *outcome.events,
                         *({"event": "bot", "text": r.text} for r in outcome.replies)]
        return [(r.source, r.text) for r in outcome.replies]


def project_copy(source: Path, tmp: Path, config_yml: str | None = None, extra: dict[str, str] | None = None) -> Path:
    root = tmp / source.name
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("models", ".bot"))
    if config_yml is not None:
        (root / "config.yml").write_text(config_yml, encoding="utf-8")
    for name, text in (extra or {}).items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def trained(root: Path) -> tuple[BotConfig, Assistant]:
    config = load_project(root, environ={}).config
    return config, Assistant.load(config, train(config))


def policies_config(policies: str) -> str:
    return f"recipe: default.v1\nlanguage: en\npipeline:\npolicies:\n{policies}"


@pytest.fixture(scope="module")
def moodbot(tmp_path_factory: pytest.TempPathFactory) -> tuple[BotConfig, Assistant]:
    return trained(project_copy(MOODBOT, tmp_path_factory.mktemp("mood")))


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[BotConfig, Assistant]:
    if not BANK.is_dir():
        pytest.skip("examples/rasa_bank_en is not in this checkout")
    return trained(project_copy(BANK, tmp_path_factory.mktemp("bank")))


# --- the mood bot: `rasa init`'s project -------------------------------------------------------------------


def test_the_sad_path_of_the_stories(moodbot: tuple[BotConfig, Assistant]) -> None:
    chat = Chat(moodbot[1])
    assert chat.say("hello") == ["utter_greet"]
    assert chat.say("I am sad") == ["utter_cheer_up", "utter_did_that_help"]  # two actions, then it listens
    assert chat.say("yes") == ["utter_happy"]
    actions = [e["name"] for e in chat.history if e["event"] == "action"]
    assert actions == ["utter_greet", "utter_cheer_up", "utter_did_that_help", "utter_happy"]


def test_the_same_message_gets_the_answer_its_story_gives_at_that_point(moodbot: tuple[BotConfig, Assistant]) -> None:
    """"no" after "Did that help you?" ends the conversation (sad path 2), as only the history tells."""
    chat = Chat(moodbot[1])
    chat.say("hello")
    chat.say("I am sad")
    assert chat.say("no") == ["utter_goodbye"]
    happy = Chat(moodbot[1])
    happy.say("hello")
    assert happy.say("I feel wonderful") == ["utter_happy"]


def test_a_path_no_story_covers_is_generalised_by_the_trained_policy(moodbot: tuple[BotConfig, Assistant]) -> None:
    """No story greets after the goodbye of sad path 2: the next-action classifier (TEDPolicy's stand-in)
    still greets back, where memoization of the whole conversation knows nothing."""
    chat = Chat(moodbot[1])
    for text in ("hello", "I am sad", "no"):
        chat.say(text)
    assert chat.say("hello") == ["utter_greet"]
    predicted = moodbot[1].model.policies
    assert predicted is not None and "TEDPolicy" in [p.name for p in predicted.policies]


def test_rules_answer_anywhere_in_a_story(moodbot: tuple[BotConfig, Assistant]) -> None:
    chat = Chat(moodbot[1])
    chat.say("hello")
    chat.say("I am sad")
    assert chat.say("are you a bot?") == ["utter_iamabot"]
    assert chat.say("bye") == ["utter_goodbye"]


def test_a_message_no_story_or_rule_continues_gets_utter_default_and_is_forgotten(
        moodbot: tuple[BotConfig, Assistant]) -> None:
    """After the bot challenge no story goes on with "I am sad": the fallback action answers (never silence)
    and, as Rasa's ActionDefaultFallback, reverts the message, so the next one is read without it."""
    chat = Chat(moodbot[1])
    chat.say("hello")
    chat.say("are you a bot?")
    replies = chat.exchange("I am sad")
    assert [source for source, _ in replies] == ["utter_default"]
    assert replies[0][1].startswith("Sorry") and not CHINESE.search(replies[0][1])
    assert {"event": "rewind"} in chat.history and "action_default_fallback" in str(chat.history)


def test_memoization_with_max_history_covers_a_branch_the_whole_conversation_does_not(tmp_path: Path) -> None:
    """A rule's detour before the greeting matches no story in full; with max_history 1 the last turn does."""
    whole = project_copy(MOODBOT, tmp_path / "whole", policies_config("  - name: MemoizationPolicy\n"
                                                                      "  - name: RulePolicy\n"))
    recent = project_copy(MOODBOT, tmp_path / "recent", policies_config("  - name: MemoizationPolicy\n"
                                                                        "    max_history: 1\n"
                                                                        "  - name: RulePolicy\n"))
    conversation = ["are you a bot?", "hello", "I am sad", "yes"]
    chat = Chat(trained(whole)[1])
    assert [chat.say(text) for text in conversation[:2]] == [["utter_iamabot"], ["utter_default"]]
    chat = Chat(trained(recent)[1])
    assert [chat.say(text) for text in conversation] == [
        ["utter_iamabot"], ["utter_greet"], ["utter_cheer_up", "utter_did_that_help"], ["utter_happy"]]


CONTRADICTING_STORY = """version: "3.1"
stories:
- story: goodbye makes it happy
  steps:
  - intent: greet
  - action: utter_greet
  - intent: goodbye
  - action: utter_happy
"""


def test_a_rule_wins_over_a_story_that_says_otherwise(tmp_path: Path) -> None:
    """Both predict with confidence 1: the RulePolicy's priority decides, as in Rasa."""
    policies = ("  - name: MemoizationPolicy\n  - name: RulePolicy\n    check_for_contradictions: false\n")
    root = project_copy(MOODBOT, tmp_path, policies_config(policies),
                        {"data/contradiction.yml": CONTRADICTING_STORY})
    chat = Chat(trained(root)[1])
    assert chat.say("hello") == ["utter_greet"]
    assert chat.say("bye") == ["utter_goodbye"]
    # the story is memorised: with the rule's priority below memoization's, the story's action wins
    lowered = project_copy(MOODBOT, tmp_path / "lowered", policies_config(policies + "    priority: 1\n"),
                           {"data/contradiction.yml": CONTRADICTING_STORY})
    chat = Chat(trained(lowered)[1])
    assert [chat.say("hello"), chat.say("bye")] == [["utter_greet"], ["utter_happy"]]


def test_training_refuses_a_story_contradicting_a_rule(tmp_path: Path) -> None:
    root = project_copy(MOODBOT, tmp_path, extra={"data/contradiction.yml": CONTRADICTING_STORY})
    config = load_project(root, environ={}).config
    with pytest.raises(TrainingDataError, match="goodbye makes it happy.*utter_goodbye"):
        train(config)


def test_the_trained_policies_are_saved_with_the_model_and_loaded(moodbot: tuple[BotConfig, Assistant]) -> None:
    config, agent = moodbot
    directory = next(config.path(config.models_dir).glob("*"))
    assert (directory / "policies.json").is_file()
    assert agent.model.metadata["policies"] == ["MemoizationPolicy", "RulePolicy", "TEDPolicy"]
    assert agent.model.metadata["n_stories"] == 3
    again = Assistant.load(config, directory)  # from disk, not from the training run
    chat = Chat(again)
    assert [chat.say(t) for t in ("hello", "I am sad", "yes")] == [
        ["utter_greet"], ["utter_cheer_up", "utter_did_that_help"], ["utter_happy"]]


def test_the_bundled_bot_trains_no_policies() -> None:
    from bot.config import load_config
    from bot.model import uses_policies
    from bot.training_data import load_training_data

    config = load_config(ROOT / "config.yml")
    assert not uses_policies(config, load_training_data(config.path(config.nlu_data)))


# --- the Harbour Bank example: custom actions, a form, retrieval intents -----------------------------------


def test_a_story_with_a_custom_rasa_sdk_action(bank: tuple[BotConfig, Assistant]) -> None:
    chat = Chat(bank[1])
    replies = chat.exchange("what's my balance")
    assert replies == [("action", "Your checking balance is 1,520.75 pounds."),
                       ("utter_ask_anything_else", "Is there anything else I can help with?")]
    assert {"event": "slot", "name": "balance", "value": 1520.75} in chat.history  # the action's SlotSet
    assert chat.say("no thanks") == ["utter_goodbye"]


def test_a_story_with_a_slot_set_from_an_entity(bank: tuple[BotConfig, Assistant]) -> None:
    chat = Chat(bank[1])
    replies = chat.exchange("how much is in my savings account")
    assert replies[0] == ("action", "Your savings balance is 8,300.00 pounds.")
    assert chat.say("yes") == ["utter_how_can_i_help"]


def test_a_form_started_by_a_rule_then_its_submit_actions(bank: tuple[BotConfig, Assistant]) -> None:
    chat = Chat(bank[1])
    assert chat.say("I lost my card") == ["utter_ask_card_last4"]
    replies = chat.exchange("4821")
    assert replies[0] == ("utter_card_status", "Your card ending 4821 is frozen: nobody can pay with it. A new "
                                               "card is on its way.")
    assert chat.say("no") == ["utter_goodbye"]


def test_a_retrieval_intent_gets_its_own_response(bank: tuple[BotConfig, Assistant]) -> None:
    assert Chat(bank[1]).say("how much does a new card cost") == ["utter_faq/card_fees"]
    assert Chat(bank[1]).say("what is the contactless limit") == ["utter_faq/contactless_limit"]


def test_an_english_project_never_answers_in_chinese(bank: tuple[BotConfig, Assistant]) -> None:
    chat = Chat(bank[1])
    said = [text for message in ("hello", "asdf qwerty", "zzzz blorp", "yes", "what's my balance", "yes",
                                 "when are you open", "how much does a new card cost", "bye")
            for _, text in chat.exchange(message)]
    assert said and not [text for text in said if CHINESE.search(text)]


# --- test stories ---------------------------------------------------------------------------------------------


def test_the_moodbots_test_stories_pass(moodbot: tuple[BotConfig, Assistant]) -> None:
    config, agent = moodbot
    result = evaluate_test_stories(config, agent, agent.model.data.test_stories)
    assert result == {"stories": 1, "passed": 1, "failed": 0, "action_accuracy": 1.0, "intent_accuracy": 1.0,
                      "failed_stories": []}


def test_a_failed_test_story_comes_back_annotated_as_rasa_writes_it(moodbot: tuple[BotConfig, Assistant]) -> None:
    config, agent = moodbot
    story = {"story": "sad, then happy", "steps": [
        {"user": "hello", "intent": "greet"}, {"action": "utter_greet"},
        {"user": "I am sad", "intent": "mood_great"}, {"action": "utter_happy"},
        {"user": "yes", "intent": "affirm"}, {"action": "utter_happy"}]}
    result = evaluate_test_stories(config, agent, [story, *agent.model.data.test_stories])
    assert (result["stories"], result["passed"], result["failed"]) == (2, 1, 1)
    assert result["intent_accuracy"] == 0.8  # of 5 messages, "I am sad" is not mood_great
    # 6 action positions: the one expected after "I am sad" and the extra one predicted are wrong
    assert result["action_accuracy"] == round(4 / 6, 4)
    assert result["failed_stories"] == ["""- story: sad, then happy
  steps:
  - intent: greet
    user: |-
      hello
  - action: utter_greet
  - intent: mood_great  # predicted: mood_unhappy: I am sad
    user: |-
      I am sad
  - action: utter_happy  # predicted: utter_cheer_up
  - action: action_listen  # predicted: utter_did_that_help
  - intent: affirm
    user: |-
      yes
  - action: utter_happy"""]


def test_the_bank_test_stories_run_with_entities_forms_and_actions(bank: tuple[BotConfig, Assistant]) -> None:
    config, agent = bank
    result = evaluate_test_stories(config, agent, agent.model.data.test_stories)
    # every story passes with every action right: the lost card (form, validation, custom action, conditional
    # response), and "no thanks" after a savings balance, which no training story has with the entity (the
    # trained policy generalises from the answer to the bot's question)
    assert (result["stories"], result["passed"], result["intent_accuracy"], result["action_accuracy"]) == \
        (2, 2, 1.0, 1.0), result["failed_stories"]
