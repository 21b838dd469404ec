"""`bot test`: k-fold cross-validation of the intent classifier on the bot's own training data.

Writes to `out/`: intent_report.json (per-intent precision/recall/F1), confusion_matrix.png and .html,
errors.json (misclassified examples with what they were taken for), calibration.json (is a stated confidence
right that often: reliability bins and the expected calibration error).
"""

from __future__ import annotations

import html
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix
from sklearn.model_selection import StratifiedKFold

from bot.config import BotConfig
from bot.eval.calibration import reliability
from bot.model import build_nlu, fit_classifier
from bot.nlu.classifier import FALLBACK_INTENT
from bot.retrieval.encoders import load_encoder
from bot.training_data import load_training_data


def cross_validate(config: BotConfig, folds: int = 5, out: Path = Path("results"), seed: int = 0,
                   leave_out: Collection[str] = ()) -> dict[str, Any]:
    """Stratified `folds`-fold cross-validation of the intent classifier; the intents in `leave_out` take no part
    (neither trained on nor tested)."""
    data = load_training_data(config.path(config.nlu_data))
    examples = [e for e in data.examples if e.intent not in leave_out]
    texts = [e.text for e in examples]
    labels = np.array([e.intent for e in examples])
    smallest = min(np.unique(labels, return_counts=True)[1])
    if smallest < folds:
        raise ValueError(f"an intent has only {smallest} examples; {folds}-fold cross-validation needs {folds}")
    encoder = load_encoder(config.retrieval.encoder, str(config.root))
    predicted = np.empty(len(texts), dtype=object)
    confidence = np.zeros(len(texts))
    for train_index, test_index in StratifiedKFold(folds, shuffle=True, random_state=seed).split(texts, labels):
        nlu = build_nlu(config, data, encoder)
        fit_classifier(nlu, [texts[i] for i in train_index], list(labels[train_index]))
        for i in test_index:
            intent = nlu.parse(texts[i])["intent"]
            predicted[i], confidence[i] = intent["name"], intent["confidence"]
    summary = write_report(out, texts, list(labels), list(predicted), [e.source for e in examples])
    answered = [i for i in range(len(texts)) if predicted[i] != FALLBACK_INTENT]  # abstentions are not claims
    calibration = reliability([float(confidence[i]) for i in answered], [predicted[i] == labels[i] for i in answered])
    (out / "calibration.json").write_text(json.dumps(calibration, indent=2), "utf-8")
    return {**summary, "ece": calibration["ece"], **_held_out_stories(config, data, out)}


def _held_out_stories(config: BotConfig, data: Any, out: Path) -> dict[str, Any]:
    """Next-action accuracy of the policies on stories left out of their training, one at a time (projects with
    stories only): `results/story_errors.json` lists the wrong predictions."""
    if not data.stories:
        return {}
    from bot.dialogue.policies import evaluate_held_out

    report = evaluate_held_out(data.stories, data.rules, data.as_rasa_domain(), config.policies or None)
    (out / "story_errors.json").write_text(json.dumps(report.mistakes, ensure_ascii=False, indent=2), "utf-8")
    return {"held_out_action_accuracy": round(report.accuracy, 4), "held_out_actions": report.total}


def write_report(out: Path, texts: list[str], gold: list[str], predicted: list[str],
                 sources: list[str]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    (out / "intent_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), "utf-8")
    errors = [{"text": t, "intent": g, "predicted": p, "source": s}
              for t, g, p, s in zip(texts, gold, predicted, sources, strict=True) if g != p]
    (out / "errors.json").write_text(json.dumps(errors, ensure_ascii=False, indent=2), "utf-8")
    names = sorted(set(gold) | set(predicted))
    matrix = confusion_matrix(gold, predicted, labels=names)
    _plot(matrix, names, out / "confusion_matrix.png")
    (out / "confusion_matrix.html").write_text(_html(matrix, names), "utf-8")
    return {"accuracy": round(report["accuracy"], 4), "macro_f1": round(report["macro avg"]["f1-score"], 4),
            "n_examples": len(texts), "n_errors": len(errors), "report_dir": str(out)}


def _plot(matrix: np.ndarray, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(6, len(names) * 0.28)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true intent")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _html(matrix: np.ndarray, names: list[str]) -> str:
    header = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for name, row in zip(names, matrix, strict=True):
        cells = "".join(f"<td class={'hit' if i == j and v else 'miss' if v else 'zero'}>{v}</td>"
                        for j, v in enumerate(row) for i in [names.index(name)])
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    style = ("td,th{border:1px solid #ccc;padding:2px 4px;font:11px sans-serif;text-align:right}"
             ".hit{background:#cde}.miss{background:#fcc}.zero{color:#bbb}")
    return (f"<!doctype html><meta charset=utf-8><title>Confusion matrix</title><style>{style}</style>"
            f"<table><tr><th>true \\ predicted</th>{header}</tr>{''.join(rows)}</table>")
