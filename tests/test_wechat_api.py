"""The WeChat API client and late delivery, against a local stand-in that speaks WeChat's API formats:
token caching under concurrency, refresh on an expired token, retry when busy, the 48-hour window, long texts,
and an answer past the reply budget delivered once by the customer-service API however often WeChat retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest
from fastapi.testclient import TestClient
from json_stand_in import JsonHandler, serving
from sqlalchemy import func, select
from test_wechat import AES_KEY, APP_ID, OPENID, TOKEN, post, text_xml

from bot.channels.wechat_api import OutsideWindow, WeChatClient, split_text
from bot.config import ChannelsConfig, WeChatChannelConfig
from bot.storage import Database
from bot.storage.models import Event
from bot.web.app import create_app


class StandIn:
    """State of the fake api.weixin.qq.com."""

    def __init__(self) -> None:
        self.token_fetches = 0
        self.current_token = ""
        self.sent: list[dict] = []
        self.scripted: list[dict | int] = []  # next responses of message/custom/send: a body or an HTTP status
        self.media: dict[str, Media] = {}  # what media/get serves, by media_id
        self.lock = threading.Lock()


@dataclass(frozen=True)
class Media:
    data: bytes
    content_type: str
    filename: str | None = None


def reply_media(handler: JsonHandler, media: dict[str, Media], media_id: str) -> None:
    """media/get as WeChat and WeCom answer it: the file with its type and name, or a JSON error."""
    found = media.get(media_id)
    if found is None:
        handler.reply({"errcode": 40007, "errmsg": "invalid media_id"})
        return
    handler.send_response(200)
    handler.send_header("Content-Type", found.content_type)
    if found.filename:
        handler.send_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(found.filename)}")
    handler.send_header("Content-Length", str(len(found.data)))
    handler.end_headers()
    handler.wfile.write(found.data)


def handler_for(state: StandIn) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path == "/cgi-bin/media/get":
                if query.get("access_token") != [state.current_token]:
                    self.reply({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
                else:
                    reply_media(self, state.media, query.get("media_id", [""])[0])
                return
            if url.path != "/cgi-bin/token" or query.get("secret") != ["s3cret"]:
                self.reply({"errcode": 40125, "errmsg": "invalid appsecret"})
                return
            time.sleep(0.1)  # long enough for concurrent callers to overlap
            with state.lock:
                state.token_fetches += 1
                state.current_token = f"TOKEN{state.token_fetches}"
            self.reply({"access_token": state.current_token, "expires_in": 7200})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                scripted = state.scripted.pop(0) if state.scripted else None
            if isinstance(scripted, int):
                self.reply({"errmsg": "oops"}, scripted)
                return
            if scripted is not None:
                self.reply(scripted)
                return
            if parse_qs(url.query).get("access_token") != [state.current_token]:
                self.reply({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
                return
            if body["touser"] == "o_silent_for_3_days":
                self.reply({"errcode": 45015, "errmsg": "response out of time limit"})
                return
            with state.lock:
                state.sent.append(body)
            self.reply({"errcode": 0, "errmsg": "ok"})

    return Handler


@pytest.fixture
def wechat_api() -> Iterator[tuple[str, StandIn]]:
    state = StandIn()
    with serving(handler_for(state)) as url:
        yield url, state


def client_for(url: str) -> WeChatClient:
    return WeChatClient(APP_ID, "s3cret", url, backoff=0.01)


def test_concurrent_callers_share_one_token_fetch(wechat_api) -> None:
    url, state = wechat_api
    client = client_for(url)
    tokens = []
    threads = [threading.Thread(target=lambda: tokens.append(client.access_token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state.token_fetches == 1 and set(tokens) == {"TOKEN1"}


def test_an_expired_token_is_refreshed_and_the_call_retried_once(wechat_api) -> None:
    url, state = wechat_api
    client = client_for(url)
    client.access_token()
    state.current_token = "ROTATED-BY-WECHAT"  # e.g. another system fetched a new token
    client.send_text("o_customer", "您好")
    assert state.token_fetches == 2 and state.sent[-1]["text"]["content"] == "您好"


def test_busy_and_server_errors_are_retried(wechat_api) -> None:
    url, state = wechat_api
    client = client_for(url)
    client.access_token()
    state.scripted = [{"errcode": -1, "errmsg": "system busy"}, 502]
    client.send_text("o_customer", "稍等")
    assert [m["text"]["content"] for m in state.sent] == ["稍等"]


def test_outside_the_48_hour_window(wechat_api) -> None:
    url, _ = wechat_api
    with pytest.raises(OutsideWindow):
        client_for(url).send_text("o_silent_for_3_days", "您好")


def test_long_texts_are_split_within_the_byte_limit(wechat_api) -> None:
    url, state = wechat_api
    text = "\n".join(f"第{i}条：" + "挂失说明" * 40 for i in range(20))
    sent = client_for(url).send_text("o_customer", text)
    assert sent == len(state.sent) > 1
    assert all(len(m["text"]["content"].encode()) <= 2000 for m in state.sent)
    assert "".join(m["text"]["content"] for m in state.sent).replace("\n", "") == text.replace("\n", "")
    assert split_text("短") == ["短"]


def test_a_late_answer_goes_by_the_api_once_however_often_wechat_retries(bundled_assistant, tmp_path: Path,
                                                                         wechat_api) -> None:
    url, state = wechat_api
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    wechat = WeChatChannelConfig(token=TOKEN, app_id=APP_ID, app_secret="s3cret", encoding_aes_key=AES_KEY,
                                 mode="plain", reply_budget_seconds=0.001, api_base=url)
    config = bundled_assistant.config.model_copy(update={"channels": ChannelsConfig(wechat=wechat)})
    with TestClient(create_app(config, assistant=bundled_assistant, database=database)) as client:
        responses = [post(client, text_xml("美元汇率多少", 7001))[0] for _ in range(4)]  # WeChat retries 3 times
        assert all(r.text == "success" for r in responses)
        deadline = time.monotonic() + 20
        while not state.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # room for a second (wrong) delivery to show up
    assert len(state.sent) == 1 and state.sent[0]["touser"] == OPENID
    assert "USD" in state.sent[0]["text"]["content"]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.type == "user")) == 1


def test_two_workers_deliver_a_late_answer_once(bundled_assistant, tmp_path: Path, wechat_api) -> None:
    """WeChat's retry reaches another worker (same database): the answer reaches the customer exactly once,
    by the API or as that retry's passive reply."""
    url, state = wechat_api
    database_url = f"sqlite:///{tmp_path / 'bot.db'}"

    def worker(budget: float) -> TestClient:
        wechat = WeChatChannelConfig(token=TOKEN, app_id=APP_ID, app_secret="s3cret", encoding_aes_key=AES_KEY,
                                     mode="plain", reply_budget_seconds=budget, api_base=url)
        config = bundled_assistant.config.model_copy(update={"channels": ChannelsConfig(wechat=wechat)})
        return TestClient(create_app(config, assistant=bundled_assistant, database=Database(database_url)))

    with worker(0.001) as first, worker(4.0) as second:
        assert post(first, text_xml("美元汇率多少", 7101))[0].text == "success"  # past the budget
        passive: list[str] = []
        for _ in range(3):  # WeChat retries until a reply other than "success" comes back, at most three times
            passive.append(post(second, text_xml("美元汇率多少", 7101))[0].text)
            if passive[-1] != "success":
                break
        deadline = time.monotonic() + 10
        while not state.sent and not any(t != "success" for t in passive) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # room for a second (wrong) delivery to show up
    delivered = len(state.sent) + sum(t != "success" for t in passive)
    assert delivered == 1, (state.sent, passive)
    with Database(database_url).session() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.type == "user")) == 1
