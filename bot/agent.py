"""The loaded bot: parse a message (NLU + knowledge retrieval) and decide the replies."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from bot.config import BotConfig
from bot.dialogue import Reply, Responder
from bot.model import TrainedModel, latest_model_dir, load
from bot.nlu.pipeline import ParseResult

INTENT_PAYLOAD = re.compile(r"/(\w+)")  # a button's payload names its intent, as in Rasa


class NoModelError(RuntimeError):
    pass


class Agent:
    def __init__(self, model: TrainedModel, config: BotConfig) -> None:
        self.model = model
        self.config = config
        self.responder = Responder(model.data, config.dialogue)

    @classmethod
    def load(cls, config: BotConfig, model_dir: Path | None = None) -> Agent:
        directory = model_dir or latest_model_dir(config)
        if directory is None:
            raise NoModelError(f"no trained model in {config.path(config.models_dir)}; run `bot train` first")
        return cls(load(directory, config), config)

    @property
    def version(self) -> str:
        return str(self.model.metadata.get("version", "unknown"))

    def parse(self, text: str, channel: str | None = None, today: dt.date | None = None) -> ParseResult:
        payload = INTENT_PAYLOAD.fullmatch(text.strip())
        if payload and payload.group(1) in self.model.nlu.classifier.labels:
            intent = {"name": payload.group(1), "confidence": 1.0}
            return {"text": text, "normalized_text": text.strip(), "tokens": [], "intent": intent,
                    "intent_ranking": [intent], "entities": []}
        nlu = self.model.nlu
        normalised, tokens = nlu.prepare(text)
        vector = nlu.embed(normalised) if normalised else None
        result = nlu.parse(text, vector=vector, prepared=(normalised, tokens))
        if self.model.retriever is not None and normalised:
            result["retrieval"] = self.model.retriever.search(
                normalised, tokens, vector, channel=channel or self.config.retrieval.channel, today=today)
        return result

    def handle(self, text: str, channel: str = "web") -> tuple[ParseResult, list[Reply]]:
        parse = self.parse(text, channel)
        return parse, self.responder.respond(dict(parse), channel)
