"""Issue 13: the context package reads like a note from a colleague, not a log, and a conversation goes to the same
skill group whatever triggered the hand-over. Conversations are written for these tests and driven through the real
`ConversationService` with the bundled bot."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.context import build_context, readable_slots, reason_text, topic_title
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.handoff.routing import conversation_group, main_topic
from bot.storage import ConversationStore, Database

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday: every group is at work
RAW_NAME = re.compile(r"[a-z]+(?:_[a-z0-9]+)+")  # an intent, slot or form name: what agents should never read


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
    """The agent's context package for `sender`'s open hand-over, and the questions it asked for suggestions."""
    asked: list[str] = []

    def suggest(question: str) -> list[dict]:
        asked.append(question)
        return [{"id": "k1", "question": question, "answer": "…", "confidence": 0.9}]

    handoff = desk.open_handoff(service.store.find_conversation(sender).id)
    assert handoff is not None, f"{sender} was not handed over"
    return build_context(desk.database, handoff.id, "agent", suggest), asked


def group_of(desk: AgentDesk, service: ConversationService, sender: str) -> str:
    return desk.open_handoff(service.store.find_conversation(sender).id).group


def test_summary_names_topics_in_chinese_and_slots_with_labels(bank) -> None:
    desk, service = bank
    chat(service, "loss-1", "我的卡丢了", "6688", "转人工")
    context, _ = context_of(desk, service, "loss-1")
    assert "挂失银行卡" in context["summary"], context["summary"]
    assert not RAW_NAME.search(context["summary"]), context["summary"]  # no report_card_loss, card_tail…
    assert context["slots"] == {"卡号后四位": "6688"}
    assert context["active_form"] == "card_loss_form" and context["active_form_title"] == "挂失银行卡"
    assert "卡号后四位：6688" in context["summary"]


def test_a_sensitive_reason_is_said_once_and_readably(bank) -> None:
    desk, service = bank
    chat(service, "fraud-1", "有人冒充客服骗我转账")
    context, _ = context_of(desk, service, "fraud-1")
    assert context["reason"] == "敏感业务（疑似盗刷）"
    assert context["summary"].count("敏感业务") == 1 and "suspected_fraud" not in str(context["summary"])
    # rows stored with the old wording read the same
    assert reason_text("sensitive", "敏感业务：敏感业务：suspected_fraud") == "敏感业务（疑似盗刷）"
    assert reason_text("sensitive", "敏感业务：suspected_fraud") == "敏感业务（疑似盗刷）"
    assert reason_text("request", "客户要求转人工") == "客户要求转人工"


def test_a_customer_verified_in_the_chat_is_not_called_not_logged_in(bank) -> None:
    desk, service = bank
    chat(service, "verified-1", "我的卡丢了", "6688", "3456", "转人工")  # card 6688 and ID …3456: 张伟, C0001
    context, _ = context_of(desk, service, "verified-1")
    assert "未登录" not in context["summary"], context["summary"]
    assert "C0001" in context["summary"] and "已核验身份" in context["summary"]
    assert context["customer"]["id"] == "C0001" and context["customer"]["verified"] is True
    assert context["slots"]["客户号"] == "C0001" and context["slots"]["身份已核验"] == "是"
    assert context["slots"]["身份证后四位"] == "已提供" and "3456" not in str(context["slots"])


def test_an_anonymous_visitor_is_not_logged_in_and_its_channel_is_named_not_its_id(bank) -> None:
    desk, service = bank
    chat(service, "visitor-7f3a9c2e-secret", "转人工")
    context, _ = context_of(desk, service, "visitor-7f3a9c2e-secret")
    assert context["summary"].startswith("未登录客户通过网页咨询：未说明具体业务")
    assert context["linked_channels"] == [{"channel": "web", "name": "网页", "current": True, "id": "本次会话"}]
    assert "7f3a9c2e" not in str(context) and "visitor" not in str(context["linked_channels"])


def test_suggestions_come_from_the_customers_matter_not_the_hand_over_request(bank) -> None:
    desk, service = bank
    chat(service, "loss-2", "我的卡丢了", "6688", "转人工")
    context, asked = context_of(desk, service, "loss-2")
    assert asked == ["我的卡丢了"] and context["suggestions"]
    chat(service, "only-human", "转人工")
    context, asked = context_of(desk, service, "only-human")
    assert asked == [] and context["suggestions"] == []  # nothing said about a matter: nothing to suggest


def test_titles_and_labels_never_fall_back_to_raw_names() -> None:
    assert topic_title("report_card_loss") == "挂失银行卡"
    said = "我想问一下那个新业务到底怎么办理比较快一点呢"  # an intent without a title: the customer's words
    assert topic_title("some_new_intent", said) == "“我想问一下那个新业务到底怎么办理比较快一…”"
    assert topic_title("some_new_intent") == "其他业务"
    slots = {"identity_verified": True, "requested_slot": "id_last4", "city": None}
    assert readable_slots(slots) == {"身份已核验": "是"}


def test_routing_follows_the_conversations_main_topic() -> None:
    from bot.config import HandoffConfig, SkillGroupConfig

    config = HandoffConfig(groups=[SkillGroupConfig(name="借记卡与账户", intents=["report_card_loss"]),
                                   SkillGroupConfig(name="理财", intents=["deposit_rates"], categories=["外汇"]),
                                   SkillGroupConfig(name="综合服务")], default_group="综合服务")
    assert main_topic(["greet", "report_card_loss", "request_human", "nlu_fallback"]) == "report_card_loss"
    for trigger in (["request_human"], ["nlu_fallback", "nlu_fallback", "request_human"], ["nlu_fallback"]):
        assert conversation_group(config, ["report_card_loss", *trigger], ["外汇"]).name == "借记卡与账户"
    assert conversation_group(config, ["request_human"], ["外汇"]).name == "理财"  # no topic: the knowledge's
    assert conversation_group(config, ["change_phone_number", "request_human"], ["外汇"]).name == "综合服务"


@pytest.mark.parametrize(("sender", "lines"), [
    ("route-request", ["我的卡丢了", "转人工"]),  # a plain request after the card-loss question
    ("route-button", ["卡找到了，怎么解挂", "zxcvb", "qwpoiu", "/request_human"]),  # the offered button
    ("route-form-failed", ["我的卡丢了", "6688", "1111", "2222", "3333"]),  # the ID check failed 3 times
])
def test_card_loss_conversations_go_to_the_card_group_however_handed_over(bank, sender, lines) -> None:
    desk, service = bank
    chat(service, sender, *lines)
    assert group_of(desk, service, sender) == "借记卡与账户"
