"""Issue 13: a fraud report or a stolen card is handed to a person, but first the customer gets the urgent
self-service step - freeze the card in the app or through the 24-hour hotline - and then the hand-over message,
in that order, on every channel (WeChat's plain text included). Through the real ConversationService with the
bundled bot, whose `utter_urgent_*` responses (nlu_data/responses.yml) say it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.storage import ConversationStore, Database

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def service(bundled_assistant, tmp_path) -> ConversationService:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    config = bundled_assistant.config.handoff
    desk = AgentDesk(database, config, clock=lambda: NOON)
    return ConversationService(bundled_assistant, ConversationStore(database), handoff=Handover(desk, config))


@pytest.mark.parametrize("channel", ["web", "app", "wechat", "wecom"])
@pytest.mark.parametrize("text", ["我的信用卡被盗刷了", "我的卡被偷了", "有人冒充客服骗我转账"])
def test_the_urgent_step_comes_first_then_the_hand_over(service, channel: str, text: str) -> None:
    replies = service.handle(Inbound(channel, f"{channel}-victim", text, None)).replies
    texts = [r["text"] for r in replies]
    assert len(replies) == 2, texts
    urgent, handover = replies
    assert urgent["source"].startswith("utter_urgent_"), texts
    assert "冻结" in urgent["text"] and "400-820-8888" in urgent["text"] and "24小时" in urgent["text"]
    assert handover["source"] == "handoff" and "人工客服" in handover["text"]
    assert service.handoff.desk.open_handoff(service.store.find_conversation_of(channel, f"{channel}-victim").id)


def test_wechat_gets_the_short_plain_text_variant(service) -> None:
    web = service.handle(Inbound("web", "w1", "我的信用卡被盗刷了", None)).replies[0]
    wechat = service.handle(Inbound("wechat", "o-wx-1", "我的信用卡被盗刷了", None)).replies[0]
    assert wechat["source"] == web["source"] and wechat["text"] != web["text"]
    assert len(wechat["text"]) < len(web["text"]) and not wechat.get("buttons")


def test_a_complaint_is_handed_over_without_freezing_advice(service) -> None:
    replies = service.handle(Inbound("web", "angry", "你们这服务太差劲了", None)).replies
    assert replies[-1]["source"] == "handoff"
    assert not any(r["source"].startswith("utter_urgent_") for r in replies)
    assert "冻结" not in "".join(r["text"] for r in replies)
