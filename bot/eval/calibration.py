"""Is a stated confidence of 0.8 right about 80% of the time? Reliability bins and the expected calibration error
(ECE: the gap between confidence and accuracy, averaged over bins weighted by their size)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EDGES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0001)


def reliability(confidences: Sequence[float], correct: Sequence[bool],
                edges: Sequence[float] = EDGES) -> dict[str, Any]:
    """{"bins": [{"from", "to", "n", "confidence", "accuracy"}], "ece", "n"} over the non-empty bins."""
    bins, gap, total = [], 0.0, len(confidences)
    for low, high in zip(edges, edges[1:], strict=False):
        members = [(c, k) for c, k in zip(confidences, correct, strict=True) if low <= c < high]
        if not members:
            continue
        confidence = sum(c for c, _ in members) / len(members)
        accuracy = sum(bool(k) for _, k in members) / len(members)
        gap += len(members) * abs(confidence - accuracy)
        bins.append({"from": low, "to": min(high, 1.0), "n": len(members), "confidence": round(confidence, 3),
                     "accuracy": round(accuracy, 3)})
    return {"bins": bins, "ece": round(gap / total, 4) if total else None, "n": total}


def fit_ranking(items: Sequence[Any], parse: Any, out_of_scope_entities: Sequence[str] = ()) -> dict[str, Any]:
    """Fit the calibrated ranking (`bot.dialogue.ranking`) on labelled replay items (`bot.eval.replay.ReplayItem`)
    and report how calibrated its top candidate is on them: {"calibration", "reliability", "n"}.
    `parse(text)` is the agent's parse of a message. Messages naming an out-of-scope entity (another
    institution's product) are left out: the dialogue answers them before it looks at the list."""
    from bot.dialogue import ranking

    rows, parses = [], []
    for item in items:
        parsed = parse(item.text)
        if any(e["entity"] in out_of_scope_entities for e in parsed.get("entities", [])):
            continue
        parses.append((parsed, item.label))
        rows += ranking.labelled_rows(parsed, sorted(item.label.ids))
    calibration = ranking.fit(rows)
    return {"calibration": calibration.model_dump(), "reliability": top_reliability(parses, calibration),
            "n": len(parses)}


def top_reliability(parses: Sequence[tuple[dict[str, Any], Any]], calibration: Any) -> dict[str, Any]:
    """Reliability of the calibrated top candidate: right when the message's label names it."""
    from bot.dialogue import ranking

    confidences, correct = [], []
    for parsed, label in parses:
        ranked = ranking.rank(parsed, calibration)
        if ranked:
            confidences.append(ranked[0].probability)
            correct.append(ranked[0].id in label.ids)
    return reliability(confidences, correct)
