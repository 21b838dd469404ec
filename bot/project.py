"""A Rasa 3 project directory as our `BotConfig`: Rasa's config.yml translated, endpoints, credentials, actions.

    project = load_project("examples/rasa_bank_en")      # config.yml, domain.yml | domain/, data/, actions/ ...
    project.config                                       # BotConfig: nlu_data is the project root
    project.notes                                        # one line per component or setting not used, and why

Our own settings (channels, hand-over, storage, server) come from defaults or an optional `bot.yml` beside
config.yml (same keys as our config.yml); bot.yml wins over the translation, the environment over both.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from bot.config import BotConfig, ConfigError, is_rasa_config, validate_config
from bot.training_data import TrainingDataError, find_domain, parse_file

OUR_FILE = "bot.yml"
PLACEHOLDER_ASSISTANT_IDS = {"", "placeholder_default"}
ENV_REFERENCE = re.compile(r"\$\{(\w+)\}")

# Rasa's suggested config (`rasa init`, or a config.yml whose pipeline/policies are left empty)
DEFAULT_PIPELINE: list[dict[str, Any]] = [
    {"name": "WhitespaceTokenizer"}, {"name": "RegexFeaturizer"}, {"name": "LexicalSyntacticFeaturizer"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "DIETClassifier", "epochs": 100, "constrain_similarities": True}, {"name": "EntitySynonymMapper"},
    {"name": "ResponseSelector", "epochs": 100, "constrain_similarities": True},
    {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
]
DEFAULT_POLICIES: list[dict[str, Any]] = [
    {"name": "MemoizationPolicy"}, {"name": "RulePolicy"},
    {"name": "UnexpecTEDIntentPolicy", "max_history": 5, "epochs": 100},
    {"name": "TEDPolicy", "max_history": 5, "epochs": 100, "constrain_similarities": True},
]
KEPT_POLICIES = {"MemoizationPolicy", "AugmentedMemoizationPolicy", "RulePolicy", "TEDPolicy"}
# Rasa 1/2 names Rasa 3 dropped: what stands in for each (forms, mappings and fallbacks are RulePolicy's in 3)
RENAMED_POLICIES = {"FormPolicy": "RulePolicy", "MappingPolicy": "RulePolicy", "FallbackPolicy": "RulePolicy",
                    "TwoStageFallbackPolicy": "RulePolicy", "EmbeddingPolicy": "TEDPolicy",
                    "KerasPolicy": "TEDPolicy"}
RENAMED_COMPONENTS = {"DucklingHTTPExtractor": "DucklingEntityExtractor",
                      "EmbeddingIntentClassifier": "DIETClassifier"}

# why each Rasa component we do not run is not needed, or what stands in for it
NOT_USED = {
    "LexicalSyntacticFeaturizer": "our classifier's character n-grams and sentence encoder cover word shape "
                                  "and neighbours",
    "SpacyNLP": "no pretrained spaCy model is installed or downloaded; tokens come from our tokenizer",
    "SpacyTokenizer": "no pretrained spaCy model is installed or downloaded; tokens come from our tokenizer",
    "SpacyFeaturizer": "no pretrained spaCy model; the sentence encoder (retrieval.encoder) gives dense features",
    "SpacyEntityExtractor": "no pretrained spaCy NER model; entities come from annotations, lookups and regexes",
    "MitieNLP": "MITIE is not installed", "MitieTokenizer": "MITIE is not installed",
    "MitieFeaturizer": "MITIE is not installed", "MitieEntityExtractor": "MITIE is not installed",
    "MitieIntentClassifier": "MITIE is not installed; intent_classifier classifies intents",
    "LanguageModelFeaturizer": "the sentence encoder (retrieval.encoder) gives dense features; nothing is "
                               "downloaded at run time",
    "ConveRTFeaturizer": "the sentence encoder (retrieval.encoder) gives dense features",
    "HFTransformersNLP": "the sentence encoder (retrieval.encoder) gives dense features",
    "LanguageModelTokenizer": "tokens come from our tokenizer",
    "UnexpecTEDIntentPolicy": "it only marks unlikely user turns for review; the trainer's inbox collects "
                              "low-confidence turns instead",
}
CLASSIFIERS = {"DIETClassifier", "SklearnIntentClassifier", "LogisticRegressionClassifier",
               "KeywordIntentClassifier"}
ENTITY_LEARNERS = {"DIETClassifier", "CRFEntityExtractor"}
TOKENIZERS = {"WhitespaceTokenizer", "JiebaTokenizer"}
# options of a mapped component that have no counterpart in our step
MAPPED_OPTIONS = {
    "CountVectorsFeaturizer": {"analyzer", "min_ngram", "max_ngram"},
    "FallbackClassifier": {"threshold", "ambiguity_threshold"},
    "JiebaTokenizer": {"dictionary_path"},
    "RegexEntityExtractor": {"use_lookup_tables", "use_regexes"},
    "DucklingEntityExtractor": {"dimensions", "url"},
}
COMPONENT_NOTES = {
    "DucklingEntityExtractor": "builtin_entities (amount, phone, date, ...) stand in for it; no Duckling server "
                               "is called",
    "ResponseSelector": "not used, because retrieval intents (faq/...) are classified as intents of their own "
                        "and answered by their responses (utter_faq/...)",
    "DIETClassifier": "intent_classifier classifies intents; entities come from annotated examples, lookups and "
                      "synonyms (rule_entities), values never seen in the data are not learned",
    "CRFEntityExtractor": "not used, because entities come from annotated examples, lookups and synonyms "
                          "(rule_entities); values never seen in the data are not learned",
}
WHITESPACE_NOTES = {
    "zh": "not used, because Chinese has no spaces between words; jieba segments",
    "other": "jieba's default segmentation splits Latin text at spaces and punctuation as it did "
             "(bot/nlu/tokenise.py has no separate whitespace step)",
}
DUCKLING_DIMENSIONS = {"amount-of-money": "amount", "phone-number": "phone", "time": "date", "number": "number"}

# settings in the project's language where ours are Chinese
LANGUAGE_SETTINGS: dict[str, dict[str, Any]] = {
    "en": {
        "dialogue": {"cancel_words": ["cancel", "stop", "never mind", "forget it", "quit"]},
        "handoff": {"request_words": ["human", "agent", "a person", "real person", "talk to someone",
                                      "customer service"],
                    "anger_words": ["complaint", "ridiculous", "useless", "lawyer", "scam"],
                    "sensitive_words": ["stolen", "fraud", "scammed", "not me", "unauthorised", "unauthorized"]},
    },
}
NEUTRAL_NAMES = {"zh": ("智能助手", "智能客服"), "en": ("Assistant", "Virtual assistant")}

CHANNELS = {
    "rest": "used: Rasa's REST channel is served at /webhooks/rest/webhook",
    "socketio": "not used, because the web widget speaks its own socket protocol at /ws/chat (embed /widget.js)",
    "rasa": "not used, because it connects Rasa X / Enterprise, which this server replaces",
}
OTHER_CHANNEL = ("not used, because there is no adapter for it here; channels served: rest, the web widget, "
                 "the bank app, wechat and wecom (configured under channels in bot.yml)")
ENDPOINT_NOTES = {
    "tracker_store": "conversations are stored by storage.url (set it in bot.yml)",
    "lock_store": "per-conversation locks come from storage and security.redis_url",
    "event_broker": "events are stored with each conversation; there is no broker",
    "models": "models are trained and served from models/ (bot train, bot run)",
    "nlg": "responses come from the domain (and the built-in defaults), not an NLG server",
}


class ProjectError(ValueError):
    """A Rasa project that cannot be loaded; the message names the file, the line and the problem."""


@dataclass
class RasaProject:
    root: Path
    config: BotConfig
    notes: list[str] = field(default_factory=list)  # "X: not used, because ...", one line each
    channels: dict[str, str] = field(default_factory=dict)  # credentials.yml key -> used / not used, because


def is_rasa_config_file(path: Path) -> bool:
    """True for a Rasa config.yml, so `bot train` inside a Rasa project needs no --project."""
    try:
        raw = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, MarkedYAMLError):
        return False
    return isinstance(raw, dict) and is_rasa_config(raw)


def load_project(root: str | Path, environ: dict[str, str] | None = None) -> RasaProject:
    """Read a Rasa 3 project directory into our config; `environ` overrides as for config.yml."""
    root = Path(root).resolve()
    env = os.environ if environ is None else environ
    rasa = _read_yaml(root / "config.yml", required=True)
    domain = find_domain(root)
    if not domain:
        raise ProjectError(f"{root}: no domain.yml and no domain/ folder; a Rasa project needs its domain")
    if not (root / "data").is_dir():
        raise ProjectError(f"{root}: no data/ folder; a Rasa project keeps its nlu, stories and rules there")
    raw, notes = translate_config(rasa, root / "config.yml")
    notes += _session_settings(domain, raw)
    notes += _endpoints(root, raw, env)
    _actions(root, raw)
    channels = _credentials(root)
    ours = _read_yaml(root / OUR_FILE, required=False)
    if "pipeline" in ours:
        notes.append(f"config.yml pipeline: not used, because {OUR_FILE} sets a pipeline of our own")
    merged = _deep_merge(raw, ours)
    try:
        config = validate_config(merged, root / "config.yml", env)
    except ConfigError as e:
        raise ProjectError(str(e)) from e
    return RasaProject(root, config, notes, channels)


def translate_config(rasa: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    """Rasa's config.yml -> our config keys (before validation), and the notes on what is not used."""
    recipe = str(rasa.get("recipe") or "default.v1")
    if recipe != "default.v1":
        raise ProjectError(f"{path}: recipe '{recipe}' is not supported; only default.v1 (components and policies "
                           "as lists) can be translated")
    language = str(rasa.get("language") or "en")
    base = language.split("-")[0].lower()
    notes: list[str] = []
    pipeline = rasa.get("pipeline")
    if not pipeline:
        notes.append("config.yml pipeline: empty, so Rasa's suggested pipeline is translated")
        pipeline = DEFAULT_PIPELINE
    steps, dialogue, more = _translate_pipeline(path, pipeline, base)
    notes += more
    if not rasa.get("policies"):
        notes.append("config.yml policies: empty, so Rasa's suggested policies are kept")
    policies, more = _translate_policies(path, rasa.get("policies") or DEFAULT_POLICIES)
    notes += more
    for key in sorted(set(rasa) - {"recipe", "language", "pipeline", "policies", "assistant_id", "version"}):
        why = "a bot has one language" if key == "additional_languages" else "this bot has no such setting"
        notes.append(f"config.yml {key}: not used, because {why}")
    assistant_id = str(rasa.get("assistant_id") or "")
    neutral = NEUTRAL_NAMES.get(base, NEUTRAL_NAMES["en"])
    raw: dict[str, Any] = {
        "language": language, "nlu_data": ".", "models_dir": "models", "pipeline": steps, "policies": policies,
        "assistant_name": neutral[0] if assistant_id in PLACEHOLDER_ASSISTANT_IDS else assistant_id,
        "product_name": neutral[1], "dialogue": dialogue, "storage": {"url": "sqlite:///.bot/bot.db"},
        "retrieval": {"knowledge": "knowledge"}, "actions_package": None,
    }
    return _deep_merge(raw, LANGUAGE_SETTINGS.get(base, {})), notes


