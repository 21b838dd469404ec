"""The agent desk API end to end over HTTP and WebSockets: a web customer escalates, an agent logs in, sees the
context package, replies (the customer's socket gets it live), closes; the customer rates and the bot is back.
Agents reach only their groups' and their own hand-overs; every list shows customer text masked."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.web.app import create_app
from tests.chat_support import widget_socket

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PASSWORD = "correct horse battery"


@pytest.fixture
def app(bundled_assistant, tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    app = create_app(bundled_assistant.config, assistant=bundled_assistant, database=database)
    app.state.desk.clock = lambda: NOON
    create_agent(database, "wang", "小王", PASSWORD, groups=["借记卡与账户", "综合服务"])
    create_agent(database, "boss", "张主管", PASSWORD, role="supervisor", groups=["综合服务"])
    return app


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@contextmanager
def desk_socket(client: TestClient, headers: dict[str, str]):
    """The console's live socket, authenticated by its first frame."""
    with client.websocket_connect("/api/agent/ws") as socket:
        socket.send_json({"type": "auth", "token": headers["Authorization"].split()[1]})
        assert socket.receive_json() == {"type": "welcome"}
        yield socket


def bots_until_ack(socket) -> list[str]:
    texts = []
    while (frame := socket.receive_json())["type"] != "ack":
        if frame["type"] == "bot":
            texts.append(frame["text"])
    return texts


def until(socket, kind: str) -> dict:
    while True:
        frame = socket.receive_json()
        if frame["type"] == kind:
            return frame


def test_escalate_accept_reply_close_rate(app) -> None:
    client = TestClient(app)
    assert client.post("/api/agent/login", json={"username": "wang", "password": "wrong"}).status_code == 401
    assert client.get("/api/agent/queue").status_code == 401
    agent = login(client, "wang")

    with widget_socket(client) as (customer, _):
        customer.send_json({"type": "message", "text": "我的卡丢了，卡号6222021234567890128", "message_id": "c1"})
        until(customer, "ack")
        customer.send_json({"type": "message", "text": "转人工", "message_id": "c2"})
        queued = bots_until_ack(customer)
        assert "您是下一位" in queued[-1] and not any("我们继续" in text for text in queued)

        queue = client.get("/api/agent/queue", headers=agent).json()
        assert len(queue["waiting"]) == 1 and queue["mine"] == []
        waiting = queue["waiting"][0]
        assert waiting["group"] == "借记卡与账户" and waiting["reason"] == "request"

        context = client.post(f"/api/agent/handoffs/{waiting['handoff_id']}/accept", headers=agent).json()
        assert context["reason"] == "客户要求转人工" and context["channel"] == "web"
        assert context["active_form"] == "card_loss_form"
        user_lines = [t for t in context["transcript"] if t["role"] == "user"]
        assert user_lines[0]["intent"]["name"] == "report_card_loss"
        assert "6222021234567890128" not in str(context) and "***************0128" in user_lines[0]["text"]
        assert "挂失银行卡" in context["summary"] and "report_card_loss" not in context["summary"]
        assert context["suggestions"]
        boss = login(client, "boss")
        boss_view = client.get(f"/api/agent/handoffs/{waiting['handoff_id']}/context", headers=boss).json()
        assert "622202123456" not in str(boss_view) and "0128" in str(boss_view)  # masked for supervisors too
        assert client.post(f"/api/agent/handoffs/{waiting['handoff_id']}/accept",
                           headers=boss).status_code == 409

        sent = client.post(f"/api/agent/handoffs/{waiting['handoff_id']}/messages", headers=agent,
                           json={"text": "/hi"}).json()
        live = until(customer, "bot")
        assert live["text"] == sent["text"] and live["text"].startswith("您好，我是人工客服")

        customer.send_json({"type": "message", "text": "好的谢谢", "message_id": "c3"})
        ack = until(customer, "ack")
        assert ack["message_id"] == "c3"  # no bot reply while the agent has the chat

        overview = client.get("/api/supervisor/overview", headers=boss).json()
        assert [a["load"] for a in overview["agents"] if a["display_name"] == "小王"] == [1]
        assert overview["live"][0]["handoff_id"] == waiting["handoff_id"] and "622202" not in str(overview)
        assert client.get("/api/supervisor/overview", headers=agent).status_code == 403

        assert client.post(f"/api/agent/handoffs/{waiting['handoff_id']}/close", headers=agent,
                           json={"disposition": "已解决"}).status_code == 200
        survey = until(customer, "bot")
        assert "打分" in survey["text"] and survey["buttons"]
        customer.send_json({"type": "message", "text": "5", "message_id": "c4"})
        assert "感谢您的评价" in until(customer, "bot")["text"]
        customer.send_json({"type": "message", "text": "补卡要多少钱", "message_id": "c5"})
        assert until(customer, "bot")["text"]


