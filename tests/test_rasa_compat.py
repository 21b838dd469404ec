"""What real Rasa assistants written for Rasa 2 and 3 needed to load and work here: Rasa 2 domains (auto_fill,
form slot mappings), Rasa 2 policy and component names, `- ...` at the start of rules, Duckling's `number`
entity, and a pipeline without FallbackClassifier acting on any intent as Rasa does."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.assistant import Assistant
from bot.dialogue.engine import DialogueState
from bot.model import train
from bot.nlu.extractors import extract
from bot.project import load_project, translate_config
from bot.training_data import TrainingDataError, load_training_data

CONFIG = """language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: DIETClassifier
  - name: DucklingHTTPExtractor
    url: http://localhost:8000
    dimensions: [number]
policies:
  - name: MemoizationPolicy
  - name: FormPolicy
  - name: MappingPolicy
"""

# a Rasa 2.0 domain: slots without mappings (auto_fill), the form's slot mappings under the form's name
DOMAIN = """version: "2.0"
intents:
  - hello
  - order_pizza:
      use_entities: []
  - tell
  - yes
  - no
entities:
  - topping
  - number
  - crust
slots:
  topping:
    type: text
    influence_conversation: false
    auto_fill: false
  pizzas:
    type: float
    influence_conversation: false
    auto_fill: false
  extra_cheese:
    type: text
    influence_conversation: false
    auto_fill: false
  crust:
    type: text
    influence_conversation: false
  requested_slot:
    type: text
    influence_conversation: false
responses:
  utter_hello:
  - text: Hello, pizza time?
  utter_ask_topping:
  - text: Which topping?
  utter_ask_pizzas:
  - text: How many pizzas?
  utter_ask_extra_cheese:
  - text: Extra cheese?
  utter_order_done:
  - text: "{pizzas} pizzas with {topping} coming."
forms:
  pizza_form:
    topping:
    - type: from_entity
      entity: topping
    pizzas:
    - type: from_entity
      entity: number
    extra_cheese:
    - type: from_intent
      intent: yes
      value: true
    - type: from_intent
      intent: no
      value: false
"""

NLU = """nlu:
- intent: hello
  examples: |
    - hello
    - hi there
    - good evening
    - hey
- intent: order_pizza
  examples: |
    - I want a pizza
    - order pizza please
    - can I get some pizza
    - pizza delivery
- intent: tell
  examples: |
    - [salami](topping)
    - [mushroom](topping) please
    - with [ham](topping)
    - make it [salami](topping)
    - 3 of them
    - two please
    - [thin](crust) crust
- intent: yes
  examples: |
    - yes
    - sure
    - yes please
    - of course
- intent: no
  examples: |
    - no
    - no thanks
    - nope
    - not at all
"""

RULES = """rules:
- rule: greet anywhere
  steps:
  - ...
  - intent: hello
  - action: utter_hello
- rule: start the order
  steps:
  - ...
  - intent: order_pizza
  - action: pizza_form
  - active_loop: pizza_form
- rule: finish the order
  condition:
  - active_loop: pizza_form
  steps:
  - action: pizza_form
  - active_loop: null
  - action: utter_order_done
"""

STORIES = """stories:
- story: order and give up
  steps:
  - intent: order_pizza
  - action: pizza_form
  - active_loop: pizza_form
  - intent: no
  - action: action_deactivate_form
  - active_loop: null
