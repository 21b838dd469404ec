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
from bot.training_data import TrainingData

# Social intents always answer from their rule: a knowledge hit on "谢谢" is never what the customer wants.
SLOT_PLACEHOLDER = re.compile(r"\{(\w+)\}")
NONE_OF_THESE = "都不是，转人工"
CONVERSATIONAL_INTENTS = {"greet", "thanks", "goodbye", "affirm", "deny", "request_human", "complaint", "bot_identity"}


class Button(BaseModel):
    title: str
    payload: str


class Reply(BaseModel):
    text: str
    buttons: list[Button] = []
    source: str = ""  # response name or knowledge entry id: why the bot said this
    image: str | None = None  # a picture's URL (Rasa's `image`)
    custom: dict[str, Any] | None = None  # a channel-specific payload (Rasa's `custom`, rasa_sdk's `json_message`)
    attachment: Any = None


class Responder:
    def __init__(self, data: TrainingData, config: DialogueConfig, rng: random.Random | None = None) -> None:
        self.responses = data.responses
        self.config = config
        self.rng = rng or random.Random()

    def knowledge_wins(self, intent: dict[str, Any], retrieval: dict[str, Any]) -> bool:
        if intent["name"] in CONVERSATIONAL_INTENTS or retrieval["decision"] != "answer":
            return False
        return retrieval["top"]["confidence"] + self.config.faq_over_intent_margin >= intent["confidence"]

    def clarify(self, options: list[Button], channel: str) -> list[Reply]:
        """"您是不是想问：" with `options`, and always a way out: none of these, a person."""
        intro = self.utter(self.config.clarify_response, channel, {})
        text = intro[0].text if intro else "您是不是想问："
        buttons = [*options, Button(title=NONE_OF_THESE, payload="/request_human")]
        return [Reply(text=text, buttons=buttons, source="clarify")]  # plain-text channels number them

    def utter(self, name: str, channel: str, slots: dict[str, Any]) -> list[Reply]:
        variants = self.responses.get(name)
        if not variants:
            return []
        for_channel = [v for v in variants if v.get("channel") == channel]
        pool = for_channel or [v for v in variants if not v.get("channel")] or variants
        variant = self.rng.choice(_best_filled(pool, slots))
        buttons = [Button(title=fill_template(str(b["title"]), slots), payload=str(b["payload"]))
                   for b in variant.get("buttons", [])]
        image = fill_template(str(variant["image"]), slots) if variant.get("image") else None
        custom = fill_values(variant["custom"], slots) if variant.get("custom") else None
        return [Reply(text=fill_template(str(variant.get("text", "")), slots), buttons=buttons, source=name,
                      image=image, custom=custom)]


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


def fill_values(value: Any, slots: dict[str, Any]) -> Any:
    """`fill_template` through a response's nested `custom` payload, as Rasa fills every string in it."""
    if isinstance(value, str):
        return fill_template(value, slots)
    if isinstance(value, dict):
        return {key: fill_values(item, slots) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_values(item, slots) for item in value]
    return value
