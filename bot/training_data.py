"""Rasa 3 training data and domain (`nlu:`, `responses:`, `rules:`, `stories:`, `intents:`, `slots:`, ...).

Read from a folder of YAML files (the bundled bot's `nlu_data/`) or from a Rasa project directory (a domain
file or `domain/` folder, `data/`, and `tests/` whose stories are tests, not training data).
Malformed files raise `TrainingDataError` naming the file, the line and the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from bot.yaml_io import item_line, key_line, load_yaml, plain

ENTITY_ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<entity>[^)]+)\)|(?P<json>\{[^}]*\}))")
NLU_KINDS = ("intent", "synonym", "regex", "lookup")
KNOWN_TOP_KEYS = {"version", "nlu", "responses", "rules", "stories", "slots", "forms", "entities",
                  "intents", "actions", "session_config", "config", "e2e_actions"}
SLOT_TYPES = ("text", "bool", "categorical", "float", "list", "any")
SLOT_MAPPINGS = {"from_entity", "from_text", "from_intent", "from_trigger_intent", "custom"}
STEP_KEYS = {"intent", "user", "action", "bot", "slot_was_set", "active_loop", "checkpoint", "or"}
DOMAIN_NAMES = ("domain.yml", "domain.yaml")
RENAMED_ACTIONS = {"action_deactivate_form": "action_deactivate_loop"}  # Rasa 2.0's name -> Rasa 3's
RULE_SNIPPET = "..."  # Rasa's RULE_SNIPPET_ACTION_NAME: "any events may come here"
YAML_SUFFIXES = {".yml", ".yaml"}


class TrainingDataError(ValueError):
    """Training data that cannot be used; the message names the file, line and problem."""


@dataclass(frozen=True)
class AnnotatedEntity:
    entity: str
    value: str
    start: int
    end: int
    role: str | None = None  # [Berlin]{"entity": "city", "role": "destination"}
    group: str | None = None


@dataclass(frozen=True)
class Example:
    text: str  # the example with annotations removed
    intent: str  # a retrieval intent keeps its full name: "faq/ask_fees"
    entities: tuple[AnnotatedEntity, ...] = ()
    source: str = ""  # "file:line", for error messages and reports


@dataclass(frozen=True)
class IntentSpec:
    """A domain intent: which entities of its messages count (Rasa's use_entities / ignore_entities)."""

    use_entities: bool | tuple[str, ...] = True  # True: all, False: none, a tuple: only these
    ignore_entities: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class EntitySpec:
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    influence_conversation: bool = True
    source: str = ""


@dataclass(frozen=True)
class SessionConfig:
    session_expiration_time: float = 60  # minutes of silence after which a new session starts; 0 = never
    carry_over_slots_to_new_session: bool = True


@dataclass
class DisplayNames:
    """How people read an intent, a slot or a form: the optional `display_name` nlu_data gives it (an intent's in
    its nlu block's `metadata:` or in the domain's `intents:`, a slot's or a form's in the domain). A name without
    one is absent: callers choose their own fallback."""

    intents: dict[str, str] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)
    forms: dict[str, str] = field(default_factory=dict)

    def merge(self, other: DisplayNames) -> None:
        self.intents.update(other.intents)
        self.slots.update(other.slots)
        self.forms.update(other.forms)

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"intents": dict(self.intents), "slots": dict(self.slots), "forms": dict(self.forms)}

    @classmethod
    def from_json(cls, raw: Any) -> DisplayNames:
        """From a model's metadata.json (models trained before display names: none)."""
        raw = raw if isinstance(raw, dict) else {}
        return cls(**{kind: {str(k): str(v) for k, v in (raw.get(kind) or {}).items()}
                      for kind in ("intents", "slots", "forms")})


