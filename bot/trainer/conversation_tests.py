"""Conversation tests: `tests/conversations/*.yml`, in the shape of Rasa's test stories.

    stories:
    - story: 挂失银行卡
      steps:
      - user: 我的卡丢了，帮我挂失
        intent: report_card_loss
      - action: utter_card_loss_start      # Rasa: the actions after the message, in order
      - action: card_loss_form
      - user: 尾号[6688](card_tail)
      - slot_was_set:                       # Rasa: the slots the turn set
        - card_tail: "6688"
      - response: kb_atm_card_retained      # ours: a reply with this source (a knowledge entry, a response)
      - bot: 您好，我是小智…                  # Rasa end-to-end: a reply with exactly this text

Intents, entities and actions are checked by `bot/eval/stories.py` (as `rasa test` does); slots, responses and
bot texts here. One story runs at a time in a fresh conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.assistant import Assistant
from bot.config import BotConfig
from bot.dialogue.engine import DialogueState, TurnOutcome
from bot.eval.stories import evaluate_test_stories
from bot.yaml_io import load_yaml, plain

DEFAULT_DIR = Path("tests/conversations")
STEP_KEYS = {"user", "intent", "entities", "action", "slot_was_set", "response", "bot", "active_loop", "checkpoint"}


class ConversationTestError(ValueError):
    """A conversation test file that cannot be read; the message names the file and the story."""


@dataclass
class _Expected:
    """What our layer checks after one user turn."""

    slots: dict[str, Any] = field(default_factory=dict)
    responses: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


class _Recorder:
    """Passes each turn to the assistant and keeps its outcome, for the checks `evaluate_test_stories` leaves out."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.outcomes: list[TurnOutcome] = []

    def respond(self, text: str, channel: str = "web", state: DialogueState | None = None,
                sender_id: str = "default", history: list[dict[str, Any]] | None = None,
                metadata: dict[str, Any] | None = None) -> tuple[Any, TurnOutcome]:
        parse, outcome = self.assistant.respond(text, channel, state, sender_id=sender_id, history=history,
                                            metadata=metadata)
        self.outcomes.append(outcome)
        return parse, outcome


def tests_dir(config: BotConfig, directory: Path | None = None) -> Path:
    return directory if directory is not None else config.root / DEFAULT_DIR


def load_tests(directory: Path) -> list[dict[str, Any]]:
    """Every story of every `*.yml` under `directory`, each with its `source` (file) for messages."""
    stories: list[dict[str, Any]] = []
    for file in sorted(directory.glob("*.yml")):
        document = plain(load_yaml(file, ConversationTestError)) or {}
        if not isinstance(document, dict) or not isinstance(document.get("stories"), list):
            raise ConversationTestError(f"{file}: a conversation test file needs a `stories:` list")
        for index, story in enumerate(document["stories"]):
            stories.append(_checked(story, f"{file}: story {index + 1}", str(file)))
    return stories


def _checked(story: Any, where: str, source: str) -> dict[str, Any]:
    if not isinstance(story, dict) or not isinstance(story.get("steps"), list) or not story.get("story"):
        raise ConversationTestError(f"{where}: each story needs `story:` (a name) and `steps:` (a list)")
    for number, step in enumerate(story["steps"], start=1):
        unknown = set(step) - STEP_KEYS if isinstance(step, dict) else {"(not a mapping)"}
        if unknown:
            raise ConversationTestError(f"{where} ({story['story']}), step {number}: unknown key(s) "
                                        f"{sorted(unknown)}; a step has one of {sorted(STEP_KEYS)}")
    return {**story, "source": source}


def run_tests(config: BotConfig, assistant: Assistant, stories: list[dict[str, Any]]) -> dict[str, Any]:
    """{"tests", "passed", "failed", "failed_tests": [names], "failures": [annotated text per failed story]}."""
    failures, failed_names = [], []
    for story in stories:
        recorder = _Recorder(assistant)
        result = evaluate_test_stories(config, recorder, [story])
        problems = _extra_problems(story, recorder.outcomes)
        if result["failed"] or problems:
            failed_names.append(f"{Path(story['source']).name}: {story['story']}")
            failures.append("\n".join([*result["failed_stories"], *problems]) if result["failed"] else
                            "\n".join([f"- story: {story['story']} ({story['source']})", *problems]))
    return {"tests": len(stories), "passed": len(stories) - len(failures), "failed": len(failures),
            "failed_tests": failed_names, "failures": failures}


