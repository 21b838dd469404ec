"""Paraphrase-pair evaluation: is text_b a rewording of text_a?

A learned pair scorer: similarity features of the two normalised, tokenised texts (encoder cosine, char n-gram
Dice/Jaccard, TF-IDF cosines, IDF-weighted word overlap, length, number and negation mismatches, edit distance,
longest common substring) feed a gradient-boosted classifier; the decision threshold is chosen on the dev file.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer

from bot.config import BotConfig
from bot.eval.datasets import PairSet, read_pairs
from bot.model import build_nlu
from bot.retrieval.encoders import Encoder, load_encoder
from bot.training_data import TrainingData

NEGATIONS = ("不", "没", "未", "无", "别", "非")
QUESTION_WORDS = ("吗", "么", "什么", "怎么", "如何", "为什么", "为何", "哪", "几", "多少", "能否", "可以", "是否")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

Prepare = Callable[[str], tuple[str, list[str]]]


@dataclass
class PreparedPairs:
    a: list[str]
    b: list[str]
    tokens_a: list[list[str]]
    tokens_b: list[list[str]]
    labels: np.ndarray


class PairScorer:
    """Fit on labelled pairs, then `score` new ones: probability that the two texts mean the same."""

    def __init__(self, encoder: Encoder | None, max_iter: int = 300, seed: int = 0) -> None:
        self.encoder = encoder
        self.model = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.08, max_leaf_nodes=31,
                                                    l2_regularization=1.0, random_state=seed)
        self.char_tfidf = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, lowercase=False)
        self.word_tfidf = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, lowercase=False)
        self.idf: dict[str, float] = {}
        self.default_idf = 1.0

    def fit(self, pairs: PreparedPairs) -> PairScorer:
        documents = pairs.a + pairs.b
        self.char_tfidf.fit(documents)
        self.word_tfidf.fit(pairs.tokens_a + pairs.tokens_b)
        self._fit_idf(pairs.tokens_a + pairs.tokens_b)
        self.model.fit(self.features(pairs), pairs.labels)
        return self

    def score(self, pairs: PreparedPairs) -> np.ndarray:
        return self.model.predict_proba(self.features(pairs))[:, 1]

    def features(self, pairs: PreparedPairs) -> np.ndarray:
        columns = [
            self._dense_cosine(pairs.a, pairs.b),
            _row_cosine(self.char_tfidf.transform(pairs.a), self.char_tfidf.transform(pairs.b)),
            _row_cosine(self.word_tfidf.transform(pairs.tokens_a), self.word_tfidf.transform(pairs.tokens_b)),
        ]
        lexical = np.array([self._lexical(a, b, ta, tb) for a, b, ta, tb in
                            zip(pairs.a, pairs.b, pairs.tokens_a, pairs.tokens_b, strict=True)], dtype=np.float32)
        return np.column_stack([*columns, lexical])

    def _dense_cosine(self, a: list[str], b: list[str]) -> np.ndarray:
        if self.encoder is None:
            return np.zeros(len(a), dtype=np.float32)
        return np.einsum("ij,ij->i", self.encoder.encode(a), self.encoder.encode(b))

    def _fit_idf(self, token_lists: list[list[str]]) -> None:
        frequency = Counter(t for tokens in token_lists for t in set(tokens))
        n = len(token_lists)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}
        self.default_idf = math.log(1 + (n + 0.5) / 0.5)

    def _weighted_overlap(self, ta: list[str], tb: list[str]) -> tuple[float, float, float]:
        """IDF mass shared by both token sets over each set's own mass (BM25-style overlap), and the unshared."""
        sa, sb = set(ta), set(tb)
        weight = lambda words: sum(self.idf.get(w, self.default_idf) for w in words)  # noqa: E731
        shared, wa, wb = weight(sa & sb), weight(sa), weight(sb)
        return shared / wa if wa else 0.0, shared / wb if wb else 0.0, weight(sa ^ sb)

    def _lexical(self, a: str, b: str, ta: list[str], tb: list[str]) -> list[float]:
        ca, cb = set(a), set(b)
        ba, bb = _ngrams(a, 2), _ngrams(b, 2)
        wa, wb = set(ta), set(tb)
        over_a, over_b, unshared = self._weighted_overlap(ta, tb)
        na, nb = set(_NUMBER.findall(a)), set(_NUMBER.findall(b))
        neg_a, neg_b = sum(a.count(n) for n in NEGATIONS), sum(b.count(n) for n in NEGATIONS)
        qa, qb = {q for q in QUESTION_WORDS if q in a}, {q for q in QUESTION_WORDS if q in b}
        matcher = SequenceMatcher(None, a, b, autojunk=False)
        longest = matcher.find_longest_match(0, len(a), 0, len(b)).size
        shorter, longer = sorted((len(a), len(b)))
        return [
            _jaccard(ca, cb), _dice(ca, cb), _jaccard(ba, bb), _dice(ba, bb), _jaccard(wa, wb), _dice(wa, wb),
            min(over_a, over_b), max(over_a, over_b), unshared,
            shorter, longer, shorter / longer if longer else 1.0, longer - shorter,
            float(na != nb), float(bool(na) and bool(nb)),
            float((neg_a > 0) != (neg_b > 0)), abs(neg_a - neg_b),
            _jaccard(qa, qb), float(qa != qb),
            1 - _levenshtein(a, b) / longer if longer else 1.0,
            matcher.ratio(), longest / shorter if shorter else 0.0,
        ]


