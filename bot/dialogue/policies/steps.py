"""Rasa 3 story and rule steps -> Rasa events: each step becomes one list of alternatives (several for `or:`),
and a story is cut into blocks at its checkpoints."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from bot.dialogue.policies.domain import PolicyDomain

Event = dict[str, Any]
SHOULD_NOT_BE_SET = "should_not_be_set"  # a rule's `slot: null` / `active_loop: null`: must not be set
FILLED = "filled"  # the value Rasa gives a slot named in `slot_was_set` without a value
MAX_VARIANTS = 256  # OR combinations of one story block or rule
STEP_KINDS = ("intent", "user", "action", "bot", "slot_was_set", "active_loop", "checkpoint", "or")


class StoryError(ValueError):
    """A story or rule that cannot be read; the message names it, the step and the problem."""


@dataclass
class Block:
    """The part of a story between two checkpoints, as one event list per combination of its OR steps."""

    story: str
    start_checkpoints: list[str]
    end_checkpoints: list[str] = field(default_factory=list)
    variants: list[list[Event]] = field(default_factory=lambda: [[]])


@dataclass
class RuleSpec:
    name: str
    variants: list[list[Event]]  # condition events, then the steps' events
    conversation_start: bool = False
    wait_for_user_input: bool = True


def user_event(intent: str, entities: list[Event] | None = None, text: str | None = None) -> Event:
    return {"event": "user", "text": text if text is not None else f"/{intent}",
            "parse_data": {"intent": {"name": intent, "confidence": 1.0}, "entities": entities or []}}


def action_event(name: str) -> Event:
    return {"event": "action", "name": name}


def parse_story(story: dict[str, Any], domain: PolicyDomain) -> list[Block]:
    name = _name(story, "story")
    blocks = [Block(name, [])]
    for index, step in enumerate(_steps(story, "story", name), start=1):
        where = f"story '{name}' step {index}"
        if isinstance(step, dict) and "checkpoint" in step:
            _checkpoint(blocks, str(step["checkpoint"]))
            continue
        if blocks[-1].end_checkpoints:  # a checkpoint in the middle: the story goes on in a new block
            blocks.append(Block(name, list(blocks[-1].end_checkpoints)))
        _extend(blocks[-1], _alternatives(step, where, domain, in_rule=False), where)
    return [b for b in blocks if b.end_checkpoints or any(b.variants[0]) or b.start_checkpoints]


def parse_rule(rule: dict[str, Any], domain: PolicyDomain) -> RuleSpec:
    name = _name(rule, "rule")
    steps = _steps(rule, "rule", name)
    spec = RuleSpec(name, [[]], bool(rule.get("conversation_start", False)),
                    bool(rule.get("wait_for_user_input", True)))
    condition = rule.get("condition") or []
    if not isinstance(condition, list):
        raise StoryError(f"rule '{name}': 'condition' must be a list of slot_was_set / active_loop steps")
    block = Block(name, [], variants=spec.variants)
    for index, item in enumerate(condition, start=1):
        where = f"rule '{name}' condition {index}"
        if not isinstance(item, dict) or not set(item) <= {"slot_was_set", "active_loop"} or not item:
            raise StoryError(f"{where}: a condition is a 'slot_was_set' or an 'active_loop' step, got {item!r}")
        _extend(block, _alternatives(item, where, domain, in_rule=True), where)
    users = 0
    for index, step in enumerate(steps, start=1):
        where = f"rule '{name}' step {index}"
        if isinstance(step, dict) and "checkpoint" in step:
            raise StoryError(f"{where}: rules cannot contain checkpoints")
        users += isinstance(step, dict) and ("intent" in step or "user" in step or "or" in step and
                                             any("intent" in a for a in step["or"] if isinstance(a, dict)))
        _extend(block, _alternatives(step, where, domain, in_rule=True), where)
    if users > 1:
        raise StoryError(f"rule '{name}': a rule may contain at most one user message (found {users}); "
                         "write longer conversations as stories")
    spec.variants = block.variants
    return spec


def _name(item: Any, kind: str) -> str:
    if not isinstance(item, dict) or not item.get(kind):
        raise StoryError(f"each {kind} needs a '{kind}:' name and 'steps:', got {str(item)[:80]!r}")
    return str(item[kind])


def _steps(item: dict[str, Any], kind: str, name: str) -> list[Any]:
    steps = item.get("steps")
    if not isinstance(steps, list) or not steps:
        raise StoryError(f"{kind} '{name}': 'steps' must be a non-empty list")
    return steps


def _checkpoint(blocks: list[Block], checkpoint: str) -> None:
    current = blocks[-1]
    if not any(current.variants[0]) and not current.end_checkpoints:
        current.start_checkpoints.append(checkpoint)
    else:
        current.end_checkpoints.append(checkpoint)


def _extend(block: Block, alternatives: list[list[Event]], where: str) -> None:
    if len(block.variants) * len(alternatives) > MAX_VARIANTS:
        raise StoryError(f"{where}: the OR steps make more than {MAX_VARIANTS} variants; split the story")
    block.variants = [v + a for v, a in itertools.product(block.variants, alternatives)]


def _alternatives(step: Any, where: str, domain: PolicyDomain, in_rule: bool) -> list[list[Event]]:
    if not isinstance(step, dict):
        raise StoryError(f"{where}: a step must be a mapping such as 'intent: greet', got {step!r}")
    kinds = [k for k in STEP_KINDS if k in step]
    if kinds == ["or"]:
        options = step["or"]
        if not isinstance(options, list) or not options:
            raise StoryError(f"{where}: 'or' needs a list of intent or slot_was_set steps")
        return [_or_option(option, where, domain, in_rule) for option in options]
    return [_events(step, where, domain, in_rule)]


def _or_option(option: Any, where: str, domain: PolicyDomain, in_rule: bool) -> list[Event]:
    if not isinstance(option, dict) or not ({"intent", "slot_was_set"} & set(option)):
        raise StoryError(f"{where}: each 'or' alternative is an intent or a slot_was_set step, got {option!r}")
    return _events(option, where, domain, in_rule)


def _events(step: dict[str, Any], where: str, domain: PolicyDomain, in_rule: bool) -> list[Event]:
    kinds = [k for k in STEP_KINDS if k in step]
    unknown = set(step) - set(STEP_KINDS) - {"entities", "metadata"}
    if unknown or not kinds or (len(kinds) > 1 and set(kinds) != {"user", "intent"}):
        raise StoryError(f"{where}: expected one of intent (with user/entities), action, slot_was_set, "
                         f"active_loop, checkpoint, or; got keys {sorted(step)}")
    if "intent" in step:
        text = str(step["user"]) if "user" in step else None
        return [user_event(str(step["intent"]), _entities(step.get("entities"), where), text)]
    if "user" in step:
        raise StoryError(f"{where}: 'user: {step['user']}' needs an 'intent:' as well (end-to-end stories "
                         "without intents are not supported)")
    if "bot" in step:
        raise StoryError(f"{where}: 'bot:' text steps are not supported; name the response with 'action:'")
    if "action" in step:
        if not step["action"]:
            raise StoryError(f"{where}: 'action' needs an action name")
        return [action_event(str(step["action"]))]
    if "slot_was_set" in step:
        return _slot_events(step["slot_was_set"], where, domain, in_rule)
    loop = step["active_loop"]
    return [{"event": "active_loop", "name": str(loop) if loop else (SHOULD_NOT_BE_SET if in_rule else None)}]


def _entities(raw: Any, where: str) -> list[Event]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StoryError(f"{where}: 'entities' must be a list of entity names or {{entity: value}} mappings")
    entities: list[Event] = []
    for item in raw:
        if isinstance(item, str):
            entities.append({"entity": item, "value": item})
        elif isinstance(item, dict) and "entity" in item:
            entities.append({"entity": str(item["entity"]), "value": item.get("value")})
        elif isinstance(item, dict) and len(item) == 1:
            (entity, value), = item.items()
            entities.append({"entity": str(entity), "value": value})
        else:
            raise StoryError(f"{where}: entity {item!r} must be a name or a single {{entity: value}} mapping")
    return entities


def _slot_events(raw: Any, where: str, domain: PolicyDomain, in_rule: bool) -> list[Event]:
    items = raw if isinstance(raw, list) else [raw]
    events = []
    for item in items:
        pairs = item.items() if isinstance(item, dict) else [(item, _filled(domain, str(item)))]
        for name, value in pairs:
            if not isinstance(name, str) or (isinstance(item, dict) and len(item) != 1):
                raise StoryError(f"{where}: slot_was_set items are slot names or single {{slot: value}} mappings")
            if name not in domain.slots:
                raise StoryError(f"{where}: slot '{name}' is not in the domain's slots "
                                 f"({', '.join(sorted(domain.slots)) or 'none declared'})")
            if value is None and in_rule:
                value = SHOULD_NOT_BE_SET
            events.append({"event": "slot", "name": name, "value": value})
    return events


def _filled(domain: PolicyDomain, name: str) -> Any:
    spec = domain.slots.get(name)
    return [FILLED] if spec is not None and spec.type == "list" else FILLED
