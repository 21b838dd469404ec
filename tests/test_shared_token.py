"""The WeChat and WeCom access token shared by every worker through the real Redis at 127.0.0.1:6379 (database 11,
keys removed afterwards), against the local stand-ins of api.weixin.qq.com and qyapi.weixin.qq.com, which count
the tokens they issue and accept only the newest: clients made separately stand for workers."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import test_wecom
from json_stand_in import serving
from test_wechat_api import StandIn, handler_for

from bot.channels.wechat_api import REDIS_OUTAGE_SECONDS, WeChatClient
from bot.channels.wecom import wecom_client
from bot.config import ChannelsConfig, WeComChannelConfig
from bot.storage import Database
from bot.web.app import create_app
from tests.redis_support import delete_keys

REDIS_URL = "redis://127.0.0.1:6379/11"  # this file's database number: other tests use theirs


@pytest.fixture(autouse=True)
def no_tokens_left() -> Iterator[None]:
    yield
    delete_keys(REDIS_URL, "bankbot:token:11:*")


@pytest.fixture
def wechat_api() -> Iterator[tuple[str, StandIn]]:
    state = StandIn()
    with serving(handler_for(state)) as url:
        yield url, state


def workers(url: str, count: int = 2, redis_url: str | None = REDIS_URL) -> list[WeChatClient]:
    """Clients of one official account (an app id of this test's own), as `count` workers would make them."""
    app_id = f"wx{uuid.uuid4().hex[:16]}"
    return [WeChatClient(app_id, "s3cret", url, backoff=0.01, redis_url=redis_url) for _ in range(count)]


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """The calls run in threads started together; their results in order."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_two_workers_share_one_token_kept_in_redis_until_shortly_before_it_expires(wechat_api) -> None:
    url, state = wechat_api
    first, second = workers(url)
    tokens = at_once([first.access_token, second.access_token] * 3)
    assert state.token_fetches == 1 and set(tokens) == {"TOKEN1"}
    first.send_text("o_customer", "您好")
    second.send_text("o_customer", "再见")
    assert state.token_fetches == 1 and [m["text"]["content"] for m in state.sent] == ["您好", "再见"]
    shared = first._shared_tokens()
    assert shared is not None and shared.key.startswith("bankbot:token:11:wechat:") and "s3cret" not in shared.key
    ttl = redis.Redis.from_url(REDIS_URL).pttl(shared.key) / 1000
    assert 7200 - 300 - 10 < ttl <= 7200 - 300


def test_a_refused_token_is_refreshed_once_however_many_workers_saw_it_fail(wechat_api) -> None:
    url, state = wechat_api
    first, second, third = workers(url, 3)
    assert first.access_token() == "TOKEN1"
    state.current_token = "ROTATED-ELSEWHERE"  # the token in Redis is stale: the API refuses it (40001)
    at_once([lambda: first.send_text("o_a", "一"), lambda: second.send_text("o_b", "二"),
             lambda: third.send_text("o_c", "三")])
    assert state.token_fetches == 2 and sorted(m["text"]["content"] for m in state.sent) == ["一", "三", "二"]
    # compare-and-refresh: a worker reporting the old token as failed gets the new one, nothing is fetched
    assert third.access_token(failed="TOKEN1") == "TOKEN2" and state.token_fetches == 2
    assert third.access_token(failed="TOKEN2") == "TOKEN3" and first.access_token() == "TOKEN3"


def test_a_worker_waits_for_the_refresh_another_holds(wechat_api) -> None:
    url, state = wechat_api
    first, second = workers(url)
    shared = first._shared_tokens()
    assert shared is not None
    held = redis.Redis.from_url(REDIS_URL)
    held.set(shared.lock_key, "another-worker", px=60_000)
    threading.Timer(0.5, lambda: (held.set(shared.key, "FROM-THE-OTHER"), held.delete(shared.lock_key))).start()
    assert second.access_token() == "FROM-THE-OTHER" and state.token_fetches == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_without_reachable_redis_each_worker_keeps_its_own_token_and_messages_still_go(
        wechat_api, caplog: pytest.LogCaptureFixture) -> None:
    url, state = wechat_api
    (client,) = workers(url, 1, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.WARNING, logger="bot.channels.wechat_api"):
        client.send_text("o_customer", "您好")
        client.send_text("o_customer", "在吗")
    assert [m["text"]["content"] for m in state.sent] == ["您好", "在吗"] and state.token_fetches == 1
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)


@contextlib.contextmanager
def private_redis(directory: Path, port: int) -> Iterator[subprocess.Popen]:
    """A Redis server of this test's own (so that it can be stopped), without persistence."""
    process = subprocess.Popen(["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(directory)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=port).ping():
                    break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_when_redis_goes_away_messages_still_go_and_sharing_resumes_when_it_is_back(wechat_api, tmp_path) -> None:
    url, state = wechat_api
    port = free_port()
    first, second = workers(url, redis_url=f"redis://127.0.0.1:{port}/0")
    with private_redis(tmp_path, port):
        first.send_text("o_customer", "一")
        second.send_text("o_customer", "二")
        assert state.token_fetches == 1
    second.send_text("o_customer", "三")  # Redis is away: this worker fetches a token of its own
    assert [m["text"]["content"] for m in state.sent] == ["一", "二", "三"] and state.token_fetches == 2
    with private_redis(tmp_path, port):
        time.sleep(REDIS_OUTAGE_SECONDS)  # Redis is asked again after the outage pause
        first.send_text("o_customer", "四")
        second.send_text("o_customer", "五")
        assert state.token_fetches == 3 and first.access_token() == second.access_token() == "TOKEN3"
    assert [m["text"]["content"] for m in state.sent] == ["一", "二", "三", "四", "五"]


def test_without_redis_configured_the_token_stays_in_the_process(wechat_api) -> None:
    url, state = wechat_api
    first, second = workers(url, redis_url=None)
    assert first.access_token() == "TOKEN1" and first.access_token() == "TOKEN1"
    assert second.access_token() == "TOKEN2" and state.token_fetches == 2


def test_wecom_workers_configured_with_redis_share_the_token(bundled_assistant, tmp_path) -> None:
    state = test_wecom.WeCom()
    with serving(test_wecom.handler_for(state)) as url:
        channel = WeComChannelConfig(token=test_wecom.TOKEN, corp_id=test_wecom.CORP_ID, secret=test_wecom.SECRET,
                                     encoding_aes_key=test_wecom.AES_KEY, api_base=url)
        config = bundled_assistant.config
        config = config.model_copy(update={"channels": ChannelsConfig(wecom=channel),
                                           "security": config.security.model_copy(update={"redis_url": REDIS_URL})})
        apps = [create_app(config, assistant=bundled_assistant, database=Database(f"sqlite:///{tmp_path / name}"))
                for name in ("one.db", "two.db")]
        first, second = (wecom_client(app) for app in apps)
        at_once([lambda: first.transfer(test_wecom.KFID, "wm1", 1), lambda: second.transfer(test_wecom.KFID, "wm2", 1)])
        assert state.token_fetches == 1 and len(state.transfers) == 2
        state.current_token = "ROTATED"  # both workers' calls are refused with 42001: one refresh
        at_once([lambda: first.transfer(test_wecom.KFID, "wm1", 1), lambda: second.transfer(test_wecom.KFID, "wm2", 1)])
        assert state.token_fetches == 2 and len(state.transfers) == 4