def _translate_pipeline(path: Path, components: Any, language: str
                        ) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Rasa components -> our pipeline steps, dialogue thresholds and notes."""
    if not isinstance(components, list) or not all(isinstance(c, dict) and c.get("name") for c in components):
        raise ProjectError(f"{path}: pipeline must be a list of components, each with a 'name'")
    names = {RENAMED_COMPONENTS.get(str(c["name"]), str(c["name"])) for c in components}
    notes: list[str] = []
    classifier: dict[str, Any] = {"name": "intent_classifier", "word_features": False, "fallback_threshold": 0.0}
    rules = {"name": "rule_entities", "use_lookups": bool(names & ENTITY_LEARNERS), "use_regexes": False,
             "use_synonyms": "EntitySynonymMapper" in names}
    dialogue: dict[str, Any] = {}
    steps: list[dict[str, Any]] = [_normalizer(language)]
    builtin: dict[str, Any] | None = {"name": "builtin_entities"} if language == "zh" else None
    for component in components:
        name = str(component["name"])
        if RENAMED_COMPONENTS.get(name, name) != name:
            notes.append(f"{name}: the Rasa 1/2 name of {RENAMED_COMPONENTS[name]}, read as that")
            name = RENAMED_COMPONENTS[name]
        options = {k: v for k, v in component.items() if k != "name"}
        if name == "CountVectorsFeaturizer":
            _count_vectors(options, classifier)
        elif name == "FallbackClassifier":
            threshold = float(options.get("threshold", 0.3))
            classifier["fallback_threshold"] = threshold
            classifier["ambiguity_threshold"] = float(options.get("ambiguity_threshold", 0.1))
            # Rasa acts on any intent above the threshold: the project's answering policy (bot.yml may be stricter)
            dialogue["conversational_threshold"] = dialogue["intent_answer_threshold"] = threshold
        elif name in {"RegexFeaturizer", "RegexEntityExtractor"}:
            rules["use_regexes"] = rules["use_regexes"] or options.get("use_regexes", True)
            rules["use_lookups"] = rules["use_lookups"] or options.get("use_lookup_tables", True)
        elif name == "DucklingEntityExtractor":
            dims = [DUCKLING_DIMENSIONS[d] for d in options.get("dimensions") or [] if d in DUCKLING_DIMENSIONS]
            builtin = {"name": "builtin_entities", **({"dimensions": sorted(set(dims))} if dims else {})}
        elif name in NOT_USED:
            notes.append(f"{name}: not used, because {NOT_USED[name]}")
            continue
        elif name not in CLASSIFIERS | TOKENIZERS | {"EntitySynonymMapper", "ResponseSelector",
                                                      "CRFEntityExtractor"}:
            notes.append(f"{name}: not used, because it is not a Rasa component this bot knows (custom "
                         "components run inside Rasa's graph, which is not installed here)")
            continue
        notes += _component_notes(name, options, language)
    if "FallbackClassifier" not in names:
        # without it Rasa acts on the top intent however unsure, so our answering thresholds must not hold back
        dialogue["conversational_threshold"] = dialogue["intent_answer_threshold"] = 0.0
    notes = list(dict.fromkeys(notes))  # a component listed twice is reported once
    if not names & CLASSIFIERS:
        notes.append("pipeline: no intent classifier in config.yml; intent_classifier is used anyway")
    if language == "zh":
        jieba, note = _jieba(components, path.parent)
        steps.append(jieba)
        notes += [note] if note else []
    if rules["use_lookups"] or rules["use_regexes"] or rules["use_synonyms"]:
        steps.append(rules)
    if builtin:
        steps.append(builtin)
    steps.append(classifier)
    return steps, dialogue, notes


def _normalizer(language: str) -> dict[str, Any]:
    chinese = language == "zh"
    return {"name": "normalizer", "traditional_to_simplified": chinese, "chinese_numerals": chinese}


def _jieba(components: list[dict[str, Any]], root: Path) -> tuple[dict[str, Any], str | None]:
    """jieba_tokenizer; Rasa's dictionary_path is a folder of dictionaries, ours one file."""
    given = next((c for c in components if c["name"] == "JiebaTokenizer"), {}).get("dictionary_path")
    if not given or not (root / str(given)).is_dir():
        return {"name": "jieba_tokenizer", "user_dict": given}, None
    files = sorted(p for p in (root / str(given)).iterdir() if p.is_file())
    if len(files) == 1:
        return {"name": "jieba_tokenizer", "user_dict": str(files[0].relative_to(root))}, None
    return {"name": "jieba_tokenizer", "user_dict": None}, (
        f"JiebaTokenizer dictionary_path {given}: not used, because it holds {len(files)} files and "
        "jieba_tokenizer takes one user dictionary (merge them, or set user_dict in bot.yml)")


