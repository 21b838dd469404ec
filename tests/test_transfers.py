"""Transfers that move, accepting your own chat, replies that did not reach the customer, and what the receiving
agent and the supervisor see (issue 13): the real HTTP API over the real desk and a temporary SQLite file."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.web.app import create_app
from tests.chat_support import widget_socket

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PASSWORD = "correct horse battery"
BOTH = ["借记卡与账户", "综合服务"]


@pytest.fixture
def app(bundled_assistant, tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    app = create_app(bundled_assistant.config, assistant=bundled_assistant, database=database)
    app.state.desk.clock = lambda: NOON
    create_agent(database, "wang", "小王", PASSWORD, groups=BOTH)
    create_agent(database, "li", "小李", PASSWORD, groups=BOTH, max_chats=1)
    create_agent(database, "xin", "小信", PASSWORD, groups=["信用卡"])
    create_agent(database, "boss", "张主管", PASSWORD, role="supervisor", groups=["综合服务"])
    app.state.told = []  # what the customer side's listener hears (AgentDesk.on_change)
    app.state.desk.on_change(lambda conversation_id, payload: app.state.told.append(payload))
    return app


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def online(client: TestClient, headers: dict[str, str]) -> None:
    assert client.post("/api/agent/presence", json={"presence": "online"}, headers=headers).status_code == 200


def escalate(client: TestClient, sender: str) -> None:
    client.post("/webhooks/rest/webhook", json={"sender": sender, "message": "转人工"})


def mine(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    return client.get("/api/agent/queue", headers=headers).json()["mine"]


def agent_lines(context: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for line in context["transcript"] if line["role"] == "agent"]


def test_a_chat_given_to_me_automatically_accepts_again_and_anothers_still_refuses(app) -> None:
    client = TestClient(app)
    wang, boss = login(client, "wang"), login(client, "boss")
    online(client, wang)
    replies = client.post("/webhooks/rest/webhook", json={"sender": "rest-own", "message": "转人工"}).json()
    [chat] = mine(client, wang)  # given to 小王 at once: the customer's own turn says so, after the bot's words
    assert replies[-1]["text"] == "客服小王为您服务"
    assert app.state.told == []  # so the listeners are not told it a second time
    again = client.post(f"/api/agent/handoffs/{chat['handoff_id']}/accept", headers=wang)
    assert again.status_code == 200 and again.json()["handoff"]["agent_id"] == chat["agent_id"]
    assert app.state.told == []  # accepting one's own chat again changes nothing
    taken = client.post(f"/api/agent/handoffs/{chat['handoff_id']}/accept", headers=boss)  # reaches every chat
    assert taken.status_code == 409 and "已被其他坐席接起" in taken.json()["detail"]


def test_transfer_to_my_own_group_goes_to_a_colleague_never_back_to_me(app) -> None:
    client = TestClient(app)
    wang, li = login(client, "wang"), login(client, "li")
    online(client, wang)
    escalate(client, "rest-group")
    [chat] = mine(client, wang)
    url = f"/api/agent/handoffs/{chat['handoff_id']}/transfer"

    alone = client.post(url, json={"group": chat["group"], "note": "客户想办理大额转账"}, headers=wang)
    assert alone.status_code == 409
    assert alone.json()["detail"] == f"{chat['group']}目前没有其他坐席可接待，会话仍由您接待。"
    assert [c["handoff_id"] for c in mine(client, wang)] == [chat["handoff_id"]]  # still mine
    assert "transferred" not in [p["status"] for p in app.state.told]

    online(client, li)
    moved = client.post(url, json={"group": chat["group"], "note": "客户想办理大额转账，电话13812345678"},
                        headers=wang)
    assert moved.status_code == 200 and moved.json()["message"] == f"已转接至{chat['group']}"
    assert mine(client, wang) == []
    [received] = mine(client, li)
    assert received["handoff_id"] == chat["handoff_id"]
    assert received["transfer"]["from_agent"] == "小王"
    assert received["transfer"]["note"] == "客户想办理大额转账，电话138****5678"  # stored and shown masked
    context = client.get(f"/api/agent/handoffs/{chat['handoff_id']}/context", headers=li).json()
    assert context["transfer"]["note"].startswith("客户想办理大额转账") and context["mine"] is True

    transferred, assigned = [p for p in app.state.told if p["status"] in ("transferred", "assigned")][-2:]
    wang_id = chat["agent_id"]
    assert transferred["group"] == chat["group"] and transferred["from_agent_id"] == wang_id
    assert assigned["agent"] == "小李" and assigned["agent_id"] == received["agent_id"]


def test_transfer_to_a_group_whose_only_other_agent_is_full_is_refused(app) -> None:
    """The one other agent of the group is full: refused, the chat stays with the agent (nobody with room)."""
    client = TestClient(app)
    wang, li = login(client, "wang"), login(client, "li")
    online(client, li)
    escalate(client, "rest-busy-1")  # fills 小李 (max 1)
    online(client, wang)
    escalate(client, "rest-busy-2")
    [chat] = mine(client, wang)
    refused = client.post(f"/api/agent/handoffs/{chat['handoff_id']}/transfer", json={"group": chat["group"]},
                          headers=wang)
    assert refused.status_code == 409 and "没有其他坐席可接待" in refused.json()["detail"]
    unknown = client.post(f"/api/agent/handoffs/{chat['handoff_id']}/transfer", json={"group": "火星"}, headers=wang)
    assert unknown.status_code == 409 and "火星" in unknown.json()["detail"]
    both = client.post(f"/api/agent/handoffs/{chat['handoff_id']}/transfer", json={"group": chat["group"],
                                                                                 "agent_id": 2}, headers=wang)
    assert both.status_code == 422


def test_transfer_to_a_named_colleague_and_the_refusals(app) -> None:
    client = TestClient(app)
    wang, li, xin = login(client, "wang"), login(client, "li"), login(client, "xin")
    ids = {c["display_name"]: c["id"] for c in client.get("/api/agent/colleagues", headers=wang).json()}
    online(client, wang)
    escalate(client, "rest-named")
    [chat] = mine(client, wang)
    url = f"/api/agent/handoffs/{chat['handoff_id']}/transfer"

    def refused(agent_id: int) -> str:
        response = client.post(url, json={"agent_id": agent_id, "note": "请跟进"}, headers=wang)
        assert response.status_code == 409, response.text
        return response.json()["detail"]

    assert refused(ids["小信"]) == "小信不在线，无法转接，请选择在线的同事或技能组。"
    assert refused(ids["小王"]) == "不能转接给自己。"
    assert refused(999) == "没有这位坐席，无法转接。"
    online(client, li)
    escalate(client, "rest-named-2")  # 小李 (max 1) takes it: now full
    assert refused(ids["小李"]) == "小李的接待量已满（1/1），请稍后再试或转接到技能组。"
    assert [c["handoff_id"] for c in mine(client, wang)] == [chat["handoff_id"]]

    online(client, xin)  # of another group: a named transfer does not need the group
    colleagues = client.get("/api/agent/colleagues", headers=wang).json()
    assert {c["display_name"]: (c["presence"], c["load"]) for c in colleagues}["小信"] == ("online", 0)
    assert [c["me"] for c in colleagues if c["display_name"] == "小王"] == [True]
    moved = client.post(url, json={"agent_id": ids["小信"], "note": "客户问信用卡分期"}, headers=wang)
    assert moved.status_code == 200 and moved.json()["message"] == "已转接给小信"
    [received] = mine(client, xin)
    assert received["transfer"] == {**received["transfer"], "from_agent": "小王", "note": "客户问信用卡分期"}
    assert client.get(f"/api/agent/handoffs/{chat['handoff_id']}/context", headers=wang).status_code == 404
    told = app.state.told[-1]
    assert told["status"] == "assigned" and told["agent"] == "小信" and told["from_agent_id"] == ids["小王"]


def test_an_undelivered_reply_is_marked_after_a_reload_retried_and_turned_into_a_callback(app) -> None:
    client = TestClient(app)
    wang, boss = login(client, "wang"), login(client, "boss")
    online(client, wang)
    escalate(client, "rest-undelivered")  # a REST caller: the bank cannot write first
    [chat] = mine(client, wang)
    base = f"/api/agent/handoffs/{chat['handoff_id']}"
    sent = client.post(f"{base}/messages", json={"text": "您好，请问还在吗？"}, headers=wang).json()
    assert sent["delivered"] is False and sent["reason"] and sent["reason"] in sent["warning"]

    [line] = agent_lines(client.get(f"{base}/context", headers=wang).json())  # as after a reload
    assert line["seq"] == sent["seq"] and line["delivery"]["delivered"] is False
    assert line["delivery"]["reason"] == sent["reason"]

    retried = client.post(f"{base}/messages/{sent['seq']}/retry", headers=wang).json()
    assert retried == {"seq": sent["seq"], "delivered": False, "reason": sent["reason"], "note": None}
    assert client.post(f"{base}/messages/999/retry", headers=wang).status_code == 409

    ticket = client.post(f"{base}/messages/{sent['seq']}/callback", headers=wang)
    assert ticket.status_code == 201
    ticket_id = ticket.json()["ticket_id"]
    context = client.get(f"{base}/context", headers=wang).json()
    assert agent_lines(context)[0]["delivery"]["callback_handoff_id"] == ticket_id
    assert any(f"已转回电工单 #{ticket_id}" in line["text"] for line in context["transcript"] if line["role"] == "note")
    again = client.post(f"{base}/messages/{sent['seq']}/retry", headers=wang)
    assert again.status_code == 409 and f"#{ticket_id}" in again.json()["detail"]
    [callback] = client.get("/api/supervisor/overview", headers=boss).json()["callbacks"]
    assert callback["handoff_id"] == ticket_id and callback["status"] == "ticket"
    assert callback["detail"].startswith("回电：坐席回复未送达") and "您好，请问还在吗？" in callback["detail"]


def test_a_customer_who_left_gets_the_reply_in_their_history_once_and_live_replies_name_the_agent(app) -> None:
    from bot.handoff.desk import set_employee_no

    set_employee_no(app.state.database, "wang", "1024")
    client = TestClient(app)
    wang = login(client, "wang")
    online(client, wang)
    with widget_socket(client) as (customer, visitor):
        customer.send_json({"type": "message", "text": "转人工", "message_id": "w1"})
        while customer.receive_json()["type"] != "ack":
            pass
    [chat] = mine(client, wang)  # the socket is closed now; the hand-over stays with 小王
    base = f"/api/agent/handoffs/{chat['handoff_id']}"
    sent = client.post(f"{base}/messages", json={"text": "您还在吗？"}, headers=wang).json()
    assert sent["delivered"] is False and sent["reason"]
    still = client.post(f"{base}/messages/{sent['seq']}/retry", headers=wang).json()
    assert still["delivered"] is False and still["reason"] == sent["reason"]  # still away: tried again, in vain

    with widget_socket(client, visitor) as (customer, _):
        customer.send_json({"type": "history"})
        history = customer.receive_json()
        while history["type"] != "history":
            history = customer.receive_json()
        [reply] = [m for m in history["messages"] if m.get("text") == "您还在吗？"]  # back: it is in their history
        assert reply["source"] == "agent"
        retried = client.post(f"{base}/messages/{sent['seq']}/retry", headers=wang).json()
        assert retried["delivered"] is True and "聊天记录" in retried["note"]  # so it is not pushed again
        twice = client.post(f"{base}/messages/{sent['seq']}/retry", headers=wang)
        assert twice.status_code == 409 and twice.json()["detail"] == "这条消息已送达，无需重发。"
        live = client.post(f"{base}/messages", json={"text": "我是小王"}, headers=wang).json()
        assert live["delivered"] is True and live["reason"] is None
        frame = customer.receive_json()
        while frame.get("type") != "bot":
            frame = customer.receive_json()
        assert frame["text"] == "我是小王"  # the first bot frame since the history: the retry sent nothing
        assert (frame["source"], frame["agent"], frame["employee_no"]) == ("agent", "小王", "1024")
    [first, second] = agent_lines(client.get(f"{base}/context", headers=wang).json())
    assert first["delivery"] == {"delivered": True, "reason": None, "callback_handoff_id": None}
    assert second["delivery"] is None  # delivered at once: nothing recorded


def test_the_rating_and_comment_show_in_the_agents_closed_chat_and_the_supervisors_view(app) -> None:
    client = TestClient(app)
    wang, boss = login(client, "wang"), login(client, "boss")
    online(client, wang)
    escalate(client, "rest-rated")
    [chat] = mine(client, wang)
    client.post(f"/api/agent/handoffs/{chat['handoff_id']}/close", json={"disposition": "已解决"}, headers=wang)
    client.post("/webhooks/rest/webhook", json={"sender": "rest-rated", "message": "4 很耐心，回电13812345678"})

    [closed] = client.get("/api/agent/queue", headers=wang).json()["closed"]
    assert (closed["rating"], closed["comment"], closed["disposition"]) == (4, "很耐心，回电138****5678", "已解决")
    context = client.get(f"/api/agent/handoffs/{chat['handoff_id']}/context", headers=wang).json()
    assert context["mine"] is False and context["rating"] == 4 and "13812345678" not in str(context)
    [rated] = client.get("/api/supervisor/overview", headers=boss).json()["rated"]
    assert rated["handoff_id"] == chat["handoff_id"] and rated["agent"] == "小王"
    assert rated["comment"] == "很耐心，回电138****5678"


def test_channel_and_reason_names_come_from_the_server(app) -> None:
    from bot.channels.registry import channels_json
    from bot.handoff.reasons import reasons_json

    client = TestClient(app)
    meta = client.get("/api/agent/meta", headers=login(client, "wang")).json()
    assert meta == {"channels": channels_json(), "reasons": reasons_json()}
    assert {c["name"]: c["label"] for c in meta["channels"]}["wecom"] == "微信客服"
    assert client.get("/api/agent/meta").status_code == 401
    script = (Path(__file__).resolve().parents[1] / "bot/web/static/agent.js").read_text("utf-8")
    assert "微信客服" not in script and "情绪/投诉" not in script  # no second copy in the console


def test_employee_numbers_from_the_admin_api_and_the_command_line(app, minibot: Path, tmp_path: Path) -> None:
    create_agent(app.state.database, "root", "管理员", PASSWORD, role="admin", groups=["综合服务"])
    client = TestClient(app)
    admin = login(client, "root")
    body = {"username": "zhou", "display_name": "小周", "password": PASSWORD, "groups": ["信用卡"],
            "employee_no": "1025"}
    created = client.post("/api/admin/agents", json=body, headers=admin)
    assert created.status_code == 201 and created.json()["employee_no"] == "1025"
    bad = client.post("/api/admin/agents", json={**body, "username": "x", "employee_no": "10 25"}, headers=admin)
    assert bad.status_code == 422
    assert client.get("/api/agent/queue", headers=login(client, "zhou")).json()["agent"]["employee_no"] == "1025"

    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT__")}
    env |= {"BOT_AGENT_PASSWORD": PASSWORD, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    command = [sys.executable, "-m", "bot.cli", "agents", "add", "wu", "--name", "小吴", "--group", "综合服务",
               "--employee-no", "1026"]
    done = subprocess.run(command, cwd=minibot, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "agent wu (小吴, 工号1026, agent) serves 综合服务" in done.stdout
    from bot.handoff.agents import authenticate

    account = authenticate(Database(env["DATABASE_URL"]), "wu", PASSWORD)
    assert account is not None and account.employee_no == "1026"
