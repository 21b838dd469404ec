"""Proactive notifications: the bank's system reports an ATM that retained a card, the bot tells the customer
on WeChat (they wrote within 48 hours), and the customer's answer continues in a conversation that knows why."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from test_wechat import AES_KEY, APP_ID, OPENID, TOKEN, post, reply_text, text_xml
from test_wechat_api import wechat_api  # noqa: F401 - the stand-in WeChat API fixture

from bot.config import ChannelsConfig, NotifyConfig, WeChatChannelConfig
from bot.storage import Database
from bot.web.app import create_app

KEY = "core-banking-notify-key-0001"
ATM = {"card_tail": "6688", "time": "11月23日 14:05", "atm_id": "SH0231", "address": "浦东新区世纪大道100号"}


def make_app(bundled_assistant, tmp_path: Path, api_url: str):
    wechat = WeChatChannelConfig(token=TOKEN, app_id=APP_ID, app_secret="s3cret", encoding_aes_key=AES_KEY,
                                 mode="plain", api_base=api_url)
    config = bundled_assistant.config.model_copy(update={"channels": ChannelsConfig(wechat=wechat),
                                                     "notify": NotifyConfig(api_keys=[KEY])})
    return create_app(config, assistant=bundled_assistant, database=Database(f"sqlite:///{tmp_path / 'bot.db'}"))


def test_atm_notification_then_the_customers_answer(bundled_assistant, tmp_path: Path, wechat_api) -> None:  # noqa: F811
    url, state = wechat_api
    app = make_app(bundled_assistant, tmp_path, url)
    client = TestClient(app)
    app.state.conversations.store.link_customer("wechat", OPENID, "C0001", name="张伟", tier="金卡", verified=True)

    body = {"customer_id": "C0001", "event": "atm_card_retained", "data": ATM}
    assert client.post("/api/v1/notify", json=body).status_code == 401
    assert client.post("/api/v1/notify", json=body, headers={"X-API-Key": "guess"}).status_code == 401
    unknown = client.post("/api/v1/notify", json={**body, "customer_id": "C9999"}, headers={"X-API-Key": KEY})
    assert unknown.status_code == 404

    sent = client.post("/api/v1/notify", json=body, headers={"X-API-Key": KEY})
    assert sent.status_code == 202 and sent.json()["status"] == "sent" and sent.json()["channel"] == "wechat"
    assert len(state.sent) == 1 and "SH0231" in state.sent[0]["text"]["content"]

    answer = reply_text(post(client, text_xml("是的", int(time.time())))[0])
    assert "世纪大道100号" in answer and "领取" in answer  # the recovery steps for this ATM

    other = make_app(bundled_assistant, tmp_path / "other", url)
    other_client = TestClient(other)
    other.state.conversations.store.link_customer("wechat", OPENID, "C0001", name="张伟", verified=True)
    other_client.post("/api/v1/notify", json=body, headers={"X-API-Key": KEY})
    handed = reply_text(post(other_client, text_xml("不是我", int(time.time()) + 1))[0])
    assert "挂失" in handed and "人工客服" in handed
    conversation = other.state.conversations.store.find_conversation_of("wechat", OPENID)
    assert conversation.status in ("queued", "bot")  # queued for a person (or a ticket outside working hours)
    events = other.state.conversations.store.events(conversation.id)
    assert any(e["event"] == "handoff" for e in events)


def test_a_customer_without_a_channel_gets_it_later(bundled_assistant, tmp_path: Path, wechat_api) -> None:  # noqa: F811
    url, state = wechat_api
    app = make_app(bundled_assistant, tmp_path, url)
    from bot.storage.models import Customer

    with app.state.database.session() as session, session.begin():
        session.add(Customer(id="C0002", name="李娜"))
    response = TestClient(app).post("/api/v1/notify", headers={"X-API-Key": KEY},
                                    json={"customer_id": "C0002", "event": "card_expiring",
                                          "data": {"card_tail": "1234", "expiry": "2026年12月"}})
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert "1234" in response.json()["text"] and state.sent == []
