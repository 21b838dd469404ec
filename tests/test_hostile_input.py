"""Hostile input is refused at the edge and never stored (issue 9, item 5): invalid Unicode, huge or deeply
nested bodies and WebSocket frames get a 4xx or a close code, never a 500, and nothing of them is kept."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.websockets import WebSocketDisconnect

from bot.channels.app import AppCustomer, sign_token
from bot.channels.chat_socket import BUSY
from bot.config import AppChannelConfig, ChannelsConfig, WeChatChannelConfig
from bot.storage import Database
from bot.storage.models import Conversation, Event, InboundMessage
from bot.web.app import create_app
from tests.chat_support import app_socket, widget_socket

SECRET = "test-secret-of-the-banks-app-backend-0123456789"
CUSTOMER = AppCustomer(customer_id="C0042", name="李娜")
SURROGATE = "\\ud800"  # as the client writes it in JSON: decodes to a string no database or frame can hold
NESTED = "[" * 50_000 + "]" * 50_000


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return Database(f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'bot.db'}")


@pytest.fixture(scope="module")
def client(minibot_assistant, database: Database) -> TestClient:
    channels = ChannelsConfig(app=AppChannelConfig(secret=SECRET))
    config = minibot_assistant.config.model_copy(update={"channels": channels})
    return TestClient(create_app(config, assistant=minibot_assistant, database=database))


def stored_rows(database: Database) -> int:
    with database.session() as session:
        return sum(int(session.scalar(select(func.count()).select_from(t)) or 0)
                   for t in (Event, InboundMessage, Conversation))


@pytest.fixture
def nothing_stored(database: Database) -> Iterator[None]:
    before = stored_rows(database)
    yield
    assert stored_rows(database) == before, "a refused request or frame left rows behind"


def app_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {sign_token(CUSTOMER, SECRET)}", "Content-Type": "application/json"}


# (path, raw JSON body, headers): a lone surrogate in every field the issue names
SURROGATES = [
    ("/webhooks/rest/webhook", f'{{"sender": "s-1", "message": "你好{SURROGATE}"}}', {}),
    ("/webhooks/rest/webhook", f'{{"sender": "{SURROGATE}", "message": "你好"}}', {}),
    ("/webhooks/rest/webhook", f'{{"sender": "s-1", "message": "你好", "metadata": {{"k": "{SURROGATE}"}}}}', {}),
    ("/webhooks/rest/webhook", f'{{"sender": "s-1", "message": "你好", "metadata": {{"{SURROGATE}": 1}}}}', {}),
    ("/model/parse", f'{{"text": "{SURROGATE}"}}', {}),
    ("/channels/app/messages", f'{{"message": "你好{SURROGATE}"}}', "app"),
    ("/api/agent/login", f'{{"username": "{SURROGATE}", "password": "secret-password"}}', {}),
]


@pytest.mark.parametrize(("path", "body", "headers"), SURROGATES)
def test_a_lone_surrogate_anywhere_is_refused_with_400(client: TestClient, nothing_stored: None, path: str,
                                                       body: str, headers: Any) -> None:
    headers = app_headers() if headers == "app" else {"Content-Type": "application/json"}
    response = client.post(path, content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    assert "surrogate" in response.json()["detail"]


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_rasa_paths_are_guarded_whatever_the_content_type(client: TestClient, nothing_stored: None,
                                                          content_type: str | None) -> None:
    """Rasa reads these bodies as JSON whatever the type (`curl -d`), so the guard does too."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = f'{{"sender": "s-2", "message": "{SURROGATE}"}}'.encode()
    assert client.post("/webhooks/rest/webhook", content=body, headers=headers).status_code == 400


