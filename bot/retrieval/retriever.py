"""FAQ retrieval over the knowledge base: the best entry with a confidence, and alternatives to clarify."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from bot.retrieval.hybrid import HybridIndex
from bot.retrieval.knowledge import KnowledgeEntry

Prepare = Callable[[str], tuple[str, list[str]]]
Decision = Literal["answer", "clarify", "none"]


class KnowledgeRetriever:
    def __init__(self, entries: list[KnowledgeEntry], index: HybridIndex, *, answer_threshold: float,
                 clarify_threshold: float, decisive_margin: float, candidates: int) -> None:
        self.entries = entries
        self.index = index
        self.answer_threshold = answer_threshold
        self.clarify_threshold = clarify_threshold
        self.decisive_margin = decisive_margin
        self.candidates = candidates

    @classmethod
    def build(cls, entries: list[KnowledgeEntry], prepare: Prepare, embed_many: Callable[[list[str]], Any],
              rrf_k: int, **thresholds: Any) -> KnowledgeRetriever:
        texts, tokens, groups = [], [], []
        for number, entry in enumerate(entries):
            for question in entry.questions:
                normalised, words = prepare(question)
                texts.append(normalised)
                tokens.append(words)
                groups.append(number)
        index = HybridIndex(texts, tokens, groups, embed_many(texts), rrf_k=rrf_k)
        return cls(entries, index, **thresholds)

    def search(self, normalised: str, tokens: list[str], vector: np.ndarray | None, *, channel: str = "web",
               today: dt.date | None = None, k: int = 3) -> dict[str, Any]:
        """Retrieval result: decision (answer / clarify / none), the top entry and k alternatives."""
        allowed = self._valid_entries(today or dt.date.today())
        hits = self.index.search(normalised, tokens, vector, k=k, candidates=self.candidates, allowed=allowed)
        results = [self._describe(hit.group, hit.confidence, hit.document, channel) for hit in hits]
        return {"decision": self._decide([r["confidence"] for r in results]), "top": results[0] if results else None,
                "alternatives": results}

    def _valid_entries(self, today: dt.date) -> np.ndarray:
        """Boolean mask of the entries valid on `today`, recomputed when the date changes."""
        cached = self.__dict__.get("_valid_cache")
        if cached is None or cached[0] != today:
            cached = (today, np.array([e.is_valid_on(today) for e in self.entries]))
            self.__dict__["_valid_cache"] = cached
        return cached[1]

    def _decide(self, confidences: list[float]) -> Decision:
        if not confidences or confidences[0] < self.clarify_threshold:
            return "none"
        runner_up = confidences[1] if len(confidences) > 1 else 0.0
        if confidences[0] >= self.answer_threshold and confidences[0] - runner_up >= self.decisive_margin:
            return "answer"
        return "clarify"

    def _describe(self, group: int, confidence: float, document: int, channel: str) -> dict[str, Any]:
        entry = self.entries[group]
        return {"id": entry.id, "question": entry.question, "category": entry.category,
                "answer": entry.answer_for(channel), "confidence": round(confidence, 4),
                "matched": self.index.texts[document]}
