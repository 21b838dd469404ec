"""Rasa 3 training data (`nlu:`, `responses:`, `rules:`) read from a folder of YAML files.

Malformed files raise `TrainingDataError` naming the file, the line and the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from bot.yaml_io import item_line, key_line, load_yaml, plain

ENTITY_ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<entity>[^)]+)\)|(?P<json>\{[^}]*\}))")
NLU_KINDS = ("intent", "synonym", "regex", "lookup")
KNOWN_TOP_KEYS = {"version", "nlu", "responses", "rules", "stories", "slots", "forms", "entities",
                  "intents", "actions", "session_config"}


class TrainingDataError(ValueError):
    """Training data that cannot be used; the message names the file, line and problem."""


@dataclass(frozen=True)
class AnnotatedEntity:
    entity: str
    value: str
    start: int
    end: int


@dataclass(frozen=True)
class Example:
    text: str  # the example with annotations removed
    intent: str
    entities: tuple[AnnotatedEntity, ...] = ()
    source: str = ""  # "file:line", for error messages and reports


@dataclass
class TrainingData:
    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)  # surface form -> canonical value
    regexes: dict[str, list[str]] = field(default_factory=dict)  # entity -> patterns
    lookups: dict[str, list[str]] = field(default_factory=dict)  # entity -> values
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)  # Rasa 3 domain slots with their mappings
    forms: dict[str, list[str]] = field(default_factory=dict)  # form -> required slots
    actions: list[str] = field(default_factory=list)  # custom actions the domain declares

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.examples})

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


def load_training_data(path: str | Path) -> TrainingData:
    """Load one YAML file or every `*.yml`/`*.yaml` file under a folder."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in {".yml", ".yaml"})
    if not files:
        raise TrainingDataError(f"{path}: no training data files (*.yml) found")
    data = TrainingData()
    for file in files:
        data.merge(parse_file(file))
    return data


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
    data.rules = _parse_rules(file, document.get("rules") or [])
    data.slots = _parse_slots(file, document.get("slots") or {})
    data.forms = _parse_forms(file, document.get("forms") or {})
    actions = document.get("actions") or []
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise TrainingDataError(f"{file}:{key_line(document, 'actions')}: 'actions' must be a list of action names")
    data.actions = list(actions)
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
        examples = item.get("examples")
        if not isinstance(examples, str):
            raise TrainingDataError(f"{file}:{line}: {kind} '{name}' needs 'examples: |' followed by '- ' lines")
        lines = _example_lines(file, line, kind, name, examples)
        if kind == "intent":
            data.examples += [_parse_example(file, ln, text, name) for ln, text in lines]
        elif kind == "synonym":
            data.synonyms.update({text: name for _, text in lines})
        elif kind == "regex":
            for ln, pattern in lines:
                _check_regex(file, ln, name, pattern)
            data.regexes.setdefault(name, []).extend(text for _, text in lines)
        else:
            data.lookups.setdefault(name, []).extend(text for _, text in lines)


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
        entity, value = _annotation(file, line, match)
        entities.append(AnnotatedEntity(entity, value or surface, start, start + len(surface)))
        text_parts.append(surface)
        cursor = match.end()
    text_parts.append(raw[cursor:])
    return Example("".join(text_parts), intent, tuple(entities), f"{file}:{line}")


def _annotation(file: Path, line: int, match: re.Match[str]) -> tuple[str, str | None]:
    if match.group("entity"):
        return match.group("entity").strip(), None
    try:
        spec = YAML(typ="safe").load(match.group("json"))
        return str(spec["entity"]), (str(spec["value"]) if "value" in spec else None)
    except Exception as e:  # noqa: BLE001 - any parse problem is reported the same way
        raise TrainingDataError(f"{file}:{line}: bad entity annotation {match.group(0)!r}: "
                                "use [text](entity) or [text]{\"entity\": \"name\", \"value\": \"v\"}") from e


def _check_regex(file: Path, line: int, name: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise TrainingDataError(f"{file}:{line}: regex '{name}': invalid pattern {pattern!r}: {e}") from e


def _parse_responses(file: Path, responses: Any) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(responses, dict):
        raise TrainingDataError(f"{file}: 'responses' must map response names to lists of variants")
    result: dict[str, list[dict[str, Any]]] = {}
    for name, variants in responses.items():
        line = key_line(responses, name)
        if not isinstance(variants, list) or not variants:
            raise TrainingDataError(f"{file}:{line}: response '{name}' must be a non-empty list of variants")
        for variant in variants:
            if not isinstance(variant, dict) or not ({"text", "custom", "image"} & set(variant)):
                raise TrainingDataError(f"{file}:{line}: response '{name}': each variant needs a 'text'")
        result[str(name)] = [plain(v) for v in variants]
    return result


def _parse_rules(file: Path, rules: Any) -> list[dict[str, Any]]:
    if not isinstance(rules, list):
        raise TrainingDataError(f"{file}: 'rules' must be a list")
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or "rule" not in rule or not isinstance(rule.get("steps"), list):
            raise TrainingDataError(f"{file}:{item_line(rules, index)}: each rule needs 'rule:' and 'steps:'")
    return [plain(r) for r in rules]


SLOT_MAPPINGS = {"from_entity", "from_text", "from_intent", "from_trigger_intent", "custom"}


def _parse_slots(file: Path, slots: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(slots, dict):
        raise TrainingDataError(f"{file}: 'slots' must map slot names to their type and mappings")
    for name, spec in slots.items():
        line = key_line(slots, name)
        if not isinstance(spec, dict) or "type" not in spec:
            raise TrainingDataError(f"{file}:{line}: slot '{name}' needs a 'type' (text, bool, float, any, ...)")
        for mapping in spec.get("mappings") or []:
            kind = mapping.get("type") if isinstance(mapping, dict) else None
            if kind not in SLOT_MAPPINGS:
                raise TrainingDataError(f"{file}:{line}: slot '{name}': mapping type {kind!r} is not one of "
                                        f"{', '.join(sorted(SLOT_MAPPINGS))}")
            if kind == "from_entity" and not mapping.get("entity"):
                raise TrainingDataError(f"{file}:{line}: slot '{name}': a from_entity mapping needs 'entity'")
    return {str(k): plain(v) for k, v in slots.items()}


def _parse_forms(file: Path, forms: Any) -> dict[str, list[str]]:
    if not isinstance(forms, dict):
        raise TrainingDataError(f"{file}: 'forms' must map form names to {{required_slots: [...]}}")
    result = {}
    for name, spec in forms.items():
        required = (spec or {}).get("required_slots") if isinstance(spec, dict) else None
        if not isinstance(required, list) or not required:
            raise TrainingDataError(f"{file}:{key_line(forms, name)}: form '{name}' needs a list 'required_slots'")
        result[str(name)] = [str(s) for s in required]
    return result
