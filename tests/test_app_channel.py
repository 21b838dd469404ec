"""The mobile app channel: tokens signed by the app's back end identify the customer; anything else gets 401
and nothing is stored."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.websockets import WebSocketDisconnect

from bot.channels.app import AppCustomer, sign_token
from bot.config import AppChannelConfig, ChannelsConfig
from bot.storage import Database
from bot.storage.models import ChannelIdentity, Conversation, Customer, Event, InboundMessage
from bot.web.app import create_app
from tests.chat_support import app_socket

SECRET = "test-secret-of-the-banks-app-backend-0123456789"
ZHANG = AppCustomer(customer_id="C0001", name="张伟", tier="金卡", verified=True)


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'bot.db'}")


@pytest.fixture
def client(bundled_assistant, database: Database) -> TestClient:
    channels = ChannelsConfig(app=AppChannelConfig(secret=SECRET, max_token_age_seconds=600))
    config = bundled_assistant.config.model_copy(update={"channels": channels})
    return TestClient(create_app(config, assistant=bundled_assistant, database=database))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored_rows(database: Database) -> int:
    with database.session() as session:
        return sum(int(session.scalar(select(func.count()).select_from(t)) or 0)
                   for t in (Event, InboundMessage, Conversation, ChannelIdentity, Customer))


def test_a_signed_customer_gets_answers_about_their_own_account(client: TestClient, database: Database) -> None:
    response = client.post("/channels/app/messages", headers=bearer(sign_token(ZHANG, SECRET)),
                           json={"message": "查一下余额", "message_id": "app-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "28,650.00" in " ".join(r["text"] for r in body["replies"])
    with database.session() as session:
        customer = session.get(Customer, "C0001")
        assert customer is not None and customer.tier == "金卡" and customer.verified
        conversation = session.get(Conversation, body["conversation_id"])
        assert conversation is not None and conversation.customer_id == "C0001" and conversation.channel == "app"
    again = client.post("/channels/app/messages", headers=bearer(sign_token(ZHANG, SECRET)),
                        json={"message": "查一下余额", "message_id": "app-1"}).json()
    assert again["duplicate"] and again["replies"] == body["replies"]
    history = client.get("/channels/app/history", headers=bearer(sign_token(ZHANG, SECRET))).json()
    assert [h["role"] for h in history][:2] == ["user", "bot"]


def expired() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "C0001", "iat": now - 900, "exp": now - 600}, SECRET, algorithm="HS256")


def too_old() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "C0001", "iat": now - 7200, "exp": now + 600}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "Authorization: Bearer"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "Authorization: Bearer"),
    (bearer("not-a-jwt"), "invalid token"),
    (bearer(sign_token(ZHANG, "another-secret-that-is-long-enough-000000")), "invalid token"),
    (bearer(jwt.encode({"sub": "C0001"}, SECRET, algorithm="HS256")), "invalid token"),
    (bearer(expired()), "expired"),
    (bearer(too_old()), "at most 600 s"),
])
def test_unsigned_forged_or_expired_tokens_get_401_and_nothing_is_stored(client: TestClient, database: Database,
                                                                       headers: dict, reason: str) -> None:
    response = client.post("/channels/app/messages", headers=headers, json={"message": "查一下余额"})
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert stored_rows(database) == 0


def test_the_channel_is_off_without_a_secret(bundled_assistant, database: Database) -> None:
    client = TestClient(create_app(bundled_assistant.config, assistant=bundled_assistant, database=database))
    response = client.post("/channels/app/messages", headers=bearer(sign_token(ZHANG, SECRET)),
                           json={"message": "你好"})
    assert response.status_code == 401 and "BOT__CHANNELS__APP__SECRET" in response.json()["detail"]


def test_websocket_with_a_token_answers_and_without_one_is_refused(client: TestClient, database: Database) -> None:
    with app_socket(client, sign_token(ZHANG, SECRET)) as socket:
        socket.send_json({"type": "message", "text": "查一下余额", "message_id": "ws-1"})
        frames = []
        while not frames or frames[-1]["type"] != "ack":
            frames.append(socket.receive_json())
    assert any(f["type"] == "bot" and "28,650.00" in f["text"] for f in frames)
    before = stored_rows(database)
    with client.websocket_connect("/channels/app/ws") as socket:
        socket.send_json({"type": "auth", "token": "forged"})
        assert socket.receive_json()["type"] == "error"
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 4401
    with client.websocket_connect(f"/channels/app/ws?token={sign_token(ZHANG, SECRET)}") as socket:
        socket.send_json({"type": "message", "text": "查一下余额", "message_id": "url-token"})  # not an auth frame
        assert socket.receive_json()["type"] == "error"
        with pytest.raises(WebSocketDisconnect):
            socket.receive_json()
    assert stored_rows(database) == before