def _count_vectors(options: dict[str, Any], classifier: dict[str, Any]) -> None:
    if str(options.get("analyzer", "word")) in {"char", "char_wb"}:
        classifier["char_ngram_range"] = [int(options.get("min_ngram", 1)), int(options.get("max_ngram", 4))]
    else:
        classifier["word_features"] = True


def _component_notes(name: str, options: dict[str, Any], language: str) -> list[str]:
    """At most one line for a component we translate: what stands in for it, and its options without effect."""
    parts = [COMPONENT_NOTES[name]] if name in COMPONENT_NOTES else []
    if name == "WhitespaceTokenizer":
        parts = [WHITESPACE_NOTES["zh" if language == "zh" else "other"]]
    ignored = sorted(set(options) - MAPPED_OPTIONS.get(name, set()))
    if ignored:
        what = "intent classifier (logistic regression, fitted in one pass)" if name in CLASSIFIERS else "step"
        parts.append(f"options {', '.join(ignored)} not used, because our {what} has no such setting")
    return [f"{name}: {'; '.join(parts)}"] if parts else []


def _translate_policies(path: Path, policies: Any) -> tuple[list[dict[str, Any]], list[str]]:
    if not isinstance(policies, list) or not all(isinstance(p, dict) and p.get("name") for p in policies):
        raise ProjectError(f"{path}: policies must be a list of policies, each with a 'name'")
    kept: list[dict[str, Any]] = []
    notes: list[str] = []
    for policy in policies:
        name = str(policy["name"])
        if name in RENAMED_POLICIES:
            name = RENAMED_POLICIES[name]
            notes.append(f"{policy['name']}: a Rasa 2 policy, read as {name} (Rasa 3 has only that); its options "
                         "are not used")
            if all(p["name"] != name for p in kept) and all(p["name"] != name for p in policies):
                kept.append({"name": name})
        elif name in KEPT_POLICIES:
            kept.append(dict(policy))
        else:
            why = NOT_USED.get(name, "it is not a policy this bot knows (custom policies run inside Rasa)")
            notes.append(f"{name}: not used, because {why}")
    return kept, notes


