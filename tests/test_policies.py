"""Rasa 3 stories and rules -> dialogue policies (bot/dialogue/policies), on a small mood bot written here."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ruamel.yaml import YAML

from bot.dialogue.policies import (
    DomainError,
    InvalidRulesError,
    PolicyConfigError,
    PolicyDomain,
    PolicyEnsemble,
    Prediction,
    StoryError,
    evaluate_held_out,
)
from bot.dialogue.policies.graph import rule_trackers, story_trackers
from bot.dialogue.policies.tracker import current_states
from bot.yaml_io import plain

DOMAIN: dict[str, Any] = {
    "intents": ["greet", "goodbye", "affirm", "deny", "mood_great", "mood_unhappy", "bot_challenge",
                "request_card", "inform", "check_balance", "start"],
    "entities": ["card_type"],
    "actions": ["utter_greet", "utter_happy", "utter_cheer_up", "utter_did_that_help", "utter_goodbye",
                "utter_iamabot", "utter_card_ordered", "action_show_balance", "utter_login", "utter_intro"],
    "slots": {
        "card_type": {"type": "categorical", "values": ["credit", "debit"]},
        "verified": {"type": "bool"},
        "name": {"type": "text"},
        "nickname": {"type": "text", "influence_conversation": False},
        "amount": {"type": "float", "min_value": 0, "max_value": 1000},
        "cards": {"type": "list"},
        "note": {"type": "any", "influence_conversation": False},
    },
    "forms": {"card_form": {"required_slots": ["card_type"]}},
}

MOOD_BOT = """
stories:
- story: happy path
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_great
  - action: utter_happy
- story: sad path 1
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_unhappy
  - action: utter_cheer_up
  - action: utter_did_that_help
  - intent: affirm
  - action: utter_happy
- story: sad path 2
  steps:
  - intent: greet
  - action: utter_greet
  - intent: mood_unhappy
  - action: utter_cheer_up
  - action: utter_did_that_help
  - intent: deny
  - action: utter_goodbye
rules:
- rule: say goodbye anytime
  steps:
  - intent: goodbye
  - action: utter_goodbye
- rule: say I am a bot anytime
  steps:
  - intent: bot_challenge
  - action: utter_iamabot
"""


def load(text: str) -> Any:
    """YAML as the training-data loader hands it over: ruamel round-trip, then plain containers."""
    return plain(YAML(typ="rt").load(text))


def user(intent: str, *entities: str, text: str | None = None) -> dict[str, Any]:
    return {"event": "user", "text": text or intent, "parse_data": {
        "intent": {"name": intent, "confidence": 0.9}, "entities": [{"entity": e, "value": e} for e in entities]}}


def act(name: str) -> dict[str, Any]:
    return {"event": "action", "name": name}


def slot(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}


def said(*intents: str) -> list[dict[str, Any]]:
    """A conversation start: the user says each intent in turn (the bot's answers are added by the tests)."""
    events: list[dict[str, Any]] = []
    for intent in intents:
        events += [act("action_listen"), user(intent)]
    return events


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["name"] if e["event"] == "action" else
            f"{e['event']}:{e.get('parse_data', {}).get('intent', {}).get('name', e.get('name'))}={e.get('value', '')}"
            .rstrip("=") for e in events]


@pytest.fixture(scope="module")
def mood() -> dict[str, Any]:
    return load(MOOD_BOT)


@pytest.fixture(scope="module")
def domain() -> PolicyDomain:
    return PolicyDomain.from_rasa(DOMAIN)


@pytest.fixture(scope="module")
def default_ensemble(mood: dict[str, Any]) -> PolicyEnsemble:
    return PolicyEnsemble.train(mood["stories"], mood["rules"], DOMAIN)


# --- steps -> training trackers ------------------------------------------------------------------------------

def test_a_story_becomes_one_tracker_with_rasas_implicit_listens(mood: dict[str, Any], domain: PolicyDomain) -> None:
    trackers = story_trackers(mood["stories"][:1], domain)
    assert [t.name for t in trackers] == ["happy path"]
    assert names(trackers[0].events) == ["action_listen", "user:greet", "utter_greet", "action_listen",
                                         "user:mood_great", "utter_happy", "action_listen"]


