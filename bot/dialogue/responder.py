"""One stateless turn: rules, FAQ answers, clarification and fallback.

Decision order: a confident intent with a rule runs the rule's responses, unless the knowledge base has a
decisive answer at least as confident; otherwise the knowledge base answers or offers its top questions
("您是不是想问…"); otherwise the fallback response. Multi-turn state (forms, slots) builds on this.
"""

from __future__ import annotations

import random
import re
from typing import Any

from pydantic import BaseModel

from bot.config import DialogueConfig
from bot.nlu.classifier import FALLBACK_INTENT
from bot.training_data import TrainingData

# Social intents always answer from their rule: a knowledge hit on "谢谢" is never what the customer wants.
SLOT_PLACEHOLDER = re.compile(r"\{(\w+)\}")
CONVERSATIONAL_INTENTS = {"greet", "thanks", "goodbye", "affirm", "deny", "request_human", "complaint", "bot_identity"}


class Button(BaseModel):
    title: str
    payload: str


class Reply(BaseModel):
    text: str
    buttons: list[Button] = []
    source: str = ""  # response name or knowledge entry id: why the bot said this


class Responder:
    def __init__(self, data: TrainingData, config: DialogueConfig, rng: random.Random | None = None) -> None:
        self.responses = data.responses
        self.config = config
        self.rng = rng or random.Random()
        self.rule_actions = _rule_actions(data.rules)

    def respond(self, parse: dict[str, Any], channel: str = "web") -> list[Reply]:
        intent = parse["intent"]
        retrieval = parse.get("retrieval") or {"decision": "none", "top": None, "alternatives": []}
        actions = self.rule_actions.get(intent["name"], [])
        if actions and not self.knowledge_wins(intent, retrieval):
            slots = {e["entity"]: e["value"] for e in parse.get("entities", [])}
            return [r for action in actions for r in self.utter(action, channel, slots)]
        if retrieval["decision"] == "answer":
            top = retrieval["top"]
            return [Reply(text=top["answer"], source=top["id"])]
        if retrieval["decision"] == "clarify":
            return self.clarify(retrieval["alternatives"], channel)
        return self.utter(self.config.fallback_response, channel, {})

    def knowledge_wins(self, intent: dict[str, Any], retrieval: dict[str, Any]) -> bool:
        if intent["name"] in CONVERSATIONAL_INTENTS or retrieval["decision"] != "answer":
            return False
        return retrieval["top"]["confidence"] + self.config.faq_over_intent_margin >= intent["confidence"]

    def clarify(self, alternatives: list[dict[str, Any]], channel: str) -> list[Reply]:
        intro = self.utter(self.config.clarify_response, channel, {})
        text = intro[0].text if intro else "您是不是想问："
        buttons = [Button(title=a["question"], payload=a["question"]) for a in alternatives[:3]]
        return [Reply(text=text, buttons=buttons, source="clarify")]  # plain-text channels number them

    def utter(self, name: str, channel: str, slots: dict[str, Any]) -> list[Reply]:
        variants = self.responses.get(name)
        if not variants:
            return []
        for_channel = [v for v in variants if v.get("channel") == channel]
        pool = for_channel or [v for v in variants if not v.get("channel")] or variants
        variant = self.rng.choice(_best_filled(pool, slots))
        buttons = [Button(title=str(b["title"]), payload=str(b["payload"])) for b in variant.get("buttons", [])]
        return [Reply(text=fill_template(str(variant.get("text", "")), slots), buttons=buttons, source=name)]


def _best_filled(pool: list[dict[str, Any]], slots: dict[str, Any]) -> list[dict[str, Any]]:
    """Variants that use known slots beat plain ones, which beat variants missing a slot."""
    needs = [(v, template_slots(str(v.get("text", "")))) for v in pool]
    personal = [v for v, names in needs if names and names <= slots.keys()]
    plain = [v for v, names in needs if not names]
    return personal or plain or pool


def template_slots(text: str) -> set[str]:
    return set(SLOT_PLACEHOLDER.findall(text))


def fill_template(text: str, slots: dict[str, Any]) -> str:
    """Replace {slot} with its value; a slot without a value becomes empty rather than showing braces."""
    return SLOT_PLACEHOLDER.sub(lambda m: str(slots.get(m.group(1), "")), text)


def _rule_actions(rules: list[dict[str, Any]]) -> dict[str, list[str]]:
    """intent -> the actions that follow it in a one-intent rule."""
    actions: dict[str, list[str]] = {}
    for rule in rules:
        steps = rule.get("steps", [])
        if steps and "intent" in steps[0] and not rule.get("condition"):
            actions.setdefault(steps[0]["intent"], [s["action"] for s in steps[1:] if "action" in s])
    return actions


__all__ = ["Button", "FALLBACK_INTENT", "Reply", "Responder"]
