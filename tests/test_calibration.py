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


# --- one calibrated list over intents and knowledge entries ---------------------------------------------------

def _parse(intents: list[tuple[str, float]], entries: list[tuple[str, float]]) -> dict:
    return {"intent_ranking": [{"name": n, "confidence": c} for n, c in intents],
            "retrieval": {"alternatives": [{"id": i, "confidence": c} for i, c in entries]}}


def test_candidates_of_both_sources_are_ranked_on_one_scale() -> None:
    from bot.config import RankingCalibration
    from bot.dialogue import ranking

    # intents overstate (0.95 is right a third of the time), entries are nearer their word
    calibration = RankingCalibration.model_validate({"intent": {"weight": 1.0, "bias": -3.6},
                                                     "knowledge": {"weight": 2.0, "bias": -0.2}})
    ranked = ranking.rank(_parse([("credit_card_bill", 0.95), ("nlu_fallback", 0.03), ("greet", 0.02)],
                                 [("kb-credit-0002", 0.7), ("kb-credit-0004", 0.4)]), calibration)
    assert [c.id for c in ranked] == ["kb-credit-0002", "credit_card_bill", "kb-credit-0004", "greet"]
    assert all(0 < c.probability < 1 for c in ranked) and "nlu_fallback" not in {c.id for c in ranked}
    assert ranked[1].margin == 0.95 - 0.02  # over the next intent, the fallback left out


def test_a_fitted_calibration_states_how_often_candidates_are_right() -> None:
    from bot.dialogue import ranking
    from bot.eval.calibration import top_reliability
    from bot.eval.replay import Label

    # labelled messages: confident intents are right half the time, confident entries nine times in ten
    messages = []
    for i in range(40):
        intent_right, entry_right = i % 2 == 0, i % 10 != 0
        label = Label("answer", frozenset({"loan_apply" if intent_right else "x", "kb-1" if entry_right else "y"}))
        messages.append((_parse([("loan_apply", 0.97), ("greet", 0.01)], [("kb-1", 0.8), ("kb-2", 0.3)]), label))
        messages.append((_parse([("greet", 0.2)], [("kb-2", 0.2)]), Label("clarify")))
    rows = [row for parse, label in messages for row in ranking.labelled_rows(parse, sorted(label.ids))]
    calibration = ranking.fit(rows)
    assert calibration.intent.weight > 0 and calibration.knowledge.weight > 0
    ranked = ranking.rank(messages[0][0], calibration)
    assert ranked[0].id == "kb-1" and 0.8 < ranked[0].probability < 1.0  # the entry, right 90% of the time
    assert 0.35 < next(c.probability for c in ranked if c.id == "loan_apply") < 0.65
    assert top_reliability(messages, calibration)["ece"] < 0.1


def test_with_a_calibration_a_confident_intent_that_is_usually_wrong_only_offers_itself(bundled_assistant) -> None:
    from bot.assistant import Assistant

    assert bundled_assistant.config.dialogue.calibration is not None  # the bundled bot decides on the calibrated list
    strict = bundled_assistant.config.model_copy(deep=True)
    strict.dialogue.answer_probability = 0.99  # as if intents like this one were rarely right on real traffic
    agent = Assistant(bundled_assistant.model, strict)
    _, replies = agent.handle("查一下余额")
    assert replies[0].text == "您是不是想问：" and replies[0].buttons[-1].title == "都不是，转人工"
    assert any(b.payload == "/check_balance" for b in replies[0].buttons)
    _, replies = bundled_assistant.handle("查一下余额")
    assert replies[0].source != "clarify"