def test_agents_socket_hears_new_chats_and_customer_messages(app) -> None:
    client = TestClient(app)
    agent = login(client, "wang")
    with desk_socket(client, agent) as desk:
        client.post("/webhooks/rest/webhook", json={"sender": "rest-1", "message": "转人工"})
        assert until(desk, "queue") == {"type": "queue"}
        handoff_id = client.get("/api/agent/queue", headers=agent).json()["waiting"][0]["handoff_id"]
        client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=agent)
        client.post("/webhooks/rest/webhook", json={"sender": "rest-1", "message": "我还在等，电话13812345678"})
        message = until(desk, "message")
        assert message["handoff_id"] == handoff_id and message["text"] == "我还在等，电话138****5678"


def quick_grace(app, seconds: float = 0.3) -> None:
    handoff = app.state.config.handoff.model_copy(update={"agent_grace_seconds": seconds,
                                                          "customer_grace_seconds": seconds})
    app.state.config = app.state.config.model_copy(update={"handoff": handoff})


def test_an_agent_who_disconnects_gets_their_chats_returned_after_the_grace(app) -> None:
    import time

    quick_grace(app)
    with TestClient(app) as client:
        agent = login(client, "wang")
        client.post("/webhooks/rest/webhook", json={"sender": "rest-2", "message": "转人工"})
        handoff_id = client.get("/api/agent/queue", headers=agent).json()["waiting"][0]["handoff_id"]
        with desk_socket(client, agent):
            client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=agent)
        with desk_socket(client, agent):
            time.sleep(0.6)  # back within the grace period: nothing happens
            assert client.get("/api/agent/queue", headers=agent).json()["mine"]
        time.sleep(1.0)
        queue = client.get("/api/agent/queue", headers=agent).json()
        assert queue["mine"] == [] and [w["handoff_id"] for w in queue["waiting"]] == [handoff_id]


def test_a_waiting_customer_who_closes_the_chat_leaves_the_queue(app) -> None:
    import time

    quick_grace(app)
    with TestClient(app) as client:
        agent = login(client, "wang")
        with widget_socket(client) as (customer, _):
            customer.send_json({"type": "message", "text": "转人工", "message_id": "x1"})
            bots_until_ack(customer)
        assert len(client.get("/api/agent/queue", headers=agent).json()["waiting"]) == 1
        time.sleep(1.0)
        assert client.get("/api/agent/queue", headers=agent).json()["waiting"] == []


def test_admins_create_agents_over_the_api(app) -> None:
    create_agent(app.state.database, "root", "管理员", PASSWORD, role="admin", groups=["综合服务"])
    client = TestClient(app)
    admin, agent = login(client, "root"), login(client, "wang")
    body = {"username": "li", "display_name": "小李", "password": PASSWORD, "groups": ["信用卡"]}
    assert client.post("/api/admin/agents", json=body, headers=agent).status_code == 403
    created = client.post("/api/admin/agents", json=body, headers=admin)
    assert created.status_code == 201 and created.json()["groups"] == ["信用卡"]
    assert client.post("/api/admin/agents", json=body, headers=admin).status_code == 409
    bad = client.post("/api/admin/agents", json={**body, "username": "x", "groups": ["火星"]}, headers=admin)
    assert bad.status_code == 422 and "火星" in bad.json()["detail"]
    weak = client.post("/api/admin/agents", json={**body, "username": "y", "password": "short"}, headers=admin)
    assert weak.status_code == 422
    login(client, "li")


def test_a_waiting_customer_hears_their_place_move_up(app) -> None:
    client = TestClient(app)
    agent = login(client, "wang")
    with widget_socket(client) as (first, _), widget_socket(client) as (second, _):
        first.send_json({"type": "message", "text": "转人工", "message_id": "f1"})
        assert both(first, "queue", "ack")["queue"]["position"] == 1  # pushed from another thread: any order
        second.send_json({"type": "message", "text": "转人工", "message_id": "s1"})
        told = both(second, "queue", "ack")["queue"]
        assert told["position"] == 2 and "前面还有1位" in told["text"]

        waiting = client.get("/api/agent/queue", headers=agent).json()["waiting"]
        assert len(waiting) == 2
        client.post(f"/api/agent/handoffs/{waiting[0]['handoff_id']}/accept", headers=agent)
        moved = until(second, "queue")
        assert moved["position"] == 1 and "您是下一位" in moved["text"]
        assert until(first, "queue")["position"] == 0  # out of the queue: a person has them

        client.post(f"/api/agent/handoffs/{waiting[1]['handoff_id']}/accept", headers=agent)
        assert until(second, "queue") == {"type": "queue", "position": 0, "text": ""}


def both(socket, *kinds: str) -> dict[str, dict]:
    """The first frame of each kind, however they interleave."""
    seen: dict[str, dict] = {}
    while set(kinds) - seen.keys():
        frame = socket.receive_json()
        seen.setdefault(frame["type"], frame)
    return seen


