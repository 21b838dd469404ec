"""A Rasa 3 project directory loads as it is: config translation, domain, stories, defaults, CLI, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config
from bot.dialogue.default_responses import default_responses
from bot.project import ProjectError, load_project, translate_config
from bot.training_data import SessionConfig, TrainingDataError, load_training_data
from bot.validate import contradictions, validate_data

ROOT = Path(__file__).resolve().parents[1]
MOODBOT = Path(__file__).parent / "fixtures" / "rasa_moodbot"
BANK = ROOT / "examples" / "rasa_bank_en"
BOT = [sys.executable, "-m", "bot.cli"]


def run(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT__")}
    return subprocess.run(BOT + args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300, env=env)


def copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("models", ".bot"))
    return target


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- loading and translating -------------------------------------------------------------------------------


def test_a_rasa_init_project_loads_with_rasas_suggested_config() -> None:
    project = load_project(MOODBOT, environ={})
    config = project.config
    assert (config.language, config.nlu_data, config.root) == ("en", ".", MOODBOT.resolve())
    assert [s.name for s in config.pipeline] == ["normalizer", "rule_entities", "intent_classifier"]
    normalizer, classifier = config.step("normalizer"), config.step("intent_classifier")
    assert not normalizer.traditional_to_simplified and not normalizer.chinese_numerals
    assert classifier.char_ngram_range == (1, 4) and classifier.word_features
    assert (classifier.fallback_threshold, classifier.ambiguity_threshold) == (0.3, 0.1)
    assert config.step("rule_entities").use_synonyms  # EntitySynonymMapper
    assert [p["name"] for p in config.policies] == ["MemoizationPolicy", "RulePolicy", "TEDPolicy"]
    assert config.policies[2] == {"name": "TEDPolicy", "max_history": 5, "epochs": 100,
                                  "constrain_similarities": True}
    assert (config.assistant_name, config.product_name) == ("Assistant", "Virtual assistant")
    assert config.actions_package is None and config.action_endpoint is None
    assert "cancel" in config.dialogue.cancel_words and "human" in config.handoff.request_words

    data = load_training_data(config.path(config.nlu_data))
    assert data.intents == ["affirm", "bot_challenge", "deny", "goodbye", "greet", "mood_great", "mood_unhappy"]
    assert [s["story"] for s in data.stories] == ["happy path", "sad path 1", "sad path 2"]
    assert data.stories[1]["source"].endswith("stories.yml:12")
    assert [r["rule"] for r in data.rules] == ["Say goodbye anytime the user says goodbye",
                                               "Say 'I am a bot' anytime the user challenges"]
    assert [s["story"] for s in data.test_stories] == ["happy path 1"]  # tests/, not training data
    assert data.session_config == SessionConfig(60, True)
    assert data.responses["utter_cheer_up"][0]["image"] == "https://example.org/puppy.jpg"


def test_the_translation_reports_each_unused_component_once_with_the_reason() -> None:
    notes = load_project(MOODBOT, environ={}).notes
    for name in ("LexicalSyntacticFeaturizer", "UnexpecTEDIntentPolicy"):
        assert [n for n in notes if n.startswith(f"{name}:")] == [f"{name}: not used, because " +
                                                                  n.split("because ", 1)[1]
                                                                  for n in notes if n.startswith(f"{name}:")]
        assert len([n for n in notes if n.startswith(f"{name}:")]) == 1
    diet = next(n for n in notes if n.startswith("DIETClassifier:"))
    assert "epochs" in diet and "not used, because" in diet
    assert not any(n.startswith(("CountVectorsFeaturizer", "EntitySynonymMapper", "FallbackClassifier"))
                   for n in notes)  # translated completely: nothing to report


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ({"name": "SpacyNLP", "model": "en_core_web_md"}, "SpacyNLP: not used, because no pretrained spaCy model"),
        ({"name": "my_addons.SentimentAnalyzer"}, "my_addons.SentimentAnalyzer: not used, because"),
        ({"name": "LanguageModelFeaturizer", "model_name": "bert"}, "LanguageModelFeaturizer: not used, because"),
    ],
)
def test_components_without_a_counterpart_are_reported(component: dict, expected: str) -> None:
    rasa = {"recipe": "default.v1", "language": "en",
            "pipeline": [{"name": "WhitespaceTokenizer"}, component, {"name": "DIETClassifier"}]}
    _, notes = translate_config(rasa, Path("config.yml"))
    assert any(n.startswith(expected) for n in notes), notes


def test_a_chinese_project_gets_jieba_the_chinese_normalizer_and_builtin_entities(tmp_path: Path) -> None:
    rasa = {"recipe": "default.v1", "language": "zh", "pipeline": [
        {"name": "JiebaTokenizer", "dictionary_path": "dict/bank.txt"}, {"name": "RegexFeaturizer"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
        {"name": "DIETClassifier"}, {"name": "FallbackClassifier", "threshold": 0.5}],
        "policies": [{"name": "RulePolicy", "restrict_rules": False}]}
    raw, notes = translate_config(rasa, tmp_path / "config.yml")
    steps = {s["name"]: s for s in raw["pipeline"]}
    assert list(steps) == ["normalizer", "jieba_tokenizer", "rule_entities", "builtin_entities",
                           "intent_classifier"]
    assert steps["jieba_tokenizer"]["user_dict"] == "dict/bank.txt"
    assert steps["normalizer"]["traditional_to_simplified"] and steps["normalizer"]["chinese_numerals"]
    assert steps["rule_entities"]["use_regexes"] and not steps["rule_entities"]["use_synonyms"]
    assert steps["intent_classifier"]["char_ngram_range"] == [1, 3]
    assert steps["intent_classifier"]["fallback_threshold"] == 0.5
    assert raw["dialogue"]["intent_answer_threshold"] == 0.5
    assert raw["assistant_name"] == "智能助手" and raw["policies"] == [{"name": "RulePolicy", "restrict_rules": False}]


def test_the_example_project_reads_bot_yml_endpoints_credentials_and_actions(tmp_path: Path) -> None:
    project = load_project(BANK, environ={})
    config = project.config
    assert (config.assistant_name, config.product_name) == ("Harbour", "Harbour Bank assistant")  # bot.yml
    assert config.dialogue.intent_answer_threshold == 0.6  # bot.yml wins over the FallbackClassifier's 0.4
    assert config.step("intent_classifier").fallback_threshold == 0.4
    assert config.storage.session_expiry_minutes == 30
    assert config.actions_package and config.actions_package.startswith("rasa_project_actions_")
    module = __import__(f"{config.actions_package}.actions", fromlist=["ValidateLostCardForm"])
    assert module.ValidateLostCardForm().name() == "validate_lost_card_form"
    assert project.channels == {"rest": "used: Rasa's REST channel is served at /webhooks/rest/webhook"}
    assert [p["name"] for p in config.policies] == ["MemoizationPolicy", "RulePolicy", "TEDPolicy"]
    assert config.policies[1]["core_fallback_threshold"] == 0.3

    root = copy(BANK, tmp_path)
    write(root / "endpoints.yml", "action_endpoint:\n  url: http://${ACTIONS_HOST}:5055/webhook\n"
                                  "tracker_store:\n  type: redis\n")
    write(root / "credentials.yml", "rest:\nfacebook:\n  verify: x\n")
    other = load_project(root, environ={"ACTIONS_HOST": "127.0.0.1"})
    assert other.config.action_endpoint.url == "http://127.0.0.1:5055/webhook"
    assert any(n.startswith("endpoints.yml tracker_store: not used, because") for n in other.notes)
    assert other.channels["facebook"].startswith("not used, because there is no adapter")


# --- the domain, fully --------------------------------------------------------------------------------------


def test_every_domain_feature_is_parsed() -> None:
    data = load_training_data(BANK)
    assert data.domain_intents["check_balance"].use_entities == ("account_type",)
    assert data.domain_intents["branch_hours"].ignore_entities == ("card_last4",)
    assert data.domain_intents["greet"].use_entities is True
    assert data.entities["account_type"].roles == ("source", "destination")
    assert data.entities["city"].groups == ("home",)
    slots = data.slots
    assert slots["account_type"]["values"] == ["checking", "savings", "credit"]
    assert (slots["balance"]["min_value"], slots["balance"]["max_value"]) == (0, 1000000)
    assert slots["card_frozen"]["initial_value"] is False and slots["card_frozen"]["influence_conversation"]
    assert slots["frozen_cards"]["type"] == "list" and not slots["last_lookup"]["influence_conversation"]
    assert slots["card_last4"]["mappings"][1] == {
        "type": "from_text", "conditions": [{"active_loop": "lost_card_form", "requested_slot": "card_last4"}]}
    status = data.responses["utter_card_status"]
    assert status[0]["condition"] == [{"type": "slot", "name": "card_frozen", "value": True}]
    assert data.responses["utter_branch_hours"][1]["channel"] == "rest"
    assert data.responses["utter_ask_anything_else"][0]["buttons"][0] == {"title": "Yes", "payload": "/affirm"}
    assert data.responses["utter_branch_map"][0]["image"].endswith("branches.png")
    assert data.responses["utter_transfer_money"][0]["custom"] == {"deep_link": "harbourbank://payments/transfer"}
    assert data.forms == {"lost_card_form": ["card_last4"]}
    assert data.form_ignored_intents == {"lost_card_form": ["greet"]}
    assert data.actions == ["action_check_balance", "action_freeze_card", "validate_lost_card_form"]
    assert data.session_config == SessionConfig(30, False)
    assert data.retrieval_intents == ["faq"]
    assert data.retrieval_response("utter_faq", "faq/card_fees") == "utter_faq/card_fees"
    assert len(data.stories) == 3 and len(data.test_stories) == 2
    assert data.as_rasa_domain()["intents"][4] == {"check_balance": {"use_entities": ["account_type"]}}


def test_entity_roles_and_groups_in_examples() -> None:
    data = load_training_data(BANK)
    transfer = next(e for e in data.examples if e.text.startswith("move money"))
    assert [(a.entity, a.value, a.role) for a in transfer.entities] == [
        ("account_type", "savings", "source"), ("account_type", "checking", "destination")]
    assert transfer.text[transfer.entities[1].start : transfer.entities[1].end] == "checking"
    leeds = next(e for e in data.examples if "Leeds" in e.text)
    assert (leeds.entities[0].entity, leeds.entities[0].group, leeds.entities[0].role) == ("city", "home", None)


def test_a_domain_directory_is_merged_like_one_file(tmp_path: Path) -> None:
    root = copy(BANK, tmp_path)
    text = (root / "domain.yml").read_text("utf-8")
    head, rest = text.split("\nslots:", 1)
    slots, rest = rest.split("\nresponses:", 1)
    responses, rest = rest.split("\nforms:", 1)
    (root / "domain.yml").unlink()
    write(root / "domain" / "intents.yml", head)
    write(root / "domain" / "slots.yml", 'version: "3.1"\nslots:' + slots)
    write(root / "domain" / "responses" / "all.yml", 'version: "3.1"\nresponses:' + responses)
    write(root / "domain" / "forms.yml", 'version: "3.1"\nforms:' + rest)
    one, split = load_training_data(BANK), load_training_data(root)
    assert split.domain_intents.keys() == one.domain_intents.keys()
    assert (split.slots, split.responses, split.forms, split.actions) == (one.slots, one.responses, one.forms,
                                                                          one.actions)
    assert split.session_config == SessionConfig(30, False)
    assert load_project(root, environ={}).config.storage.session_expiry_minutes == 30


# --- built-in responses and names ---------------------------------------------------------------------------


def test_an_english_project_gets_english_defaults_and_keeps_its_own(tmp_path: Path) -> None:
    data = load_training_data(MOODBOT)
    assert data.responses["utter_default"][0]["text"].startswith("Sorry, I didn't quite understand")
    assert data.responses["utter_offer_human"][0]["buttons"] == [{"title": "Talk to a person",
                                                                   "payload": "/request_human"}]
    assert {"utter_default", "utter_action_failed", "utter_continue_form"} <= data.builtin_responses
    root = copy(MOODBOT, tmp_path)
    domain = (root / "domain.yml").read_text("utf-8")
    write(root / "domain.yml", domain.replace("responses:\n", "responses:\n  utter_default:\n  - text: Pardon?\n"))
    own = load_training_data(root)
    assert own.responses["utter_default"] == [{"text": "Pardon?"}] and "utter_default" not in own.builtin_responses


def test_the_bundled_bot_is_unchanged() -> None:
    config = load_config(ROOT / "config.yml", environ={})
    assert (config.assistant_name, config.product_name, config.policies) == ("小智", "示例银行智能客服", [])
    data = load_training_data(ROOT / "nlu_data")
    assert not data.builtin_responses and not data.stories and not data.domain_intents
    assert data.responses["utter_default"][0]["text"].startswith("抱歉，我没太理解您的意思。您可以换个说法")
    cancelled = default_responses("zh")["utter_form_cancelled"][0]["text"]
    assert cancelled == "好的，已为您取消本次办理。还有其他可以帮您的吗？"  # the engine's own words today
    assert default_responses("fr") == default_responses("en")


# --- malformed projects ------------------------------------------------------------------------------------


def test_a_project_without_a_domain_is_refused(tmp_path: Path) -> None:
    root = copy(MOODBOT, tmp_path)
    (root / "domain.yml").unlink()
    with pytest.raises(ProjectError, match="no domain.yml and no domain/ folder"):
        load_project(root, environ={})


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("data/nlu.yml", "nlu:\n- intent: greet\n  examples: x: y\n", r"nlu.yml:3: YAML syntax error"),
        ("domain.yml", "intents:\n- greet\nslots:\n  age:\n    type: integer\n    mappings: []\n",
         r"domain.yml:4: slot 'age': unknown type 'integer'; Rasa 3 slot types are text, bool, categorical"),
        ("domain.yml", "slots:\n  tier:\n    type: categorical\n", r"domain.yml:2: slot 'tier': a categorical slot"),
        ("data/stories.yml", "stories:\n- story: a\n  steps:\n  - intent: greet\n  - say: hi\n",
         r"stories.yml:5: story 'a': a step needs one of"),
        ("domain.yml", "forms:\n  f:\n    required_slots:\n      a:\n      - type: from_text\n",
         r"domain.yml:2: form 'f': required_slots is a mapping \(Rasa 2\)"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path: Path, file: str, text: str, expected: str) -> None:
    root = copy(MOODBOT, tmp_path)
    write(root / file, text)
    with pytest.raises(TrainingDataError, match=expected):
        load_training_data(root)


def test_a_broken_rasa_config_names_its_line(tmp_path: Path) -> None:
    root = copy(MOODBOT, tmp_path)
    write(root / "config.yml", "recipe: default.v1\nlanguage: en\npipeline:\n  - name: [\n")
    with pytest.raises(ProjectError, match=r"config.yml:\d+: YAML syntax error"):
        load_project(root, environ={})
    write(root / "config.yml", "recipe: graph.v1\nlanguage: en\n")
    with pytest.raises(ProjectError, match="recipe 'graph.v1' is not supported"):
        load_project(root, environ={})


def test_our_loader_points_a_rasa_config_to_project() -> None:
    with pytest.raises(ConfigError, match="this is a Rasa config.yml; load its project with --project"):
        load_config(MOODBOT / "config.yml", environ={})


# --- rasa data validate ------------------------------------------------------------------------------------


def test_stories_contradicting_rules_and_each_other(tmp_path: Path) -> None:
    root = copy(MOODBOT, tmp_path)
    with (root / "data" / "stories.yml").open("a", encoding="utf-8") as f:
        f.write("\n- story: greeted twice\n  steps:\n  - intent: greet\n  - action: utter_happy\n"
                "\n- story: challenged\n  steps:\n  - intent: greet\n  - action: utter_greet\n"
                "  - intent: bot_challenge\n  - action: utter_happy\n")
    problems = contradictions(load_training_data(root))
    assert any("story 'happy path'" in p and "story 'greeted twice'" in p and "'utter_greet'" in p
               for p in problems), problems
    assert any("story 'challenged'" in p and "rule 'Say 'I am a bot' anytime the user challenges'" in p
               and "'utter_iamabot'" in p for p in problems), problems
    assert not contradictions(load_training_data(MOODBOT))


def test_data_validate_finds_what_rasa_finds(tmp_path: Path) -> None:
    root = copy(MOODBOT, tmp_path)
    with (root / "data" / "nlu.yml").open("a", encoding="utf-8") as f:
        f.write("\n- intent: thank\n  examples: |\n    - thanks\n    - hello\n")
    with (root / "data" / "rules.yml").open("a", encoding="utf-8") as f:
        f.write("\n- rule: thanks\n  steps:\n  - intent: thank\n  - action: utter_welcome\n"
                "  - action: action_log_thanks\n")
    domain = (root / "domain.yml").read_text("utf-8")
    write(root / "domain.yml", domain.replace("  utter_iamabot:", "  utter_unused:\n  - text: never\n"
                                              "  utter_iamabot:"))
    errors, warnings = validate_data(load_project(root, environ={}).config)
    assert "the example 'hello' is in 2 intents" in " ".join(errors)
    assert any("intent 'thank' is in the NLU data" in e and "not in the domain's intents" in e for e in errors)
    assert any("uses response 'utter_welcome', which is not defined" in e for e in errors)
    assert any("uses action 'action_log_thanks', which is not in the domain's actions" in e for e in errors)
    assert "response 'utter_unused' is not used in any story or rule" in warnings
    assert not any("utter_default" in w for w in warnings)  # built-in defaults are not the project's


# --- the command line ---------------------------------------------------------------------------------------


def test_train_and_shell_a_project_through_the_cli(tmp_path: Path) -> None:
    root = copy(BANK, tmp_path)
    trained = run(["train", "--project", str(root)], tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "10 intents" in trained.stdout and (root / "models").is_dir()
    assert "note: LexicalSyntacticFeaturizer: not used, because" in trained.stderr
    assert trained.stderr.count("LexicalSyntacticFeaturizer") == 1
    shell = run(["shell", "--project", str(root)], tmp_path, stdin="I lost my card\n4821\n")
    assert shell.returncode == 0, shell.stderr
    assert "Harbour Bank assistant" in shell.stdout and "Harbour>" in shell.stdout
    assert "Your card ending 4821 is frozen" in shell.stdout  # form, in-process validation and action
    from bot.model import is_stale, latest_model_dir
    from bot.project import load_project

    config = load_project(root).config
    latest = latest_model_dir(config)
    assert latest is not None
    write(root / ".bot" / "bot.db", "written by a running bot")  # the project's database lives beside its data
    assert not is_stale(latest, config)  # `bot run` serves this model without training again...
    write(root / "data" / "rules.yml", (root / "data" / "rules.yml").read_text("utf-8") + "\n")
    assert is_stale(latest, config)  # ...until the data changes


def test_validate_and_data_validate_through_the_cli(tmp_path: Path) -> None:
    root = copy(MOODBOT, tmp_path)
    for args in (["validate"], ["data", "validate"]):
        result = run([*args, "--project", str(root)], tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("ok")
    inside = run(["data", "validate"], root)  # Rasa's config.yml in the working directory: no --project needed
    assert inside.returncode == 0, inside.stderr
    with (root / "data" / "rules.yml").open("a", encoding="utf-8") as f:
        f.write("\n- rule: broken\n  steps:\n  - intent: greet\n  - action: utter_missing\n")
    broken = run(["data", "validate", "--project", str(root)], tmp_path)
    assert broken.returncode == 1
    assert "rule 'broken'" in broken.stderr and "uses response 'utter_missing', which is not defined" in broken.stderr
    (root / "domain.yml").unlink()
    missing = run(["validate", "--project", str(root)], tmp_path)
    assert missing.returncode == 1 and "no domain.yml and no domain/ folder" in missing.stderr


def test_stories_with_user_text_in_data_are_tests_not_training(tmp_path: Path) -> None:
    root = copy(MOODBOT, tmp_path)
    with (root / "data" / "stories.yml").open("a", encoding="utf-8") as f:
        f.write("\n- story: typed\n  steps:\n  - user: |\n      hi\n    intent: greet\n  - action: utter_greet\n")
    data = load_training_data(root)
    assert [s["story"] for s in data.stories] == ["happy path", "sad path 1", "sad path 2"]
    assert [s["story"] for s in data.test_stories] == ["typed", "happy path 1"]


def test_a_jieba_dictionary_folder_with_one_file_is_its_user_dictionary(tmp_path: Path) -> None:
    write(tmp_path / "dicts" / "bank.txt", "挂失 100 v\n")
    rasa = {"recipe": "default.v1", "language": "zh",
            "pipeline": [{"name": "JiebaTokenizer", "dictionary_path": "dicts"}, {"name": "DIETClassifier"}]}
    raw, _ = translate_config(rasa, tmp_path / "config.yml")
    assert raw["pipeline"][1] == {"name": "jieba_tokenizer", "user_dict": "dicts/bank.txt"}
    write(tmp_path / "dicts" / "more.txt", "吞卡 100 v\n")
    raw, notes = translate_config(rasa, tmp_path / "config.yml")
    assert raw["pipeline"][1]["user_dict"] is None
    assert any(n.startswith("JiebaTokenizer dictionary_path dicts: not used, because it holds 2 files") for n in notes)
