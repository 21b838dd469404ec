"""The trained fixture bot end to end: parse format, replies, retrieval, clarification, fallback."""

from __future__ import annotations

import datetime as dt

import numpy as np


def test_parse_uses_rasa_format(minibot_assistant) -> None:
    result = minibot_assistant.parse("幫我掛失尾号6688的卡")
    assert result["text"] == "幫我掛失尾号6688的卡"
    assert result["intent"]["name"] == "report_card_loss"
    assert 0 < result["intent"]["confidence"] <= 1
    ranking = result["intent_ranking"]
    assert [r["confidence"] for r in ranking] == sorted((r["confidence"] for r in ranking), reverse=True)
    tail = next(e for e in result["entities"] if e["entity"] == "card_tail")
    assert tail["value"] == "6688"
    assert result["text"][tail["start"] : tail["end"]] == "6688"


def test_lookup_and_synonym_entities(minibot_assistant) -> None:
    result = minibot_assistant.parse("上海的网点几点开门")
    assert {"entity": "city", "value": "上海"}.items() <= next(
        e for e in result["entities"] if e["entity"] == "city").items()
    assert result["intent"]["name"] == "branch_hours"


def test_rule_reply_fills_slot_from_entity(minibot_assistant) -> None:
    _, replies = minibot_assistant.handle("尾号1234的卡丢了")
    assert replies[0].text == "尾号1234的卡可以立即通过手机银行挂失。"


def test_knowledge_answer_with_channel_variant(minibot_assistant) -> None:
    _, web = minibot_assistant.handle("补卡要收多少钱", channel="web")
    _, wechat = minibot_assistant.handle("补卡要收多少钱", channel="wechat")
    assert web[0].source == "kb-0001" and "工本费5元" in web[0].text
    assert wechat[0].text == "补卡工本费5元，带身份证到网点办理。"


def test_expired_entries_are_not_served(minibot_assistant) -> None:
    result = minibot_assistant.parse("春节活动有哪些", today=dt.date(2026, 11, 23))
    assert all(hit["id"] != "kb-0004" for hit in result["retrieval"]["alternatives"])
    during = minibot_assistant.parse("春节活动有哪些", today=dt.date(2025, 1, 20))
    assert during["retrieval"]["top"]["id"] == "kb-0004"


def test_nonsense_falls_back(minibot_assistant) -> None:
    result, replies = minibot_assistant.handle("量子力学的薛定谔方程怎么推导")
    assert result["retrieval"]["decision"] == "none"
    assert replies[0].source in {"utter_default", "clarify", "offer_human"}  # never a confident wrong answer


def test_empty_and_emoji_only_messages_are_fallback(minibot_assistant) -> None:
    for text in ("", "   ", "😀😀"):
        result = minibot_assistant.parse(text)
        assert result["intent"]["name"] == "nlu_fallback"
        assert result["entities"] == []


def test_button_payload_names_the_intent(minibot_assistant) -> None:
    result, replies = minibot_assistant.handle("/check_balance")
    assert result["intent"] == {"name": "check_balance", "confidence": 1.0}
    assert replies[0].source == "utter_check_balance"
    assert minibot_assistant.parse("/no_such_intent")["intent"]["name"] != "no_such_intent"


def test_single_message_probabilities_match_sklearn(minibot_assistant) -> None:
    """The fast per-message path computes exactly what the fitted sklearn pipeline would."""
    nlu = minibot_assistant.model.nlu
    for text in ["我的卡丢了", "补卡要多少钱 ATM", "卡卡卡 丢丢", "zzz", "信用卡账单分期"]:
        normalised, tokens = nlu.prepare(text)
        vector = nlu.embed(normalised)
        fast = nlu.classifier.probabilities_one(normalised, tokens, vector)
        reference = nlu.classifier.probabilities([normalised], [tokens], vector.reshape(1, -1))[0]
        np.testing.assert_allclose(fast, reference, rtol=1e-6, atol=1e-9)
