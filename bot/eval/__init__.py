"""Offline evaluation on public data sets: intent classification, paraphrase pairs and answer ranking.

Each `evaluate_*` function is pure (reads files, trains, measures) and returns a JSON-serialisable dict.
"""

from __future__ import annotations

from bot.eval.intents import evaluate_intents
from bot.eval.pairs import evaluate_pairs
from bot.eval.qa import evaluate_qa

__all__ = ["evaluate_intents", "evaluate_pairs", "evaluate_qa"]