HANDOFF_ROUTES = (("GET", "context", None), ("POST", "accept", None), ("POST", "messages", {"text": "您好"}),
                  ("POST", "notes", {"text": "备注"}), ("POST", "transfer", {"group": "信用卡"}),
                  ("POST", "close", {"disposition": "已解决"}))


def refused_everywhere(client: TestClient, handoff_id: int, headers: dict[str, str]) -> None:
    """Every hand-over route answers 404 with the same message as for an id that does not exist."""
    for method, action, body in HANDOFF_ROUTES:
        for target in (handoff_id, 999_999):
            response = client.request(method, f"/api/agent/handoffs/{target}/{action}", json=body, headers=headers)
            assert response.status_code == 404, (action, response.text)
            assert response.json()["detail"] == f"没有编号为 {target} 的转人工记录，或它不在您的接待范围内。"


def test_agents_reach_only_their_groups_and_their_own_hand_overs(app) -> None:
    create_agent(app.state.database, "xin", "小信", PASSWORD, groups=["信用卡"])
    client = TestClient(app)
    wang, xin, boss = login(client, "wang"), login(client, "xin"), login(client, "boss")
    client.post("/webhooks/rest/webhook", json={"sender": "rest-authz", "message": "转人工"})
    [waiting] = client.get("/api/agent/queue", headers=wang).json()["waiting"]
    handoff_id = waiting["handoff_id"]
    assert waiting["group"] != "信用卡"  # one of wang's groups, not xin's

    assert client.get("/api/agent/queue", headers=xin).json()["waiting"] == []  # another group's queue
    refused_everywhere(client, handoff_id, xin)
    assert client.get(f"/api/agent/handoffs/{handoff_id}/context", headers=boss).status_code == 200

    assert client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=wang).status_code == 200
    refused_everywhere(client, handoff_id, xin)
    assert client.get(f"/api/agent/handoffs/{handoff_id}/context", headers=boss).status_code == 200
    assert client.post(f"/api/supervisor/handoffs/{handoff_id}/reassign", json={"agent_id": 1},
                       headers=xin).status_code == 403

    # transferred to 信用卡: xin (online, of that group) gets it, and wang no longer reaches it
    assert client.post("/api/agent/presence", json={"presence": "online"}, headers=xin).status_code == 200
    assert client.post(f"/api/agent/handoffs/{handoff_id}/transfer", json={"group": "信用卡"},
                       headers=wang).status_code == 200
    assert client.get(f"/api/agent/handoffs/{handoff_id}/context", headers=wang).status_code == 404
    assert client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=xin).status_code == 200
    assert client.post(f"/api/agent/handoffs/{handoff_id}/messages", json={"text": "您好"},
                       headers=xin).status_code == 200


def test_queue_cards_and_the_supervisors_live_view_show_numbers_masked(app) -> None:
    """Rows stored before masking at rest (written here straight into the table) are masked on the way out."""
    from sqlalchemy import select

    from bot.storage.models import Event, Handoff

    client = TestClient(app)
    wang, boss = login(client, "wang"), login(client, "boss")
    client.post("/webhooks/rest/webhook", json={"sender": "rest-mask", "message": "转人工"})
    with app.state.database.session() as db, db.begin():
        handoff = db.scalars(select(Handoff)).one()
        last = db.scalars(select(Event).where(Event.conversation_id == handoff.conversation_id,
                                              Event.type == "user").order_by(Event.seq.desc())).first()
        last.data = {**last.data, "text": "卡号6222021234567890128，手机13812345678"}
    card = client.get("/api/agent/queue", headers=wang).json()["waiting"][0]
    assert card["last_message"] == "卡号***************0128，手机138****5678"

    client.post(f"/api/agent/handoffs/{card['handoff_id']}/accept", headers=wang)
    assert client.get("/api/agent/queue", headers=wang).json()["mine"][0]["last_message"] == card["last_message"]
    overview = client.get("/api/supervisor/overview", headers=boss).json()
    assert overview["live"][0]["last_message"] == card["last_message"]
    for viewer in (wang, boss):
        context = client.get(f"/api/agent/handoffs/{card['handoff_id']}/context", headers=viewer).json()
        assert "6222021234567890128" not in str(context) and "13812345678" not in str(context)


def test_a_queue_card_quotes_the_button_the_customer_pressed_not_its_payload(app) -> None:
    client = TestClient(app)
    wang = login(client, "wang")
    with widget_socket(client) as (socket, _):
        socket.send_json({"type": "message", "text": "/request_human", "title": "转人工客服", "message_id": "b-1"})
        bots_until_ack(socket)
    card = client.get("/api/agent/queue", headers=wang).json()["waiting"][0]
    assert card["last_message"] == "转人工客服"