@dataclass
class TrainingData:
    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)  # surface form -> canonical value
    regexes: dict[str, list[str]] = field(default_factory=dict)  # entity -> patterns
    lookups: dict[str, list[str]] = field(default_factory=dict)  # entity -> values
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    # Rasa 3 domain slots as plain dicts: type, values, min_value/max_value, influence_conversation,
    # initial_value, mappings (with conditions)
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)
    forms: dict[str, list[str]] = field(default_factory=dict)  # form -> required slots
    actions: list[str] = field(default_factory=list)  # custom actions the domain declares
    # --- the rest of a Rasa domain and project
    domain_intents: dict[str, IntentSpec] = field(default_factory=dict)  # the domain's `intents:`
    entities: dict[str, EntitySpec] = field(default_factory=dict)  # the domain's `entities:`
    form_ignored_intents: dict[str, list[str]] = field(default_factory=dict)  # form -> intents it ignores
    session_config: SessionConfig | None = None  # None: the domain does not set it
    # story dicts as written ("story", "steps", ...) plus "source": "file:line"; rules get the same "source"
    stories: list[dict[str, Any]] = field(default_factory=list)
    test_stories: list[dict[str, Any]] = field(default_factory=list)  # tests/ files, stories with `user:`
    builtin_responses: set[str] = field(default_factory=set)  # responses added from the built-in defaults
    notes: list[str] = field(default_factory=list)  # "file: what was read differently, and why", one line each
    display_names: DisplayNames = field(default_factory=DisplayNames)

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.examples})

    @property
    def retrieval_intents(self) -> list[str]:
        """Base names of retrieval intents ("faq" for examples of "faq/ask_fees")."""
        return sorted({e.intent.split("/", 1)[0] for e in self.examples if "/" in e.intent})

    def retrieval_response(self, action: str, intent: str) -> str:
        """The response a retrieval action gives for an intent: utter_faq for faq/ask_fees is
        utter_faq/ask_fees when defined (Rasa's ResponseSelector); any other action is itself."""
        base, _, sub = intent.partition("/")
        specific = f"{action}/{sub}"
        return specific if sub and action == f"utter_{base}" and specific in self.responses else action

    def merge(self, other: TrainingData) -> None:
        self.examples += other.examples
        self.synonyms.update(other.synonyms)
        for key, patterns in other.regexes.items():
            self.regexes.setdefault(key, []).extend(patterns)
        for key, values in other.lookups.items():
            self.lookups.setdefault(key, []).extend(values)
        self.responses.update(other.responses)
        self.rules += other.rules
        self.slots.update(other.slots)
        self.forms.update(other.forms)
        self.actions += [a for a in other.actions if a not in self.actions]
        self.domain_intents.update(other.domain_intents)
        self.entities.update(other.entities)
        self.form_ignored_intents.update(other.form_ignored_intents)
        self.session_config = other.session_config or self.session_config
        self.stories += other.stories
        self.test_stories += other.test_stories
        self.notes += other.notes
        self.display_names.merge(other.display_names)

    def as_rasa_domain(self) -> dict[str, Any]:
        """The domain as Rasa serialises it (plain data), for policies and action servers."""
        intents = self.domain_intents or {name: IntentSpec() for name in self.intents}
        session = self.session_config or SessionConfig()
        return {
            "intents": [_intent_dict(name, spec) for name, spec in intents.items()],
            "entities": [_entity_dict(name, spec) for name, spec in self.entities.items()],
            "slots": self.slots,
            "responses": self.responses,
            "actions": list(self.actions),
            "forms": {name: {"required_slots": slots, **({"ignored_intents": self.form_ignored_intents[name]}
                                                          if name in self.form_ignored_intents else {})}
                      for name, slots in self.forms.items()},
            "session_config": {"session_expiration_time": session.session_expiration_time,
                               "carry_over_slots_to_new_session": session.carry_over_slots_to_new_session},
        }


def _intent_dict(name: str, spec: IntentSpec) -> str | dict[str, Any]:
    if spec.use_entities is True and not spec.ignore_entities:
        return name
    if spec.ignore_entities:
        return {name: {"ignore_entities": list(spec.ignore_entities)}}
    return {name: {"use_entities": spec.use_entities if isinstance(spec.use_entities, bool)
                   else list(spec.use_entities)}}


def _entity_dict(name: str, spec: EntitySpec) -> str | dict[str, Any]:
    extra = {k: list(v) for k, v in (("roles", spec.roles), ("groups", spec.groups)) if v}
    if not spec.influence_conversation:
        extra["influence_conversation"] = False  # type: ignore[assignment]
    return {name: extra} if extra else name


