"""The trained next-action policy, for turns no story covers exactly: a multinomial logistic regression over
the featurised states of the last `max_history` turns (intent, entity names, previous action, slot features,
active loop, each tagged with how many turns ago it was). It stands in for Rasa's TEDPolicy, which needs
TensorFlow; a `TEDPolicy` entry of `policies:` configures it. The model is saved as plain numbers (JSON)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bot.dialogue.policies.domain import PolicyDomain
from bot.dialogue.policies.graph import TrainingTracker
from bot.dialogue.policies.policy import DEFAULT_POLICY_PRIORITY, Policy, PolicyPrediction
from bot.dialogue.policies.steps import Event
from bot.dialogue.policies.tracker import State, current_states, states_and_actions

DEFAULT_MAX_HISTORY = 5  # a fixed window is needed for a fixed-size input; Rasa's configs use 5 for TED


def state_features(states: list[State], max_history: int) -> dict[str, float]:
    """Sparse features of the last `max_history` states; `0:` is the current state, `1:` the one before."""
    features: dict[str, float] = {}
    for ago, state in enumerate(reversed(states[-max_history:])):
        user = state.get("user", {})
        if "intent" in user:
            features[f"{ago}:intent={user['intent']}"] = 1.0
        for entity in user.get("entities", []):
            features[f"{ago}:entity={entity}"] = 1.0
        if "prev_action" in state:
            features[f"{ago}:prev={state['prev_action']['action_name']}"] = 1.0
        for slot, values in state.get("slots", {}).items():
            for index, value in enumerate(values if isinstance(values, list) else []):
                if value:
                    features[f"{ago}:slot={slot}:{index}"] = float(value)
        if "active_loop" in state:
            features[f"{ago}:loop={state['active_loop']['name']}"] = 1.0
        if ago == 0 and "intent" in user and "prev_action" in state:
            # the answer to what the bot just did ("no" after "anything else?"): what generalises most
            features[f"0:intent={user['intent']}&prev={state['prev_action']['action_name']}"] = 1.0
    return features


class NextActionClassifierPolicy(Policy):
    name = "TEDPolicy"
    default_priority = DEFAULT_POLICY_PRIORITY
    # C: inverse regularisation strength; small story sets need little regularisation to answer with confidence
    options = {"max_history": DEFAULT_MAX_HISTORY, "C": 100.0}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        if self.config["max_history"] is None:
            self.config["max_history"] = DEFAULT_MAX_HISTORY
        self.vocabulary: dict[str, int] = {}
        self.classes: list[str] = []
        self.coef = np.zeros((0, 0))
        self.intercept = np.zeros(0)

    def train(self, stories: list[TrainingTracker], rules: list[TrainingTracker], domain: PolicyDomain) -> None:
        """Learn from the stories (as Rasa's TED, which leaves rules to the RulePolicy)."""
        samples, labels = self.examples(stories, domain)
        self.classes = sorted(set(labels))
        self.vocabulary = {name: i for i, name in enumerate(sorted({f for s in samples for f in s}))}
        if len(self.classes) < 2:  # nothing to choose between: always the one action seen, if any
            self.coef, self.intercept = np.zeros((len(self.classes), len(self.vocabulary))), np.zeros(len(self.classes))
            return
        from sklearn.linear_model import LogisticRegression  # heavy import, only when training

        model = LogisticRegression(C=float(self.config["C"]), max_iter=2000)
        model.fit(self._matrix(samples), labels)
        self.classes = [str(c) for c in model.classes_]
        self.coef, self.intercept = model.coef_, model.intercept_

    def examples(self, trackers: list[TrainingTracker], domain: PolicyDomain) -> tuple[list[dict[str, float]],
                                                                                          list[str]]:
        samples, labels = [], []
        for tracker in trackers:
            states, actions = states_and_actions(tracker.events, domain)
            for index, action in enumerate(actions):
                samples.append(state_features(states[: index + 1], self.config["max_history"]))
                labels.append(action)
        return samples, labels

    def _matrix(self, samples: list[dict[str, float]]) -> np.ndarray:
        matrix = np.zeros((len(samples), len(self.vocabulary)))
        for row, sample in enumerate(samples):
            for name, value in sample.items():
                if name in self.vocabulary:
                    matrix[row, self.vocabulary[name]] = value
        return matrix

    def probabilities(self, states: list[State]) -> dict[str, float]:
        if not self.classes:
            return {}
        if len(self.classes) == 1:
            return {self.classes[0]: 1.0}
        row = self._matrix([state_features(states, self.config["max_history"])])[0]
        scores = self.coef @ row + self.intercept
        if len(self.classes) == 2:  # sklearn's binary model: one score, the second class's log-odds
            second = 1.0 / (1.0 + np.exp(-scores[0]))
            return {self.classes[0]: 1.0 - second, self.classes[1]: second}
        exp = np.exp(scores - scores.max())
        return dict(zip(self.classes, (exp / exp.sum()).tolist(), strict=True))

    def predict(self, events: list[Event], domain: PolicyDomain) -> PolicyPrediction | None:
        probabilities = self.probabilities(current_states(events, domain))
        if not probabilities:
            return None
        action = max(probabilities, key=lambda name: probabilities[name])
        return PolicyPrediction(action, float(probabilities[action]))

    def model_json(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary, "classes": self.classes, "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist()}

    def load_model(self, model: dict[str, Any]) -> None:
        self.vocabulary = {str(k): int(v) for k, v in model["vocabulary"].items()}
        self.classes = list(model["classes"])
        self.coef = np.array(model["coef"], dtype=float).reshape(len(model["coef"]), len(self.vocabulary))
        self.intercept = np.array(model["intercept"], dtype=float)
