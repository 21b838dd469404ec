"""What customers are told as people take, pass on and hand back their conversation (bot/handoff/notices.py):
each desk change stores a notice event and pushes it, to the widget's socket as a `handoff` frame and to WeChat
as text (through the stand-in of WeChat's API); a reconnecting socket is told its place or its agent; the
transcript download gives a visitor their own conversation only. Real SQLite files, the small fixture bot."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from json_stand_in import serving
from sqlalchemy import select
from test_wechat import APP_ID, OPENID, TOKEN, post, text_xml
from test_wechat_api import StandIn, handler_for

from bot.assistant import Assistant
from bot.channels.app import AppCustomer, sign_token
from bot.config import ChannelsConfig, HandoffConfig, SkillGroupConfig, WeChatChannelConfig, load_config
from bot.handoff.agents import create_agent
from bot.handoff.desk import AgentDesk
from bot.handoff.notices import notice_for
from bot.security.masking import mask_text
from bot.storage.models import AgentAccount, Handoff
from bot.web.app import create_app
from tests.chat_support import widget_socket

WORKDAY_NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday
PASSWORD = "correct horse battery"
CARD_MESSAGE = "我的卡号是6222021234567890128"
APP_SECRET = "test-secret-of-the-banks-app-backend-0123456789"
HANDOFF = HandoffConfig(groups=[SkillGroupConfig(name="综合服务", hours="00:00-24:00"),
                                SkillGroupConfig(name="信用卡", hours="00:00-24:00")], default_group="综合服务")


def make_app(minibot: Path, minibot_assistant, data: Path, channels: ChannelsConfig | None = None) -> Any:
    config = load_config(minibot / "config.yml", environ={"DATABASE_URL": f"sqlite:///{data / 'bot.db'}",
                                                          "BOT__CHANNELS__APP__SECRET": APP_SECRET})
    config = config.model_copy(update={"handoff": HANDOFF, **({"channels": channels} if channels else {})})
    app = create_app(config, Assistant(minibot_assistant.model, config))
    app.state.desk.clock = lambda: WORKDAY_NOON
    return app


def add_agent(desk: AgentDesk, username: str, name: str, employee_no: str | None, groups: list[str]) -> int:
    agent = create_agent(desk.database, username, name, PASSWORD, groups=groups)
    with desk.database.session() as session, session.begin():
        session.get(AgentAccount, agent.id).employee_no = employee_no
    return agent.id


@pytest.fixture
def app(minibot: Path, minibot_assistant, tmp_path: Path) -> Any:
    return make_app(minibot, minibot_assistant, tmp_path)


def until(ws: Any, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The socket's frames up to and including the first for which `done` is true."""
    frames = []
    while True:
        frames.append(ws.receive_json())
        if done(frames[-1]):
            return frames


def handoff_frame(ws: Any) -> dict[str, Any]:
    return until(ws, lambda f: f["type"] == "handoff")[-1]


def say(ws: Any, text: str, message_id: str) -> list[dict[str, Any]]:
    ws.send_json({"type": "message", "text": text, "message_id": message_id})
    return until(ws, lambda f: f["type"] == "ack")