# --- where the files are ----------------------------------------------------------------------------------


def find_domain(root: Path) -> list[Path]:
    """The domain files of a Rasa project directory: domain.yml, or every YAML file under domain/."""
    for name in DOMAIN_NAMES:
        if (root / name).is_file():
            return [root / name]
    folder = root / "domain"
    return _yaml_files(folder) if folder.is_dir() else []


def is_rasa_project(path: Path) -> bool:
    """A directory with a domain and a data/ folder (a folder of YAML may hold a file called domain.yml)."""
    return path.is_dir() and (path / "data").is_dir() and bool(find_domain(path))


def load_training_data(path: str | Path, language: str | None = None) -> TrainingData:
    """Load one YAML file, every `*.yml`/`*.yaml` file under a folder, or a Rasa project directory.

    A Rasa project also gets the built-in responses it does not define, in `language` (default: the language
    of its config.yml)."""
    path = Path(path)
    if is_rasa_project(path):
        return load_project_data(path, language)
    files = [path] if path.is_file() else _yaml_files(path)
    if not files:
        raise TrainingDataError(f"{path}: no training data files (*.yml) found")
    return _load_files(files)


def load_project_data(root: Path, language: str | None = None) -> TrainingData:
    """Domain + data/ (+ tests/ as test stories) of a Rasa project, with the built-in responses added."""
    domain = find_domain(root)
    if not domain:
        raise TrainingDataError(f"{root}: no domain.yml and no domain/ folder; a Rasa project needs its domain")
    data_dir = root / "data"
    if not data_dir.is_dir():
        raise TrainingDataError(f"{root}: no data/ folder; a Rasa project keeps its nlu, stories and rules there")
    data = _load_files(domain + _yaml_files(data_dir))
    tests_dir = root / "tests"
    if tests_dir.is_dir():
        tests = _load_files(_yaml_files(tests_dir)) if _yaml_files(tests_dir) else TrainingData()
        data.test_stories += tests.stories + tests.test_stories
    add_builtin_responses(data, language or project_language(root))
    return data


def add_builtin_responses(data: TrainingData, language: str) -> None:
    from bot.dialogue.default_responses import default_responses  # here: bot.dialogue imports this module

    for name, variants in default_responses(language).items():
        if name not in data.responses:
            data.responses[name] = variants
            data.builtin_responses.add(name)


def project_language(root: Path) -> str:
    """The `language` of a Rasa project's config.yml ("en" when it has none or cannot be read)."""
    try:
        raw = YAML(typ="safe").load((root / "config.yml").read_text(encoding="utf-8"))
    except (OSError, ValueError, MarkedYAMLError):  # the project loader reports a broken config.yml itself
        return "en"
    return str(raw.get("language") or "en") if isinstance(raw, dict) else "en"


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())


def _load_files(files: list[Path]) -> TrainingData:
    data = TrainingData()
    for file in files:
        data.merge(parse_file(file))
    return data


# --- one file -------------------------------------------------------------------------------------------


def parse_file(file: Path) -> TrainingData:
    document = load_yaml(file, TrainingDataError)
    data = TrainingData()
    if document is None:
        return data
    if not isinstance(document, dict):
        raise TrainingDataError(f"{file}:1: the top level must be a mapping with keys like nlu, responses, rules")
    for key in document:
        if key not in KNOWN_TOP_KEYS:
            raise TrainingDataError(f"{file}:{key_line(document, key)}: unknown top-level key '{key}'; "
                                    f"expected one of {', '.join(sorted(KNOWN_TOP_KEYS))}")
    _parse_nlu(file, document.get("nlu") or [], data)
    data.responses = _parse_responses(file, document.get("responses") or {})
    data.rules = _parse_stories(file, document.get("rules") or [], "rule")
    stories = _parse_stories(file, document.get("stories") or [], "story")
    tests = file.name.startswith("test_")
    data.stories = [s for s in stories if not (tests or _is_test_story(s))]
    data.test_stories = [s for s in stories if tests or _is_test_story(s)]
    data.slots = _parse_slots(file, document.get("slots") or {})
    data.entities = _parse_entities(file, document.get("entities") or [])
    forms = document.get("forms") or {}
    if _is_rasa2_domain(document):
        forms, data.notes = _migrate_rasa2_domain(file, forms, data.slots, list(data.entities))
    data.forms, data.form_ignored_intents = _parse_forms(file, forms)
    data.actions = _parse_actions(file, document)
    data.domain_intents = _parse_intents(file, document.get("intents") or [], data.display_names)
    data.display_names.slots.update(_display_names(file, document.get("slots"), "slot"))
    data.display_names.forms.update(_display_names(file, document.get("forms"), "form"))
    if "session_config" in document:
        data.session_config = _parse_session(file, document)
    return data