# --- domain, endpoints, credentials, actions --------------------------------------------------------------


def _session_settings(domain: list[Path], raw: dict[str, Any]) -> list[str]:
    """session_config's expiration -> storage.session_expiry_minutes; the notes of reading the domain."""
    session, notes = None, []
    for file in domain:
        try:
            parsed = parse_file(file)
        except TrainingDataError as e:
            raise ProjectError(str(e)) from e
        session, notes = parsed.session_config or session, notes + parsed.notes
    if session is None:
        return notes
    if session.session_expiration_time <= 0:
        return [*notes, "session_config session_expiration_time 0 (never expire): not used, because conversations "
                "end after storage.session_expiry_minutes of silence (60 unless bot.yml says otherwise)"]
    raw["storage"]["session_expiry_minutes"] = max(1, round(session.session_expiration_time))
    return notes


def _endpoints(root: Path, raw: dict[str, Any], env: Any) -> list[str]:
    endpoints = _read_yaml(root / "endpoints.yml", required=False)
    notes = []
    for key, value in endpoints.items():
        if key == "action_endpoint" and isinstance(value, dict) and value.get("url"):
            raw["action_endpoint"] = {"url": _expand(str(value["url"]), env, root / "endpoints.yml")}
        elif value is not None and key != "action_endpoint":
            notes.append(f"endpoints.yml {key}: not used, because "
                         f"{ENDPOINT_NOTES.get(key, 'this server has no such endpoint')}")
    return notes


