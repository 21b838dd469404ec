"""One calibrated list over intents and knowledge entries: what the customer most likely means, with the
probability that it is right.

The intent classifier's confidence and the retrieval's fused score are on different scales, and on real traffic
neither means what it says (replay: intents at 0.95 were right fewer than half the time). Each source gets a
logistic calibration over its raw score and its margin over the source's runner-up, fitted on labelled held-out
messages (`bot eval calibrate`); the candidates of both sources are then ranked together by that probability.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.config import RankingCalibration, SourceCalibration
from bot.nlu.classifier import FALLBACK_INTENT, OOS_INTENTS

Kind = Literal["intent", "knowledge"]
TOP_PER_SOURCE = 3


def probability(calibration: SourceCalibration, score: float, margin: float) -> float:
    z = calibration.weight * _logit(score) + calibration.margin_weight * margin + calibration.bias
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def _logit(score: float) -> float:
    score = min(max(score, 1e-4), 1 - 1e-4)
    return math.log(score / (1 - score))


def _source(calibration: RankingCalibration, kind: Kind) -> SourceCalibration:
    return calibration.intent if kind == "intent" else calibration.knowledge


@dataclass(frozen=True)
class Candidate:
    kind: Kind
    id: str  # intent name or knowledge entry id
    score: float  # the source's own confidence
    margin: float  # over the next candidate of the same source
    probability: float  # calibrated: how often a candidate like this is the right answer


def candidates(parse: dict[str, Any]) -> list[tuple[Kind, str, float, float]]:
    """(kind, id, score, margin) of every intent and knowledge entry the parse ranks, without fallbacks."""
    intents = [(r["name"], float(r["confidence"])) for r in parse.get("intent_ranking") or []
               if r["name"] != FALLBACK_INTENT and r["name"] not in OOS_INTENTS]
    retrieval = parse.get("retrieval") or {}
    entries = [(e["id"], float(e["confidence"])) for e in retrieval.get("alternatives") or []]
    return [*_with_margins("intent", intents), *_with_margins("knowledge", entries)]


def _with_margins(kind: Kind, scored: list[tuple[str, float]]) -> list[tuple[Kind, str, float, float]]:
    ordered = sorted(scored, key=lambda item: -item[1])
    return [(kind, name, score, score - (ordered[i + 1][1] if i + 1 < len(ordered) else 0.0))
            for i, (name, score) in enumerate(ordered)]


def rank(parse: dict[str, Any], calibration: RankingCalibration) -> list[Candidate]:
    """Every candidate of the parse with its calibrated probability, most probable first."""
    ranked = [Candidate(kind, name, score, margin, probability(_source(calibration, kind), score, margin))
              for kind, name, score, margin in candidates(parse)]
    return sorted(ranked, key=lambda c: -c.probability)


def fit(rows: Iterable[tuple[Kind, float, float, bool]]) -> RankingCalibration:
    """Fit each source's calibration on (kind, score, margin, right) rows of labelled held-out messages."""
    from sklearn.linear_model import LogisticRegression

    fitted = {}
    rows = list(rows)
    for kind in ("intent", "knowledge"):
        own = [(score, margin, right) for k, score, margin, right in rows if k == kind]
        labels = [right for _, _, right in own]
        if len(set(labels)) < 2:
            raise ValueError(f"cannot calibrate {kind}s: the labelled messages need both right and wrong {kind}s")
        model = LogisticRegression(C=10.0).fit([[_logit(s), m] for s, m, _ in own], labels)
        weight, margin_weight = (float(w) for w in model.coef_[0])
        if margin_weight < 0:  # a clearer lead cannot make a candidate less likely: too few messages to tell
            model = LogisticRegression(C=10.0).fit([[_logit(s)] for s, _, _ in own], labels)
            weight, margin_weight = float(model.coef_[0][0]), 0.0
        fitted[kind] = SourceCalibration(weight=round(weight, 4), margin_weight=round(margin_weight, 4),
                                         bias=round(float(model.intercept_[0]), 4))
    return RankingCalibration(**fitted)


def labelled_rows(parse: dict[str, Any], right_ids: Sequence[str], top: int = TOP_PER_SOURCE
                  ) -> list[tuple[Kind, float, float, bool]]:
    """The calibration rows of one labelled message: each source's `top` candidates, right when the label names
    them (lower ranks would teach it little but that low scores are wrong)."""
    rows, seen = [], {"intent": 0, "knowledge": 0}
    for kind, name, score, margin in candidates(parse):
        if seen[kind] < top:
            rows.append((kind, score, margin, name in right_ids))
        seen[kind] += 1
    return rows