def _parse_nlu(file: Path, items: Any, data: TrainingData) -> None:
    if not isinstance(items, list):
        raise TrainingDataError(f"{file}: 'nlu' must be a list of intent/synonym/regex/lookup blocks")
    for index, item in enumerate(items):
        line = item_line(items, index)
        kinds = [k for k in NLU_KINDS if isinstance(item, dict) and k in item]
        if len(kinds) != 1:
            raise TrainingDataError(f"{file}:{line}: each nlu block needs exactly one of "
                                    f"{', '.join(NLU_KINDS)} (found {kinds or 'none'})")
        kind, name = kinds[0], str(item[kinds[0]])
        lines = _block_lines(file, line, kind, name, item.get("examples"))
        if kind == "intent":
            data.examples += [_parse_example(file, ln, text, name) for ln, text in lines]
            shown = _display_name(f"{file}:{line}: intent '{name}'", item.get("metadata"))
            if shown:
                data.display_names.intents[name] = shown
        elif kind == "synonym":
            data.synonyms.update({text: name for _, text in lines})
        elif kind == "regex":
            for ln, pattern in lines:
                _check_regex(file, ln, name, pattern)
            data.regexes.setdefault(name, []).extend(text for _, text in lines)
        else:
            data.lookups.setdefault(name, []).extend(text for _, text in lines)


def _block_lines(file: Path, line: int, kind: str, name: str, examples: Any) -> list[tuple[int, str]]:
    """(line, text) of a block's examples: `examples: |` with '- ' lines, or Rasa's list of {text, metadata}."""
    if isinstance(examples, str):
        return _example_lines(file, line, kind, name, examples)
    if isinstance(examples, list) and examples and all(isinstance(e, dict) and "text" in e for e in examples):
        return [(item_line(examples, i), str(e["text"]).strip()) for i, e in enumerate(examples)]
    raise TrainingDataError(f"{file}:{line}: {kind} '{name}' needs 'examples: |' followed by '- ' lines")


def _example_lines(file: Path, line: int, kind: str, name: str, block: str) -> list[tuple[int, str]]:
    result = []
    for offset, raw in enumerate(block.splitlines()):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        ln = line + 2 + offset  # the block starts on the line after "examples: |"
        if not stripped.startswith("- "):
            raise TrainingDataError(f"{file}:{ln}: {kind} '{name}': example lines must start with '- ', "
                                    f"got {stripped[:40]!r}")
        text = stripped[2:].strip()
        if not text:
            raise TrainingDataError(f"{file}:{ln}: {kind} '{name}': empty example")
        result.append((ln, text))
    if not result:
        raise TrainingDataError(f"{file}:{line}: {kind} '{name}' has no examples")
    return result


def _parse_example(file: Path, line: int, raw: str, intent: str) -> Example:
    text_parts: list[str] = []
    entities: list[AnnotatedEntity] = []
    cursor = 0
    for match in ENTITY_ANNOTATION.finditer(raw):
        text_parts.append(raw[cursor : match.start()])
        start = sum(len(p) for p in text_parts)
        surface = match.group("text")
        spec = _annotation(file, line, match)
        entities.append(AnnotatedEntity(spec["entity"], spec.get("value") or surface, start, start + len(surface),
                                        spec.get("role"), spec.get("group")))
        text_parts.append(surface)
        cursor = match.end()
    text_parts.append(raw[cursor:])
    return Example("".join(text_parts), intent, tuple(entities), f"{file}:{line}")


