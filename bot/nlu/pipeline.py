"""The NLU pipeline: normalise -> tokenise -> extract entities -> classify intent.

`parse` returns Rasa's parse format: text, intent, intent_ranking, entities (offsets into the original text).
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import sklearn

from bot.nlu.classifier import FALLBACK_INTENT, OOS_INTENTS, IntentClassifier
from bot.nlu.extractors import Entity, extract
from bot.nlu.normalise import NormaliserOptions, fold, normalise
from bot.nlu.rule_entities import RuleEntityExtractor
from bot.nlu.tokenise import Tokenizer
from bot.retrieval.encoders import Encoder


class IntentPrediction(TypedDict):
    name: str
    confidence: float


class ParseResult(TypedDict, total=False):
    text: str
    normalized_text: str
    tokens: list[str]
    intent: IntentPrediction
    intent_ranking: list[IntentPrediction]
    entities: list[Entity]
    retrieval: dict[str, Any]


class NLUPipeline:
    def __init__(self, *, normaliser: NormaliserOptions, tokenizer: Tokenizer, classifier: IntentClassifier,
                 rule_entities: RuleEntityExtractor | None, builtin_dimensions: list[str],
                 fallback_threshold: float, ranking_length: int, encoder: Encoder | None,
                 min_support: float = 0.0) -> None:
        self.normaliser = normaliser
        self.tokenizer = tokenizer
        self.classifier = classifier
        self.rule_entities = rule_entities
        self.builtin_dimensions = builtin_dimensions
        self.fallback_threshold = fallback_threshold
        self.min_support = min_support
        self.ranking_length = ranking_length
        self.encoder = encoder

    def prepare(self, text: str) -> tuple[str, list[str]]:
        """Normalised text and its tokens: the exact input the classifier and retrieval see."""
        normalised = normalise(text, self.normaliser)
        return normalised, self.tokenizer.tokenize(normalised)

    def embed(self, normalised: str) -> np.ndarray | None:
        return None if self.encoder is None else self.encoder.encode([normalised])[0]

    def parse(self, text: str, vector: np.ndarray | None = None,
              prepared: tuple[str, list[str]] | None = None) -> ParseResult:
        """Rasa's parse result. `prepared` and `vector`: `prepare(text)` and its embedding, if already computed."""
        normalised, tokens = prepared or self.prepare(text)
        if vector is None and normalised:
            vector = self.embed(normalised)
        return {
            "text": text,
            "normalized_text": normalised,
            "tokens": tokens,
            **self.classify(normalised, tokens, vector),
            "entities": self.entities(text),
        }

    def classify(self, normalised: str, tokens: list[str], vector: np.ndarray | None) -> dict[str, Any]:
        if not normalised:
            fallback: IntentPrediction = {"name": FALLBACK_INTENT, "confidence": 1.0}
            return {"intent": fallback, "intent_ranking": [fallback]}
        if vector is None and self.classifier.encoder_name:
            vector = self.embed(normalised)
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):  # ~2 ms per message
            scored = self.classifier.rank(normalised, tokens, vector, self.ranking_length)
        ranking: list[IntentPrediction] = [{"name": name, "confidence": round(p, 4)} for name, p in scored]
        top = ranking[0]
        if top["confidence"] < self.fallback_threshold or self._unsupported(vector, top["name"]):
            top = {"name": FALLBACK_INTENT, "confidence": round(1 - top["confidence"], 4)}
            ranking = [top, *ranking]
        return {"intent": top, "intent_ranking": ranking}

    def _unsupported(self, vector: np.ndarray | None, intent: str) -> bool:
        """True when no training example of `intent` is `min_support` similar to the message."""
        if self.min_support <= 0 or vector is None or intent in OOS_INTENTS:
            return False
        support = self.classifier.support(vector.reshape(1, -1))
        return support is not None and float(support[0, self.classifier.labels.index(intent)]) < self.min_support

    def entities(self, text: str) -> list[Entity]:
        found = extract(text, self.builtin_dimensions) if self.builtin_dimensions else []
        if self.rule_entities is not None:
            found += self.rule_entities.extract(fold(text, self.normaliser))
        return _resolve_overlaps([e for e in found if not _inside_a_number(text, e)])


def _inside_a_number(text: str, entity: Entity) -> bool:
    """"1234" read from inside "110105199001011234" or an order number is no card tail, no amount."""
    start, end = entity["start"], entity["end"]
    before = start > 0 and text[start - 1].isdigit() and text[start : start + 1].isdigit()
    after = end < len(text) and text[end].isdigit() and text[end - 1 : end].isdigit()
    return before or after


def _resolve_overlaps(entities: list[Entity]) -> list[Entity]:
    """Keep the longest of overlapping spans (earlier wins a tie: built-in extractors come first)."""
    kept: list[Entity] = []
    for entity in sorted(entities, key=lambda e: (-(e["end"] - e["start"]), e["start"])):
        if all(entity["end"] <= k["start"] or entity["start"] >= k["end"] for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e["start"])
