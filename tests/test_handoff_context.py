"""Issue 13: the context package reads like a note from a colleague, not a log: a one-paragraph summary in
natural Chinese, intents and slots by their display names from nlu_data (read from the loaded model), the reason
once, the customer as far as the bot knows, linked channels by name and date, knowledge suggestions for the
conversation's matter. Conversations are written for these tests and driven through the real
`ConversationService` with the bundled bot."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.context import (
    build_context,
    readable_slots,
    reason_text,
    summary_paragraph,
    topic_suggestions,
    topic_title,
)
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.storage import ConversationStore, Database
from bot.storage.models import ChannelIdentity
from bot.training_data import DisplayNames

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday: every group is at work
RAW_NAME = re.compile(r"[a-z]+(?:_[a-z0-9]+)+")  # an intent, slot or form name: what agents should never read
NAMES = DisplayNames(intents={"report_card_loss": "挂失银行卡", "suspected_fraud": "疑似盗刷"},
                     slots={"card_tail": "卡号后四位", "identity_verified": "身份已核验", "id_last4": "身份证后四位",
                            "identity_failed": "身份核验未通过"},
                     forms={"card_loss_form": "挂失银行卡"})


@pytest.fixture
def bank(bundled_assistant, tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    config = bundled_assistant.config.handoff
    desk = AgentDesk(database, config, clock=lambda: NOON)
    service = ConversationService(bundled_assistant, ConversationStore(database), handoff=Handover(desk, config))
    return desk, service


def chat(service: ConversationService, sender: str, *lines: str) -> list[dict]:
    """Says each line as web visitor `sender`; the replies to the last line."""
    replies: list[dict] = []
    for text in lines:
        replies = service.handle(Inbound("web", sender, text, None)).replies
    return replies


def context_of(desk: AgentDesk, service: ConversationService, sender: str) -> tuple[dict, list[str]]:
    """The agent's context package for `sender`'s open hand-over (with the loaded model's display names), and
    the questions it asked for knowledge suggestions."""
    asked: list[str] = []

    def suggest(question: str) -> list[dict]:
        asked.append(question)
        return [{"id": f"k-{question}", "question": question, "answer": "…", "confidence": 0.9}]

    handoff = desk.open_handoff(service.store.find_conversation(sender).id)
    assert handoff is not None, f"{sender} was not handed over"
    return build_context(desk.database, handoff.id, "agent", suggest, names=service.display_names), asked


def test_the_loaded_model_carries_the_display_names_of_nlu_data(bundled_assistant) -> None:
    names = bundled_assistant.model.display_names
    assert names.intents["report_card_loss"] == "挂失银行卡" and names.intents["suspected_fraud"] == "疑似盗刷"
    assert names.slots["card_tail"] == "卡号后四位" and names.forms["card_loss_form"] == "挂失银行卡"
    assert bundled_assistant.model.metadata["display_names"]["intents"]["report_card_loss"] == "挂失银行卡"
    # every intent of the bundled bot is shown to agents by a Chinese name
    assert set(bundled_assistant.model.data.intents) <= set(names.intents)


def test_a_failed_identity_check_reads_as_one_paragraph(bank) -> None:
    desk, service = bank
    chat(service, "loss-failed", "我的卡丢了", "6688", "1111", "2222", "3333")  # the ID check failed 3 times
    context, _ = context_of(desk, service, "loss-failed")
    assert context["summary"] == ("未登录客户通过网页咨询挂失银行卡，已提供卡号后四位（6688）、身份证后四位，"
                                  "身份核验未通过。转人工原因：业务办理多次验证失败（身份核验未通过）。")
    assert context["reason"] == "业务办理多次验证失败（身份核验未通过）"
    assert context["slots"]["卡号后四位"] == "6688" and context["slots"]["身份证后四位"] == "已提供"
    assert "1111" not in str(context["slots"]) + context["summary"]


def test_summary_names_the_topic_and_what_was_provided_in_chinese(bank) -> None:
    desk, service = bank
    chat(service, "loss-1", "我的卡丢了", "6688", "转人工")
    context, _ = context_of(desk, service, "loss-1")
    assert context["summary"] == ("未登录客户通过网页咨询挂失银行卡，已提供卡号后四位（6688）。"
                                  "转人工原因：客户要求转人工。")
    assert not RAW_NAME.search(str(context["summary"]) + str(context["slots"]))
    assert context["slots"] == {"卡号后四位": "6688"}
    assert context["active_form"] == "card_loss_form" and context["active_form_title"] == "挂失银行卡"


def test_a_sensitive_reason_is_said_once_and_readably(bank) -> None:
    desk, service = bank
    chat(service, "fraud-1", "有人冒充客服骗我转账")
    context, _ = context_of(desk, service, "fraud-1")
    assert context["reason"] == "敏感业务（疑似盗刷）"
    assert context["summary"].count("敏感业务") == 1 and "suspected_fraud" not in str(context["summary"])
    # rows stored with the old wording read the same
    assert reason_text("sensitive", "敏感业务：敏感业务：suspected_fraud", NAMES) == "敏感业务（疑似盗刷）"
    assert reason_text("sensitive", "敏感业务：suspected_fraud", NAMES) == "敏感业务（疑似盗刷）"
    assert reason_text("request", "客户要求转人工") == "客户要求转人工"
    assert reason_text("form_failed", "业务办理多次验证失败（identity_failed）", NAMES) == \
        "业务办理多次验证失败（身份核验未通过）"


def test_a_customer_verified_in_the_chat_is_not_called_not_logged_in(bank) -> None:
    desk, service = bank
    chat(service, "verified-1", "我的卡丢了", "6688", "3456", "转人工")  # card 6688 and ID …3456: 张伟, C0001
    context, _ = context_of(desk, service, "verified-1")
    assert context["summary"].startswith("客户C0001（已核验身份）通过网页咨询挂失银行卡"), context["summary"]
    assert "未登录" not in context["summary"] and "未核验" not in context["summary"]
    assert context["customer"]["id"] == "C0001" and context["customer"]["verified"] is True
    assert context["slots"]["客户号"] == "C0001" and context["slots"]["身份已核验"] == "是"
    assert context["slots"]["身份证后四位"] == "已提供" and "3456" not in str(context["slots"])


def test_a_linked_customer_is_named_with_channels_by_name_and_date(bank) -> None:
    desk, service = bank
    chat(service, "web-zhang", "你好")
    service.store.link_customer("web", "web-zhang", "C0001", name="张伟", tier="白金卡", verified=True)
    service.store.link_customer("wechat", "oWx-zhang-secret", "C0001")
    with desk.database.session() as session, session.begin():
        wechat = session.query(ChannelIdentity).filter_by(channel="wechat").one()
        wechat.last_seen_at = dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
    chat(service, "web-zhang", "信用卡账单什么时候出", "转人工")
    context, _ = context_of(desk, service, "web-zhang")
    summary = context["summary"]
    assert summary.startswith("张伟（客户号C0001，白金卡，已核验身份）通过网页咨询信用卡账单"), summary
    lines = {line["channel"]: line for line in context["linked_channels"]}
    assert lines["wechat"]["text"] == "微信（11月28日）" and lines["wechat"]["current"] is False
    assert lines["web"]["text"] == "网页（本次会话）" and lines["web"]["current"] is True
    assert "oWx" not in str(context["linked_channels"]) and "web-zhang" not in str(context["linked_channels"])


def test_an_anonymous_visitor_is_not_logged_in_and_its_channel_is_named_not_its_id(bank) -> None:
    desk, service = bank
    chat(service, "visitor-7f3a9c2e-secret", "转人工")
    context, _ = context_of(desk, service, "visitor-7f3a9c2e-secret")
    assert context["summary"] == "未登录客户通过网页联系人工客服，未说明具体业务。转人工原因：客户要求转人工。"
    assert [(c["channel"], c["name"], c["current"], c["text"]) for c in context["linked_channels"]] == \
        [("web", "网页", True, "网页（本次会话）")]
    assert "7f3a9c2e" not in str(context) and "visitor" not in str(context["linked_channels"])


def test_suggestions_follow_the_conversations_topic_not_its_last_message(bank) -> None:
    desk, service = bank
    # the matter asked twice, the form's questions answered, then the request: suggestions are for the matter as
    # the customer first put it, never for "转人工" or a form answer
    chat(service, "loss-2", "我的卡丢了", "取消", "银行卡丢了要怎么挂失", "6688", "转人工")
    context, asked = context_of(desk, service, "loss-2")
    assert context["summary"].startswith("未登录客户通过网页咨询挂失银行卡"), context["summary"]
    assert asked == ["我的卡丢了", "挂失银行卡"]
    # the topic's name outranks the customer's vague words
    assert [s["question"] for s in context["suggestions"]] == ["挂失银行卡", "我的卡丢了"]
    chat(service, "loss-3", "我的卡丢了", "6688", "转人工")
    _, asked = context_of(desk, service, "loss-3")
    assert asked == ["我的卡丢了", "挂失银行卡"]  # the first question on the topic, then the topic's name
    chat(service, "only-human", "转人工")
    context, asked = context_of(desk, service, "only-human")
    assert asked == [] and context["suggestions"] == []  # nothing said about a matter: nothing to suggest


def test_titles_and_labels_come_from_display_names_and_never_fall_back_to_raw_names() -> None:
    assert topic_title("report_card_loss", "我的卡丢了", NAMES) == "挂失银行卡"
    said = "我想问一下那个新业务到底怎么办理比较快一点呢"  # an intent without a display name: the customer's words
    assert topic_title("some_new_intent", said, NAMES) == "“我想问一下那个新业务到底怎么办理比较快一…”"
    assert topic_title("some_new_intent", None, NAMES) == "其他业务"
    assert topic_title("report_card_loss", "我的卡丢了") == "“我的卡丢了”"  # a model without display names
    slots = {"identity_verified": True, "requested_slot": "id_last4", "city": None, "handoff_requested": "x"}
    assert readable_slots(slots, NAMES) == {"身份已核验": "是"}


def test_summary_paragraph_from_the_facts() -> None:
    turns = [("report_card_loss", "我的卡丢了"), ("check_balance", "查下余额")]
    who = {"id": "C0002", "name": None, "tier": "standard", "verified": False}
    text = summary_paragraph("wechat", who, turns, {"card_tail": "6688", "identity_failed": True},
                             "业务办理多次验证失败（身份核验未通过）", NAMES)
    # the main topic is the latest matter; the earlier one is mentioned; a raw name never shows
    assert text == ("客户C0002（未核验身份）通过微信咨询“查下余额”，此前还问了挂失银行卡，已提供卡号后四位（6688），"
                    "身份核验未通过。转人工原因：业务办理多次验证失败（身份核验未通过）。")


def test_suggestions_found_for_both_the_topic_and_the_first_question_come_first() -> None:
    results = {"我的卡丢了": [{"id": "cc-progress", "confidence": 0.59}, {"id": "debit-loss", "confidence": 0.52}],
               "挂失银行卡": [{"id": "wechat-loss", "confidence": 0.78}, {"id": "debit-loss", "confidence": 0.70}]}
    ranked = topic_suggestions(lambda q: results[q], [("report_card_loss", "我的卡丢了")], NAMES)
    assert [s["id"] for s in ranked] == ["debit-loss", "wechat-loss", "cc-progress"]


@pytest.mark.parametrize(("lines", "expected"), [
    (["我的卡丢了", "6688", "转人工"], "挂失"),
    (["我的信用卡被盗刷了"], "银行卡在身上却被盗刷了怎么办？"),  # the "freeze your card now" entry
])
def test_the_knowledge_bases_first_suggestion_is_about_the_matter(bank, bundled_assistant, lines, expected) -> None:
    desk, service = bank
    model = bundled_assistant.model

    def suggest(question: str) -> list[dict]:  # as the desk's API searches the knowledge base
        normalised, tokens = model.nlu.prepare(question)
        return model.retriever.search(normalised, tokens, model.nlu.embed(normalised), channel="web")["alternatives"]

    chat(service, "kb", *lines)
    handoff = desk.open_handoff(service.store.find_conversation("kb").id)
    context = build_context(desk.database, handoff.id, "agent", suggest, names=service.display_names)
    assert expected in context["suggestions"][0]["question"], [s["question"] for s in context["suggestions"]]