def _expand(value: str, env: Any, path: Path) -> str:
    """Rasa's ${VARIABLE} references in endpoints.yml."""
    def variable(match: re.Match[str]) -> str:
        if match.group(1) not in env:
            raise ProjectError(f"{path}: environment variable {match.group(1)} is not set")
        return str(env[match.group(1)])

    return ENV_REFERENCE.sub(variable, value)


def _credentials(root: Path) -> dict[str, str]:
    credentials = _read_yaml(root / "credentials.yml", required=False)
    return {str(key): CHANNELS.get(str(key), OTHER_CHANNEL) for key in credentials}


def _actions(root: Path, raw: dict[str, Any]) -> None:
    """The project's actions package (actions/ or actions.py), made importable under a name of its own so it
    never clashes with another `actions` package in the same process."""
    package, module = root / "actions", root / "actions.py"
    if not (package.is_dir() and any(package.glob("*.py"))) and not module.is_file():
        return
    alias = f"rasa_project_actions_{hashlib.sha256(str(root).encode()).hexdigest()[:10]}"
    if alias not in sys.modules:
        _register(alias, package if package.is_dir() else module)
    raw["actions_package"] = alias


def _register(alias: str, location: Path) -> None:
    if location.is_dir() and not (location / "__init__.py").exists():
        module = types.ModuleType(alias)
        module.__path__ = [str(location)]  # a namespace package: its modules import as alias.name
        sys.modules[alias] = module
        return
    init = location / "__init__.py" if location.is_dir() else location
    spec = importlib.util.spec_from_file_location(
        alias, init, submodule_search_locations=[str(location)] if location.is_dir() else None)
    if spec is None or spec.loader is None:
        raise ProjectError(f"{location}: cannot be imported as a Python package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - whatever the project's code raises, say where
        del sys.modules[alias]
        raise ProjectError(f"{init}: importing the actions failed: {e}") from e


# --- files -----------------------------------------------------------------------------------------------


def _read_yaml(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ProjectError(f"{path}: not found; a Rasa project has config.yml, domain.yml (or domain/) and "
                               "data/")
        return {}
    try:
        raw = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else 1
        raise ProjectError(f"{path}:{line}: YAML syntax error: {e.problem}") from e
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProjectError(f"{path}:1: the top level must be a mapping of keys")
    return raw


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def project_fingerprint(root: Path) -> str:
    """SHA-256 over what a project's model is trained from (config, bot.yml, domain, data/, knowledge/)."""
    digest = hashlib.sha256()
    files = [root / "config.yml", root / OUR_FILE, *find_domain(root)]
    for folder in (root / "data", root / "knowledge"):
        files += sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    for file in files:
        if file.is_file():
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()
