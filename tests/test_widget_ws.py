"""The widget's WebSocket protocol and files, with FastAPI's TestClient on the small fixture bot."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.chat_support import widget_socket


@pytest.fixture(scope="module")
def client(minibot: Path, minibot_assistant, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    from bot.assistant import Assistant
    from bot.config import load_config
    from bot.web.app import create_app
    from bot.web.widget import widget_router

    data = tmp_path_factory.mktemp("widget-ws")
    config = load_config(minibot / "config.yml", environ={"DATABASE_URL": f"sqlite:///{data / 'bot.db'}"})
    app = create_app(config, Assistant(minibot_assistant.model, config))
    if not any(getattr(route, "path", None) == "/widget.js" for route in app.routes):
        app.include_router(widget_router())
    return TestClient(app)


def test_files_are_served_with_their_types(client: TestClient) -> None:
    for path, kind in (("/", "text/html"), ("/widget.js", "text/javascript"), ("/widget.css", "text/css")):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind), path
    assert "示例银行" in client.get("/").text and 'src="/widget.js"' in client.get("/").text


def test_a_message_gets_typing_replies_and_ack_then_history(client: TestClient) -> None:
    with widget_socket(client) as (ws, visitor):
        ws.send_json({"type": "history"})
        assert ws.receive_json() == {"type": "history", "messages": []}
        ws.send_json({"type": "message", "text": "你好", "message_id": "m-1"})
        assert ws.receive_json() == {"type": "typing"}
        bot = ws.receive_json()
        assert bot["type"] == "bot" and bot["text"] and bot["reply_to"] == "m-1" and bot["duplicate"] is False
        assert {"buttons", "timestamp"} <= bot.keys()
        assert ws.receive_json() == {"type": "ack", "message_id": "m-1", "duplicate": False}

    with widget_socket(client, visitor) as (ws, again):  # a reload: same visitor, new socket
        assert again == visitor
        ws.send_json({"type": "history"})
        history = ws.receive_json()["messages"]
        assert [(m["role"], m["text"]) for m in history] == [("user", "你好"), ("bot", bot["text"])]
        assert history[0]["message_id"] == "m-1"


def test_a_resent_message_id_gets_the_original_replies(client: TestClient) -> None:
    with widget_socket(client) as (ws, _):
        frames = []
        for _ in range(2):
            ws.send_json({"type": "message", "text": "我要挂失", "message_id": "same-id"})
            frames.append([ws.receive_json() for _ in range(3)])
        first, second = frames
        assert second[1]["text"] == first[1]["text"] and second[1]["duplicate"] is True
        assert second[2] == {"type": "ack", "message_id": "same-id", "duplicate": True}
        ws.send_json({"type": "history"})
        assert len(ws.receive_json()["messages"]) == 2  # stored once


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type": "message", "text": "   ", "message_id": "e1"}', "消息是空的"),
        ('{"type": "message", "text": "' + "好" * 2001 + '", "message_id": "e2"}', "2000 字以内"),
        ("{not json", "消息格式有误"),
        ("[1, 2]", "消息格式有误"),
        ('{"type": "subscribe"}', "不支持的消息类型"),
        ('{"type": "message", "text": "你好", "message_id": "<bad id>"}', "消息编号无效"),
    ],
)
def test_bad_frames_get_a_chinese_error_socket_stays_open(client: TestClient, frame: str, expected: str) -> None:
    with widget_socket(client) as (ws, _):
        ws.send_text(frame)
        error = ws.receive_json()
        assert error["type"] == "error" and expected in error["message"]
        ws.send_json({"type": "history"})
        assert ws.receive_json()["type"] == "history"


def test_knowing_a_visitor_id_replays_nothing(client: TestClient) -> None:
    with widget_socket(client) as (ws, visitor):
        ws.send_json({"type": "message", "text": "我的卡号6222021234567890128丢了", "message_id": "secret-1"})
        while ws.receive_json()["type"] != "ack":
            pass
    prefix, visitor_id, signature = visitor.split(".")
    forged = f"{prefix}.{visitor_id}.{signature[:-2]}AA"
    for attempt in (forged, visitor_id, f"v1.{visitor_id}.", "v1.." + signature):
        with widget_socket(client, attempt) as (ws, issued):
            assert issued != visitor and visitor_id not in issued  # a new visitor, not the one named
            ws.send_json({"type": "history"})
            assert ws.receive_json() == {"type": "history", "messages": []}


@pytest.mark.parametrize("first", ['{"type": "history"}', '{"type": "message", "text": "你好"}', "{not json"])
def test_the_first_frame_must_be_the_hello(client: TestClient, first: str) -> None:
    with client.websocket_connect("/ws/chat") as ws:
        ws.send_text(first)
        frame = ws.receive_json()
        assert frame["type"] == "error"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code in (1007, 1008)


def test_a_credential_in_the_url_is_ignored(client: TestClient) -> None:
    with widget_socket(client) as (ws, visitor):
        ws.send_json({"type": "message", "text": "你好", "message_id": "url-1"})
        while ws.receive_json()["type"] != "ack":
            pass
    with client.websocket_connect(f"/ws/chat?sender={visitor.split('.')[1]}&visitor={visitor}") as ws:
        ws.send_json({"type": "hello"})
        welcome = ws.receive_json()
        assert welcome["type"] == "welcome" and welcome["visitor"] != visitor


def test_a_page_of_another_site_cannot_open_the_socket(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, \
            client.websocket_connect("/ws/chat", headers={"origin": "https://evil.example"}):
        pass
    assert refused.value.code == 4403
    with widget_socket(client, headers={"origin": "http://testserver"}) as (_, visitor):
        assert visitor.startswith("v1.")