def _annotation(file: Path, line: int, match: re.Match[str]) -> dict[str, str]:
    if match.group("entity"):
        return {"entity": match.group("entity").strip()}
    try:
        spec = YAML(typ="safe").load(match.group("json"))
        return {"entity": str(spec["entity"]),
                **{key: str(spec[key]) for key in ("value", "role", "group") if spec.get(key) is not None}}
    except Exception as e:  # noqa: BLE001 - any parse problem is reported the same way
        raise TrainingDataError(f"{file}:{line}: bad entity annotation {match.group(0)!r}: use [text](entity) or "
                                "[text]{\"entity\": \"name\", \"value\": \"v\", \"role\": \"r\"}") from e


def _check_regex(file: Path, line: int, name: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise TrainingDataError(f"{file}:{line}: regex '{name}': invalid pattern {pattern!r}: {e}") from e


# --- responses, stories and rules ----------------------------------------------------------------------------


def _parse_responses(file: Path, responses: Any) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(responses, dict):
        raise TrainingDataError(f"{file}: 'responses' must map response names to lists of variants")
    result: dict[str, list[dict[str, Any]]] = {}
    for name, variants in responses.items():
        line = key_line(responses, name)
        if not isinstance(variants, list) or not variants:
            raise TrainingDataError(f"{file}:{line}: response '{name}' must be a non-empty list of variants")
        for index, variant in enumerate(variants):
            _check_variant(file, item_line(variants, index), str(name), variant)
        result[str(name)] = [plain(v) for v in variants]
    return result


def _check_variant(file: Path, line: int, name: str, variant: Any) -> None:
    if not isinstance(variant, dict) or not ({"text", "custom", "image", "attachment"} & set(variant)):
        raise TrainingDataError(f"{file}:{line}: response '{name}': each variant needs a 'text'")
    buttons = variant.get("buttons") or []
    if not isinstance(buttons, list) or not all(isinstance(b, dict) and "title" in b for b in buttons):
        raise TrainingDataError(f"{file}:{line}: response '{name}': 'buttons' must be a list of {{title, payload}}")
    conditions = variant.get("condition") or []
    if not isinstance(conditions, list) or not all(isinstance(c, dict) and c.get("type") == "slot" and "name" in c
                                                   for c in conditions):
        raise TrainingDataError(f"{file}:{line}: response '{name}': 'condition' must be a list of "
                                "{type: slot, name: <slot>, value: <value>}")
    if "channel" in variant and not isinstance(variant["channel"], str):
        raise TrainingDataError(f"{file}:{line}: response '{name}': 'channel' must be a channel name")


def _parse_stories(file: Path, items: Any, kind: str) -> list[dict[str, Any]]:
    """Rules or stories as plain dicts with "source": "file:line"; each step is checked for a known key."""
    key = "rules" if kind == "rule" else "stories"
    if not isinstance(items, list):
        raise TrainingDataError(f"{file}: '{key}' must be a list")
    result = []
    for index, item in enumerate(items):
        line = item_line(items, index)
        if not isinstance(item, dict) or kind not in item or not isinstance(item.get("steps"), list):
            raise TrainingDataError(f"{file}:{line}: each {kind} needs '{kind}:' and 'steps:'")
        steps, trailing = _without_snippets(item["steps"]) if kind == "rule" else (item["steps"], False)
        for index, step in enumerate(steps):
            if isinstance(step, dict) and step.get("action") in RENAMED_ACTIONS:
                steps[index] = {**step, "action": RENAMED_ACTIONS[step["action"]]}
        _check_steps(file, f"{kind} '{item[kind]}'", steps)
        extra = {"wait_for_user_input": False} if trailing else {}
        result.append({**plain(item), "steps": plain(steps), **extra, "source": f"{file}:{line}"})
    return result


def _without_snippets(steps: Any) -> tuple[Any, bool]:
    """A rule's steps without Rasa's `- ...` at its start (any history before: what a rule is anyway, unless
    `conversation_start: true`) and at its end (no `action_listen` after: `wait_for_user_input: false`); True
    when it ended with one."""
    start, end = 0, len(steps)
    while start < end and steps[start] == RULE_SNIPPET:
        start += 1
    while end > start and steps[end - 1] == RULE_SNIPPET:
        end -= 1
    return (steps[start:end] if (start, end) != (0, len(steps)) else steps), end < len(steps)


def _check_steps(file: Path, owner: str, steps: list[Any]) -> None:
    for index, step in enumerate(steps):
        if step == RULE_SNIPPET:
            raise TrainingDataError(f"{file}:{item_line(steps, index)}: {owner}: '...' (any events) is only read "
                                    "at the start of a rule, where it changes nothing; remove it here")
        if not isinstance(step, dict) or not STEP_KEYS & set(step):
            raise TrainingDataError(f"{file}:{item_line(steps, index)}: {owner}: a step needs one of "
                                    f"{', '.join(sorted(STEP_KEYS))}")
        for branch in step.get("or") or []:
            if not isinstance(branch, dict) or not STEP_KEYS & set(branch):
                raise TrainingDataError(f"{file}:{item_line(steps, index)}: {owner}: each 'or' branch needs "
                                        "an intent, a slot_was_set or an action")


def _is_test_story(story: dict[str, Any]) -> bool:
    return any(isinstance(step, dict) and "user" in step for step in story["steps"])


# --- domain --------------------------------------------------------------------------------------------------


def _parse_slots(file: Path, slots: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(slots, dict):
        raise TrainingDataError(f"{file}: 'slots' must map slot names to their type and mappings")
    return {str(name): _parse_slot(file, key_line(slots, name), str(name), spec) for name, spec in slots.items()}


def _parse_slot(file: Path, line: int, name: str, spec: Any) -> dict[str, Any]:
    where = f"{file}:{line}: slot '{name}'"
    if not isinstance(spec, dict) or "type" not in spec:
        raise TrainingDataError(f"{where} needs a 'type' ({', '.join(SLOT_TYPES)})")
    kind = str(spec["type"])
    if kind not in SLOT_TYPES and "." not in kind:  # a dotted name is a custom slot class, as in Rasa
        raise TrainingDataError(f"{where}: unknown type '{kind}'; Rasa 3 slot types are {', '.join(SLOT_TYPES)}")
    if kind == "categorical" and not (isinstance(spec.get("values"), list) and spec["values"]):
        raise TrainingDataError(f"{where}: a categorical slot needs a non-empty list 'values'")
    if kind == "float" and float(spec.get("min_value", 0.0)) > float(spec.get("max_value", 1.0)):
        raise TrainingDataError(f"{where}: min_value is greater than max_value")
    if kind == "any" and spec.get("influence_conversation"):
        raise TrainingDataError(f"{where}: an 'any' slot cannot influence the conversation")
    for mapping in spec.get("mappings") or []:
        _check_mapping(where, mapping)
    # display_name is for people reading the conversation (TrainingData.display_names), not part of Rasa's slot
    return {"influence_conversation": kind != "any", "initial_value": None, "mappings": [],
            **{key: value for key, value in plain(spec).items() if key != "display_name"}}


def _check_mapping(where: str, mapping: Any) -> None:
    kind = mapping.get("type") if isinstance(mapping, dict) else None
    if kind not in SLOT_MAPPINGS:
        raise TrainingDataError(f"{where}: mapping type {kind!r} is not one of {', '.join(sorted(SLOT_MAPPINGS))}")
    if kind == "from_entity" and not mapping.get("entity"):
        raise TrainingDataError(f"{where}: a from_entity mapping needs 'entity'")
    if kind in {"from_intent", "from_trigger_intent"} and "value" not in mapping:
        raise TrainingDataError(f"{where}: a {kind} mapping needs 'value'")
    for condition in mapping.get("conditions") or []:
        if not isinstance(condition, dict) or "active_loop" not in condition:
            raise TrainingDataError(f"{where}: each mapping condition needs 'active_loop' (and optionally "
                                    "'requested_slot')")


def _parse_forms(file: Path, forms: Any) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    if not isinstance(forms, dict):
        raise TrainingDataError(f"{file}: 'forms' must map form names to {{required_slots: [...]}}")
    required_slots, ignored = {}, {}
    for name, spec in forms.items():
        line = key_line(forms, name)
        required = (spec or {}).get("required_slots") if isinstance(spec, dict) else None
        if isinstance(required, dict):
            raise TrainingDataError(f"{file}:{line}: form '{name}': required_slots is a mapping (Rasa 2); in "
                                    "Rasa 3 it lists slot names and each slot has its own mappings")
        if not isinstance(required, list) or not required:
            raise TrainingDataError(f"{file}:{line}: form '{name}' needs a list 'required_slots'")
        required_slots[str(name)] = [str(s) for s in required]
        ignored_intents = spec.get("ignored_intents") or []
        if isinstance(ignored_intents, str):
            ignored_intents = [ignored_intents]
        if ignored_intents:
            ignored[str(name)] = [str(i) for i in ignored_intents]
    return required_slots, ignored


def _is_rasa2_domain(document: Any) -> bool:
    """Rasa 2 slots (`auto_fill`) or forms whose slot mappings sit in the form (2.0: under its name, 2.x: under
    `required_slots`)."""
    slots = document.get("slots") or {}
    forms = document.get("forms") or {}
    return (isinstance(slots, dict) and any(isinstance(s, dict) and "auto_fill" in s for s in slots.values())) \
        or (isinstance(forms, dict) and any(isinstance(f, dict) and f and not isinstance(f.get("required_slots"),
                                                                                           list)
                                            for f in forms.values()))


def _migrate_rasa2_domain(file: Path, forms: Any, slots: dict[str, dict[str, Any]], entities: list[str]
                          ) -> tuple[dict[str, Any], list[str]]:
    """What `rasa data migrate` does to a Rasa 2 domain (Rasa itself does not install here to run it): a slot
    with auto_fill (Rasa 2's default) gets a from_entity mapping of its namesake entity, if there is one, and a
    form's slot mappings move to the slots with the form as condition. As in Rasa 2, a from_entity mapping fills its
    slot whenever the form is active (Rasa 2 filled "other slots" from entities); the others only when asked."""
    for name, spec in slots.items():
        if spec.pop("auto_fill", True) and not spec.get("mappings") and name in entities:
            spec["mappings"] = [{"type": "from_entity", "entity": name}]
    migrated: dict[str, Any] = {}
    for form, spec in (forms.items() if isinstance(forms, dict) else []):
        spec = plain(spec) or {}
        required = spec.pop("required_slots", None) if isinstance(spec.get("required_slots"), dict) else None
        if required is None and "required_slots" in spec:
            migrated[str(form)] = spec  # already Rasa 3
            continue
        options = {k: spec.pop(k) for k in ("ignored_intents",) if k in spec}
        kind = "required_slots is a mapping" if required is not None else "slot mappings under the form's name"
        required = required if required is not None else spec
        for slot, mappings in required.items():
            where = f"{file}:{key_line(forms, form)}: form '{form}': {kind} (Rasa 2)"
            if slot not in slots:
                raise TrainingDataError(f"{where}; read as Rasa 3 needs it, slot '{slot}' is not declared under "
                                        "'slots' in this file")
            slots[slot]["mappings"] = [*slots[slot].get("mappings", []),
                                       *(_form_condition(where, m, str(form), str(slot)) for m in mappings or [])]
        migrated[str(form)] = {"required_slots": [str(s) for s in required], **options}
    return migrated, [f"{file}: a Rasa 2 domain (auto_fill, form slot mappings): read as `rasa data migrate` "
                      "would write it for Rasa 3"]


def _form_condition(where: str, mapping: Any, form: str, slot: str) -> dict[str, Any]:
    _check_mapping(where, mapping)
    condition = {"active_loop": form} if mapping["type"] == "from_entity" else \
        {"active_loop": form, "requested_slot": slot}
    return {**mapping, "conditions": [condition]}


def _parse_actions(file: Path, document: Any) -> list[str]:
    """Action names; Rasa also allows `- action_x: {send_domain: true}`."""
    actions = document.get("actions") or []
    names = [next(iter(a)) if isinstance(a, dict) and len(a) == 1 else a for a in actions] \
        if isinstance(actions, list) else None
    if names is None or not all(isinstance(a, str) for a in names):
        raise TrainingDataError(f"{file}:{key_line(document, 'actions')}: 'actions' must be a list of action names")
    return [str(a) for a in names]


def _parse_intents(file: Path, intents: Any, names: DisplayNames) -> dict[str, IntentSpec]:
    if not isinstance(intents, list):
        raise TrainingDataError(f"{file}: 'intents' must be a list of intent names")
    result = {}
    for index, item in enumerate(intents):
        where = f"{file}:{item_line(intents, index)}"
        name, spec = _named_item(where, "intent", item)
        if "use_entities" in spec and "ignore_entities" in spec:
            raise TrainingDataError(f"{where}: intent '{name}': use either use_entities or ignore_entities")
        use = spec.get("use_entities", True)
        if not isinstance(use, bool | list):
            raise TrainingDataError(f"{where}: intent '{name}': use_entities must be true, false or a list")
        result[name] = IntentSpec(use if isinstance(use, bool) else tuple(str(e) for e in use),
                                  tuple(str(e) for e in spec.get("ignore_entities") or []), where)
        if shown := _display_name(f"{where}: intent '{name}'", spec):
            names.intents[name] = shown
    return result


def _display_names(file: Path, specs: Any, kind: str) -> dict[str, str]:
    """`display_name` of each slot or form of a domain mapping that gives one."""
    if not isinstance(specs, dict):
        return {}
    return {str(name): shown for name, spec in specs.items()
            if (shown := _display_name(f"{file}:{key_line(specs, name)}: {kind} '{name}'", spec))}


def _display_name(where: str, spec: Any) -> str | None:
    """A mapping's optional `display_name`: a non-empty string (Chinese for the bundled bot's agents)."""
    if not isinstance(spec, dict) or spec.get("display_name") is None:
        return None
    shown = spec["display_name"]
    if not isinstance(shown, str) or not shown.strip():
        raise TrainingDataError(f"{where}: display_name must be a non-empty text, e.g. display_name: 挂失银行卡")
    return shown.strip()


def _parse_entities(file: Path, entities: Any) -> dict[str, EntitySpec]:
    if not isinstance(entities, list):
        raise TrainingDataError(f"{file}: 'entities' must be a list of entity names")
    result = {}
    for index, item in enumerate(entities):
        where = f"{file}:{item_line(entities, index)}"
        name, spec = _named_item(where, "entity", item)
        result[name] = EntitySpec(tuple(str(r) for r in spec.get("roles") or []),
                                  tuple(str(g) for g in spec.get("groups") or []),
                                  bool(spec.get("influence_conversation", True)), where)
    return result


def _named_item(where: str, kind: str, item: Any) -> tuple[str, dict[str, Any]]:
    """`- name` or `- name: {options}` -> (name, options)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and len(item) == 1:
        name, spec = next(iter(item.items()))
        if spec is None or isinstance(spec, dict):
            return str(name), plain(spec or {})
    raise TrainingDataError(f"{where}: each {kind} is a name or 'name: {{options}}'")


def _parse_session(file: Path, document: Any) -> SessionConfig:
    spec = document.get("session_config") or {}
    line = key_line(document, "session_config")
    try:
        minutes = float(spec.get("session_expiration_time", 60))
        carry = spec.get("carry_over_slots_to_new_session", True)
    except (AttributeError, TypeError, ValueError) as e:
        raise TrainingDataError(f"{file}:{line}: session_config needs session_expiration_time (minutes) and "
                                "carry_over_slots_to_new_session (true/false)") from e
    if minutes < 0 or not isinstance(carry, bool):
        raise TrainingDataError(f"{file}:{line}: session_config: session_expiration_time must be >= 0 and "
                                "carry_over_slots_to_new_session true or false")
    return SessionConfig(minutes, carry)