def summary(config: BotConfig, assistant: Assistant, directory: Path | None = None) -> dict[str, Any]:
    """The project's conversation tests on `assistant`, or why they were skipped."""
    folder = tests_dir(config, directory)
    try:
        stories = load_tests(folder) if folder.exists() else []
    except ConversationTestError as e:
        return {"skipped": str(e)}
    if not stories:
        return {"skipped": f"没有对话测试（{folder}）"}
    return run_tests(config, assistant, stories)


def _expectations(story: dict[str, Any]) -> list[_Expected]:
    turns: list[_Expected] = []
    for step in story["steps"]:
        if "user" in step or "intent" in step:
            turns.append(_Expected())
        elif turns and "slot_was_set" in step:
            for item in step["slot_was_set"] or []:
                turns[-1].slots.update(item if isinstance(item, dict) else {str(item): ...})
        elif turns and "response" in step:
            turns[-1].responses.append(str(step["response"]))
        elif turns and "bot" in step:
            turns[-1].texts.append(str(step["bot"]).strip())
    return turns


def _extra_problems(story: dict[str, Any], outcomes: list[TurnOutcome]) -> list[str]:
    problems = []
    for number, (expected, outcome) in enumerate(zip(_expectations(story), outcomes, strict=False), start=1):
        slots = outcome.state.slots
        for name, value in expected.slots.items():
            if (slots.get(name) is None) if value is ... else (str(slots.get(name)) != str(value)):
                problems.append(f"  # turn {number}: slot {name} expected {_shown(value)}, got {slots.get(name)!r}")
        sources = [r.source for r in outcome.replies]
        for response in expected.responses:
            if not any(s == response or s.split("/", 1)[0] == response for s in sources):
                problems.append(f"  # turn {number}: response {response} expected, replies came from {sources}")
        texts = [_squeezed(r.text) for r in outcome.replies]
        for text in expected.texts:
            if _squeezed(text) not in texts:
                problems.append(f"  # turn {number}: bot text expected: {text!r}; said: {texts}")
    return problems


def _shown(value: Any) -> str:
    return "to be set" if value is ... else repr(value)


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def conversation_story(name: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A stored conversation (tracker events, masked) as a conversation test: each customer message with the
    intent it was understood as, then the actions (named as `rasa test` names them), the slots it set and the
    sources of replies no action names (knowledge answers, menus)."""
    steps: list[dict[str, Any]] = []
    turn: list[dict[str, Any]] = []
    for event in [*events, {"event": "user"}]:  # the sentinel closes the last turn
        if event.get("event") != "user":
            turn.append(event)
            continue
        if steps:
            steps += _turn_steps(turn)
        turn = []
        if event.get("text"):
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
            steps.append({"user": str(event["text"]), **({"intent": intent} if intent else {})})
    return {"story": name, "steps": steps}


def _turn_steps(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    actions: list[str] = []
    for event in events:
        if event.get("event") == "action" and event.get("name") and event["name"] != "action_listen":
            name = str(event["name"]).split("/", 1)[0]
            name = name.removeprefix("validate_")
            if not actions or actions[-1] != name:
                actions.append(name)
    sources = [str((e.get("data") or {}).get("source") or "") for e in events if e.get("event") == "bot"]
    if not actions:
        actions = [s.split("/", 1)[0] for s in sources if s.startswith("utter_")]
    slots = [{str(e["name"]): e["value"]} for e in events
             if e.get("event") == "slot" and e.get("value") is not None]
    others = [s for s in dict.fromkeys(sources) if s and not s.startswith("utter_")]
    return [*({"action": a} for a in actions), *([{"slot_was_set": slots}] if slots else []),
            *({"response": s} for s in others)]


def write_test(directory: Path, file_name: str, story: dict[str, Any]) -> Path:
    """Write one story as `directory/<file_name>.yml` (a new file, never overwriting one)."""
    from ruamel.yaml import YAML

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{file_name}.yml"
    if path.exists():
        raise FileExistsError(f"{path} exists already")
    yaml = YAML()
    yaml.allow_unicode = True
    yaml.indent(mapping=2, sequence=2, offset=0)
    with path.open("w", encoding="utf-8") as out:
        out.write("# 由训练台从一段真实对话生成（文本已脱敏）。\n")
        yaml.dump({"stories": [story]}, out)
    return path
