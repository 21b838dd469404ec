"""The server decides who the customer is: nothing a client writes in a body or a URL raises what it may see,
and reading a conversation needs the API token or a supervisor."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.channels.app import AppCustomer, sign_token
from bot.config import AppChannelConfig, BotConfig, ChannelsConfig
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.web.app import create_app
from tests.chat_support import widget_socket

SECRET = "test-secret-of-the-banks-app-backend-0123456789"
API_TOKEN = "identity-test-api-token-0123"
BALANCE = "28,650"  # C0001's card 6688 at the demo bank


def configured(config: BotConfig, api_token: str | None = API_TOKEN) -> BotConfig:
    channels = ChannelsConfig(app=AppChannelConfig(secret=SECRET, max_token_age_seconds=600))
    security = config.security.model_copy(update={"api_token": api_token})
    return config.model_copy(update={"channels": channels, "security": security})


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'bot.db'}")


@pytest.fixture
def client(bundled_assistant, database: Database) -> TestClient:
    return TestClient(create_app(configured(bundled_assistant.config), assistant=bundled_assistant, database=database))


def say(client: TestClient, body: dict) -> str:
    response = client.post("/webhooks/rest/webhook", json=body)
    assert response.status_code == 200, response.text
    return " ".join(r["text"] for r in response.json())


def test_metadata_cannot_make_a_rest_caller_a_verified_customer(client: TestClient) -> None:
    reply = say(client, {"sender": "attacker-1", "message": "尾号6688的卡余额多少",
                         "metadata": {"customer_id": "C0001", "verified": True, "tier": "私人银行"}})
    assert BALANCE not in reply and "28650" not in reply
    tracker = client.get("/conversations/attacker-1/tracker", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert tracker.json()["channel"] == "rest"


def test_naming_the_app_channel_and_a_customer_id_gives_nothing(client: TestClient, database: Database) -> None:
    app_token = sign_token(AppCustomer(customer_id="C0001", name="张伟", verified=True), SECRET)
    before = client.get("/channels/app/history", headers={"Authorization": f"Bearer {app_token}"}).json()
    reply = say(client, {"sender": "C0001", "channel": "app", "message": "尾号6688的卡余额多少",
                         "metadata": {"customer_id": "C0001", "verified": True}})
    assert BALANCE not in reply
    after = client.get("/channels/app/history", headers={"Authorization": f"Bearer {app_token}"}).json()
    assert after == before  # nothing was written into the customer's app conversation
    store = client.app.state.conversations.store
    assert store.find_conversation_of("app", "C0001") is None or after == before
    assert store.find_conversation_of("rest", "C0001").customer_id is None


def test_a_rest_sender_cannot_redeem_a_binding_code(client: TestClient) -> None:
    app_token = sign_token(AppCustomer(customer_id="C0001", name="张伟", verified=True), SECRET)
    code = client.post("/channels/app/binding-code", headers={"Authorization": f"Bearer {app_token}"}).json()["code"]
    say(client, {"sender": "rest-binder", "message": f"绑定 {code}"})
    reply = say(client, {"sender": "rest-binder", "message": "尾号6688的卡余额多少"})
    assert BALANCE not in reply
    assert client.app.state.conversations.store.find_conversation_of("rest", "rest-binder").customer_id is None


def test_binding_codes_are_issued_a_few_times_per_customer_only(client: TestClient) -> None:
    app_token = sign_token(AppCustomer(customer_id="C0002", name="李娜", verified=True), SECRET)
    headers = {"Authorization": f"Bearer {app_token}"}
    limit = client.app.state.config.security.binding_max_failures
    codes = [client.post("/channels/app/binding-code", headers=headers) for _ in range(limit + 1)]
    assert [c.status_code for c in codes] == [200] * limit + [429]
    assert int(codes[-1].headers["Retry-After"]) > 0


def test_the_tracker_needs_the_api_token(client: TestClient) -> None:
    say(client, {"sender": "reader-1", "message": "我的手机号13812345678，卡号6222021234567890128"})
    assert client.get("/conversations/reader-1/tracker").status_code == 401
    wrong = client.get("/conversations/reader-1/tracker", headers={"Authorization": "Bearer not-the-token-000000"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    tracker = client.get("/conversations/reader-1/tracker", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert tracker.status_code == 200
    assert "13812345678" not in tracker.text and "6222021234567890128" not in tracker.text
    assert "138****5678" in tracker.text


def test_without_a_configured_token_the_api_is_off(bundled_assistant, database: Database) -> None:
    client = TestClient(create_app(configured(bundled_assistant.config, api_token=None), assistant=bundled_assistant,
                                   database=database))
    say(client, {"sender": "off-1", "message": "你好"})
    response = client.get("/conversations/off-1/tracker")
    assert response.status_code == 401 and "BOT__SECURITY__API_TOKEN" in response.json()["detail"]
    assert client.get("/conversations/off-1/tracker", headers={"Authorization": "Bearer "}).status_code == 401


def test_supervisors_read_the_tracker_agents_do_not(client: TestClient, database: Database) -> None:
    create_agent(database, "boss", "主管", "supervisor-pass-1", role="supervisor", groups=["综合服务"])
    create_agent(database, "wang", "小王", "agent-pass-0001", groups=["综合服务"])
    say(client, {"sender": "reader-2", "message": "你好"})

    def session(username: str, password: str) -> dict[str, str]:
        token = client.post("/api/agent/login", json={"username": username, "password": password}).json()["token"]
        return {"Authorization": f"Bearer {token}"}

    url = "/conversations/reader-2/tracker"
    assert client.get(url, headers=session("boss", "supervisor-pass-1")).status_code == 200
    assert client.get(url, headers=session("wang", "agent-pass-0001")).status_code == 403


def test_new_visitors_from_one_address_do_not_get_fresh_binding_guesses(client: TestClient) -> None:
    app_token = sign_token(AppCustomer(customer_id="C0003", name="王芳", verified=True), SECRET)
    code = client.post("/channels/app/binding-code", headers={"Authorization": f"Bearer {app_token}"}).json()["code"]
    wrong = (c for c in (f"{n:06d}" for n in range(1, 100)) if c != code)
    per_address = client.app.state.config.security.binding_max_failures * 2

    def visitor_says(text: str) -> str:
        with widget_socket(client) as (socket, _):  # a new visitor every time
            socket.send_json({"type": "message", "text": text, "message_id": "bind-1"})
            replies = []
            while (frame := socket.receive_json())["type"] != "ack":
                replies.append(frame.get("text", ""))
            return " ".join(replies)

    for _ in range(per_address):
        assert "无效或已过期" in visitor_says(f"绑定 {next(wrong)}")
    assert "次数过多" in visitor_says(f"绑定 {code}")  # the right code too, from this address


def test_the_server_key_is_made_once_readable_only_by_the_server(tmp_path: Path, bundled_assistant) -> None:
    from bot.security.credentials import VisitorCredentials, server_key

    config = bundled_assistant.config.model_copy(update={"root": tmp_path})
    first, second = server_key(config), server_key(config)  # a second worker reads the same key
    assert first == second and len(first) >= 32
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0
    visitor, credential = VisitorCredentials(first).issue()
    assert VisitorCredentials(second).verify(credential) == visitor
    assert VisitorCredentials(b"another installation's key, 32+ bytes").verify(credential) is None
