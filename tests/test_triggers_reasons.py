"""Issue 13: escalation triggers read one object with the turn's facts (`TurnFacts`), and every kind they can
return is named once, in bot/handoff/reasons.py, with its Chinese label and its default queue priority (which
HandoffConfig.priorities takes)."""

from __future__ import annotations

import dataclasses

import pytest

from bot.config import HandoffConfig
from bot.handoff import triggers
from bot.handoff.reasons import REASONS, default_priorities, reason_label, reasons_json
from bot.handoff.triggers import Escalation, TurnFacts, detect_escalation
from bot.training_data import DisplayNames

CONFIG = HandoffConfig()
NAMES = DisplayNames(intents={"suspected_fraud": "疑似盗刷", "report_card_loss": "挂失银行卡"},
                     slots={"identity_failed": "身份核验未通过"})


def parse(intent: str) -> dict:
    return {"intent": {"name": intent, "confidence": 0.95}}


# one turn for each rule of detect_escalation, in its order
EVERY_TRIGGER = [
    TurnFacts("有人冒充客服骗我转账", parse("suspected_fraud"), names=NAMES),
    TurnFacts("我的卡被盗刷了", parse("report_card_loss")),
    TurnFacts("你们再不处理我就去曝光", parse("chitchat")),
    TurnFacts("转人工", parse("nlu_fallback")),
    TurnFacts("好的", parse("report_card_loss"), slots={"handoff_requested": "report_card_loss"}, names=NAMES),
    TurnFacts("0", parse("nlu_fallback"), previous_text="0"),
    TurnFacts("好的", parse("affirm"), slots={"identity_failed": True}, names=NAMES),
    TurnFacts("asdf", parse("nlu_fallback"), fallbacks=1, tier="白金卡"),
    TurnFacts("asdf", parse("nlu_fallback"), fallbacks=3),
]


def test_every_kind_a_trigger_returns_is_named_once_with_a_label_and_a_priority() -> None:
    found = [detect_escalation(CONFIG, facts) for facts in EVERY_TRIGGER]
    assert all(isinstance(e, Escalation) for e in found)
    kinds = {e.kind for e in found}
    assert kinds == set(REASONS)  # every kind is reachable, and none is missing from the table
    assert kinds <= set(CONFIG.priorities) and CONFIG.priorities == default_priorities()
    assert all(reason_label(kind) != kind for kind in kinds)  # a Chinese label, not the kind's name
    assert [r["kind"] for r in reasons_json()] == list(REASONS)


def test_details_say_what_triggered_in_chinese() -> None:
    sensitive, word, *_ = (detect_escalation(CONFIG, facts) for facts in EVERY_TRIGGER)
    assert sensitive.detail == "敏感业务（疑似盗刷）" and sensitive.intent == "suspected_fraud"
    assert word.detail == "疑似盗刷或诈骗（“被盗”）" and word.intent is None
    assert detect_escalation(CONFIG, EVERY_TRIGGER[4]).detail == "按业务规则转人工（挂失银行卡）"
    assert detect_escalation(CONFIG, EVERY_TRIGGER[6]).detail == "业务办理多次验证失败（身份核验未通过）"
    # a model without display names: never the intent's name for a sensitive matter
    assert detect_escalation(CONFIG, TurnFacts("x", parse("suspected_fraud"))).detail == "敏感业务（其他业务）"


def test_turn_facts_are_one_frozen_object() -> None:
    facts = TurnFacts("你好", parse("greet"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.text = "转人工"  # type: ignore[misc]
    assert facts.intent == "greet" and detect_escalation(CONFIG, facts) is None
    assert list(triggers.detect_escalation.__annotations__) == ["config", "facts", "return"]


@pytest.mark.parametrize(("fallbacks", "tier", "kind"), [(2, None, None), (3, None, "fallback"), (1, "白金卡", "vip"),
                                                         (0, "白金卡", None), (1, "standard", None)])
def test_fallback_thresholds_come_from_config(fallbacks: int, tier: str | None, kind: str | None) -> None:
    found = detect_escalation(CONFIG, TurnFacts("asdf", parse("nlu_fallback"), fallbacks=fallbacks, tier=tier))
    assert (found.kind if found else None) == kind
