"""The widget's WebSocket protocol and files, with FastAPI's TestClient on the small fixture bot."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect


@pytest.fixture(scope="module")
def client(minibot: Path, minibot_agent, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    from bot.agent import Agent
    from bot.config import load_config
    from bot.web.app import create_app
    from bot.web.widget import widget_router

    data = tmp_path_factory.mktemp("widget-ws")
    config = load_config(minibot / "config.yml", environ={"DATABASE_URL": f"sqlite:///{data / 'bot.db'}"})
    app = create_app(config, Agent(minibot_agent.model, config))
    if not any(getattr(route, "path", None) == "/widget.js" for route in app.routes):
        app.include_router(widget_router())
    return TestClient(app)


def chat_url(sender: str | None = None) -> str:
    return f"/ws/chat?sender={sender or uuid.uuid4()}&channel=web"


def test_files_are_served_with_their_types(client: TestClient) -> None:
    for path, kind in (("/", "text/html"), ("/widget.js", "text/javascript"), ("/widget.css", "text/css")):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind), path
    assert "示例银行" in client.get("/").text and 'src="/widget.js"' in client.get("/").text


def test_a_message_gets_typing_replies_and_ack_then_history(client: TestClient) -> None:
    sender = str(uuid.uuid4())
    with client.websocket_connect(chat_url(sender)) as ws:
        ws.send_json({"type": "history"})
        assert ws.receive_json() == {"type": "history", "messages": []}
        ws.send_json({"type": "message", "text": "你好", "message_id": "m-1"})
        assert ws.receive_json() == {"type": "typing"}
        bot = ws.receive_json()
        assert bot["type"] == "bot" and bot["text"] and bot["reply_to"] == "m-1" and bot["duplicate"] is False
        assert {"buttons", "timestamp"} <= bot.keys()
        assert ws.receive_json() == {"type": "ack", "message_id": "m-1", "duplicate": False}

    with client.websocket_connect(chat_url(sender)) as ws:  # a reload: same visitor, new socket
        ws.send_json({"type": "history"})
        history = ws.receive_json()["messages"]
        assert [(m["role"], m["text"]) for m in history] == [("user", "你好"), ("bot", bot["text"])]
        assert history[0]["message_id"] == "m-1"


def test_a_resent_message_id_gets_the_original_replies(client: TestClient) -> None:
    with client.websocket_connect(chat_url()) as ws:
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
    with client.websocket_connect(chat_url()) as ws:
        ws.send_text(frame)
        error = ws.receive_json()
        assert error["type"] == "error" and expected in error["message"]
        ws.send_json({"type": "history"})
        assert ws.receive_json()["type"] == "history"


@pytest.mark.parametrize("query", ["sender=&channel=web", "sender=short&channel=web",
                                   f"sender={uuid.uuid4()}&channel=wechat"])
def test_a_bad_visitor_id_or_channel_is_refused(client: TestClient, query: str) -> None:
    with client.websocket_connect(f"/ws/chat?{query}") as ws:
        assert ws.receive_json() == {"type": "error", "message": "访客标识无效，请刷新页面后重试。"}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
