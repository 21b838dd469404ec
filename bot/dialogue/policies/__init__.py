"""Rasa 3 stories and rules -> dialogue policies that predict the next action from tracker events.

`PolicyEnsemble.train(stories, rules, domain, policy_configs)` -> `.predict(events) -> Prediction`;
`.save(dir)` / `PolicyEnsemble.load(dir)`; `evaluate_held_out(...)` scores it on stories it has not seen.
"""

from bot.dialogue.policies.domain import DomainError, PolicyDomain
from bot.dialogue.policies.ensemble import DEFAULT_POLICIES, PolicyEnsemble, Prediction
from bot.dialogue.policies.evaluation import HeldOutReport, evaluate_held_out
from bot.dialogue.policies.policy import PolicyConfigError
from bot.dialogue.policies.rule_policy import InvalidRulesError
from bot.dialogue.policies.steps import StoryError

__all__ = ["DEFAULT_POLICIES", "DomainError", "HeldOutReport", "InvalidRulesError", "PolicyConfigError",
           "PolicyDomain", "PolicyEnsemble", "Prediction", "StoryError", "evaluate_held_out"]
