"""/metrics on the real app: the counts of a few known messages, who may scrape, and several worker processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bot.config import BotConfig, RateLimitConfig
from bot.ops.metrics import OUTCOMES
from bot.storage import Database
from bot.web.app import create_app
from tests.postgres_support import fresh_postgres_url

METRICS_TOKEN = "metrics-token-for-tests-0001"
API_TOKEN = "api-token-for-metrics-tests-01"
NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday: the group is at work
PER_SENDER = 3
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition text by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


@contextmanager
def database_at(kind: str, tmp_path: Path) -> Iterator[Database]:
    if kind == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'metrics.db'}")
        yield database
        database.dispose()
        return
    with fresh_postgres_url("bankbot_metrics") as url:
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()


def metrics_config(config: BotConfig, metrics_token: str | None = METRICS_TOKEN,
                   api_token: str | None = API_TOKEN) -> BotConfig:
    security = config.security.model_copy(update={
        "metrics_token": metrics_token, "api_token": api_token,
        "rate_limits": RateLimitConfig(per_sender=PER_SENDER, per_ip=1000, window_seconds=60)})
    return config.model_copy(update={"security": security})


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, minibot_assistant, tmp_path: Path) -> Iterator[TestClient]:
    with database_at(request.param, tmp_path) as database:
        app = create_app(metrics_config(minibot_assistant.config), assistant=minibot_assistant, database=database)
        app.state.desk.clock = lambda: NOON
        with TestClient(app) as test_client:
            yield test_client


def send(client: TestClient, sender: str, text: str, message_id: str | None = None) -> int:
    body = {"sender": sender, "message": text, **({"message_id": message_id} if message_id else {})}
    return client.post("/webhooks/rest/webhook", json=body).status_code


def test_messages_are_counted_by_outcome_and_timed(client: TestClient, minibot_assistant) -> None:
    before = scrape(client)
    run = uuid.uuid4().hex[:8]
    assert send(client, f"answer-{run}", "你好", message_id=f"m-{run}") == 200  # answered
    assert send(client, f"answer-{run}", "你好", message_id=f"m-{run}") == 200  # the same message again: duplicate
    assert send(client, f"fallback-{run}", "今天天气怎么样") == 200  # not understood: utter_default
    assert send(client, f"clarify-{run}", "帮我订一张去上海的机票") == 200  # "您是不是想问" with options
    assert send(client, f"handover-{run}", "转人工") == 200  # a person asked for: queued (the group works)
    assert send(client, f"handover-{run}", "还要等多久") == 200  # while queued: told the place, with_people
    for _ in range(PER_SENDER):
        assert send(client, f"busy-{run}", "我要挂失") == 200  # answered three times
    assert send(client, f"busy-{run}", "我要挂失") == 429  # over the sender's rate: rejected
    after = scrape(client)

    expected = {"answered": 1 + PER_SENDER, "duplicate": 1, "fallback": 1, "clarified": 1, "handed_over": 1,
                "with_people": 1, "rejected": 1}
    for outcome in OUTCOMES:
        grown = value(after, "bot_messages_total", channel="rest", outcome=outcome) - \
            value(before, "bot_messages_total", channel="rest", outcome=outcome)
        assert grown == expected.get(outcome, 0), outcome
    timed = value(after, "bot_turn_seconds_count", channel="rest") - value(before, "bot_turn_seconds_count",
                                                                            channel="rest")
    assert timed == sum(expected.values()) - expected["rejected"]  # a refusal is no answer's latency
    within_5s = value(after, "bot_turn_seconds_bucket", channel="rest", le="5.0") - \
        value(before, "bot_turn_seconds_bucket", channel="rest", le="5.0")
    assert within_5s == timed
    assert value(after, "bot_handovers_total", reason="request") - value(before, "bot_handovers_total",
                                                                         reason="request") == 1
    assert value(after, "bot_model_info", version=minibot_assistant.version) == 1


def test_the_queue_and_the_active_conversations_come_from_the_database(client: TestClient) -> None:
    run = uuid.uuid4().hex[:8]
    empty = scrape(client)
    assert value(empty, "bot_queue_length", group="综合服务") == 0
    assert value(empty, "bot_active_conversations", status="queued") == 0
    send(client, f"a-{run}", "你好")
    send(client, f"b-{run}", "转人工")
    send(client, f"c-{run}", "我要人工客服")
    found = scrape(client)
    assert value(found, "bot_queue_length", group="综合服务") == 2
    assert 0 <= value(found, "bot_queue_longest_wait_seconds", group="综合服务") < 60
    assert value(found, "bot_active_conversations", status="queued") == 2
    assert value(found, "bot_active_conversations", status="bot") == 1


def test_nlu_latency_counts_each_parse(client: TestClient) -> None:
    before = scrape(client)
    assert client.post("/model/parse", json={"text": "我要挂失"}).status_code == 200
    after = scrape(client)
    assert value(after, "bot_nlu_seconds_count") - value(before, "bot_nlu_seconds_count") == 1
    assert value(after, "bot_nlu_seconds_sum") > value(before, "bot_nlu_seconds_sum")


def test_metrics_carry_no_personal_data(client: TestClient) -> None:
    sender = f"13812345678-{uuid.uuid4().hex[:6]}"
    send(client, sender, "我的手机是13912345678，卡号6222021234567890128丢了")
    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    for secret in (sender, "13812345678", "13912345678", "6222021234567890128", "手机"):
        assert secret not in text


def test_only_the_metrics_or_api_token_may_scrape(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-000000000000"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200


def test_metrics_are_closed_without_a_configured_token(minibot_assistant, tmp_path: Path) -> None:
    config = metrics_config(minibot_assistant.config, metrics_token=None, api_token=None)
    app = create_app(config, assistant=minibot_assistant, database=Database(f"sqlite:///{tmp_path / 'closed.db'}"))
    refused = TestClient(app).get("/metrics", headers={"Authorization": "Bearer anything-at-all-0000000"})
    assert refused.status_code == 401
    assert "BOT__SECURITY__METRICS_TOKEN" in refused.json()["detail"]


# --- several worker processes: `bot run --workers 2` ------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(base: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "bot run exited"
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("bot run did not start")


def test_two_workers_report_the_sum_of_their_counts(minibot: Path, minibot_assistant, postgres_url: str,
                                                    tmp_path: Path) -> None:
    port, multiproc = free_port(), tmp_path / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_stale.db").write_bytes(b"left over by an earlier run")  # must be wiped at start
    env = {**os.environ, "BOT__SECURITY__METRICS_TOKEN": METRICS_TOKEN, "DATABASE_URL": postgres_url,
           "BOT__STORAGE__URL": postgres_url, "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
           "BOT__SERVER__LOG_FORMAT": "json"}
    env.pop("BOT__SECURITY__API_TOKEN", None)
    bot = Path(sys.executable).parent / "bot"
    server = subprocess.Popen([str(bot), "run", "-c", str(minibot / "config.yml"), "--port", str(port),
                               "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, server)
        messages = 12
        for n in range(messages):  # a new connection each time: the kernel spreads them over both workers
            reply = httpx.post(f"{base}/webhooks/rest/webhook", json={"sender": f"w{n}", "message": "你好"},
                               headers={"Connection": "close", "X-Request-ID": f"multi-worker-{n:04d}"}, timeout=30)
            assert reply.status_code == 200, reply.text
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}", "Connection": "close"}
        for _ in range(6):  # whichever worker answers the scrape, it reports both workers' counts
            found = samples(httpx.get(f"{base}/metrics", headers=headers, timeout=30).text)
            assert value(found, "bot_messages_total", channel="rest", outcome="answered") == messages
            assert value(found, "bot_turn_seconds_count", channel="rest") == messages
        assert not (multiproc / "counter_stale.db").exists()
        assert len(list(multiproc.glob("histogram_*.db"))) == 2  # one file per worker process
        assert httpx.get(f"{base}/metrics", timeout=30).status_code == 401
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    lines = [line for line in stderr.decode().splitlines() if line.startswith("{")]
    assert lines, stderr.decode()[-2000:]
    records = [json.loads(line) for line in lines]
    turns = [r for r in records if r["message"] == "turn finished"]
    assert {r["request_id"] for r in turns} == {f"multi-worker-{n:04d}" for n in range(messages)}
    assert all(r["conversation_id"] and r["outcome"] == "answered" for r in turns)
