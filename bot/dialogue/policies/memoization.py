"""MemoizationPolicy: the next action of a story whose last `max_history` states are exactly the tracker's
(confidence 1.0). AugmentedMemoizationPolicy: when nothing matches, forget the oldest turns, slots set in them
included, one action at a time, and look again (Rasa's "back to the future" truncation)."""

from __future__ import annotations

from typing import Any

from bot.dialogue.policies.domain import PolicyDomain
from bot.dialogue.policies.graph import TrainingTracker
from bot.dialogue.policies.policy import MEMOIZATION_POLICY_PRIORITY, Policy, PolicyPrediction
from bot.dialogue.policies.steps import Event
from bot.dialogue.policies.tracker import State, applied_events, current_states, state_key, states_and_actions


class MemoizationPolicy(Policy):
    name = "MemoizationPolicy"
    default_priority = MEMOIZATION_POLICY_PRIORITY
    options = {"max_history": None}  # Rasa 3: None, the whole conversation

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.lookup: dict[str, str] = {}

    @property
    def max_history(self) -> int | None:
        return self.config["max_history"]

    def train(self, stories: list[TrainingTracker], rules: list[TrainingTracker], domain: PolicyDomain) -> None:
        """Memorise the stories (rules are the RulePolicy's); a history followed by different actions in
        different stories is ambiguous and forgotten."""
        lookup: dict[str, str] = {}
        ambiguous: set[str] = set()
        for tracker in stories:
            states, actions = states_and_actions(tracker.events, domain)
            for index, action in enumerate(actions):
                key = self._key(states[: index + 1])
                if key in ambiguous:
                    continue
                if lookup.setdefault(key, action) != action:
                    ambiguous.add(key)
                    del lookup[key]
        self.lookup = lookup

    def predict(self, events: list[Event], domain: PolicyDomain) -> PolicyPrediction | None:
        action = self.recall(events, domain)
        return PolicyPrediction(action, 1.0) if action is not None else None

    def recall(self, events: list[Event], domain: PolicyDomain) -> str | None:
        return self.lookup.get(self._key(current_states(events, domain)))

    def _key(self, states: list[State]) -> str:
        return state_key(states[-self.max_history :] if self.max_history else states)

    def model_json(self) -> dict[str, Any]:
        return {"lookup": self.lookup}

    def load_model(self, model: dict[str, Any]) -> None:
        self.lookup = dict(model["lookup"])


class AugmentedMemoizationPolicy(MemoizationPolicy):
    name = "AugmentedMemoizationPolicy"

    def recall(self, events: list[Event], domain: PolicyDomain) -> str | None:
        states = current_states(events, domain)
        found = self.lookup.get(self._key(states))
        if found is not None:
            return found
        applied = self._last_turns(applied_events(events))
        for start in [i for i, e in enumerate(applied) if e.get("event") == "action"]:
            # the conversation as if it began at this action: earlier messages and slots are forgotten
            shorter = current_states(applied[start:], domain)
            if shorter != states:
                found = self.lookup.get(self._key(shorter))
                if found is not None:
                    return found
                states = shorter
        return None

    def _last_turns(self, applied: list[Event]) -> list[Event]:
        """The events of the last `max_history` actions, reaching back to the `action_listen` before them so that
        the user message they answer is kept."""
        if not self.max_history:
            return applied
        action_positions = [i for i, e in enumerate(applied) if e.get("event") == "action"]
        if len(action_positions) <= self.max_history:
            return applied
        start = action_positions[-self.max_history]
        listens = [i for i in action_positions if i <= start and applied[i].get("name") == "action_listen"]
        return applied[listens[-1] if listens else start :]
