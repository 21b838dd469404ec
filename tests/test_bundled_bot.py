"""The bundled bank bot: held-out accuracy, and sensible answers to customers' questions."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.config import load_config
from bot.model import build_nlu, fit_classifier
from bot.retrieval.encoders import load_encoder
from bot.training_data import load_training_data


def test_held_out_examples_reach_real_accuracy(project_root: Path) -> None:
    config = load_config(project_root / "config.yml", environ={})
    data = load_training_data(project_root / "nlu_data")
    by_intent: dict[str, list[str]] = {}
    for example in data.examples:
        by_intent.setdefault(example.intent, []).append(example.text)
    rng = random.Random(7)
    train, held_out = [], []
    for intent, texts in by_intent.items():
        texts = sorted(texts)
        rng.shuffle(texts)
        held_out += [(t, intent) for t in texts[:3]]
        train += [(t, intent) for t in texts[3:]]
    nlu = build_nlu(config, data, load_encoder(config.retrieval.encoder, str(config.root)))
    fit_classifier(nlu, [t for t, _ in train], [i for _, i in train])
    correct = sum(nlu.parse(text)["intent"]["name"] == intent for text, intent in held_out)
    assert correct / len(held_out) >= 0.78, f"{correct}/{len(held_out)}"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("我的卡被ATM吞了怎么办", "atm_card_retained"),
        ("幫我掛失尾號6688的信用卡", "report_card_loss"),
        ("转账限额是多少", "transfer_limit"),
        ("网点几点开门", "branch_hours"),
        ("手机银行登不上去了", "mobile_banking_login_problem"),
        ("转人工", "request_human"),
        ("谢谢", "thanks"),
        ("你好", "greet"),
    ],
)
def test_customer_questions_get_the_right_intent(bundled_assistant, text: str, intent: str) -> None:
    assert bundled_assistant.parse(text)["intent"]["name"] == intent


@pytest.mark.parametrize("text", ["我的卡被ATM吞了怎么办", "美元汇率多少", "信用卡账单日是哪天", "我想提前还房贷"])
def test_every_bank_question_gets_a_non_empty_answer(bundled_assistant, text: str) -> None:
    _, replies = bundled_assistant.handle(text)
    assert replies and all(r.text.strip() for r in replies)
    assert replies[0].source != "utter_default"


def test_off_topic_is_not_answered_from_the_knowledge_base(bundled_assistant) -> None:
    result, replies = bundled_assistant.handle("量子力学的薛定谔方程怎么推导")
    assert result["retrieval"]["decision"] != "answer"
