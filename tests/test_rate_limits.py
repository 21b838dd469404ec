"""Floods are refused with 429 and Retry-After: per sender and per IP on the public channel endpoints, in
memory for one process and in Redis (127.0.0.1:6379) shared by several workers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.config import BotConfig, RateLimitConfig
from bot.security.limits import MemoryLimiter, RedisLimiter
from bot.storage import Database
from bot.web.app import create_app
from tests.chat_support import widget_socket

REDIS_URL = "redis://127.0.0.1:6379/0"


def limited(config: BotConfig, per_sender: int, per_ip: int, redis_url: str | None = None) -> BotConfig:
    security = config.security.model_copy(update={
        "rate_limits": RateLimitConfig(per_sender=per_sender, per_ip=per_ip, window_seconds=60),
        "redis_url": redis_url})
    return config.model_copy(update={"security": security})


def app_for(minibot_assistant, tmp_path: Path, **limits) -> TestClient:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    config = limited(minibot_assistant.config, **limits)
    return TestClient(create_app(config, assistant=minibot_assistant, database=database))


def send(client: TestClient, sender: str) -> int:
    return client.post("/webhooks/rest/webhook", json={"sender": sender, "message": "你好"}).status_code


def test_one_sender_is_limited_and_told_when_to_come_back(minibot_assistant, tmp_path: Path) -> None:
    client = app_for(minibot_assistant, tmp_path, per_sender=3, per_ip=100)
    assert [send(client, "flooder") for _ in range(3)] == [200, 200, 200]
    refused = client.post("/webhooks/rest/webhook", json={"sender": "flooder", "message": "你好"})
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert "稍等" in refused.json()["detail"]
    assert send(client, "someone-else") == 200  # others are not affected


def test_one_address_is_limited_whatever_sender_it_names(minibot_assistant, tmp_path: Path) -> None:
    client = app_for(minibot_assistant, tmp_path, per_sender=100, per_ip=4)
    assert [send(client, f"sender-{i}") for i in range(5)] == [200, 200, 200, 200, 429]
    parse = [client.post("/model/parse", json={"text": "你好"}).status_code for _ in range(5)]
    assert parse[-1] == 429


def test_a_widget_visitor_who_floods_gets_an_error_frame_not_a_reply(minibot_assistant, tmp_path: Path) -> None:
    client = app_for(minibot_assistant, tmp_path, per_sender=2, per_ip=100)
    with widget_socket(client) as (socket, _):
        kinds = []
        for n in range(3):
            socket.send_json({"type": "message", "text": "你好", "message_id": f"flood-{n}"})
            while (frame := socket.receive_json())["type"] not in ("ack", "error"):
                pass
            kinds.append(frame["type"])
            if frame["type"] == "error":
                assert "稍等" in frame["message"]
        assert kinds == ["ack", "ack", "error"]


def test_workers_sharing_redis_share_the_counts(minibot_assistant, tmp_path: Path) -> None:
    first = app_for(minibot_assistant, tmp_path / "a", per_sender=3, per_ip=100, redis_url=REDIS_URL)
    second = app_for(minibot_assistant, tmp_path / "b", per_sender=3, per_ip=100, redis_url=REDIS_URL)
    sender = f"shared-{uuid.uuid4().hex}"
    assert [send(first, sender), send(second, sender), send(first, sender)] == [200, 200, 200]
    assert send(second, sender) == 429


@pytest.mark.parametrize("limiter", [MemoryLimiter, lambda: RedisLimiter(REDIS_URL)])
def test_the_window_slides(limiter) -> None:
    counts = limiter()
    key = f"slide-{uuid.uuid4().hex}"
    assert [counts.hit(key, 2, 0.3) for _ in range(3)][:2] == [0, 0]
    assert counts.retry_after(key, 2, 0.3) > 0
    time.sleep(0.35)
    assert counts.retry_after(key, 2, 0.3) == 0
    counts.clear(key)


def test_workers_racing_on_one_key_never_pass_more_than_the_limit() -> None:
    """Eight workers' limiters hit one key at once, 40 times in all: exactly the limit get through."""
    from concurrent.futures import ThreadPoolExecutor

    workers = [RedisLimiter(REDIS_URL) for _ in range(8)]
    key = f"race-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda i: workers[i % 8].hit(key, 10, 60), range(40)))
    assert sum(1 for wait in waits if wait == 0) == 10
    assert all(0 < wait <= 60 for wait in waits if wait)
    workers[0].clear(key)


def test_with_redis_away_each_worker_still_limits_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """A Redis nobody listens on: the counts fall back to this worker's memory, with a warning, never an error."""
    away = RedisLimiter("redis://127.0.0.1:1/0")
    with caplog.at_level("WARNING", logger="bot.security.limits"):
        waits = [away.hit("sender:rest:x", 3, 60) for _ in range(5)]
    assert waits[:3] == [0, 0, 0] and all(wait > 0 for wait in waits[3:])
    assert away.retry_after("sender:rest:x", 3, 60) > 0
    assert "Redis unreachable" in caplog.text
