"""Structured JSON logs (`server.log_format: json`) on the real app: one JSON object a line, the request id from
X-Request-ID (or a new one) in the logs and the response, the conversation id of a turn, personal data masked."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.config import BotConfig
from bot.ops.logs import JsonFormatter, sane_request_id
from bot.storage import Database
from bot.web.app import create_app

API_TOKEN = "api-token-for-json-log-tests-1"
PHONE, OTHER_PHONE, CARD = "13812345678", "13998765432", "6222021234567890128"  # the card passes Luhn


def json_config(config: BotConfig, log_format: str = "json") -> BotConfig:
    return config.model_copy(update={
        "server": config.server.model_copy(update={"log_format": log_format}),
        "security": config.security.model_copy(update={"api_token": API_TOKEN})})


def json_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The root logger's handlers and level, and uvicorn's loggers, as they were before the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}
    yield
    root.handlers[:], root.level = handlers, level
    for name, (kept, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = kept
        logging.getLogger(name).propagate = propagate


@pytest.fixture
def logged(minibot_assistant, tmp_path: Path, restored_logging: None) -> Iterator[tuple[TestClient, io.StringIO]]:
    """A JSON-logging app and what it writes."""
    database = Database(f"sqlite:///{tmp_path / 'logs.db'}")
    app = create_app(json_config(minibot_assistant.config), assistant=minibot_assistant, database=database)
    [handler] = json_handlers()
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield TestClient(app), buffer
    database.dispose()


def records(buffer: io.StringIO) -> list[dict]:
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_a_turn_logs_json_with_the_request_and_the_conversation_id(logged) -> None:
    client, buffer = logged
    sender, request_id = f"log-{uuid.uuid4().hex[:8]}", f"req-{uuid.uuid4().hex}"
    response = client.post("/webhooks/rest/webhook", json={"sender": sender, "message": "你好"},
                           headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id
    conversation = client.get(f"/conversations/{sender}/tracker",
                              headers={"Authorization": f"Bearer {API_TOKEN}"}).json()["conversation_id"]
    turns = [r for r in records(buffer) if r["message"] == "turn finished"]
    assert len(turns) == 1
    [turn] = turns
    assert turn["request_id"] == request_id and turn["conversation_id"] == conversation
    assert turn["level"] == "INFO" and turn["logger"] == "bot.turns" and turn["outcome"] == "answered"
    assert turn["channel"] == "rest" and turn["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", turn["time"])


def test_every_request_gets_an_id_and_a_strange_one_is_replaced(logged) -> None:
    client, _ = logged
    generated = client.get("/health").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/health").headers["X-Request-ID"] != generated
    for strange in ("short", "has space in it", "<script>alert(1)</script>", "x" * 200, "漢字漢字漢字漢字漢字",
                    f"customer-{PHONE}"):
        returned = client.get("/health", headers={"X-Request-ID": strange.encode()})
        assert returned.headers["X-Request-ID"] != strange
        assert re.fullmatch(r"[0-9a-f]{32}", returned.headers["X-Request-ID"])
    assert sane_request_id("nginx-7f3a9c01d2e4") == "nginx-7f3a9c01d2e4"


def test_a_phone_number_never_appears_in_clear(logged) -> None:
    client, buffer = logged
    request_id = f"req-{uuid.uuid4().hex}"
    said = f"我的手机是{PHONE}，卡号{CARD}丢了"
    assert client.post("/webhooks/rest/webhook", json={"sender": f"p-{uuid.uuid4().hex[:6]}", "message": said},
                       headers={"X-Request-ID": request_id}).status_code == 200
    log = logging.getLogger("bot.test_json_logs")
    try:
        raise ValueError(f"customer said {said}")
    except ValueError:
        log.exception("客户 %s 的消息：%s", OTHER_PHONE, said, extra={"said": said, "phones": [PHONE, OTHER_PHONE]})
    text = buffer.getvalue()
    for secret in (PHONE, OTHER_PHONE, CARD):
        assert secret not in text
    [line] = [r for r in records(buffer) if r["logger"] == "bot.test_json_logs"]
    assert "139****5432" in line["message"] and "138****5678" in line["message"]
    assert line["said"] == "我的手机是138****5678，卡号***************0128丢了"
    assert line["phones"] == ["138****5678", "139****5432"]
    assert "ValueError" in line["exception"] and "138****5678" in line["exception"]


def test_text_logs_stay_the_default(minibot_assistant, tmp_path: Path, restored_logging: None) -> None:
    for handler in json_handlers():
        logging.getLogger().removeHandler(handler)
    database = Database(f"sqlite:///{tmp_path / 'text.db'}")
    assert minibot_assistant.config.server.log_format == "text"
    create_app(json_config(minibot_assistant.config, "text"), assistant=minibot_assistant, database=database)
    assert json_handlers() == []
    create_app(json_config(minibot_assistant.config), assistant=minibot_assistant, database=database)
    create_app(json_config(minibot_assistant.config), assistant=minibot_assistant, database=database)
    assert len(json_handlers()) == 1  # a second app replaces the handler, lines are not written twice
    database.dispose()
