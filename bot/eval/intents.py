"""Intent classification evaluation: train the config's NLU pipeline on TSV files and score a test file.

The out-of-scope thresholds (the classifier's `fallback_threshold`, optionally `min_support`) are either the
config's, given numbers, or chosen by k-fold cross-validation on the training files alone (`kfold_tuning`): fit on
k-1 folds, score the held-out fold, and take the grid point with the best criterion averaged over the folds. The
criterion is in-scope accuracy + OOS recall (equal weight to both, whatever their sizes; or, with a minimum OOS
recall, the best in-scope accuracy that keeps it) when the training data has `oos` examples, else in-scope
accuracy alone (which then picks the grid's lowest threshold: without out-of-scope examples there is nothing to
trade against).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from bot.config import BotConfig
from bot.eval.datasets import OOS, read_intent_files, read_intents
from bot.model import build_nlu, fit_classifier
from bot.nlu.classifier import OOS_INTENTS
from bot.nlu.pipeline import NLUPipeline
from bot.retrieval.encoders import Encoder, load_encoder
from bot.training_data import TrainingData

LATENCY_SAMPLE = 1000
THRESHOLD_GRID = tuple(round(0.02 * i, 2) for i in range(46))  # fallback_threshold candidates, 0 to 0.9
SUPPORT_GRID = (0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)  # min_support candidates when it is tuned too


@dataclass(frozen=True)
class Thresholds:
    """Out-of-scope thresholds of the intent classifier, and how they were chosen."""
    fallback_threshold: float
    min_support: float
    chosen_by: str = "config"
    criterion: float | None = None  # the criterion's mean over the held-out folds, when chosen by k-fold

    def as_json(self) -> dict[str, Any]:
        return {"fallback_threshold": self.fallback_threshold, "min_support": self.min_support,
                "chosen_by": self.chosen_by, "cv_criterion": self.criterion}


@dataclass(frozen=True)
class TopScores:
    """The top intent of each message, its probability and its support (1 where support is not computed)."""
    gold: np.ndarray
    top: np.ndarray
    probability: np.ndarray
    support: np.ndarray
    fold: np.ndarray

    def predicted(self, threshold: float, min_support: float) -> np.ndarray:
        fallback = (self.top == OOS) | (self.probability < threshold) | (self.support < min_support)
        return np.where(fallback, OOS, self.top)


def config_thresholds(config: BotConfig) -> Thresholds:
    step = config.step("intent_classifier")
    return Thresholds(step.fallback_threshold, step.min_support)


def evaluate_intents(train_files: list[Path], test_file: Path, config: BotConfig,
                     threshold: float | str | None = None, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Accuracy, macro F1, in-scope accuracy, OOS recall, train time and parse latency of the config's NLU.

    A prediction is `oos` when the top intent is `oos`/`nlu_fallback`, its probability is below the fallback
    threshold or its support below min_support. Thresholds: `thresholds` if given; else `threshold` "auto"
    (5-fold cross-validation on the training files, fallback_threshold only) or "auto+support" (both), a number
    (fallback_threshold), or None (the config's).
    """
    train = read_intent_files([Path(p) for p in train_files])
    test = read_intents(Path(test_file))
    chosen = thresholds or resolve_thresholds(threshold, train.texts, train.labels, config)
    nlu = build_nlu(config, TrainingData(), load_encoder(config.retrieval.encoder, str(config.root)))
    nlu.fallback_threshold, nlu.min_support = chosen.fallback_threshold, chosen.min_support
    started = time.perf_counter()
    fit_classifier(nlu, train.texts, train.labels)
    train_seconds = time.perf_counter() - started
    predicted = predict_intents(nlu, test.texts, chosen.fallback_threshold)
    p50, p99 = parse_latency_ms(nlu, test.texts[:LATENCY_SAMPLE])
    return {**intent_metrics(test.labels, predicted), "train_seconds": round(train_seconds, 2),
            "parse_ms_p50": round(p50, 3), "parse_ms_p99": round(p99, 3), "n_test": len(test.texts),
            "thresholds": chosen.as_json()}


def resolve_thresholds(threshold: float | str | None, texts: list[str], labels: list[str],
                       config: BotConfig) -> Thresholds:
    if threshold is None:
        return config_thresholds(config)
    if threshold in ("auto", "auto+support"):
        return tune_thresholds(texts, labels, config, tune_support=threshold == "auto+support")
    try:
        value = float(threshold)
    except ValueError:
        raise ValueError(f"threshold {threshold!r}: use a number, 'auto' or 'auto+support'") from None
    return Thresholds(value, config_thresholds(config).min_support, "given")


def tune_thresholds(texts: list[str], labels: list[str], config: BotConfig, tune_support: bool = False,
                    folds: int = 5) -> Thresholds:
    """Thresholds by k-fold CV on the training data. Without `oos` examples the criterion (in-scope accuracy)
    can only fall as a threshold rises, so the grid's lowest values win and no fold needs fitting."""
    min_support = 0.0 if tune_support else config_thresholds(config).min_support
    if OOS not in labels:
        return Thresholds(THRESHOLD_GRID[0], min_support, "lowest: no oos in train")
    return kfold_tuning(texts, labels, config, folds).choose(tune_support, min_support)