def test_invalid_utf8_is_refused(client: TestClient, nothing_stored: None) -> None:
    body = b'{"sender": "s-3", "message": "\xff\xfe\xc3"}'
    response = client.post("/webhooks/rest/webhook", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "UTF-8" in response.json()["detail"]


def test_deep_nesting_is_refused_not_a_recursion_error(client: TestClient, nothing_stored: None) -> None:
    body = f'{{"sender": "s-4", "message": "你好", "metadata": {{"k": {"[" * 5000 + "]" * 5000}}}}}'
    response = client.post("/webhooks/rest/webhook", content=body.encode(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "nested" in response.json()["detail"]


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"sender": "s-5", "message": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


def test_a_20_mb_body_gets_413_with_a_reason(client: TestClient, nothing_stored: None) -> None:
    declared = client.post("/webhooks/rest/webhook", content=b"".join(chunks(20 * 1024 * 1024)),
                           headers={"Content-Type": "application/json"})
    streamed = client.post("/webhooks/rest/webhook", content=chunks(20 * 1024 * 1024),
                           headers={"Content-Type": "application/json"})  # chunked: no Content-Length
    assert "content-length" not in streamed.request.headers
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "at most 65536 bytes" in response.json()["detail"]


def test_the_body_limit_holds_for_every_route(client: TestClient) -> None:
    assert client.post("/channels/wechat", content=b"<xml>" + b"x" * 100_000 + b"</xml>").status_code == 413
    assert client.post("/api/agent/login", content=chunks(1024 * 1024)).status_code == 413


def test_a_channel_with_its_own_body_limit_keeps_it(minibot_assistant, database: Database) -> None:
    channels = ChannelsConfig(wechat=WeChatChannelConfig(max_body_bytes=256 * 1024))
    wechat = TestClient(create_app(minibot_assistant.config.model_copy(update={"channels": channels}),
                                   assistant=minibot_assistant, database=database))
    assert wechat.post("/channels/wechat", content=b"x" * 100_000).status_code == 404  # the route decides
    assert wechat.post("/channels/wechat", content=b"x" * 300_000).status_code == 413
    assert wechat.post("/webhooks/rest/webhook", content=b"x" * 100_000).status_code == 413


def rest(client: TestClient, metadata: Any, raw: str | None = None):
    body = raw or json.dumps({"sender": "s-6", "message": "你好", "metadata": metadata}, ensure_ascii=False)
    return client.post("/webhooks/rest/webhook", content=body.encode(), headers={"Content-Type": "application/json"})


def test_metadata_size_and_depth_are_limited(client: TestClient, nothing_stored: None) -> None:
    assert rest(client, {"page": "x" * (1024 * 1024)}).status_code == 413  # a 1 MB value
    too_big = rest(client, {"page": "x" * 5000})
    assert too_big.status_code == 422 and "at most 4096" in too_big.text
    too_deep = rest(client, {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}})
    assert too_deep.status_code == 422 and "nested deeper than 5" in too_deep.text


@pytest.mark.parametrize("body", [
    '{"sender": "s-7", "message": "你好", "metadata": {"x": NaN}}',
    '{"sender": NaN, "message": "你好"}',  # FastAPI's 422 echoes its input: NaN made that a 500
    '{"sender": "s-7", "message": "你好", "metadata": {"x": [1e999]}}',
    '{"sender": "s-7", "message": -Infinity}',
])
def test_numbers_json_does_not_have_are_refused(client: TestClient, nothing_stored: None, body: str) -> None:
    response = rest(client, None, body)
    assert response.status_code == 400 and "finite" in response.json()["detail"]


def test_modest_metadata_is_still_accepted(client: TestClient) -> None:
    response = rest(client, {"page": "/cards", "campaign": {"id": "spring", "tags": ["a", "b"]}})
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- WebSocket frames

SocketOpener = Callable[[TestClient], AbstractContextManager[Any]]


def open_app(client: TestClient) -> AbstractContextManager[Any]:
    return app_socket(client, sign_token(CUSTOMER, SECRET))


class _Widget:
    def __init__(self, client: TestClient) -> None:
        self.inner = widget_socket(client)

    def __enter__(self) -> Any:
        return self.inner.__enter__()[0]

    def __exit__(self, *exc: object) -> Any:
        return self.inner.__exit__(*exc)


SOCKETS = [pytest.param(open_app, id="app"), pytest.param(_Widget, id="widget")]
HOSTILE_FRAMES = [
    pytest.param(NESTED, 1009, id="50000-nested-arrays"),
    pytest.param('{"type": "message", "text": "hi", "x": ' + "[" * 5000 + "]" * 5000 + "}", 1009, id="deep"),
    pytest.param(json.dumps({"type": "message", "text": "好" * 20_000}), 1009, id="too-large"),
    pytest.param(f'{{"type": "message", "text": "你好{SURROGATE}", "message_id": "m-1"}}', 1007, id="surrogate"),
    pytest.param(f'{{"type": "message", "text": "你好", "title": "{SURROGATE}"}}', 1007, id="surrogate-title"),
    pytest.param(f'{{"type": "message", "{SURROGATE}": 1, "text": "你好"}}', 1007, id="surrogate-key"),
    pytest.param(b'{"type": "message", "text": "\xff\xfe"}', 1007, id="invalid-utf8-bytes"),
]


@pytest.mark.parametrize("opener", SOCKETS)
@pytest.mark.parametrize(("frame", "code"), HOSTILE_FRAMES)
def test_a_hostile_frame_closes_the_socket_with_its_code(client: TestClient, nothing_stored: None,
                                                         opener: SocketOpener, frame: str | bytes,
                                                         code: int) -> None:
    with opener(client) as socket:
        if isinstance(frame, bytes):
            socket.send_bytes(frame)
        else:
            socket.send_text(frame)
        error = socket.receive_json()  # the customer is told why, in Chinese
        assert error["type"] == "error" and not any(c.isascii() and c.isalpha() for c in error["message"])
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == code


@pytest.mark.parametrize("opener", SOCKETS)
def test_a_malformed_frame_gets_a_fixed_message_and_the_socket_stays_open(client: TestClient,
                                                                         opener: SocketOpener) -> None:
    with opener(client) as socket:
        for frame in ("{not json", "[1, 2]", '"text"', ""):
            socket.send_text(frame)
            assert socket.receive_json() == {"type": "error", "message": "消息格式有误，请刷新页面后重试。"}
        socket.send_json({"type": "history"})
        assert socket.receive_json()["type"] == "history"


PYTHON_ERRORS = [ValueError("invalid literal for int() with base 10: 'abc'"), KeyError("customer_id"),
                 UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")]


@pytest.mark.parametrize("opener", SOCKETS)
@pytest.mark.parametrize("failure", PYTHON_ERRORS, ids=lambda e: type(e).__name__)
def test_a_customer_never_sees_exception_text(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                              opener: SocketOpener, failure: Exception) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise failure

    monkeypatch.setattr(client.app.state.conversations, "handle", broken)
    with opener(client) as socket:
        socket.send_json({"type": "message", "text": "你好", "message_id": "m-err"})
        frames = [socket.receive_json(), socket.receive_json()]
    assert frames[0] == {"type": "typing"}
    assert frames[1] == {"type": "error", "message": BUSY, "message_id": "m-err"}


def test_the_service_own_refusals_are_still_shown(client: TestClient) -> None:
    with open_app(client) as socket:
        socket.send_json({"type": "message", "text": "   ", "message_id": "m-empty"})
        error = socket.receive_json()
    assert error["type"] == "error" and "消息是空的" in error["message"]


def test_a_frame_under_the_limit_is_answered(client: TestClient) -> None:
    with open_app(client) as socket:
        socket.send_text(json.dumps({"type": "message", "text": "好" * 1990, "message_id": "m-long"},
                                    ensure_ascii=False))  # ~6 kB of UTF-8: under the 16 kB frame limit
        frames = [socket.receive_json()]
        while frames[-1]["type"] not in ("ack", "error"):
            frames.append(socket.receive_json())
    assert frames[0] == {"type": "typing"} and frames[-1]["type"] == "ack"
