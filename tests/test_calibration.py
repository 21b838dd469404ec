"""The reliability table: confidence against accuracy per bin, and the expected calibration error."""

from __future__ import annotations

from bot.eval.calibration import reliability


def test_a_perfectly_calibrated_set_has_no_error() -> None:
    confidences = [0.6] * 10 + [0.9] * 10
    correct = [True] * 6 + [False] * 4 + [True] * 9 + [False]
    table = reliability(confidences, correct)
    assert table["ece"] == 0 and table["n"] == 20
    assert [(b["n"], b["accuracy"]) for b in table["bins"]] == [(10, 0.6), (10, 0.9)]


def test_overconfidence_shows_as_the_gap() -> None:
    table = reliability([0.98] * 4, [True, False, False, False])
    assert table["ece"] == 0.73 and table["bins"][0]["accuracy"] == 0.25


def test_no_claims_no_error() -> None:
    assert reliability([], []) == {"bins": [], "ece": None, "n": 0}
