"""Intent classifier: logistic regression over char n-grams, jieba words and sentence-encoder vectors.

Texts reach it already normalised and tokenised, so train and parse see the same input.
Out-of-scope: when the top probability is below `fallback_threshold`, or when no training example of the top
intent is at least `min_support` similar to the message (cosine of encoder vectors: a message far from every
example the intent was taught with is not that intent, however the probabilities fall), the intent is
`nlu_fallback`. Training data may also hold an explicit `oos` intent, which is then a class like any other.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bot.retrieval.encoders import Encoder

FALLBACK_INTENT = "nlu_fallback"
OOS_INTENTS = frozenset({FALLBACK_INTENT, "oos", "out_of_scope"})  # intents that already mean "none fits"


@dataclass(frozen=True)
class ClassifierOptions:
    char_ngram_range: tuple[int, int] = (1, 4)
    word_features: bool = True
    sentence_encoder: bool = True
    encoder_weight: float = 1.0
    C: float = 10.0
    max_iter: int = 1000


def _identity(tokens: list[str]) -> list[str]:
    return tokens


class IntentClassifier:
    """Fit with `fit`, then `rank` one message at a time (or `rank_many` for evaluation)."""

    def __init__(self, options: ClassifierOptions = ClassifierOptions()) -> None:
        self.options = options
        self.char_vectorizer = TfidfVectorizer(analyzer="char", ngram_range=tuple(options.char_ngram_range),
                                               sublinear_tf=True, min_df=1, lowercase=False)
        self.word_vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, lowercase=False)
        self.model = LogisticRegression(C=options.C, max_iter=options.max_iter)
        self.encoder_name: str | None = None
        self.example_vectors: np.ndarray | None = None  # training vectors sorted by class, for `support`
        self.class_starts: np.ndarray | None = None  # first row of each class in example_vectors

    @property
    def labels(self) -> list[str]:
        return [str(c) for c in self.model.classes_]

    def fit(self, texts: list[str], tokens: list[list[str]], labels: list[str],
            encoder: Encoder | None) -> IntentClassifier:
        if len(set(labels)) < 2:
            raise ValueError("intent classifier: training data needs at least two intents")
        self.encoder_name = encoder.name if (encoder and self.options.sentence_encoder) else None
        parts = [self.char_vectorizer.fit_transform(texts)]
        if self.options.word_features:
            parts.append(self.word_vectorizer.fit_transform(tokens))
        if self.encoder_name:
            vectors = encoder.encode(texts)  # type: ignore[union-attr]
            parts.append(sparse.csr_matrix(vectors * self.options.encoder_weight))
        self.model.fit(sparse.hstack(parts).tocsr(), labels)
        if self.encoder_name:
            self._keep_examples(vectors, labels)
        return self

    def _keep_examples(self, vectors: np.ndarray, labels: list[str]) -> None:
        class_index = np.searchsorted(self.model.classes_, np.asarray(labels, dtype=object))
        order = np.argsort(class_index, kind="stable")
        self.example_vectors = vectors[order].astype(np.float32)
        self.class_starts = np.searchsorted(class_index[order], np.arange(len(self.model.classes_)))

    def support(self, vectors: np.ndarray, chunk: int = 512) -> np.ndarray | None:
        """(len(vectors), n_classes): the highest cosine between each message and any training example of
        each class; None when the classifier was trained without an encoder."""
        if self.example_vectors is None or self.class_starts is None:
            return None
        rows = [np.maximum.reduceat(vectors[i : i + chunk] @ self.example_vectors.T, self.class_starts, axis=1)
                for i in range(0, len(vectors), chunk)]
        return np.vstack(rows)

    def features(self, texts: list[str], tokens: list[list[str]], vectors: np.ndarray | None) -> sparse.csr_matrix:
        parts = [self.char_vectorizer.transform(texts)]
        if self.options.word_features:
            parts.append(self.word_vectorizer.transform(tokens))
        if self.encoder_name:
            if vectors is None:
                raise ValueError(f"intent classifier was trained with encoder {self.encoder_name}; none given")
            parts.append(sparse.csr_matrix(vectors * self.options.encoder_weight))
        return sparse.hstack(parts).tocsr()

    def probabilities(self, texts: list[str], tokens: list[list[str]], vectors: np.ndarray | None) -> np.ndarray:
        return self.model.predict_proba(self.features(texts, tokens, vectors))

    def rank(self, text: str, tokens: list[str], vector: np.ndarray | None,
             length: int = 10) -> list[tuple[str, float]]:
        """(intent, probability) pairs, best first."""
        probabilities = self.probabilities_one(text, tokens, vector)
        order = np.argsort(-probabilities)[:length]
        labels = self.labels
        return [(labels[i], float(probabilities[i])) for i in order]

    def probabilities_one(self, text: str, tokens: list[str], vector: np.ndarray | None) -> np.ndarray:
        """`probabilities` for one message, computed directly from the fitted weights: sklearn's per-call input
        validation costs more than the arithmetic for a single row (~3 ms of a ~10 ms parse)."""
        coef, offset = self.model.coef_, 0
        scores = self.model.intercept_.copy()
        blocks = [(self.char_vectorizer, "char", text)]
        if self.options.word_features:
            blocks.append((self.word_vectorizer, "word", tokens))
        for vectorizer, kind, document in blocks:
            columns, values = _tfidf_row(vectorizer, self._analyzer(kind), document)
            scores += coef[:, offset + columns] @ values
            offset += len(vectorizer.vocabulary_)
        if self.encoder_name:
            if vector is None:
                raise ValueError(f"intent classifier was trained with encoder {self.encoder_name}; none given")
            scores += coef[:, offset:] @ (vector * self.options.encoder_weight)
        if len(self.model.classes_) == 2:
            positive = 1 / (1 + np.exp(-scores[0]))
            return np.array([1 - positive, positive])
        exp = np.exp(scores - scores.max())
        return exp / exp.sum()

    def _analyzer(self, kind: str) -> Any:
        cache = self.__dict__.setdefault("_analyzers", {})
        if kind not in cache:
            vectorizer = self.char_vectorizer if kind == "char" else self.word_vectorizer
            cache[kind] = vectorizer.build_analyzer()
        return cache[kind]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_analyzers"}


def _tfidf_row(vectorizer: TfidfVectorizer, analyzer: Any, document: Any) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) of `vectorizer.transform([document])`'s single row, for a fitted sublinear-tf,
    l2-normalised TF-IDF."""
    vocabulary = vectorizer.vocabulary_
    counts = Counter(i for i in (vocabulary.get(term) for term in analyzer(document)) if i is not None)
    columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
    values = (1 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * vectorizer.idf_[columns]
    norm = np.linalg.norm(values)
    return columns, values / norm if norm else values
