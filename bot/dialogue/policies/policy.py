"""The contract every dialogue policy keeps: trained on story and rule trackers, it predicts the next action
for a live tracker (Rasa events) with a confidence, or nothing; it saves to and loads from plain JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bot.dialogue.policies.domain import PolicyDomain
from bot.dialogue.policies.graph import TrainingTracker
from bot.dialogue.policies.steps import Event

# Rasa 3's priorities (rasa/core/constants.py): the higher one wins between equal confidences
DEFAULT_POLICY_PRIORITY = 1  # TEDPolicy, here the trained next-action classifier
MEMOIZATION_POLICY_PRIORITY = 3  # MemoizationPolicy and AugmentedMemoizationPolicy
RULE_POLICY_PRIORITY = 4


class PolicyConfigError(ValueError):
    """A `policies:` entry that cannot be used; the message names the policy and the key."""


@dataclass(frozen=True)
class PolicyPrediction:
    action: str
    confidence: float


class Policy:
    name: ClassVar[str]
    default_priority: ClassVar[int]
    options: ClassVar[dict[str, Any]] = {}  # the config keys this policy reads, with their defaults

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = dict(config or {})
        self.priority = int(config.pop("priority", self.default_priority))
        self.config = {key: config.get(key, default) for key, default in self.options.items()}
        self.ignored = sorted(set(config) - set(self.options) - {"name"})  # e.g. TED's epochs

    def train(self, stories: list[TrainingTracker], rules: list[TrainingTracker], domain: PolicyDomain) -> None:
        raise NotImplementedError

    def predict(self, events: list[Event], domain: PolicyDomain) -> PolicyPrediction | None:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"config": {**self.config, "priority": self.priority}, "model": self.model_json()}

    def model_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_model(self, model: dict[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        policy = cls(data["config"])
        policy.load_model(data["model"])
        return policy