def top_scores(nlu: NLUPipeline, texts: list[str], with_support: bool, gold: list[str] | None = None,
               fold: int = 0) -> TopScores:
    """The classifier's top intent for each text (`oos` for an empty text or an out-of-scope intent)."""
    prepared = [nlu.prepare(t) for t in texts]
    normalised = [p[0] for p in prepared]
    vectors = nlu.encoder.encode(normalised) if nlu.encoder and nlu.classifier.encoder_name else None
    probabilities = nlu.classifier.probabilities(normalised, [p[1] for p in prepared], vectors)
    index = probabilities.argmax(axis=1)
    top = np.asarray(nlu.classifier.labels, dtype=object)[index]
    empty = np.array([not t for t in normalised], dtype=bool)
    top = np.where(empty | np.isin(top, list(OOS_INTENTS)), OOS, top)
    support = nlu.classifier.support(vectors) if vectors is not None and with_support else None
    top_support = support[np.arange(len(index)), index] if support is not None else np.ones(len(index))
    return TopScores(np.asarray(gold if gold is not None else [], dtype=object), top, probabilities.max(axis=1),
                     top_support, np.full(len(texts), fold))


def predict_intents(nlu: NLUPipeline, texts: list[str], threshold: float) -> list[str]:
    """Batched equivalent of `nlu.parse(text)["intent"]["name"]`, with `oos` for every kind of fallback."""
    scores = top_scores(nlu, texts, with_support=nlu.min_support > 0)
    return [str(label) for label in scores.predicted(threshold, nlu.min_support)]


@dataclass(frozen=True)
class KFoldTuning:
    """Out-of-fold top scores of the training data, to choose thresholds on (see the module doc)."""
    scores: TopScores
    folds: int

    def rates(self, threshold: float, min_support: float) -> tuple[float, float | None]:
        """In-scope accuracy and OOS recall, each the mean over the held-out folds (recall None without oos)."""
        correct = self.scores.gold == self.scores.predicted(threshold, min_support)
        in_scope = self.scores.gold != OOS
        folds = [self.scores.fold == k for k in range(self.folds)]
        accuracy = float(np.mean([correct[f & in_scope].mean() if (f & in_scope).any() else 0.0 for f in folds]))
        if not (~in_scope).any():
            return accuracy, None
        return accuracy, float(np.mean([correct[f & ~in_scope].mean() for f in folds if (f & ~in_scope).any()]))

    def criterion(self, threshold: float, min_support: float, min_oos_recall: float | None = None) -> float:
        """In-scope accuracy + OOS recall; with `min_oos_recall`, in-scope accuracy where the recall reaches it
        (any such point beats every point below it, and below it the higher recall wins)."""
        accuracy, recall = self.rates(threshold, min_support)
        if recall is None:
            return accuracy
        if min_oos_recall is None:
            return accuracy + recall
        return accuracy if recall >= min_oos_recall else recall - 1

    def choose(self, tune_support: bool = False, min_support: float = 0.0,
               min_oos_recall: float | None = None) -> Thresholds:
        """The grid point with the best criterion over the held-out folds (the lowest on a tie)."""
        supports = SUPPORT_GRID if tune_support else (min_support,)
        grid = [(t, s) for s in supports for t in THRESHOLD_GRID]
        values = [self.criterion(t, s, min_oos_recall) for t, s in grid]
        best = int(np.argmax(values))
        name = f"{self.folds}-fold CV on train" + (", min_support too" if tune_support else "")
        if min_oos_recall is not None:
            name += f", best in-scope accuracy at OOS recall >= {min_oos_recall}"
        return Thresholds(grid[best][0], grid[best][1], name, round(values[best], 4))


def kfold_tuning(texts: list[str], labels: list[str], config: BotConfig, folds: int = 5,
                 seed: int = 0) -> KFoldTuning:
    """Fit the config's NLU on k-1 folds of the training data and score the held-out fold, k times."""
    encoder = load_encoder(config.retrieval.encoder, str(config.root))
    cached = CachedEncoder(encoder) if encoder else None
    gold = np.asarray(labels, dtype=object)
    parts: list[TopScores] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (fit_rows, held_rows) in enumerate(splitter.split(np.zeros(len(labels)), gold)):
        nlu = build_nlu(config, TrainingData(), cached)
        fit_classifier(nlu, [texts[i] for i in fit_rows], [labels[i] for i in fit_rows])
        parts.append(top_scores(nlu, [texts[i] for i in held_rows], True, [labels[i] for i in held_rows], k))
    joined = TopScores(*(np.concatenate([getattr(p, f) for p in parts])
                         for f in ("gold", "top", "probability", "support", "fold")))
    return KFoldTuning(joined, folds)


class CachedEncoder:
    """An encoder that encodes each distinct text once (the folds share most of their texts)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.name, self.dimension = encoder.name, encoder.dimension
        self._vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, self.encoder.encode(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack([self._vectors[t] for t in texts])


def intent_metrics(gold: list[str], predicted: list[str]) -> dict[str, float | None]:
    gold_array, predicted_array = np.asarray(gold, dtype=object), np.asarray(predicted, dtype=object)
    correct = gold_array == predicted_array
    in_scope = gold_array != OOS
    return {
        "accuracy": round(float(correct.mean()), 4) if len(gold) else 0.0,
        "macro_f1": round(float(f1_score(gold, predicted, labels=sorted(set(gold)), average="macro",
                                         zero_division=0)), 4),
        "in_scope_accuracy": round(float(correct[in_scope].mean()), 4) if in_scope.any() else None,
        "oos_recall": round(float(correct[~in_scope].mean()), 4) if (~in_scope).any() else None,
    }


def parse_latency_ms(nlu: NLUPipeline, texts: list[str]) -> tuple[float, float]:
    """p50 and p99 of `nlu.parse`, one message at a time on one thread (what a single request costs)."""
    if not texts:
        return 0.0, 0.0
    timings = []
    with threadpool_limits(limits=1):
        for text in texts[:5]:
            nlu.parse(text)  # warm caches
        for text in texts:
            started = time.perf_counter()
            nlu.parse(text)
            timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 99))