def prepare_pairs(pairs: PairSet, prepare: Prepare) -> PreparedPairs:
    a, b = [prepare(t) for t in pairs.a], [prepare(t) for t in pairs.b]
    return PreparedPairs([x[0] for x in a], [x[0] for x in b], [x[1] for x in a], [x[1] for x in b],
                         np.asarray(pairs.labels, dtype=np.int64))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold (score >= t means paraphrase) with the highest accuracy on (scores, labels)."""
    order = np.argsort(-scores)
    sorted_scores, sorted_labels = scores[order], labels[order]
    # predicting the top-k as positive: correct = positives among top k + negatives after k
    correct = np.concatenate([[0], np.cumsum(sorted_labels)]) + \
        np.concatenate([[int((sorted_labels == 0).sum())], (sorted_labels == 0).sum() - np.cumsum(sorted_labels == 0)])
    k = int(np.argmax(correct))
    if k == 0:
        threshold = float(sorted_scores[0]) + 1e-6
    elif k == len(scores):
        threshold = float(sorted_scores[-1])
    else:
        threshold = float((sorted_scores[k - 1] + sorted_scores[k]) / 2)
    return threshold, float(correct[k] / len(scores))


def evaluate_pairs(train_file: Path, dev_file: Path, test_file: Path, config: BotConfig) -> dict[str, Any]:
    """Accuracy on `test_file` of a pair scorer trained on `train_file`, thresholded for accuracy on `dev_file`."""
    encoder = load_encoder(config.retrieval.encoder, str(config.root))
    prepare = build_nlu(config, TrainingData(), encoder).prepare
    train, dev, test = (prepare_pairs(read_pairs(Path(f)), prepare) for f in (train_file, dev_file, test_file))
    scorer = PairScorer(encoder).fit(train)
    threshold, _ = best_threshold(scorer.score(dev), dev.labels)
    predicted = scorer.score(test) >= threshold
    return {"accuracy": round(float((predicted == test.labels.astype(bool)).mean()), 4),
            "threshold": round(threshold, 4), "n_test": len(test.labels)}


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _ngrams(text: str, n: int) -> set[str]:
    return {text[i : i + n] for i in range(len(text) - n + 1)} or {text}


def _jaccard(a: set[Any], b: set[Any]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _dice(a: set[Any], b: set[Any]) -> float:
    total = len(a) + len(b)
    return 2 * len(a & b) / total if total else 1.0


def _row_cosine(x: Any, y: Any) -> np.ndarray:
    """Cosine of matching rows of two L2-normalised sparse matrices."""
    return np.asarray(x.multiply(y).sum(axis=1)).ravel()


def _levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
