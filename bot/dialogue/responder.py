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
from bot.dialogue.default_responses import Variants, default_responses
from bot.training_data import TrainingData

# Social intents always answer from their rule: a knowledge hit on "谢谢" is never what the customer wants.
SLOT_PLACEHOLDER = re.compile(r"\{(\w+)\}")
NONE_OF_THESE = "utter_none_of_these"  # the clarification menu's way out: none of these, a person
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
    """Renders responses by name. `utter` knows only the project's responses (as Rasa's domain); `say`, for
    what the engine says on its own, falls back to the built-in one in `language` (a Rasa project has them
    merged into its responses already; the bundled bot's data does not)."""

    def __init__(self, data: TrainingData, config: DialogueConfig, rng: random.Random | None = None,
                 language: str = "zh") -> None:
        self.responses = data.responses
        self.defaults = default_responses(language)
        self.config = config
        self.rng = rng or random.Random()

    def knowledge_wins(self, intent: dict[str, Any], retrieval: dict[str, Any]) -> bool:
        if intent["name"] in CONVERSATIONAL_INTENTS or retrieval["decision"] != "answer":
            return False
        return retrieval["top"]["confidence"] + self.config.faq_over_intent_margin >= intent["confidence"]

    def clarify(self, options: list[Button], channel: str) -> list[Reply]:
        """"您是不是想问：" with `options`, and always a way out: none of these, a person."""
        intro = self.utter(self.config.clarify_response, channel, {}) or self.say("utter_clarify", channel, {})
        way_out = self.say(NONE_OF_THESE, channel, {})[0].text
        buttons = [*options, Button(title=way_out, payload="/request_human")]
        return [Reply(text=intro[0].text, buttons=buttons, source="clarify")]  # plain-text channels number them

    def utter(self, name: str, channel: str, slots: dict[str, Any]) -> list[Reply]:
        """The project's response `name`, rendered for `channel`; nothing when the project has none."""
        return self._render(name, self.responses.get(name), channel, slots)

    def say(self, name: str, channel: str, slots: dict[str, Any]) -> list[Reply]:
        """A response the engine says on its own: the project's, else the built-in one (nothing for a name
        that is neither, e.g. a renamed fallback response the project forgot)."""
        return self.utter(name, channel, slots) or self._render(name, self.defaults.get(name), channel, slots)

    def _render(self, name: str, variants: Variants | None, channel: str, slots: dict[str, Any]) -> list[Reply]:
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