def test_user_text_entities_slots_and_loops_become_events(domain: PolicyDomain) -> None:
    story = load("""
    - story: order
      steps:
      - user: I want a credit card
        intent: request_card
        entities:
        - card_type: credit
        - name
      - slot_was_set:
        - card_type: credit
        - name
        - cards
      - action: card_form
      - active_loop: card_form
      - active_loop: null
    """)
    events = story_trackers(story, domain)[0].events
    assert events[1]["text"] == "I want a credit card"
    assert events[1]["parse_data"]["entities"] == [{"entity": "card_type", "value": "credit"},
                                                   {"entity": "name", "value": "name"}]
    assert events[2:5] == [slot("card_type", "credit"), slot("name", "filled"), slot("cards", ["filled"])]
    assert events[6:8] == [{"event": "active_loop", "name": "card_form"}, {"event": "active_loop", "name": None}]


def test_or_steps_expand_into_one_tracker_per_alternative(domain: PolicyDomain) -> None:
    story = load("""
    - story: greet or start, then how are you
      steps:
      - or:
        - intent: greet
        - intent: start
      - action: utter_greet
      - or:
        - slot_was_set:
          - verified: true
        - slot_was_set:
          - verified: false
      - action: utter_happy
    """)
    trackers = story_trackers(story, domain)
    assert len(trackers) == 4
    assert {(t.events[1]["parse_data"]["intent"]["name"], t.events[3]["value"]) for t in trackers} == {
        ("greet", True), ("greet", False), ("start", True), ("start", False)}


CHECKPOINTS = """
- story: greeting
  steps:
  - intent: greet
  - action: utter_greet
  - checkpoint: asked_mood
- story: fine
  steps:
  - checkpoint: asked_mood
  - intent: mood_great
  - action: utter_happy
- story: not fine
  steps:
  - checkpoint: asked_mood
  - intent: mood_unhappy
  - action: utter_cheer_up
"""


def test_a_checkpoint_continues_with_every_story_starting_with_it(domain: PolicyDomain) -> None:
    trackers = story_trackers(load(CHECKPOINTS), domain)
    assert sorted(t.name for t in trackers) == ["greeting > fine", "greeting > not fine"]
    fine = next(t for t in trackers if t.name == "greeting > fine")
    assert names(fine.events) == ["action_listen", "user:greet", "utter_greet", "action_listen",
                                  "user:mood_great", "utter_happy", "action_listen"]


def test_stories_starting_with_a_checkpoint_are_not_conversation_starts(domain: PolicyDomain) -> None:
    trackers = story_trackers(load(CHECKPOINTS), domain)
    assert all(t.events[1]["parse_data"]["intent"]["name"] == "greet" for t in trackers)


def test_a_checkpoint_in_the_middle_splits_the_story(domain: PolicyDomain) -> None:
    stories = load(CHECKPOINTS)
    stories[0]["steps"] += [{"intent": "affirm"}, {"action": "utter_happy"}]  # greeting > asked_mood > affirm…
    stories.append({"story": "link", "steps": [{"checkpoint": "asked_mood"}, {"action": "utter_did_that_help"},
                                               {"checkpoint": "end"}]})
    stories.append({"story": "end", "steps": [{"checkpoint": "end"}, {"intent": "deny"},
                                              {"action": "utter_goodbye"}]})
    trackers = story_trackers(stories, domain)
    assert "greeting > link > end" in {t.name for t in trackers}
    # the part after the middle checkpoint starts at asked_mood, not at the conversation start
    assert not any(t.events[1]["parse_data"]["intent"]["name"] == "affirm" for t in trackers)


def test_a_checkpoint_cycle_ends_instead_of_looping(domain: PolicyDomain) -> None:
    stories = load("""
    - story: start
      steps:
      - intent: greet
      - action: utter_greet
      - checkpoint: again
    - story: loop
      steps:
      - checkpoint: again
      - intent: mood_unhappy
      - action: utter_cheer_up
      - checkpoint: again
    """)
    trackers = story_trackers(stories, domain)
    assert [t.name for t in trackers] == ["start > loop"]
    assert names(trackers[0].events).count("utter_cheer_up") == 1


