"""Rasa test stories end to end: each story's `user:` messages go through NLU and dialogue in a fresh
conversation, and the intents and actions the bot took are compared with the story's (`rasa test core`).

A turn's actions are the action events the dialogue logged, named as Rasa logs them (the form where its
validation action ran, `utter_faq` for `utter_faq/card_fees`); a turn the answering policy answered without an
action (a knowledge answer, a clarification) counts the responses it gave. Actions are compared position by
position, so a missing and an extra action each count as one wrong prediction. Failed stories come back in
Rasa's annotated form (`# predicted: ...` on each wrong step), as `failed_test_stories.yml` holds them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.config import BotConfig
from bot.dialogue.engine import DialogueState, TurnOutcome
from bot.training_data import ENTITY_ANNOTATION

ACTION_LISTEN = "action_listen"


class StoryAgent(Protocol):
    def respond(self, text: str, channel: str = ..., state: DialogueState | None = ..., sender_id: str = ...,
                history: list[dict[str, Any]] | None = ..., metadata: dict[str, Any] | None = ...
                ) -> tuple[Any, TurnOutcome]: ...


@dataclass
class _Turn:
    """One user step of a test story and the actions expected after it."""

    text: str
    intent: str | None
    entities: list[tuple[str, str]]
    actions: list[str] = field(default_factory=list)


@dataclass
class _Score:
    actions: int = 0
    actions_correct: int = 0
    intents: int = 0
    intents_correct: int = 0


def evaluate_test_stories(config: BotConfig, agent: StoryAgent, stories: list[dict[str, Any]]) -> dict[str, Any]:
    """Run each story in a fresh conversation; {"stories", "passed", "failed", "action_accuracy",
    "intent_accuracy", "failed_stories"}: the failed ones as Rasa's annotated YAML, one text per story."""
    score = _Score()
    failed: list[str] = []
    for index, story in enumerate(stories):
        lines, ok = _run_story(config, agent, story, f"test-story-{index}", score)
        if not ok:
            source = f" ({story['source']})" if story.get("source") else ""
            failed.append("\n".join([f"- story: {story.get('story', index)}{source}", "  steps:", *lines]))
    return {"stories": len(stories), "passed": len(stories) - len(failed), "failed": len(failed),
            "action_accuracy": _ratio(score.actions_correct, score.actions),
            "intent_accuracy": _ratio(score.intents_correct, score.intents), "failed_stories": failed}


def _run_story(config: BotConfig, agent: StoryAgent, story: dict[str, Any], sender: str,
               score: _Score) -> tuple[list[str], bool]:
    state, history, lines, ok = DialogueState(), [], [], True
    for turn in _turns(story):
        parse, outcome = agent.respond(turn.text, config.retrieval.channel, state, sender_id=sender,
                                       history=history)
        state = outcome.state
        history += [{"event": "user", "text": turn.text, "parse_data": dict(parse)}, *outcome.events,
                    *({"event": "bot", "text": r.text} for r in outcome.replies)]
        turn_lines = _user_lines(turn, parse, score) + _action_lines(turn.actions, _actions_taken(outcome), score)
        ok = ok and not any("# predicted" in line for line in turn_lines)
        lines += turn_lines
    return lines, ok


def _turns(story: dict[str, Any]) -> list[_Turn]:
    turns: list[_Turn] = []
    for step in story.get("steps") or []:
        if not isinstance(step, dict):
            continue
        if "user" in step or "intent" in step:
            turns.append(_user_turn(step))
        elif "action" in step and turns:
            turns[-1].actions.append(str(step["action"]))
    return turns


def _user_turn(step: dict[str, Any]) -> _Turn:
    """The message as typed (annotations removed) and its expected entities; a step with only an intent is
    sent as Rasa's `/intent` payload."""
    intent = str(step["intent"]) if step.get("intent") else None
    if "user" not in step:
        return _Turn(f"/{intent}", intent, [])
    raw = str(step["user"]).strip()
    entities = [(str(spec["entity"]), str(spec.get("value") or match.group("text")))
                for match in ENTITY_ANNOTATION.finditer(raw) if (spec := _annotation(match))]
    return _Turn(ENTITY_ANNOTATION.sub(lambda m: m.group("text"), raw), intent, entities)


def _annotation(match: re.Match[str]) -> dict[str, Any] | None:
    if match.group("entity"):
        return {"entity": match.group("entity").strip()}
    try:
        spec = json.loads(match.group("json"))
    except json.JSONDecodeError:
        return None
    return spec if isinstance(spec, dict) and spec.get("entity") else None


def _user_lines(turn: _Turn, parse: Any, score: _Score) -> list[str]:
    predicted = str(parse["intent"]["name"])
    lines = []
    if turn.intent is not None:
        score.intents += 1
        right = predicted == turn.intent or predicted.split("/", 1)[0] == turn.intent
        score.intents_correct += right
        lines.append(f"  - intent: {turn.intent}" + ("" if right else f"  # predicted: {predicted}: {turn.text}"))
    else:
        lines.append(f"  - intent: {predicted}")
    found = {(str(e["entity"]), str(e["value"])) for e in parse.get("entities") or []}
    missing = [pair for pair in turn.entities if pair not in found]
    if missing:
        lines.append(f"    entities:  # predicted: {json.dumps(sorted(found))}")
        lines += [f"    - {name}: {value}" for name, value in turn.entities]
    lines += ["    user: |-", f"      {turn.text}"]
    return lines


def _action_lines(expected: list[str], taken: list[str], score: _Score) -> list[str]:
    lines = []
    for position in range(max(len(expected), len(taken))):
        gold = expected[position] if position < len(expected) else ACTION_LISTEN
        predicted = taken[position] if position < len(taken) else ACTION_LISTEN
        score.actions += 1
        score.actions_correct += gold == predicted
        lines.append(f"  - action: {gold}" + ("" if gold == predicted else f"  # predicted: {predicted}"))
    return lines


def _actions_taken(outcome: TurnOutcome) -> list[str]:
    """The actions of the turn as Rasa names them; the responses given when no action was logged."""
    names: list[str] = []
    for event in outcome.events:
        if event.get("event") != "action":
            continue
        name = str(event["name"]).split("/", 1)[0]
        form = name.removeprefix("validate_")
        name = form if form != name else name
        if not names or names[-1] != name:  # the form, then its validation: one form action
            names.append(name)
    if not names:
        names = [r.source.split("/", 1)[0] for r in outcome.replies if r.source.startswith("utter_")]
    return names


def _ratio(correct: int, total: int) -> float:
    return round(correct / total, 4) if total else 0.0
