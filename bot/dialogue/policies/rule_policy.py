"""RulePolicy, as Rasa 3 documents it: a rule matches the end of the conversation (its condition included;
`conversation_start` rules only the whole conversation from its start), the most specific matching rule wins,
a rule predicts `action_listen` after its last step unless `wait_for_user_input: false`, an active form
(loop) runs until it is done or rejects, and `core_fallback_action_name` is predicted with the confidence
`core_fallback_threshold` when nothing else is. Rules that contradict each other or the stories are reported
at training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.dialogue.policies.domain import ACTION_LISTEN, PolicyDomain
from bot.dialogue.policies.graph import TrainingTracker
from bot.dialogue.policies.policy import RULE_POLICY_PRIORITY, Policy, PolicyPrediction
from bot.dialogue.policies.steps import SHOULD_NOT_BE_SET, Event
from bot.dialogue.policies.tracker import State, applied_events, current_context, state_key, states_and_actions

DEFAULT_ACTIONS = {"restart": "action_restart", "back": "action_back", "session_start": "action_session_start"}


class InvalidRulesError(ValueError):
    """Rules that contradict each other or the stories; the message lists every contradiction."""


@dataclass
class RuleEntry:
    states: list[State]  # the end of a conversation the rule matches (the rule's own features only)
    action: str
    rules: list[str]
    conversation_start: bool

    def specificity(self) -> tuple[int, int]:
        return len(self.states), sum(len(sub) for state in self.states for sub in state.values())

    def matches(self, states: list[State]) -> bool:
        if len(states) < len(self.states) or (self.conversation_start and len(states) != len(self.states)):
            return False
        return all(_state_matches(rule, seen) for rule, seen in zip(self.states, states[-len(self.states):],
                                                                     strict=True))


def _state_matches(rule: State, seen: State) -> bool:
    for kind, features in rule.items():
        observed = seen.get(kind, {})
        for key, value in features.items():
            if value == SHOULD_NOT_BE_SET:
                if observed.get(key) not in (None, SHOULD_NOT_BE_SET):
                    return False
            elif observed.get(key) != value:
                return False
    return True


class RulePolicy(Policy):
    name = "RulePolicy"
    default_priority = RULE_POLICY_PRIORITY
    options = {"core_fallback_threshold": 0.3, "core_fallback_action_name": "action_default_fallback",
               "enable_fallback_prediction": True, "check_for_contradictions": True}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.entries: list[RuleEntry] = []

    def train(self, stories: list[TrainingTracker], rules: list[TrainingTracker], domain: PolicyDomain) -> None:
        problems: list[str] = []
        self.entries = self._entries(rules, domain, problems)
        if self.config["check_for_contradictions"]:
            for tracker in [*rules, *stories]:
                problems += self._contradictions(tracker, domain)
        if problems:
            raise InvalidRulesError("Contradicting rules or stories found:\n" + "\n".join(dict.fromkeys(problems))
                                    + "\nFix the rules or stories; a rule whose conversation may go on without "
                                    "the user needs 'wait_for_user_input: false'.")

    def _entries(self, rules: list[TrainingTracker], domain: PolicyDomain, problems: list[str]) -> list[RuleEntry]:
        found: dict[tuple[str, bool], RuleEntry] = {}
        for tracker in rules:
            states, actions = states_and_actions(tracker.events, domain)
            first = 0 if tracker.conversation_start else 1  # a rule not at the start matches any earlier history
            for index in range(1, len(actions)):  # the first action of a rule is predicted from nothing of it
                key = (state_key(states[first : index + 1]), tracker.conversation_start)
                entry = found.setdefault(key, RuleEntry(states[first : index + 1], actions[index], [],
                                                        tracker.conversation_start))
                if entry.action != actions[index]:
                    problems.append(f"- rule '{tracker.name}' predicts '{actions[index]}' where rule(s) "
                                    f"'{', '.join(entry.rules)}' predict '{entry.action}' after the same steps.")
                elif tracker.name not in entry.rules:
                    entry.rules.append(tracker.name)
        return list(found.values())

    def _contradictions(self, tracker: TrainingTracker, domain: PolicyDomain) -> list[str]:
        states, actions = states_and_actions(tracker.events, domain)
        problems = []
        for index, gold in enumerate(actions):
            entry = self._best_rule(states[: index + 1])
            if entry is not None and entry.action != gold:
                kind = "rule" if tracker.is_rule else "story"
                problems.append(f"- the prediction of the action '{gold}' in {kind} '{tracker.name}' is "
                                f"contradicting with rule(s) '{', '.join(entry.rules)}' which predicted action "
                                f"'{entry.action}'.")
        return problems

    def _best_rule(self, states: list[State]) -> RuleEntry | None:
        matching = [entry for entry in self.entries if entry.matches(states)]
        return max(matching, key=RuleEntry.specificity, default=None)

    def predict(self, events: list[Event], domain: PolicyDomain) -> PolicyPrediction | None:
        applied = applied_events(events)
        latest_action, loop = current_context(applied)
        default = _default_action(applied, latest_action)
        if default:
            return PolicyPrediction(default, 1.0)
        rejected = loop is not None and _loop_rejected(applied, loop)
        if loop and not rejected:
            return PolicyPrediction(loop if latest_action != loop else ACTION_LISTEN, 1.0)
        states = states_and_actions(applied, domain)[0]
        entry = self._best_rule(states)
        if entry is not None and not (rejected and entry.action == loop):
            return PolicyPrediction(entry.action, 1.0)
        if self.config["enable_fallback_prediction"]:
            return PolicyPrediction(self.config["core_fallback_action_name"],
                                    float(self.config["core_fallback_threshold"]))
        return None

    def model_json(self) -> dict[str, Any]:
        return {"rules": [{"states": e.states, "action": e.action, "rules": e.rules,
                           "conversation_start": e.conversation_start} for e in self.entries]}

    def load_model(self, model: dict[str, Any]) -> None:
        self.entries = [RuleEntry(**entry) for entry in model["rules"]]


def _default_action(applied: list[Event], latest_action: str | None) -> str | None:
    """Rasa's default rules: /restart, /back and /session_start right after the user said them."""
    users = [e for e in applied if e.get("event") == "user"]
    if latest_action != ACTION_LISTEN or not users:
        return None
    intent = ((users[-1].get("parse_data") or {}).get("intent") or {}).get("name")
    return DEFAULT_ACTIONS.get(str(intent))


def _loop_rejected(applied: list[Event], loop: str) -> bool:
    """The form refused the latest user message (ActionExecutionRejected after it): rules decide instead."""
    for event in reversed(applied):
        if event.get("event") == "user":
            return False
        if event.get("event") == "action_execution_rejected" and event.get("name") == loop:
            return True
    return False