@pytest.mark.parametrize(("stories", "message"), [
    ([{"story": "s", "steps": [{"intent": "greet"}, {"acton": "utter_greet"}]}], "story 's' step 2"),
    ([{"story": "s", "steps": [{"user": "hello"}]}], "needs an 'intent:'"),
    ([{"story": "s", "steps": [{"intent": "greet", "action": "utter_greet"}]}], "story 's' step 1"),
    ([{"story": "s", "steps": [{"slot_was_set": [{"colour": "red"}]}]}], "slot 'colour' is not in the domain"),
    ([{"story": "s", "steps": [{"or": [{"action": "utter_greet"}]}]}], "each 'or' alternative"),
    ([{"story": "s", "steps": "greet"}], "story 's': 'steps' must be a non-empty list"),
    ([{"steps": [{"intent": "greet"}]}], "needs a 'story:' name"),
    ([{"story": "s", "steps": [{"intent": "greet"}, {"checkpoint": "nowhere"}]}], "no story starts with it"),
    ([{"story": "s", "steps": [{"checkpoint": "never"}, {"intent": "greet"}]}], "never reached"),
])
def test_malformed_stories_name_the_story_and_step(stories: list[dict[str, Any]], message: str,
                                                   domain: PolicyDomain) -> None:
    with pytest.raises(StoryError, match=message):
        story_trackers(stories, domain)


def test_rules_take_conditions_and_at_most_one_user_message(domain: PolicyDomain) -> None:
    rules = load("""
    - rule: balance when verified
      condition:
      - slot_was_set:
        - verified: true
      - active_loop: null
      steps:
      - intent: check_balance
      - action: action_show_balance
      wait_for_user_input: false
    """)
    tracker = rule_trackers(rules, domain)[0]
    assert names(tracker.events) == ["slot:verified=True", "active_loop:should_not_be_set", "action_listen",
                                     "user:check_balance", "action_show_balance"]
    two_users = [{"rule": "r", "steps": [{"intent": "greet"}, {"action": "utter_greet"}, {"intent": "affirm"}]}]
    with pytest.raises(StoryError, match="rule 'r': a rule may contain at most one user message"):
        rule_trackers(two_users, domain)


# --- dialogue state ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "features"), [
    ("name", "Ann", [1.0]),  # text: set or not
    ("name", None, None),
    ("verified", True, [1.0, 1.0]),  # bool: set, value
    ("verified", False, [1.0, 0.0]),
    ("card_type", "Credit", [1.0, 0.0, 0.0]),  # categorical: one-hot, case-insensitive
    ("card_type", "gold", [0.0, 0.0, 1.0]),  # unknown values are __other__
    ("amount", 250, [1.0, 0.25]),  # float: scaled to min..max
    ("amount", 5000, [1.0, 1.0]),  # capped at max_value
    ("cards", [], None),  # list: non-empty or not
    ("cards", ["visa"], [1.0]),
    ("nickname", "Bo", None),  # influence_conversation: false
    ("note", {"any": 1}, None),  # any slots never influence the conversation
])
def test_slots_are_featurised_as_rasa_does(name: str, value: Any, features: list[float] | None,
                                            domain: PolicyDomain) -> None:
    state = current_states([slot(name, value)], domain)[-1]
    assert state.get("slots", {}).get(name) == features


