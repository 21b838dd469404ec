"""One customer across channels: an app customer gets a binding code, sends it in WeChat, and carries on there
what they started in the app (and back); the agent who takes the chat sees every linked channel, and their
reply reaches the customer in WeChat through the customer-service API. A signed-in web page links its visitor."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from test_wechat import APP_ID, OPENID, TOKEN, post, text_xml
from test_wechat_api import wechat_api  # noqa: F401 - the stand-in WeChat API fixture
from wechatpy import parse_message

from bot.channels.app import AppCustomer, sign_token
from bot.config import AppChannelConfig, ChannelsConfig, WeChatChannelConfig
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.web.app import create_app
from tests.chat_support import widget_socket

SECRET = "test-secret-of-the-banks-app-backend-0123456789"
ZHANG = AppCustomer(customer_id="C0001", name="张伟", tier="金卡")
NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PASSWORD = "correct horse battery"


@pytest.fixture
def linked_app(bundled_assistant, tmp_path: Path, wechat_api):  # noqa: F811
    url, state = wechat_api
    channels = ChannelsConfig(app=AppChannelConfig(secret=SECRET, max_token_age_seconds=600),
                              wechat=WeChatChannelConfig(token=TOKEN, app_id=APP_ID, app_secret="s3cret", mode="plain",
                                                         api_base=url))
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    app = create_app(bundled_assistant.config.model_copy(update={"channels": channels}), assistant=bundled_assistant,
                     database=database)
    app.state.desk.clock = lambda: NOON
    create_agent(database, "wang", "小王", PASSWORD, groups=["借记卡与账户", "综合服务"])
    return app, state


def app_says(client: TestClient, text: str, message_id: str) -> list[str]:
    response = client.post("/channels/app/messages", json={"message": text, "message_id": message_id},
                           headers={"Authorization": f"Bearer {sign_token(ZHANG, SECRET)}"})
    assert response.status_code == 200, response.text
    return [r["text"] for r in response.json()["replies"]]


_msg_ids = iter(range(7_000_000, 8_000_000))


def wechat_says(client: TestClient, text: str, openid: str = OPENID) -> str:
    """The bot's passive reply, or "" when it answered "success" (nothing to say now)."""
    xml = text_xml(text, next(_msg_ids)).replace(OPENID, openid)
    response = post(client, xml)[0]
    assert response.status_code == 200, response.text
    if response.text == "success":
        return ""
    reply = parse_message(response.text)
    assert reply.target == openid
    return reply.content