"""


def write_project(root: Path, domain: str = DOMAIN, rules: str = RULES) -> Path:
    files = {"config.yml": CONFIG, "domain.yml": domain, "data/nlu.yml": NLU, "data/rules.yml": rules,
             "data/stories.yml": STORIES}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def pizza(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    config = load_project(write_project(tmp_path_factory.mktemp("pizza")), environ={}).config
    return Assistant.load(config, train(config))


def say(assistant: Assistant, texts: list[str]) -> tuple[list[list[str]], DialogueState]:
    state, history, answers = DialogueState(), [], []
    for text in texts:
        parse, outcome = assistant.respond(text, "web", state, sender_id="t", history=history)
        state = outcome.state
        history += [{"event": "user", "text": text, "parse_data": dict(parse)}, *outcome.events]
        answers.append([r.source for r in outcome.replies])
    return answers, state


# --- Rasa 2 domains read as `rasa data migrate` writes them -------------------------------------------------


def test_a_rasa2_form_becomes_required_slots_and_slot_mappings_with_the_form_as_condition(tmp_path: Path) -> None:
    data = load_training_data(write_project(tmp_path))
    assert data.forms == {"pizza_form": ["topping", "pizzas", "extra_cheese"]}
    assert data.slots["topping"]["mappings"] == [
        {"type": "from_entity", "entity": "topping", "conditions": [{"active_loop": "pizza_form"}]}]
    assert data.slots["extra_cheese"]["mappings"][0]["conditions"] == [
        {"active_loop": "pizza_form", "requested_slot": "extra_cheese"}]
    assert "auto_fill" not in data.slots["topping"]


def test_auto_fill_by_default_fills_a_slot_from_its_namesake_entity_only(tmp_path: Path) -> None:
    data = load_training_data(write_project(tmp_path))
    assert data.slots["crust"]["mappings"] == [{"type": "from_entity", "entity": "crust"}]
    assert data.slots["requested_slot"]["mappings"] == []  # no entity of that name
    assert any("Rasa 2 domain" in note for note in data.notes)


def test_rasa2_required_slots_as_a_mapping_are_migrated_too(tmp_path: Path) -> None:
    domain = DOMAIN.replace("  pizza_form:\n", "  pizza_form:\n    required_slots:\n").replace(
        "\n    topping:\n    - type", "\n      topping:\n      - type")
    domain = domain.split("forms:")[0] + "forms:\n  pizza_form:\n    ignored_intents: [hello]\n" \
        "    required_slots:\n      topping:\n      - type: from_entity\n        entity: topping\n"
    data = load_training_data(write_project(tmp_path, domain=domain))
    assert data.forms == {"pizza_form": ["topping"]}
    assert data.form_ignored_intents == {"pizza_form": ["hello"]}


def test_a_rasa2_form_slot_missing_from_slots_is_an_error_naming_the_form(tmp_path: Path) -> None:
    domain = DOMAIN.replace("    pizzas:\n    - type: from_entity", "    size:\n    - type: from_entity")
    with pytest.raises(TrainingDataError, match=r"form 'pizza_form': slot mappings under the form's name "
                                                r"\(Rasa 2\); .*slot 'size'"):
        load_training_data(write_project(tmp_path, domain=domain))


def test_the_old_name_of_action_deactivate_loop_is_read_as_the_new(tmp_path: Path) -> None:
    data = load_training_data(write_project(tmp_path))
    assert data.stories[0]["steps"][4] == {"action": "action_deactivate_loop"}


# --- rules that start with `...` -----------------------------------------------------------------------------


def test_a_rule_starting_with_any_history_is_an_ordinary_rule(tmp_path: Path) -> None:
    data = load_training_data(write_project(tmp_path))
    assert data.rules[0]["steps"] == [{"intent": "hello"}, {"action": "utter_hello"}]


def test_any_events_at_the_end_of_a_rule_means_it_does_not_wait_for_the_user(tmp_path: Path) -> None:
    rules = "rules:\n- rule: go on\n  steps:\n  - ...\n  - intent: hello\n  - action: utter_hello\n  - ...\n"
    rule = load_training_data(write_project(tmp_path, rules=rules)).rules[0]
    assert rule["steps"] == [{"intent": "hello"}, {"action": "utter_hello"}]
    assert rule["wait_for_user_input"] is False


def test_any_history_inside_a_rule_is_refused_with_its_line(tmp_path: Path) -> None:
    rules = "rules:\n- rule: odd\n  steps:\n  - intent: hello\n  - ...\n  - action: utter_hello\n"
    with pytest.raises(TrainingDataError, match=r"rules.yml:5: rule 'odd': '...'"):
        load_training_data(write_project(tmp_path, rules=rules))


# --- config.yml of Rasa 1/2 ----------------------------------------------------------------------------------


def test_rasa2_policies_stand_in_as_rule_policy_once() -> None:
    raw, notes = translate_config({"language": "en", "policies": [
        {"name": "MemoizationPolicy"}, {"name": "FormPolicy"}, {"name": "MappingPolicy"},
        {"name": "FallbackPolicy", "nlu_threshold": 0.4}]}, Path("config.yml"))
    assert [p["name"] for p in raw["policies"]] == ["MemoizationPolicy", "RulePolicy"]
    assert any(note.startswith("FormPolicy: a Rasa 2 policy, read as RulePolicy") for note in notes)


def test_duckling_http_extractor_is_read_as_duckling_and_its_number_dimension_kept() -> None:
    raw, notes = translate_config({"language": "en", "pipeline": [
        {"name": "DucklingHTTPExtractor", "dimensions": ["number"]}]}, Path("config.yml"))
    assert {"name": "builtin_entities", "dimensions": ["number"]} in raw["pipeline"]
    assert any("Rasa 1/2 name of DucklingEntityExtractor" in note for note in notes)


def test_without_fallback_classifier_any_intent_is_acted_on_as_in_rasa() -> None:
    raw, _ = translate_config({"language": "en", "pipeline": [{"name": "DIETClassifier"}]}, Path("config.yml"))
    assert raw["dialogue"]["intent_answer_threshold"] == raw["dialogue"]["conversational_threshold"] == 0.0


# --- Duckling's number --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("a table for 4", 4), ("just one person", 1), ("twenty-two guests", 22), ("book for seven", 7),
    ("2.5 kilos", 2.5), ("三个人", 3),
])
def test_number_finds_digits_words_and_chinese_numerals(text: str, value: float) -> None:
    assert [e["value"] for e in extract(text, ["number"])] == [value]


def test_number_is_not_taken_from_inside_a_word() -> None:
    assert extract("model v2 or x1.5", ["number"]) == []
    assert extract("someone", ["number"]) == []


# --- end to end ----------------------------------------------------------------------------------------------


def test_a_rasa2_form_project_fills_its_form_and_finishes(pizza: Assistant) -> None:
    answers, state = say(pizza, ["hello", "I want a pizza", "salami", "two please", "yes"])
    assert answers[:4] == [["utter_hello"], ["utter_ask_topping"], ["utter_ask_pizzas"], ["utter_ask_extra_cheese"]]
    assert answers[4] == ["utter_order_done"]
    assert state.slots["pizzas"] == 2 and state.slots["extra_cheese"] is True