@pytest.mark.parametrize(("spec", "message"), [
    ({"type": "categorical"}, "slot 's': a categorical slot needs a non-empty list 'values'"),
    ({"type": "any", "influence_conversation": True}, "slot 's': an 'any' slot cannot influence"),
    ({"type": "colour"}, "slot 's': type 'colour' is not one of"),
])
def test_unusable_slots_are_refused_by_name(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(DomainError, match=message):
        PolicyDomain.from_rasa({"slots": {"s": spec}})


def test_a_state_holds_the_user_message_previous_action_slots_and_loop(domain: PolicyDomain) -> None:
    events = [act("action_listen"), user("request_card", "card_type", "ignored_entity"), act("card_form"),
              {"event": "active_loop", "name": "card_form"}, slot("verified", True)]
    assert current_states(events, domain)[-1] == {
        "user": {"intent": "request_card", "entities": ["card_type"]},
        "prev_action": {"action_name": "card_form"},
        "slots": {"verified": [1.0, 1.0]},
        "active_loop": {"name": "card_form"},
    }


@pytest.mark.parametrize(("tail", "expected"), [
    ([{"event": "restart"}], {}),
    ([{"event": "session_started"}, slot("verified", True), act("action_session_start")],
     {"slots": {"verified": [1.0, 1.0]}}),
    ([{"event": "rewind"}], {"user": {"intent": "greet"}, "prev_action": {"action_name": "utter_greet"},
                             "slots": {"verified": [1.0, 1.0]}}),
    ([{"event": "undo"}], {"user": {"intent": "mood_great"}, "prev_action": {"action_name": "action_listen"},
                           "slots": {"verified": [1.0, 1.0]}}),
    ([{"event": "reset_slots"}], {"user": {"intent": "mood_great"}, "prev_action": {"action_name": "utter_happy"}}),
    ([{"event": "followup", "name": "utter_greet"}], {"user": {"intent": "mood_great"},
                                                       "prev_action": {"action_name": "utter_happy"},
                                                       "slots": {"verified": [1.0, 1.0]}}),
])
def test_live_tracker_events_apply_with_rasas_semantics(tail: list[dict[str, Any]], expected: dict[str, Any],
                                                        domain: PolicyDomain) -> None:
    events = [act("action_listen"), user("greet"), slot("verified", True), act("utter_greet"),
              act("action_listen"), user("mood_great"), act("utter_happy")]
    assert current_states(events + tail, domain)[-1] == expected


# --- memoization ---------------------------------------------------------------------------------------------

def train(data: dict[str, Any], *configs: dict[str, Any]) -> PolicyEnsemble:
    return PolicyEnsemble.train(data.get("stories", []), data.get("rules", []), DOMAIN, list(configs))


def test_memoization_repeats_a_story_with_full_confidence(mood: dict[str, Any]) -> None:
    ensemble = train(mood, {"name": "MemoizationPolicy"})
    events = said("greet")
    assert ensemble.predict(events) == Prediction("utter_greet", 1.0, "MemoizationPolicy")
    events += [act("utter_greet"), *said("mood_unhappy"), act("utter_cheer_up")]
    assert ensemble.predict(events).action == "utter_did_that_help"


def test_memoization_matches_only_the_last_max_history_states(mood: dict[str, Any]) -> None:
    # the conversation began differently from every story; its last two states are those of sad path 1
    events = [*said("bot_challenge"), act("utter_iamabot"), *said("mood_unhappy"), act("utter_cheer_up"),
              act("utter_did_that_help"), *said("affirm")]
    assert train(mood, {"name": "MemoizationPolicy", "max_history": 2}).predict(events) == Prediction(
        "utter_happy", 1.0, "MemoizationPolicy")
    # Rasa 3's default max_history is None: the whole conversation must be a story's
    assert train(mood, {"name": "MemoizationPolicy"}).predict(events).policy != "MemoizationPolicy"


def test_augmented_memoization_forgets_earlier_turns_and_slots(mood: dict[str, Any]) -> None:
    earlier = [slot("verified", True), *said("bot_challenge"), act("utter_iamabot"), *said("greet")]
    plain_memo = train(mood, {"name": "MemoizationPolicy"})
    augmented = train(mood, {"name": "AugmentedMemoizationPolicy"})
    assert plain_memo.predict(earlier).policy != "MemoizationPolicy"
    assert augmented.predict(earlier) == Prediction("utter_greet", 1.0, "AugmentedMemoizationPolicy")


def test_memoization_forgets_histories_that_stories_continue_differently(mood: dict[str, Any]) -> None:
    stories = mood["stories"] + load("""
    - story: sad path, answered by a goodbye
      steps:
      - intent: greet
      - action: utter_greet
      - intent: mood_unhappy
      - action: utter_goodbye
    """)
    ensemble = train({"stories": stories}, {"name": "MemoizationPolicy"})
    assert ensemble.predict([*said("greet"), act("utter_greet"), *said("mood_unhappy")]).policy == "fallback"


# --- rules ---------------------------------------------------------------------------------------------------

def test_a_rule_applies_anywhere_and_then_waits_for_the_user(default_ensemble: PolicyEnsemble) -> None:
    events = [*said("greet"), act("utter_greet"), *said("bot_challenge")]
    assert default_ensemble.predict(events) == Prediction("utter_iamabot", 1.0, "RulePolicy")
    assert default_ensemble.predict([*events, act("utter_iamabot")]) == Prediction(
        "action_listen", 1.0, "RulePolicy")


def test_a_rule_continuing_without_the_user_does_not_predict_listen() -> None:
    rules = load("""
    - rule: cheer up and ask
      steps:
      - intent: mood_unhappy
      - action: utter_cheer_up
      - action: utter_did_that_help
    - rule: cheer up, then the next action
      steps:
      - intent: deny
      - action: utter_cheer_up
      wait_for_user_input: false
    """)
    ensemble = train({"rules": rules}, {"name": "RulePolicy"})
    events = [*said("deny"), act("utter_cheer_up")]
    assert ensemble.predict(events) == Prediction("action_default_fallback", 0.3, "RulePolicy")
    assert ensemble.predict([*said("mood_unhappy"), act("utter_cheer_up")]).action == "utter_did_that_help"


def test_conversation_start_rules_apply_only_in_the_first_user_turn() -> None:
    rules = load("""
    - rule: introduce the bot once
      conversation_start: true
      steps:
      - intent: start
      - action: utter_intro
    """)
    ensemble = train({"rules": rules}, {"name": "RulePolicy"})
    assert ensemble.predict(said("start")) == Prediction("utter_intro", 1.0, "RulePolicy")
    later = [*said("greet"), act("utter_greet"), *said("start")]
    assert ensemble.predict(later).action == "action_default_fallback"
    assert ensemble.predict([*later, {"event": "restart"}, *said("start")]).action == "utter_intro"


@pytest.mark.parametrize(("intent", "action"), [
    ("restart", "action_restart"), ("back", "action_back"), ("session_start", "action_session_start")])
def test_rasas_default_rules_answer_restart_back_and_session_start(intent: str, action: str) -> None:
    ensemble = train({}, {"name": "RulePolicy"})
    assert ensemble.predict([*said("greet"), act("utter_greet"), *said(intent)]) == Prediction(
        action, 1.0, "RulePolicy")


def test_the_most_specific_rule_wins_and_conditions_must_hold() -> None:
    rules = load("""
    - rule: balance needs a login
      steps:
      - intent: check_balance
      - action: utter_login
    - rule: balance once verified
      condition:
      - slot_was_set:
        - verified: true
      steps:
      - intent: check_balance
      - action: action_show_balance
    """)
    ensemble = train({"rules": rules}, {"name": "RulePolicy"})
    assert ensemble.predict(said("check_balance")).action == "utter_login"
    assert ensemble.predict([slot("verified", False), *said("check_balance")]).action == "utter_login"
    assert ensemble.predict([slot("verified", True), *said("check_balance")]).action == "action_show_balance"


def test_a_null_slot_in_a_rule_means_the_slot_must_not_be_set() -> None:
    rules = load("""
    - rule: ask for a name first
      condition:
      - slot_was_set:
        - name: null
      steps:
      - intent: greet
      - action: utter_login
    """)
    ensemble = train({"rules": rules}, {"name": "RulePolicy"})
    assert ensemble.predict(said("greet")).action == "utter_login"
    assert ensemble.predict([slot("name", "Ann"), *said("greet")]).action == "action_default_fallback"


FORM_RULES = """
- rule: start the card form
  steps:
  - intent: request_card
  - action: card_form
  - active_loop: card_form
- rule: submit the card form
  condition:
  - active_loop: card_form
  steps:
  - action: card_form
  - active_loop: null
  - slot_was_set:
    - requested_slot: null
  - action: utter_card_ordered
"""


def test_a_form_loop_runs_until_it_is_done_then_the_submit_rule_applies() -> None:
    ensemble = train({"rules": load(FORM_RULES)}, {"name": "RulePolicy"})
    events = said("request_card")
    assert ensemble.predict(events).action == "card_form"
    events += [act("card_form"), {"event": "active_loop", "name": "card_form"}, slot("requested_slot", "card_type")]
    assert ensemble.predict(events).action == "action_listen"
    events += [act("action_listen"), user("inform", "card_type")]
    assert ensemble.predict(events) == Prediction("card_form", 1.0, "RulePolicy")
    events += [act("card_form"), slot("card_type", "credit"), {"event": "active_loop", "name": None}]
    assert ensemble.predict(events).action == "utter_card_ordered"
    assert ensemble.predict([*events, act("utter_card_ordered")]).action == "action_listen"


def test_a_form_that_rejects_the_message_leaves_the_turn_to_the_rules() -> None:
    rules = load(FORM_RULES) + load("""
    - rule: a bot question inside the form
      condition:
      - active_loop: card_form
      steps:
      - intent: bot_challenge
      - action: utter_iamabot
      - action: card_form
      - active_loop: card_form
    """)
    ensemble = train({"rules": rules}, {"name": "RulePolicy"})
    events = [*said("request_card"), act("card_form"), {"event": "active_loop", "name": "card_form"},
              *said("bot_challenge"), {"event": "action_execution_rejected", "name": "card_form"}]
    assert ensemble.predict(events).action == "utter_iamabot"


def test_rules_contradicting_stories_are_reported_at_training(mood: dict[str, Any]) -> None:
    rules = load("""
    - rule: greet with a smile
      steps:
      - intent: greet
      - action: utter_happy
    """)
    with pytest.raises(InvalidRulesError) as error:
        train({"stories": mood["stories"], "rules": rules}, {"name": "RulePolicy"})
    assert "the prediction of the action 'utter_greet' in story 'happy path' is contradicting with rule(s) " \
           "'greet with a smile' which predicted action 'utter_happy'" in str(error.value)


def test_a_rule_that_waits_where_a_story_goes_on_is_reported(mood: dict[str, Any]) -> None:
    rules = load("""
    - rule: cheer up
      steps:
      - intent: mood_unhappy
      - action: utter_cheer_up
    """)
    with pytest.raises(InvalidRulesError, match="wait_for_user_input: false") as error:
        train({"stories": mood["stories"], "rules": rules}, {"name": "RulePolicy"})
    assert "'utter_did_that_help' in story 'sad path 1'" in str(error.value)


def test_rules_contradicting_each_other_are_reported() -> None:
    rules = load("""
    - rule: one
      steps:
      - intent: greet
      - action: utter_greet
    - rule: two
      steps:
      - intent: greet
      - action: utter_happy
    """)
    with pytest.raises(InvalidRulesError, match="rule 'two' predicts 'utter_happy' where rule\\(s\\) 'one'"):
        train({"rules": rules}, {"name": "RulePolicy"})


# --- precedence and fallback ---------------------------------------------------------------------------------

def test_a_rule_beats_a_story_of_equal_confidence_by_priority(mood: dict[str, Any]) -> None:
    rules = load("""
    - rule: greet with a smile
      steps:
      - intent: greet
      - action: utter_happy
    """)
    data = {"stories": mood["stories"], "rules": rules}
    memo = {"name": "MemoizationPolicy"}
    rule = {"name": "RulePolicy", "check_for_contradictions": False}
    assert train(data, memo, rule).predict(said("greet")) == Prediction("utter_happy", 1.0, "RulePolicy")
    promoted = train(data, {**memo, "priority": 5}, rule)
    assert promoted.predict(said("greet")) == Prediction("utter_greet", 1.0, "MemoizationPolicy")


def test_below_the_core_fallback_threshold_the_fallback_action_is_chosen(mood: dict[str, Any]) -> None:
    unseen = [*said("bot_challenge"), act("utter_iamabot"), *said("mood_unhappy")]
    ted = {"name": "TEDPolicy"}
    confident = train(mood, ted, {"name": "RulePolicy"}).predict(unseen)
    assert confident.policy == "TEDPolicy" and 0.3 <= confident.confidence < 1.0
    strict = {"name": "RulePolicy", "core_fallback_threshold": 0.99, "core_fallback_action_name": "action_ask_again"}
    assert train(mood, ted, strict).predict(unseen) == Prediction("action_ask_again", 0.99, "RulePolicy")
    # a memorised story is certain enough whatever the threshold
    assert train(mood, ted, strict, {"name": "MemoizationPolicy"}).predict(said("greet")).action == "utter_greet"
    disabled = {**strict, "enable_fallback_prediction": False}
    assert train(mood, ted, disabled).predict(unseen).action == confident.action


# --- the trained next-action policy --------------------------------------------------------------------------

def test_the_trained_policy_generalises_to_a_path_no_story_has(mood: dict[str, Any]) -> None:
    # no story starts with a bot question, so no story matches this conversation exactly
    events = [*said("bot_challenge"), act("utter_iamabot"), *said("mood_unhappy")]
    assert train(mood, {"name": "MemoizationPolicy"}).predict(events).policy == "fallback"
    ted = train(mood, {"name": "TEDPolicy", "max_history": 5})
    assert ted.predict(events).action == "utter_cheer_up"
    assert ted.predict([*events, act("utter_cheer_up")]).action == "utter_did_that_help"
    assert ted.predict([*events, act("utter_cheer_up"), act("utter_did_that_help")]).action == "action_listen"


def test_the_trained_policy_uses_slots_and_entities() -> None:
    stories = load("""
    - story: credit card
      steps:
      - intent: inform
        entities:
        - card_type: credit
      - slot_was_set:
        - card_type: credit
      - action: utter_card_ordered
    - story: debit card
      steps:
      - intent: inform
        entities:
        - card_type: debit
      - slot_was_set:
        - card_type: debit
      - action: action_show_balance
    - story: no card named
      steps:
      - intent: inform
      - action: utter_login
    """)
    ensemble = train({"stories": stories}, {"name": "TEDPolicy"})
    events = [*said("greet"), act("utter_greet"), act("action_listen"), user("inform", "card_type")]
    assert ensemble.predict([*events, slot("card_type", "debit")]).action == "action_show_balance"
    assert ensemble.predict([*events, slot("card_type", "credit")]).action == "utter_card_ordered"
    assert ensemble.predict([*said("greet"), act("utter_greet"), *said("inform")]).action == "utter_login"


def test_held_out_accuracy_of_next_action_prediction() -> None:
    stories = load(MOOD_BOT)["stories"] + load("""
    - story: happy path, said twice
      steps:
      - intent: greet
      - action: utter_greet
      - intent: mood_great
      - action: utter_happy
      - intent: goodbye
      - action: utter_goodbye
    - story: sad path, then fine
      steps:
      - intent: greet
      - action: utter_greet
      - intent: mood_unhappy
      - action: utter_cheer_up
      - action: utter_did_that_help
      - intent: affirm
      - action: utter_happy
      - intent: goodbye
      - action: utter_goodbye
    """)
    report = evaluate_held_out(stories, load(MOOD_BOT)["rules"], DOMAIN)
    assert report.folds == 5
    trackers = story_trackers(stories, PolicyDomain.from_rasa(DOMAIN))
    assert report.total == sum(e["event"] == "action" for t in trackers for e in t.events)  # every action counts
    assert 0.75 <= report.accuracy < 1.0
    assert len(report.mistakes) == report.total - report.correct
    assert evaluate_held_out(stories, [], DOMAIN, [{"name": "TEDPolicy"}], folds=2).folds == 2


# --- configuration, saving -----------------------------------------------------------------------------------

def test_policy_configs_take_rasa_policies_items(mood: dict[str, Any]) -> None:
    ensemble = train(mood, {"name": "MemoizationPolicy", "max_history": 5}, {"name": "UnexpecTEDIntentPolicy"},
                     {"name": "TEDPolicy", "max_history": 3, "epochs": 100})
    assert [p.name for p in ensemble.policies] == ["MemoizationPolicy", "TEDPolicy"]
    assert any("TED itself is not used" in note for note in ensemble.notes)
    assert any("epochs" in note for note in ensemble.notes)
    assert [p.name for p in PolicyEnsemble.train([], [], DOMAIN).policies] == [
        "MemoizationPolicy", "RulePolicy", "TEDPolicy"]
    with pytest.raises(PolicyConfigError, match="unknown policy 'KerasPolicy'.*AugmentedMemoizationPolicy"):
        train(mood, {"name": "KerasPolicy"})


def test_save_and_load_give_the_same_predictions(default_ensemble: PolicyEnsemble, tmp_path) -> None:
    path = default_ensemble.save(tmp_path / "dialogue")
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == 1  # plain JSON, nothing pickled
    loaded = PolicyEnsemble.load(tmp_path / "dialogue")
    conversations = [said("greet"), [*said("greet"), act("utter_greet")],
                     [*said("bot_challenge"), act("utter_iamabot"), *said("mood_unhappy")],
                     [*said("goodbye")], [*said("mood_great")]]
    for events in conversations:
        before, after = default_ensemble.predict(events), loaded.predict(events)
        assert (after.action, after.policy) == (before.action, before.policy)
        assert after.confidence == pytest.approx(before.confidence)
    assert loaded.notes == default_ensemble.notes


def test_loading_a_missing_model_says_what_to_do(tmp_path) -> None:
    with pytest.raises(PolicyConfigError, match="train again"):
        PolicyEnsemble.load(tmp_path)