def history_and_state(ws: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The history a (re)connecting socket gets, and the frames about the hand-over right after it."""
    ws.send_json({"type": "history"})
    history = ws.receive_json()
    assert history["type"] == "history"
    ws.send_json({"type": "message", "text": "   ", "message_id": "probe"})  # answered at once with an error
    return history["messages"], until(ws, lambda f: f["type"] == "error")[:-1]


def conversation_id(app: Any, visitor: str) -> str:
    """The conversation of the widget visitor holding credential `visitor`."""
    sender = app.state.visitor_credentials.verify(visitor)
    return app.state.conversations.store.find_conversation_of("web", sender).id


def notices(app: Any, visitor: str) -> list[dict[str, Any]]:
    return [e for e in app.state.conversations.store.events(conversation_id(app, visitor))
            if e["event"] == "bot" and e["data"].get("source") == "handoff_notice"]


def test_the_notice_of_each_change(minibot: Path) -> None:
    joined = notice_for({"status": "assigned", "agent": "小王", "employee_no": "1024"}, None)
    assert joined and joined.text == "客服小王（工号1024）为您服务"
    assert notice_for({"status": "assigned", "agent": "小王", "employee_no": None}, None).text == "客服小王为您服务"
    reassigned = notice_for({"status": "assigned", "agent": "小李", "employee_no": "2048", "from_agent_id": 1}, None)
    assert reassigned and reassigned.text == "已为您转由客服小李（工号2048）继续服务"
    assert notice_for({"status": "transferred", "group": "信用卡"}, None).text == "正在为您转接信用卡客服，请稍候"
    dropped = notice_for({"status": "waiting", "detail": "坐席断线，重新排队", "from_agent_id": 3}, None)
    assert dropped and dropped.status == "requeued" and "重新接入" in dropped.text
    left = notice_for({"status": "closed", "agent_id": 1}, AgentAccount(display_name="小王", employee_no="1024"))
    assert left and left.text == "客服小王已结束本次服务，智能客服继续为您服务" and left.status == "agent_left"
    for quiet in ({"status": "cancelled"}, {"status": "abandoned"}, {"status": "closed", "disposition": "企业微信"},
                  {"status": "waiting", "group": "综合服务"}):
        assert notice_for(quiet, None) is None, quiet


def test_every_change_is_stored_pushed_and_told_again_after_a_reconnect(app: Any) -> None:
    desk: AgentDesk = app.state.desk
    wang = add_agent(desk, "wang", "小王", "1024", ["综合服务", "信用卡"])
    li = add_agent(desk, "li", "小李", "2048", ["综合服务"])
    with TestClient(app) as client, widget_socket(client) as (ws, visitor):
        frames = say(ws, "转人工", "m1")
        assert {"type": "queue", "position": 1, "text": "排队中：您是下一位，预计约4分钟"} in frames
        with widget_socket(client, visitor) as (again, _):  # a reload: the new socket gets its place anyway
            _, state = history_and_state(again)
            assert state == [{"type": "queue", "position": 1, "text": "排队中：您是下一位，预计约4分钟"}]
        handoff = desk.open_handoff(conversation_id(app, visitor))

        desk.set_presence(wang, "online")  # going online takes the waiting chat
        frame = handoff_frame(ws)
        assert frame["status"] == "agent_joined" and frame["text"] == "客服小王（工号1024）为您服务"
        assert (frame["agent"], frame["employee_no"]) == ("小王", "1024")
        with widget_socket(client, visitor) as (again, _):  # reconnecting while an agent has the chat
            _, state = history_and_state(again)
            assert [(f["type"], f["status"], f["agent"], f["employee_no"], f["text"]) for f in state] == [
                ("handoff", "agent_joined", "小王", "1024", "")]

        desk.set_presence(li, "online")
        desk.reassign(handoff.id, li)
        assert handoff_frame(ws)["text"] == "已为您转由客服小李（工号2048）继续服务"
        desk.transfer(handoff.id, li, "信用卡", "客户问信用卡分期")
        assert handoff_frame(ws)["text"] == "正在为您转接信用卡客服，请稍候"
        assert handoff_frame(ws)["text"] == "客服小王（工号1024）为您服务"  # 小王 is 信用卡's agent online
        desk.agent_message(handoff.id, wang, "您好，我来帮您看分期")
        desk.release_agent(wang)  # 小王's connection dropped for good: back to the queue, nobody of 信用卡 left
        requeued = handoff_frame(ws)
        assert requeued["status"] == "requeued" and "重新接入" in requeued["text"]
        desk.set_presence(wang, "online")
        assert handoff_frame(ws)["status"] == "agent_joined"
        desk.close(handoff.id, wang, "已解决")
        left = handoff_frame(ws)
        assert left["status"] == "agent_left" and left["text"] == "客服小王已结束本次服务，智能客服继续为您服务"

        stored = notices(app, visitor)
        assert [(n["data"]["status"], n["data"]["agent"]) for n in stored] == [
            ("agent_joined", "小王"), ("agent_joined", "小李"), ("transferred", None), ("agent_joined", "小王"),
            ("requeued", None), ("agent_joined", "小王"), ("agent_left", "小王")]
        with widget_socket(client, visitor) as (again, _):
            history, state = history_and_state(again)
        assert state == []  # the bot has the chat again: nothing to add
        sources = [(m["role"], m.get("source"), m.get("agent"), m["text"][:12]) for m in history]
        assert ("bot", "agent", "小王", "您好，我来帮您看分期") in sources
        notice_rows = [s for s in sources if s[1] == "handoff_notice"]
        assert len(notice_rows) == len(stored)
        # the goodbye comes before the rating request, as the customer heard them
        assert [s[1] for s in sources[-2:]] == ["handoff_notice", "satisfaction"]

        say(ws, "4分 回答很清楚", "m2")
    with app.state.database.session() as session:
        rated = session.scalar(select(Handoff).where(Handoff.id == handoff.id))
        assert (rated.rating, rated.comment) == (4, "回答很清楚")


def test_a_cancelled_wait_gets_the_bots_word_and_no_notice(app: Any) -> None:
    with TestClient(app) as client, widget_socket(client) as (ws, visitor):
        say(ws, "转人工", "m1")
        frames = say(ws, "取消转人工", "m2")
        assert {"type": "queue", "position": 0, "text": ""} in frames
        assert [f["text"] for f in frames if f["type"] == "bot"] == ["好的，已为您取消转人工，您可以继续向我提问。"]
        assert not [f for f in frames if f["type"] == "handoff"]
        assert notices(app, visitor) == []


def test_a_wechat_customer_gets_the_same_words_as_text(minibot: Path, minibot_assistant, tmp_path: Path) -> None:
    state = StandIn()
    with serving(handler_for(state)) as url:
        wechat = WeChatChannelConfig(token=TOKEN, app_id=APP_ID, app_secret="s3cret", mode="plain", api_base=url)
        app = make_app(minibot, minibot_assistant, tmp_path, ChannelsConfig(wechat=wechat))
        desk: AgentDesk = app.state.desk
        wang = add_agent(desk, "wang", "小王", "1024", ["综合服务"])
        with TestClient(app) as client:
            assert "您是下一位" in post(client, text_xml("转人工", 9001))[0].text
            desk.set_presence(wang, "online")
            handoff = desk.open_handoff(app.state.conversations.store.find_conversation_of("wechat", OPENID).id)
            desk.close(handoff.id, wang, "已解决")
    assert [(m["touser"], m["text"]["content"]) for m in state.sent] == [
        (OPENID, "客服小王（工号1024）为您服务"), (OPENID, "客服小王已结束本次服务，智能客服继续为您服务")]


def test_the_transcript_is_the_visitors_own_as_they_saw_it(app: Any) -> None:
    desk: AgentDesk = app.state.desk
    wang = add_agent(desk, "wang", "小王", None, ["综合服务"])
    with TestClient(app) as client:
        with widget_socket(client) as (ws, visitor):
            say(ws, CARD_MESSAGE, "m1")
            say(ws, "转人工", "m2")
            desk.set_presence(wang, "online")
            handoff_frame(ws)
            handoff = desk.open_handoff(conversation_id(app, visitor))
            desk.agent_message(handoff.id, wang, "您好，请问有什么可以帮您？\n请稍等")
        with widget_socket(client) as (_, stranger):
            pass
        mine = client.get("/widget/transcript", headers={"Authorization": f"Bearer {visitor}"})
        theirs = client.get("/widget/transcript", headers={"Authorization": f"Bearer {stranger}"})
        forged = client.get("/widget/transcript", headers={"Authorization": f"Bearer {visitor[:-3]}abc"})
        missing = client.get("/widget/transcript")

        customer = AppCustomer(customer_id="C3003", name="张三")
        token = sign_token(customer, APP_SECRET)
        client.post("/channels/app/messages", json={"message": "周末网点营业吗", "message_id": "a1"},
                    headers={"Authorization": f"Bearer {token}"})
        app_transcript = client.get("/channels/app/transcript", headers={"Authorization": f"Bearer {token}"})
        app_refused = client.get("/channels/app/transcript", headers={"Authorization": "Bearer not-a-token"})

    assert mine.status_code == 200 and mine.headers["content-type"] == "text/plain; charset=utf-8"
    assert "filename*=UTF-8''%E8%81%8A%E5%A4%A9%E8%AE%B0%E5%BD%95-" in mine.headers["content-disposition"]
    lines = mine.text.splitlines()
    assert lines[0].startswith("聊天记录（导出于") and lines[1] == ""
    said = [line.split(" ", 2)[2] for line in lines[2:] if not line.startswith("    ")]
    assert said[0] == f"我：{mask_text(CARD_MESSAGE)}" and said[0].endswith("0128")  # as stored: masked
    assert said[1].startswith("智能客服：") and said[2] == "我：转人工"
    assert said[3].startswith("智能客服：") and "您是下一位" in said[3]
    assert said[4:] == ["提示：客服小王为您服务", "客服小王：您好，请问有什么可以帮您？"]
    assert lines[-1] == "    请稍等"
    assert all(line[:20].count(":") == 2 for line in lines[2:] if not line.startswith("    "))  # a time each
    assert "6222021234567890128" not in mine.text
    assert theirs.status_code == 200 and "卡号" not in theirs.text and "客服小王" not in theirs.text
    assert forged.status_code == 401 and missing.status_code == 401
    assert app_transcript.status_code == 200 and "我：周末网点营业吗" in app_transcript.text
    assert "卡号" not in app_transcript.text and app_refused.status_code == 401
