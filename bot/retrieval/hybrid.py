"""Hybrid lexical + dense search over short documents grouped into answers.

Lexical: BM25 (bm25s) on jieba tokens. Dense: encoder vectors in a faiss inner-product index.
Ordering: reciprocal rank fusion of both lists. Confidence in [0, 1]: a blend of the best cosine similarity
and the best character-bigram overlap between the query and the group's documents, which, unlike RRF scores,
means the same thing for every query and can be thresholded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bm25s
import faiss
import numpy as np

DENSE_WEIGHT = 0.6


@dataclass(frozen=True)
class Hit:
    group: int  # index of the group (e.g. knowledge entry) the matched document belongs to
    document: int  # the best-matching document of that group
    confidence: float
    fused_score: float


def char_bigrams(text: str) -> set[str]:
    compact = text.replace(" ", "")
    return {compact[i : i + 2] for i in range(len(compact) - 1)} or ({compact} if compact else set())


def dice(a: set[str], b: set[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


HIT_POOL = 12


class HybridIndex:
    def __init__(self, texts: list[str], tokens: list[list[str]], groups: list[int],
                 vectors: np.ndarray | None, rrf_k: int = 60) -> None:
        if not texts:
            raise ValueError("hybrid index: nothing to index")
        self.texts = texts
        self.groups = np.asarray(groups, dtype=np.int64)
        self.bigrams = [char_bigrams(t) for t in texts]
        self.rrf_k = rrf_k
        self.bm25 = bm25s.BM25()
        self.bm25.index([t or ["∅"] for t in tokens], show_progress=False)
        self.vectors = None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32)
        self._faiss = self._build_faiss()

    def _build_faiss(self) -> Any:
        if self.vectors is None:
            return None
        index = faiss.IndexFlatIP(self.vectors.shape[1])
        index.add(self.vectors)
        return index

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_faiss"] = None  # rebuilt from the vectors on load
        state.pop("_group_documents", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._faiss = self._build_faiss()

    def search(self, text: str, tokens: list[str], vector: np.ndarray | None, k: int = 5,
               candidates: int = 20, allowed: np.ndarray | None = None) -> list[Hit]:
        """The k best groups for a normalised, tokenised query. `allowed`: boolean mask over groups."""
        lexical = self._lexical_ranking(tokens, candidates, allowed)
        dense_scores = self._dense_scores(vector)
        dense = self._dense_ranking(dense_scores, candidates, allowed)
        fused: dict[int, float] = {}
        for ranking in (lexical, dense):
            for rank, group in enumerate(ranking):
                fused[group] = fused.get(group, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        query_bigrams = char_bigrams(text)
        dense_list = None if dense_scores is None else dense_scores.tolist()
        # confidence is computed for the best fused groups only: further down neither ranking liked them
        pool = sorted(fused.items(), key=lambda item: -item[1])[: max(k, HIT_POOL)]
        hits = [self._hit(group, score, query_bigrams, dense_list) for group, score in pool]
        hits.sort(key=lambda h: (h.confidence, h.fused_score), reverse=True)
        return hits[:k]

    def _documents(self, group: int) -> list[int]:
        """The documents (standard and similar questions) of a group, computed once per group."""
        cache = self.__dict__.setdefault("_group_documents", {})
        if group not in cache:
            cache[group] = np.flatnonzero(self.groups == group).tolist()
        return cache[group]

    def _hit(self, group: int, fused: float, query_bigrams: set[str], dense_scores: list[float] | None) -> Hit:
        """The group's best document for the query, scored by the blend of dense cosine and bigram overlap."""
        best, best_score = -1, -1.0
        for document in self._documents(group):
            overlap = dice(query_bigrams, self.bigrams[document])
            score = overlap if dense_scores is None else \
                DENSE_WEIGHT * min(max(dense_scores[document], 0.0), 1.0) + (1 - DENSE_WEIGHT) * overlap
            if score > best_score:
                best, best_score = document, score
        return Hit(group, best, float(best_score), fused)

    def _lexical_ranking(self, tokens: list[str], candidates: int, allowed: np.ndarray | None) -> list[int]:
        if not tokens:
            return []
        scores = self.bm25.get_scores(tokens)
        return self._group_ranking(scores, candidates, allowed, minimum=1e-9)

    def _dense_scores(self, vector: np.ndarray | None) -> np.ndarray | None:
        if vector is None or self._faiss is None:
            return None
        scores, ids = self._faiss.search(vector.reshape(1, -1).astype(np.float32), len(self.texts))
        dense = np.empty(len(self.texts), dtype=np.float32)
        dense[ids[0]] = scores[0]
        return dense

    def _dense_ranking(self, scores: np.ndarray | None, candidates: int, allowed: np.ndarray | None) -> list[int]:
        return [] if scores is None else self._group_ranking(scores, candidates, allowed, minimum=-np.inf)

    def _group_ranking(self, scores: np.ndarray, candidates: int, allowed: np.ndarray | None,
                       minimum: float) -> list[int]:
        ranking: list[int] = []
        for document in np.argsort(-scores):
            if scores[document] < minimum or len(ranking) >= candidates:
                break
            group = int(self.groups[document])
            if group not in ranking and (allowed is None or allowed[group]):
                ranking.append(group)
        return ranking
