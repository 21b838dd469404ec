"""The loaded bot: parse a message (NLU + knowledge retrieval) and decide the replies."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from bot.config import BotConfig
from bot.dialogue import Reply, Responder
from bot.dialogue.actions import ActionRunner, InProcessActionRunner, RemoteActionRunner
from bot.dialogue.engine import DialogueEngine, DialogueState, TurnOutcome, offer_threshold
from bot.model import TrainedModel, latest_model_dir, load
from bot.nlu.pipeline import ParseResult
from bot.ops.metrics import timed_nlu
from bot.training_data import is_rasa_project

# a button's payload names its intent and may carry entities, as in Rasa: /check_balance{"card_tail": "1234"}
INTENT_PAYLOAD = re.compile(r"/(\w+)(\{.*\})?", re.S)
# intents every Rasa domain has, whether the project lists them or not: /restart, /back, and the "no" of the
# two-stage fallback's question
DEFAULT_INTENTS = frozenset({"restart", "back", "session_start", "out_of_scope"})


class NoModelError(RuntimeError):
    pass


class Assistant:
    def __init__(self, model: TrainedModel, config: BotConfig) -> None:
        self.model = model
        self.config = config
        self.responder = Responder(model.data, config.dialogue, language=config.language)
        self.engine = DialogueEngine(model.data, config.dialogue, self.responder, action_runner(config),
                                     reparse=lambda text: dict(self.parse(text)), policies=model.policies,
                                     language=config.language, carry_over_slots=carry_over_slots(config, model),
                                     offer_human_after=offer_threshold(config.handoff.max_fallbacks))

    @classmethod
    def load(cls, config: BotConfig, model_dir: Path | None = None) -> Assistant:
        directory = model_dir or latest_model_dir(config)
        if directory is None:
            raise NoModelError(f"no trained model in {config.path(config.models_dir)}; run `bot train` first")
        return cls(load(directory, config), config)

    @property
    def version(self) -> str:
        return str(self.model.metadata.get("version", "unknown"))

    @timed_nlu  # bot_nlu_seconds
    def parse(self, text: str, channel: str | None = None, today: dt.date | None = None) -> ParseResult:
        payload = INTENT_PAYLOAD.fullmatch(text.strip())
        if payload and self._payload_intent(payload.group(1)):
            intent = {"name": payload.group(1), "confidence": 1.0}
            return {"text": text, "normalized_text": text.strip(), "tokens": [], "intent": intent,
                    "intent_ranking": [intent], "entities": _payload_entities(payload.group(2))}
        nlu = self.model.nlu
        normalised, tokens = nlu.prepare(text)
        vector = nlu.embed(normalised) if normalised else None
        result = nlu.parse(text, vector=vector, prepared=(normalised, tokens))
        if self.model.retriever is not None and normalised:
            result["retrieval"] = self.model.retriever.search(
                normalised, tokens, vector, channel=channel or self.config.retrieval.channel, today=today)
        return result

    def _payload_intent(self, name: str) -> bool:
        """A button's intent: one the classifier knows, or (a project with Rasa's policies) a default one."""
        return name in self.model.nlu.classifier.labels or (self.model.policies is not None and name in DEFAULT_INTENTS)

    def respond(self, text: str, channel: str = "web", state: DialogueState | None = None,
                sender_id: str = "default", history: list[dict[str, Any]] | None = None,
                metadata: dict[str, Any] | None = None) -> tuple[ParseResult, TurnOutcome]:
        """Parse the message and take the dialogue one turn further from `state`."""
        parse = self.parse(text, channel)
        parse["metadata"] = metadata or {}  # type: ignore[typeddict-unknown-key]
        outcome = self.engine.turn(state or DialogueState(), dict(parse), channel, sender_id, history or [])
        return outcome.parse, outcome  # type: ignore[return-value]

    def handle(self, text: str, channel: str = "web") -> tuple[ParseResult, list[Reply]]:
        """One message without any conversation state (a first message)."""
        parse, outcome = self.respond(text, channel)
        return parse, outcome.replies


def action_runner(config: BotConfig) -> ActionRunner | None:
    """The action server named by `action_endpoint`, else the actions package in-process."""
    if config.action_endpoint is not None:
        return RemoteActionRunner(config.action_endpoint.url, timeout=config.action_endpoint.timeout)
    if not config.actions_package:
        return None
    return InProcessActionRunner(config.actions_package)


def carry_over_slots(config: BotConfig, model: TrainedModel) -> bool:
    """The domain's `session_config: carry_over_slots_to_new_session`; without one, Rasa's default (yes) for a
    Rasa project, and no for our own format (the bundled bank bot starts each session afresh, for security)."""
    session = model.data.session_config
    if session is not None:
        return session.carry_over_slots_to_new_session
    return is_rasa_project(config.path(config.nlu_data))


def _payload_entities(raw: str | None) -> list[dict[str, Any]]:
    try:
        values = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return []
    if not isinstance(values, dict):
        return []
    return [{"entity": str(k), "value": v, "start": 0, "end": 0, "extractor": "payload"} for k, v in values.items()]
