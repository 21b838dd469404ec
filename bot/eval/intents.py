"""Intent classification evaluation: train the config's NLU pipeline on TSV files and score a test file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

from bot.config import BotConfig
from bot.eval.datasets import OOS, read_intent_files, read_intents
from bot.model import build_nlu, fit_classifier
from bot.nlu.classifier import OOS_INTENTS
from bot.nlu.pipeline import NLUPipeline
from bot.retrieval.encoders import load_encoder
from bot.training_data import TrainingData

LATENCY_SAMPLE = 1000


def evaluate_intents(train_files: list[Path], test_file: Path, config: BotConfig,
                     threshold: float | None = None) -> dict[str, Any]:
    """Accuracy, macro F1, in-scope accuracy, OOS recall, train time and parse latency of the config's NLU.

    A prediction is `oos` when the top intent is `oos`/`nlu_fallback` or its probability is below `threshold`
    (default: the config's fallback_threshold).
    """
    train = read_intent_files([Path(p) for p in train_files])
    test = read_intents(Path(test_file))
    nlu = build_nlu(config, TrainingData(), load_encoder(config.retrieval.encoder, str(config.root)))
    started = time.perf_counter()
    fit_classifier(nlu, train.texts, train.labels)
    train_seconds = time.perf_counter() - started
    if threshold is None:
        threshold = config.step("intent_classifier").fallback_threshold
    predicted = predict_intents(nlu, test.texts, threshold)
    p50, p99 = parse_latency_ms(nlu, test.texts[:LATENCY_SAMPLE])
    return {**intent_metrics(test.labels, predicted), "train_seconds": round(train_seconds, 2),
            "parse_ms_p50": round(p50, 3), "parse_ms_p99": round(p99, 3), "n_test": len(test.texts)}


def predict_intents(nlu: NLUPipeline, texts: list[str], threshold: float) -> list[str]:
    """Batched equivalent of `nlu.parse(text)["intent"]["name"]`, with `oos` for every kind of fallback."""
    prepared = [nlu.prepare(t) for t in texts]
    normalised = [p[0] for p in prepared]
    vectors = nlu.encoder.encode(normalised) if nlu.encoder and nlu.classifier.encoder_name else None
    probabilities = nlu.classifier.probabilities(normalised, [p[1] for p in prepared], vectors)
    labels = np.asarray(nlu.classifier.labels, dtype=object)
    top = probabilities.argmax(axis=1)
    support = nlu.classifier.support(vectors) if vectors is not None and nlu.min_support > 0 else None
    top_support = support[np.arange(len(top)), top] if support is not None else np.ones(len(top))
    predicted = []
    for text, index, probability, similarity in zip(normalised, top, probabilities.max(axis=1), top_support,
                                                    strict=True):
        label = str(labels[index])
        fallback = not text or label in OOS_INTENTS or probability < threshold or similarity < nlu.min_support
        predicted.append(OOS if fallback else label)
    return predicted


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
