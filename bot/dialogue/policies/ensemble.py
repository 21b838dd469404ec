"""Several policies, one decision, with Rasa 3's precedence: the highest confidence wins, a tie goes to the
policy of higher priority (RulePolicy 4, memoization 3, TED 1), and below `core_fallback_threshold` the
fallback action is chosen. Configured by the items of a Rasa `policies:` list; saved as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.dialogue.policies.classifier import NextActionClassifierPolicy
from bot.dialogue.policies.domain import ACTION_LISTEN, PolicyDomain
from bot.dialogue.policies.graph import TrainingTracker, rule_trackers, story_trackers
from bot.dialogue.policies.memoization import AugmentedMemoizationPolicy, MemoizationPolicy
from bot.dialogue.policies.policy import Policy, PolicyConfigError
from bot.dialogue.policies.rule_policy import RulePolicy
from bot.dialogue.policies.steps import Event

POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (
    MemoizationPolicy, AugmentedMemoizationPolicy, RulePolicy, NextActionClassifierPolicy)}
SKIPPED = {"UnexpecTEDIntentPolicy": "UnexpecTEDIntentPolicy is not used (it only flags unlikely intents)"}
# what Rasa 3 trains when config.yml has no `policies:`
DEFAULT_POLICIES: list[dict[str, Any]] = [{"name": "MemoizationPolicy"}, {"name": "RulePolicy"},
                                          {"name": "TEDPolicy", "max_history": 5, "epochs": 100}]
MODEL_FILE = "policies.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Prediction:
    action: str
    confidence: float
    policy: str  # the policy whose prediction won, or "fallback"


@dataclass
class PolicyEnsemble:
    policies: list[Policy]
    domain: PolicyDomain
    notes: list[str] = field(default_factory=list)  # what of the configuration is not used, and why

    @classmethod
    def train(cls, stories: list[dict[str, Any]], rules: list[dict[str, Any]], domain: dict[str, Any],
              policy_configs: list[dict[str, Any]] | None = None) -> PolicyEnsemble:
        """Train on raw Rasa 3 story and rule dicts and a domain description (see `PolicyDomain.from_rasa`)."""
        policy_domain = PolicyDomain.from_rasa(domain)
        return cls.train_trackers(story_trackers(stories, policy_domain), rule_trackers(rules, policy_domain),
                                  policy_domain, policy_configs)

    @classmethod
    def train_trackers(cls, stories: list[TrainingTracker], rules: list[TrainingTracker], domain: PolicyDomain,
                       policy_configs: list[dict[str, Any]] | None = None) -> PolicyEnsemble:
        policies, notes = build_policies(policy_configs if policy_configs is not None else DEFAULT_POLICIES)
        for policy in policies:
            policy.train(stories, rules, domain)
        return cls(policies, domain, notes)

    def predict(self, events: list[Event]) -> Prediction:
        """The next action after `events` (Rasa tracker events, oldest first)."""
        best: tuple[float, int, str, str] | None = None
        for policy in self.policies:
            found = policy.predict(events, self.domain)
            if found is not None and (best is None or (found.confidence, policy.priority) > best[:2]):
                best = (found.confidence, policy.priority, found.action, policy.name)
        action, threshold = self.fallback
        if action and (best is None or best[0] < threshold):
            return Prediction(action, threshold, "fallback")
        if best is None:
            return Prediction(ACTION_LISTEN, 0.0, "none")
        return Prediction(best[2], best[0], best[3])

    @property
    def fallback(self) -> tuple[str | None, float]:
        """The RulePolicy's fallback action and threshold (Rasa's defaults without a RulePolicy)."""
        rule = next((p for p in self.policies if isinstance(p, RulePolicy)), RulePolicy())
        if not rule.config["enable_fallback_prediction"]:
            return None, 0.0
        return rule.config["core_fallback_action_name"], float(rule.config["core_fallback_threshold"])

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / MODEL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT_VERSION, "domain": self.domain.to_rasa(), "notes": self.notes,
                "policies": [{"name": p.name, **p.to_json()} for p in self.policies]}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PolicyEnsemble:
        path = Path(directory) / MODEL_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise PolicyConfigError(f"{path}: cannot read the trained policies ({e}); train again") from e
        if data.get("format") != FORMAT_VERSION:
            raise PolicyConfigError(f"{path}: format {data.get('format')!r}, expected {FORMAT_VERSION}; train again")
        policies = [_policy_class(item["name"]).from_json(item) for item in data["policies"]]
        return cls(policies, PolicyDomain.from_rasa(data["domain"]), list(data.get("notes", [])))


def build_policies(configs: list[dict[str, Any]]) -> tuple[list[Policy], list[str]]:
    policies: list[Policy] = []
    notes: list[str] = []
    for item in configs:
        name = str(item.get("name", "")) if isinstance(item, dict) else ""
        if name in SKIPPED:
            notes.append(SKIPPED[name])
            continue
        policy = _policy_class(name)(item)
        if isinstance(policy, NextActionClassifierPolicy):
            notes.append("TEDPolicy is served by a logistic-regression next-action classifier over the last "
                         f"{policy.config['max_history']} turns; TED itself is not used")
        if policy.ignored:
            notes.append(f"{name}: options not used: {', '.join(policy.ignored)}")
        policies.append(policy)
    return policies, notes


def _policy_class(name: str) -> type[Policy]:
    if name not in POLICIES:
        raise PolicyConfigError(f"unknown policy {name!r} in policies:; known: {', '.join(sorted(POLICIES))}"
                                f" (skipped: {', '.join(SKIPPED)})")
    return POLICIES[name]
