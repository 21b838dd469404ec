"""How well the policies predict the next action of stories they were not trained on: the stories are split
into folds (by default one story, with its checkpoint continuations, per fold), each fold is predicted by an
ensemble trained on the others plus every rule, and every action of the held-out stories counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.dialogue.policies.domain import PolicyDomain
from bot.dialogue.policies.ensemble import PolicyEnsemble
from bot.dialogue.policies.graph import TrainingTracker, rule_trackers, story_trackers


@dataclass
class HeldOutReport:
    correct: int
    total: int
    folds: int
    mistakes: list[str] = field(default_factory=list)  # "story: after 'x' expected 'a', predicted 'b'"

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def evaluate_held_out(stories: list[dict[str, Any]], rules: list[dict[str, Any]], domain: dict[str, Any],
                      policy_configs: list[dict[str, Any]] | None = None, folds: int | None = None) -> HeldOutReport:
    """Next-action accuracy on held-out stories; `folds=None` leaves one story out at a time."""
    policy_domain = PolicyDomain.from_rasa(domain)
    trackers = story_trackers(stories, policy_domain)
    rules_trackers = rule_trackers(rules, policy_domain)
    names = list(dict.fromkeys(t.name for t in trackers))
    count = len(names) if folds is None else max(2, min(folds, len(names)))
    report = HeldOutReport(0, 0, count)
    for fold in range(count):
        held_out = set(names[fold::count])
        train = [t for t in trackers if t.name not in held_out]
        ensemble = PolicyEnsemble.train_trackers(train, rules_trackers, policy_domain, policy_configs)
        for tracker in (t for t in trackers if t.name in held_out):
            _score(ensemble, tracker, report)
    return report


def _score(ensemble: PolicyEnsemble, tracker: TrainingTracker, report: HeldOutReport) -> None:
    for index, event in enumerate(tracker.events):
        if event.get("event") != "action":
            continue
        predicted = ensemble.predict(tracker.events[:index]).action
        report.total += 1
        if predicted == event["name"]:
            report.correct += 1
        else:
            before = next((_describe(e) for e in reversed(tracker.events[:index])
                           if e.get("event") in ("action", "user")), "the start")
            report.mistakes.append(f"{tracker.name}: after '{before}' expected '{event['name']}', "
                                   f"predicted '{predicted}'")


def _describe(event: dict[str, Any]) -> str:
    if event.get("event") == "user":
        return "intent " + str(((event.get("parse_data") or {}).get("intent") or {}).get("name"))
    return str(event.get("name"))