def binding_code(client: TestClient) -> str:
    response = client.post("/channels/app/binding-code",
                           headers={"Authorization": f"Bearer {sign_token(ZHANG, SECRET)}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["instruction"].endswith(f"绑定 {body['code']}") and body["expires_in_seconds"] == 600
    return body["code"]


def test_bind_in_wechat_continue_there_and_back_then_an_agent_answers_in_wechat(linked_app) -> None:
    app, wechat = linked_app
    client = TestClient(app)
    first = app_says(client, "我的卡丢了", "a1")
    assert any("后四位" in t for t in first), first  # the card-loss form asks for the card
    assert client.post("/channels/app/binding-code").status_code == 401
    code = binding_code(client)

    wrong = "000000" if code != "000000" else "111111"
    assert "无效或已过期" in wechat_says(client, f"绑定 {wrong}")
    bound = wechat_says(client, f"绑定：{code}")
    assert "绑定成功" in bound and "张伟" in bound
    assert "我们在手机银行App里聊到“我的卡丢了”" in bound and "后四位" in bound  # the app's open question
    assert "无效或已过期" in wechat_says(client, f"绑定 {code}", openid="oSomeoneElse")
    other = app.state.conversations.store.find_conversation_of("wechat", "oSomeoneElse")
    assert other.customer_id is None  # a used code links nobody else

    confirm = wechat_says(client, "6688")  # the app's form goes on in WeChat; bound, so no ID check
    assert "尾号6688" in confirm and "确认" in confirm
    back_in_app = app_says(client, "确认", "a2")
    assert back_in_app[0].startswith("我们在微信里聊到“6688”")
    assert any("挂失编号" in t or "已挂失" in t or "挂失成功" in t for t in back_in_app), back_in_app

    queued = wechat_says(client, "转人工")
    assert "我们在手机银行App里聊到“确认”" in queued and "人工" in queued
    agent = login(client)
    waiting = client.get("/api/agent/queue", headers=agent).json()["waiting"]
    assert len(waiting) == 1
    context = client.post(f"/api/agent/handoffs/{waiting[0]['handoff_id']}/accept", headers=agent).json()
    assert context["channel"] == "wechat" and context["customer"]["id"] == "C0001"
    assert {c["channel"] for c in context["linked_channels"]} == {"app", "wechat"}
    assert [c["channel"] for c in context["earlier_conversations"]] == ["app"]
    assert "挂失银行卡" in context["earlier_conversations"][0]["summary"]
    app_lines = [line["text"] for line in context["earlier_conversations"][0]["transcript"]]
    assert "我的卡丢了" in app_lines and any("6688" in line for line in app_lines)

    sent = client.post(f"/api/agent/handoffs/{waiting[0]['handoff_id']}/messages", headers=agent,
                       json={"text": "张先生您好，我来帮您确认挂失。"})
    assert sent.status_code == 200 and sent.json()["delivered"] is True
    deadline = time.monotonic() + 5
    while not any(m["touser"] == OPENID and "确认挂失" in m["text"]["content"] for m in wechat.sent):
        assert time.monotonic() < deadline, wechat.sent
        time.sleep(0.05)
    assert wechat_says(client, "好的") == ""  # while the agent holds the chat the bot stays quiet


def test_binding_codes_cannot_be_guessed(linked_app) -> None:
    app, _ = linked_app
    client = TestClient(app)
    app_says(client, "你好", "g1")
    code = binding_code(client)
    wrong = [c for c in ("000001", "000002", "000003", "000004", "000005", "000006") if c != code][:5]
    for guess in wrong:
        assert "无效或已过期" in wechat_says(client, f"绑定 {guess}")
    assert "次数过多" in wechat_says(client, f"绑定 {code}")  # even the right code, after five misses
    assert app.state.conversations.store.find_conversation_of("wechat", OPENID).customer_id is None
    assert binding_code(client) != ""  # a new code from the app still works elsewhere later


def test_a_signed_in_web_page_links_its_visitor(linked_app) -> None:
    app, _ = linked_app
    client = TestClient(app)
    token = sign_token(ZHANG, SECRET)
    with widget_socket(client, token=token) as (socket, visitor):
        socket.send_json({"type": "message", "text": "信用卡账单多少", "message_id": "w1"})
        while socket.receive_json()["type"] != "ack":
            pass
    visitor_id = visitor.split(".")[1]
    conversation = app.state.conversations.store.find_conversation_of("web", visitor_id)
    assert conversation.customer_id == "C0001"
    with client.websocket_connect("/ws/chat") as socket:
        socket.send_json({"type": "hello", "token": "forged"})
        error = socket.receive_json()
        assert error["type"] == "error" and "重新登录" in error["message"]
    identities = app.state.conversations.store.database
    with identities.session() as db:
        from bot.storage.models import ChannelIdentity
        linked = db.query(ChannelIdentity).filter(ChannelIdentity.channel == "web").all()
        assert [i.customer_id for i in linked] == ["C0001"]


def login(client: TestClient) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": "wang", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_with_state_per_channel_wechat_starts_afresh(linked_app) -> None:
    app, _ = linked_app
    app.state.conversations.store.state_follows_customer = False  # channels.state_follows: channel
    client = TestClient(app)
    app_says(client, "我的卡丢了", "s1")
    bound = wechat_says(client, f"绑定 {binding_code(client)}")
    assert "绑定成功" in bound and "聊到" not in bound
    assert "聊到" not in wechat_says(client, "6688")


def test_a_bound_wechat_customer_is_known_to_account_actions(linked_app) -> None:
    app, _ = linked_app
    client = TestClient(app)
    before = wechat_says(client, "我的余额是多少")
    assert "登录" in before or "身份证" in before  # unknown in WeChat: asked to sign in or verify
    app_says(client, "你好", "k1")
    assert "绑定成功" in wechat_says(client, f"绑定 {binding_code(client)}")
    after = wechat_says(client, "我的余额是多少")
    assert "6688" in after and "元" in after, after  # 张伟's debit card, from the (demo) core banking system
