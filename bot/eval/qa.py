"""Answer-ranking evaluation: rank each question's candidate answers by a hybrid lexical + dense score.

Per candidate: BM25 of the question's words against the answer (IDF over all answers), character-bigram
coverage of the question, and the encoder cosine. Each is z-scored over the question's candidates and the
ranking score is their weighted sum: fixed weights, or weights learned by logistic regression on train_file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from bot.config import BotConfig
from bot.eval.datasets import QAQuestion, read_answers, read_questions
from bot.model import build_nlu
from bot.retrieval.encoders import Encoder, load_encoder
from bot.training_data import TrainingData

FEATURES = ("bm25", "bigram_coverage", "dense")
DEFAULT_WEIGHTS = np.array([1.0, 0.5, 1.0])
LEXICAL_ONLY = np.array([1.0, 0.0, 0.0])
Prepare = Callable[[str], tuple[str, list[str]]]


class AnswerIndex:
    """BM25 weights, character bigrams and encoder vectors of every answer, by answer id."""

    def __init__(self, answers: dict[str, str], prepare: Prepare, encoder: Encoder | None,
                 k1: float = 1.2, b: float = 0.75) -> None:
        self.ids = {answer_id: row for row, answer_id in enumerate(answers)}
        prepared = [prepare(text) for text in answers.values()]
        self.texts = [p[0] for p in prepared]
        self.vectorizer = CountVectorizer(analyzer=_identity)
        counts = self.vectorizer.fit_transform([p[1] for p in prepared]).tocsr().astype(np.float32)
        self.bm25 = _bm25_weights(counts, k1, b)
        self.bigrams = [_bigrams(t) for t in self.texts]
        self.vectors = encoder.encode(self.texts) if encoder is not None else None

    def rows(self, answer_ids: tuple[str, ...]) -> np.ndarray:
        return np.array([self.ids[a] for a in answer_ids], dtype=np.int64)


def candidate_features(index: AnswerIndex, question: str, tokens: list[str], vector: np.ndarray | None,
                       rows: np.ndarray) -> np.ndarray:
    """(len(rows), len(FEATURES)) raw feature values of the candidates `rows` for one question."""
    query = index.vectorizer.transform([tokens])
    query.data[:] = 1.0
    bm25 = np.asarray(index.bm25[rows] @ query.T.toarray()).ravel()
    question_bigrams = _bigrams(question)
    coverage = np.array([len(question_bigrams & index.bigrams[r]) / max(len(question_bigrams), 1) for r in rows])
    dense = index.vectors[rows] @ vector if index.vectors is not None and vector is not None else np.zeros(len(rows))
    return np.column_stack([bm25, coverage, dense])


def zscore(features: np.ndarray) -> np.ndarray:
    spread = features.std(axis=0)
    return (features - features.mean(axis=0)) / np.where(spread > 1e-9, spread, 1.0)


@dataclass
class RankedQuestion:
    features: np.ndarray  # z-scored per question
    relevant: np.ndarray  # bool per candidate


def rank_metrics(questions: list[RankedQuestion], weights: np.ndarray) -> dict[str, float]:
    p_at_1, reciprocal = [], []
    for q in questions:
        order = np.argsort(-(q.features @ weights), kind="stable")
        hits = np.flatnonzero(q.relevant[order])
        first = int(hits[0]) if len(hits) else len(order)
        p_at_1.append(float(first == 0))
        reciprocal.append(1.0 / (first + 1) if first < 10 else 0.0)
    return {"p_at_1": round(float(np.mean(p_at_1)), 4) if questions else 0.0,
            "mrr_at_10": round(float(np.mean(reciprocal)), 4) if questions else 0.0}


def learn_weights(questions: list[RankedQuestion]) -> np.ndarray:
    """Logistic-regression weights separating correct from wrong candidates (features already z-scored)."""
    x = np.vstack([q.features for q in questions])
    y = np.concatenate([q.relevant for q in questions])
    if len(set(y.tolist())) < 2:
        return DEFAULT_WEIGHTS
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(x, y)
    return model.coef_[0]


def evaluate_qa(answers_file: Path, test_file: Path, config: BotConfig,
                train_file: Path | None = None) -> dict[str, Any]:
    """P@1 and MRR@10 of the hybrid ranking over each test question's candidates."""
    return evaluate_qa_weights(answers_file, test_file, config, train_file)[0]


def evaluate_qa_weights(answers_file: Path, test_file: Path, config: BotConfig, train_file: Path | None = None,
                        fixed: dict[str, np.ndarray] | None = None) -> tuple[dict[str, Any], dict[str, dict]]:
    """`evaluate_qa`, plus the metrics of other fixed weightings (e.g. lexical only) on the same features."""
    encoder = load_encoder(config.retrieval.encoder, str(config.root))
    prepare = build_nlu(config, TrainingData(), encoder).prepare
    answers = read_answers(Path(answers_file))
    test = read_questions(Path(test_file))
    train = read_questions(Path(train_file)) if train_file is not None else []
    used = {a for q in test + train for a in q.candidates}
    missing = used - answers.keys()
    if missing:
        raise ValueError(f"{test_file}: candidate answer ids not in {answers_file}: {sorted(missing)[:5]}")
    index = AnswerIndex({a: text for a, text in answers.items() if a in used}, prepare, encoder)
    test_ranked = _rank_inputs(index, test, prepare, encoder)
    weights = learn_weights(_rank_inputs(index, train, prepare, encoder)) if train else DEFAULT_WEIGHTS
    others = {name: rank_metrics(test_ranked, w) for name, w in (fixed or {}).items()}
    return {**rank_metrics(test_ranked, weights), "n_test": len(test)}, others


def _rank_inputs(index: AnswerIndex, questions: list[QAQuestion], prepare: Prepare,
                 encoder: Encoder | None) -> list[RankedQuestion]:
    prepared = [prepare(q.question) for q in questions]
    vectors = encoder.encode([p[0] for p in prepared]) if encoder is not None else None
    ranked = []
    for i, (q, (text, tokens)) in enumerate(zip(questions, prepared, strict=True)):
        rows = index.rows(q.candidates)
        features = candidate_features(index, text, tokens, None if vectors is None else vectors[i], rows)
        relevant = np.isin(np.asarray(q.candidates), np.asarray(q.answers))
        ranked.append(RankedQuestion(zscore(features), relevant))
    return ranked


def _bm25_weights(counts: sparse.csr_matrix, k1: float, b: float) -> sparse.csr_matrix:
    """Per (answer, term) BM25 contribution, so a query's score is a sum over its distinct terms."""
    n = counts.shape[0]
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log(1 + (n - document_frequency + 0.5) / (document_frequency + 0.5)).astype(np.float32)
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
    weights = counts.copy()
    row_norm = np.repeat(norm, np.diff(counts.indptr))
    weights.data = counts.data * (k1 + 1) / (counts.data + row_norm) * idf[counts.indices]
    return weights


def _bigrams(text: str) -> set[str]:
    compact = text.replace(" ", "")
    return {compact[i : i + 2] for i in range(len(compact) - 1)} or ({compact} if compact else set())


def _identity(tokens: list[str]) -> list[str]:
    return tokens
