"""The baselines RESULTS.md compares against, run in the same process as the project's own evaluation.

- intents: character n-gram TF-IDF + linear SVM on the raw text (`oos` is just another class when trained on);
  for comparing encoders, a logistic regression over one encoder's sentence vectors alone;
- pairs: symmetric, self-normalised BM25 similarity of the two jieba-tokenised texts, threshold chosen on dev;
- QA: BM25 of the question against each candidate answer (in `bot.eval.qa`, `LEXICAL_ONLY` weights).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jieba
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from bot.eval.datasets import read_intents, read_pairs
from bot.eval.intents import intent_metrics
from bot.eval.pairs import best_threshold
from bot.retrieval.encoders import Encoder

ENCODER_LR_C = (1.0, 10.0, 100.0)  # C of the regression over sentence vectors alone, chosen by 5-fold CV on train


def svm_intent_baseline(train_file: Path, test_file: Path) -> dict[str, Any]:
    train, test = read_intents(train_file), read_intents(test_file)
    model = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, min_df=1),
                          LinearSVC(C=1.0))
    started = time.perf_counter()
    model.fit(train.texts, train.labels)
    train_seconds = time.perf_counter() - started
    predicted = [str(p) for p in model.predict(test.texts)]
    timings = []
    for text in test.texts[:1000]:
        begun = time.perf_counter()
        model.predict([text])
        timings.append((time.perf_counter() - begun) * 1000)
    return {**intent_metrics(test.labels, predicted), "train_seconds": round(train_seconds, 2),
            "parse_ms_p50": round(float(np.percentile(timings, 50)), 3),
            "parse_ms_p99": round(float(np.percentile(timings, 99)), 3), "n_test": len(test.texts)}


def encoder_lr_baseline(train_file: Path, test_file: Path, encoder: Encoder) -> dict[str, Any]:
    """A logistic regression over the encoder's vectors alone (no text features), C by 5-fold CV on train."""
    train, test = read_intents(train_file), read_intents(test_file)
    started = time.perf_counter()
    train_vectors, test_vectors = encoder.encode(train.texts), encoder.encode(test.texts)
    encode_ms = (time.perf_counter() - started) * 1000 / (len(train.texts) + len(test.texts))
    scores = {c: cross_val_score(LogisticRegression(C=c, max_iter=2000), train_vectors, train.labels, cv=5).mean()
              for c in ENCODER_LR_C}
    best = max(scores, key=lambda c: scores[c])
    model = LogisticRegression(C=best, max_iter=2000).fit(train_vectors, train.labels)
    predicted = [str(p) for p in model.predict(test_vectors)]
    return {**intent_metrics(test.labels, predicted), "C": best, "cv_accuracy": round(float(scores[best]), 4),
            "encode_ms_per_text_batched": round(encode_ms, 2), "n_test": len(test.texts)}


class BM25:
    def __init__(self, documents: list[list[str]], k1: float = 1.2, b: float = 0.75) -> None:
        frequency = Counter(t for d in documents for t in set(d))
        n = len(documents)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}
        self.average_length = sum(map(len, documents)) / max(n, 1)
        self.k1, self.b = k1, b

    def score(self, query: list[str], document: list[str]) -> float:
        counts = Counter(document)
        norm = self.k1 * (1 - self.b + self.b * len(document) / max(self.average_length, 1e-9))
        return sum(self.idf.get(t, 0.0) * counts[t] * (self.k1 + 1) / (counts[t] + norm)
                   for t in set(query) if t in counts)

    def similarity(self, a: list[str], b: list[str]) -> float:
        """Mean of BM25(a→b)/BM25(a→a) and BM25(b→a)/BM25(b→b): 1 for identical texts, 0 for nothing shared."""
        self_a, self_b = self.score(a, a), self.score(b, b)
        forward = self.score(a, b) / self_a if self_a else 0.0
        backward = self.score(b, a) / self_b if self_b else 0.0
        return (forward + backward) / 2


def bm25_pair_baseline(dev_file: Path, test_file: Path) -> dict[str, Any]:
    dev, test = read_pairs(dev_file), read_pairs(test_file)
    tokens = {text: jieba.lcut(text) for text in dev.a + dev.b + test.a + test.b}
    bm25 = BM25(list(tokens.values()))

    def scores(pairs: Any) -> np.ndarray:
        return np.array([bm25.similarity(tokens[a], tokens[b]) for a, b in zip(pairs.a, pairs.b, strict=True)])

    threshold, _ = best_threshold(scores(dev), np.asarray(dev.labels))
    predicted = scores(test) >= threshold
    return {"accuracy": round(float((predicted == np.asarray(test.labels, dtype=bool)).mean()), 4),
            "threshold": round(threshold, 4), "n_test": len(test.labels)}
