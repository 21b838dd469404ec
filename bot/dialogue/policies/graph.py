"""Stories and rules -> training trackers, as Rasa's StoryGraph: a block ending in checkpoint X goes on with
every block starting with X; blocks without a start checkpoint begin at STORY_START, a real conversation
start. Every user message is preceded by `action_listen`, and a finished conversation ends with one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.dialogue.policies.domain import ACTION_LISTEN, PolicyDomain
from bot.dialogue.policies.steps import Block, Event, StoryError, action_event, parse_rule, parse_story

STORY_START = "STORY_START"
MAX_TRACKERS = 20_000  # checkpoints and ORs multiply; past this the data needs restructuring


@dataclass
class TrainingTracker:
    name: str  # the stories along the path, "greet > mood", or the rule's name
    events: list[Event]
    is_rule: bool = False
    conversation_start: bool = False


def story_trackers(stories: list[dict[str, Any]], domain: PolicyDomain) -> list[TrainingTracker]:
    blocks = [block for story in stories for block in parse_story(story, domain)]
    following = _blocks_by_start_checkpoint(blocks)
    trackers: list[TrainingTracker] = []
    for block in blocks:
        if not block.start_checkpoints:
            _walk(block, [], [], following, trackers)
    return trackers


def rule_trackers(rules: list[dict[str, Any]], domain: PolicyDomain) -> list[TrainingTracker]:
    trackers = []
    for rule in rules:
        spec = parse_rule(rule, domain)
        for variant in spec.variants:
            events = with_listens(variant, final_listen=spec.wait_for_user_input)
            trackers.append(TrainingTracker(spec.name, events, is_rule=True,
                                            conversation_start=spec.conversation_start))
    return trackers


def with_listens(events: list[Event], final_listen: bool = True) -> list[Event]:
    """Rasa's implicit events: `action_listen` before each user message and, when asked, at the end."""
    result: list[Event] = []
    for event in events:
        if event["event"] == "user" and not _ends_with_listen(result):
            result.append(action_event(ACTION_LISTEN))
        result.append(event)
    if final_listen and result and result[-1]["event"] != "user" and not _ends_with_listen(result):
        result.append(action_event(ACTION_LISTEN))
    return result


def _ends_with_listen(events: list[Event]) -> bool:
    return bool(events) and events[-1] == action_event(ACTION_LISTEN)


def _blocks_by_start_checkpoint(blocks: list[Block]) -> dict[str, list[Block]]:
    following: dict[str, list[Block]] = {}
    for block in blocks:
        for checkpoint in block.start_checkpoints:
            following.setdefault(checkpoint, []).append(block)
    ended = {c for b in blocks for c in b.end_checkpoints}
    for block in blocks:
        for checkpoint in block.end_checkpoints:
            if checkpoint not in following:
                raise StoryError(f"story '{block.story}' ends in checkpoint '{checkpoint}' but no story starts "
                                 "with it")
        for checkpoint in block.start_checkpoints:
            if checkpoint not in ended:
                raise StoryError(f"story '{block.story}' starts with checkpoint '{checkpoint}' but no story ends "
                                 "with it, so it is never reached")
    return following


def _walk(block: Block, prefix: list[Event], path: list[Block], following: dict[str, list[Block]],
          trackers: list[TrainingTracker]) -> None:
    path = [*path, block]
    # a block already on this path would loop through a checkpoint cycle: the conversation ends there instead
    nexts = [b for c in block.end_checkpoints for b in following[c] if all(b is not p for p in path)]
    nexts = list({id(b): b for b in nexts}.values())
    for variant in block.variants:
        events = prefix + variant
        if not nexts:
            if len(trackers) >= MAX_TRACKERS:
                raise StoryError(f"stories expand into more than {MAX_TRACKERS} conversations through their "
                                 f"checkpoints and OR steps (at story '{block.story}'); simplify them")
            name = " > ".join(dict.fromkeys(b.story for b in path))
            trackers.append(TrainingTracker(name, with_listens(events)))
        for following_block in nexts:
            _walk(following_block, events, path, following, trackers)
