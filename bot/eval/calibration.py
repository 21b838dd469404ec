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
