"""Rasa events -> dialogue states. A state is what the policies see before each action: the latest user
message (intent, entity names), the previous action, the slots that influence the conversation (Rasa's
features) and the active loop. Events are applied with Rasa's semantics: `restart` and `session_started` clear
everything, `rewind` (UserUtteranceReverted) drops the last user message and what followed it, `undo`
(ActionReverted) drops the last action, `reset_slots` clears the slots, and a form's later runs drop the
messages and actions since its previous run (Rasa's `_undo_till_previous_loop_execution`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.dialogue.policies.domain import PolicyDomain
from bot.dialogue.policies.steps import SHOULD_NOT_BE_SET, Event

State = dict[str, Any]
SESSION_START_ACTION = "action_session_start"  # re-sets carried-over slots; not a dialogue turn of its own


def applied_events(events: list[Event]) -> list[Event]:
    """The events still in force, as Rasa's `DialogueStateTracker.applied_events`: restarts and new sessions
    clear, reverts undo, and a loop (form) running again drops what happened since its previous run but slots
    and loop events, so the customer's answers inside a form are not dialogue turns of their own."""
    loops = {str(e["name"]) for e in events if e.get("event") == "active_loop" and e.get("name")}
    applied: list[Event] = []
    for event in events:
        kind = event.get("event")
        if kind in ("restart", "session_started"):
            applied = []
        elif kind == "undo":
            _undo_till(applied, "action")
        elif kind == "rewind":
            _undo_till(applied, "user")
            _undo_till(applied, "action")  # the action_listen that took the reverted message
        elif kind == "action" and event.get("name") in loops and _loop_ran_before(applied, str(event["name"])):
            _undo_till_previous_loop_execution(applied, str(event["name"]))
        else:
            applied.append(event)
    return applied


def _undo_till(events: list[Event], kind: str) -> None:
    while events:
        if events.pop().get("event") == kind:
            return


def _loop_ran_before(applied: list[Event], loop: str) -> bool:
    """The loop ran earlier in this activation, on its happy path (Rasa's negation of
    `_first_loop_execution_or_unhappy_path`): no deactivation, rejection or other action answering the customer
    in between."""
    next_action: str | None = None
    for event in reversed(applied):
        kind = event.get("event")
        if kind == "active_loop" and event.get("name") is None:
            return False
        if kind == "action_execution_rejected" and event.get("name") == loop:
            return False
        if kind == "user" and next_action is not None and next_action != loop:
            return False  # in training there are no rejections: another action answered the customer
        if kind == "action":
            if event.get("name") == loop:
                return True
            next_action = str(event.get("name"))
    return False


def _undo_till_previous_loop_execution(applied: list[Event], loop: str) -> None:
    """Drop the actions and messages since the loop's previous run; slots and loop events stay."""
    index = len(applied) - 1
    while index >= 0:
        event = applied[index]
        if event.get("event") == "action" and event.get("name") == loop:
            return
        if event.get("event") in ("action", "user"):
            del applied[index]
        index -= 1


@dataclass
class _Context:
    intent: str | None = None
    entities: list[str] = field(default_factory=list)
    prev_action: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    active_loop: str | None = None

    def apply(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "user":
            parse = event.get("parse_data") or {}
            self.intent = (parse.get("intent") or {}).get("name")
            self.entities = sorted({str(e["entity"]) for e in parse.get("entities") or [] if e.get("entity")})
        elif kind == "action":
            self.prev_action = event.get("name")
        elif kind == "slot":
            self.slots[str(event.get("name"))] = event.get("value")
        elif kind == "reset_slots":
            self.slots = {}
        elif kind == "active_loop":
            self.active_loop = event.get("name")

    def state(self, domain: PolicyDomain) -> State:
        state: State = {}
        if self.intent:
            entities = [e for e in self.entities if not domain.entities or e in domain.entities]
            state["user"] = {"intent": self.intent, **({"entities": entities} if entities else {})}
        if self.prev_action:
            state["prev_action"] = {"action_name": self.prev_action}
        slots = {name: feature for name, value in self.slots.items()
                 if (feature := _slot_feature(domain, name, value)) is not None}
        if slots:
            state["slots"] = slots
        if self.active_loop:
            state["active_loop"] = {"name": self.active_loop}
        return state


def _slot_feature(domain: PolicyDomain, name: str, value: Any) -> Any:
    if value == SHOULD_NOT_BE_SET:
        spec = domain.slots.get(name)
        return SHOULD_NOT_BE_SET if spec is not None and spec.influence_conversation else None
    features = domain.slot_features(name, value)
    return list(features) if features is not None else None


def states_and_actions(events: list[Event], domain: PolicyDomain) -> tuple[list[State], list[str]]:
    """The state before each action, then the current state (one more state than actions), and the actions."""
    context = _Context()
    states: list[State] = []
    actions: list[str] = []
    for event in applied_events(events):
        if event.get("event") == "action":
            if event.get("name") == SESSION_START_ACTION:
                continue
            states.append(context.state(domain))
            actions.append(str(event.get("name")))
        context.apply(event)
    states.append(context.state(domain))
    return states, actions


def current_states(events: list[Event], domain: PolicyDomain) -> list[State]:
    return states_and_actions(events, domain)[0]


def current_context(events: list[Event]) -> tuple[str | None, str | None]:
    """The latest action and the active loop after `events`."""
    context = _Context()
    for event in applied_events(events):
        context.apply(event)
    return context.prev_action, context.active_loop


def state_key(states: list[State]) -> str:
    """A stable text key for a sequence of states (the memoization lookups are keyed by it)."""
    return json.dumps(states, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
