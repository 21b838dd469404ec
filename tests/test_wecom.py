"""WeCom customer service (微信客服), driven exactly as WeCom drives it: an encrypted, signed callback that only
says "something new", then kf/sync_msg against a local stand-in of qyapi.weixin.qq.com, answers by kf/send_msg,
paging with a persisted cursor, retried callbacks and repeated msgids answered once, token expiry, the welcome,
hostile and forged callbacks, hand-over to our desk or to WeCom's servicers, and a proactive notification."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient
from json_stand_in import JsonHandler, serving
from sqlalchemy import func, select
from test_agent_api import NOON, PASSWORD, login
from test_wechat_api import Media, reply_media
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.config import ChannelsConfig, ConfigError, NotifyConfig, WeComChannelConfig, load_config
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.storage.models import AuditEntry, Event
from bot.web.app import create_app

TOKEN = "wecomcallbacktoken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP_ID = "ww0123456789abcdef"
SECRET = "kf-s3cret"
KFID = "wkBankService0001"
SYNC_TOKEN = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"
USER = "wmCustomer0001"
NOTIFY_KEY = "core-banking-notify-key-0001"


class WeCom:
    """State of the fake qyapi.weixin.qq.com: the kf account's message log (the cursor is an index into it),
    each customer's service_state, and everything the bot sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token_fetches = 0
        self.current_token = ""
        self.expired_replies = 0
        self.log: list[dict] = []
        self.page_size = 1000
        self.sync_delay = 0.0
        self.syncing = self.most_syncing = 0  # sync_msg calls in flight at once, now and at most
        self.sync_cursors: list[str] = []
        self.calls: list[str] = []  # the path of every API call, in order
        self.sent: list[dict] = []
        self.refused: list[dict] = []  # send_msg attempts refused for the session state
        self.welcome_codes: set[str] = set()
        self.welcomes: list[dict] = []
        self.transfers: list[dict] = []
        self.states: dict[str, int] = {}
        self.media: dict[str, Media] = {}  # what media/get serves, by media_id
        self.stuck = False  # sync_msg answers has_more=1 without moving the cursor, as it was seen to

    def customer_says(self, text: str, msgid: str, user: str = USER, menu_id: str | None = None) -> dict:
        content: dict[str, Any] = {"content": text} | ({"menu_id": menu_id} if menu_id else {})
        return self.customer_sends("text", {"text": content}, msgid, user)

    def customer_sends(self, kind: str, body: dict, msgid: str, user: str = USER) -> dict:
        with self.lock:
            if self.states.get(user) == 4:  # writing after the end opens a new session
                self.states[user] = 0
        return self.add({"msgid": msgid, "open_kfid": KFID, "external_userid": user, "send_time": int(time.time()),
                         "origin": 3, "msgtype": kind, **body})

    def event(self, event_type: str, user: str = USER, **fields: Any) -> dict:
        body = {"event_type": event_type, "open_kfid": KFID, "external_userid": user, **fields}
        return self.add({"msgid": f"ev-{len(self.log)}", "send_time": int(time.time()), "origin": 4,
                         "msgtype": "event", "event": body})

    def add(self, message: dict) -> dict:
        with self.lock:
            self.log.append(message)
        return message

    def texts(self) -> list[str]:
        return [m["text"]["content"] for m in self.sent]


def handler_for(state: WeCom) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path == "/cgi-bin/media/get":
                with state.lock:
                    state.calls.append(url.path)
                    valid = query.get("access_token") == [state.current_token]
                if valid:
                    reply_media(self, state.media, query.get("media_id", [""])[0])
                else:
                    self.reply({"errcode": 42001, "errmsg": "access_token expired"})
                return
            if url.path != "/cgi-bin/gettoken" or query.get("corpid") != [CORP_ID] \
                    or query.get("corpsecret") != [SECRET]:
                self.reply({"errcode": 40001, "errmsg": "invalid secret"})
                return
            with state.lock:
                state.token_fetches += 1
                state.current_token = f"TOKEN{state.token_fetches}"
                state.calls.append(url.path)
            self.reply({"errcode": 0, "errmsg": "ok", "access_token": state.current_token, "expires_in": 7200})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                if parse_qs(url.query).get("access_token") != [state.current_token]:
                    state.expired_replies += 1
                    self.reply({"errcode": 42001, "errmsg": "access_token expired"})
                    return
                state.calls.append(url.path)
            route = ROUTES.get(url.path)
            self.reply(route(state, body) if route else {"errcode": 404, "errmsg": "no such API"})

    return Handler


def sync_msg(state: WeCom, body: dict) -> dict:
    if body.get("token") != SYNC_TOKEN or body.get("open_kfid") != KFID:
        return {"errcode": 95007, "errmsg": "invalid msg token"}
    with state.lock:
        state.syncing += 1
        state.most_syncing = max(state.most_syncing, state.syncing)
    time.sleep(state.sync_delay)
    with state.lock:
        state.syncing -= 1
        state.sync_cursors.append(body["cursor"])
        if state.stuck:
            return {"errcode": 0, "errmsg": "ok", "next_cursor": body["cursor"], "has_more": 1, "msg_list": []}
        start = int(body["cursor"] or 0)
        page = state.log[start : start + min(state.page_size, body["limit"])]
        end = start + len(page)
        return {"errcode": 0, "errmsg": "ok", "next_cursor": str(end), "has_more": int(end < len(state.log)),
                "msg_list": page}


def send_msg(state: WeCom, body: dict) -> dict:
    with state.lock:
        if body["open_kfid"] != KFID:
            return {"errcode": 95000, "errmsg": "invalid open_kfid"}
        if state.states.get(body["touser"], 0) not in (0, 1):
            state.refused.append(body)
            return {"errcode": 95018, "errmsg": "the session state does not allow sending"}
        state.sent.append(body)
        return {"errcode": 0, "errmsg": "ok", "msgid": f"sent-{len(state.sent)}"}


def send_msg_on_event(state: WeCom, body: dict) -> dict:
    with state.lock:
        if body["code"] not in state.welcome_codes:
            return {"errcode": 95009, "errmsg": "invalid or used code"}
        state.welcome_codes.discard(body["code"])
        state.welcomes.append(body)
        return {"errcode": 0, "errmsg": "ok", "msgid": "welcome"}


def service_state_get(state: WeCom, body: dict) -> dict:
    with state.lock:
        return {"errcode": 0, "errmsg": "ok", "service_state": state.states.get(body["external_userid"], 0),
                "servicer_userid": ""}


def service_state_trans(state: WeCom, body: dict) -> dict:
    with state.lock:
        state.transfers.append(body)
        state.states[body["external_userid"]] = body["service_state"]
        return {"errcode": 0, "errmsg": "ok"}


ROUTES: dict[str, Callable[[WeCom, dict], dict]] = {
    "/cgi-bin/kf/sync_msg": sync_msg, "/cgi-bin/kf/send_msg": send_msg,
    "/cgi-bin/kf/send_msg_on_event": send_msg_on_event, "/cgi-bin/kf/service_state/get": service_state_get,
    "/cgi-bin/kf/service_state/trans": service_state_trans}


@pytest.fixture
def wecom_api() -> Iterator[tuple[str, WeCom]]:
    state = WeCom()
    with serving(handler_for(state)) as url:
        yield url, state


def make_app(bundled_assistant, database: Database, url: str, **wecom: Any):
    channel = WeComChannelConfig(token=TOKEN, corp_id=CORP_ID, secret=SECRET, encoding_aes_key=AES_KEY,
                                 api_base=url, menu={"MENU_LOSS": "我的卡丢了"}, **wecom)
    config = bundled_assistant.config.model_copy(update={"channels": ChannelsConfig(wecom=channel),
                                                     "notify": NotifyConfig(api_keys=[NOTIFY_KEY])})
    app = create_app(config, assistant=bundled_assistant, database=database)
    app.state.desk.clock = lambda: NOON  # within the skill groups' working hours
    return app


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'bot.db'}")


def inner_xml(open_kfid: str = KFID, token: str = SYNC_TOKEN) -> str:
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><CreateTime>{int(time.time())}</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
            f"<Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{open_kfid}]]></OpenKfId></xml>")


def field(xml: str, name: str) -> str:
    value = xml[xml.index(f"<{name}>") + len(name) + 2 : xml.index(f"</{name}>")]
    return value.removeprefix("<![CDATA[").removesuffix("]]>")


def encrypted(plain: str, timestamp: str, nonce: str) -> tuple[str, str]:
    """(Encrypt, msg_signature) as WeCom computes them."""
    envelope = WeChatCrypto(TOKEN, AES_KEY, CORP_ID).encrypt_message(plain, nonce, timestamp)
    return field(envelope, "Encrypt"), field(envelope, "MsgSignature")


def callback(client: TestClient, inner: str | None = None, body: str | None = None, signature: str | None = None,
             timestamp: str | None = None):
    timestamp = timestamp or str(int(time.time()))
    nonce = "n0nce42"
    encrypt, msg_signature = encrypted(inner or inner_xml(), timestamp, nonce)
    body = body or (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
                    "<AgentID><![CDATA[]]></AgentID></xml>")
    return client.post("/channels/wecom", content=body.encode(), headers={"Content-Type": "text/xml"},
                       params={"msg_signature": signature or msg_signature, "timestamp": timestamp, "nonce": nonce})


def wait_for(condition: Callable[[], Any], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def synced(client: TestClient, app, **kwargs: Any) -> None:
    """A callback, answered "success", and its background sync finished."""
    response = callback(client, **kwargs)
    assert response.status_code == 200 and response.text == "success"
    wait_for(lambda: not app.state.background)


def count(database: Database, query: Any) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Event).where(query)) or 0


def audits(database: Database, action: str) -> list[AuditEntry]:
    with database.session() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_url_verification_decrypts_echostr_only_with_a_good_signature(bundled_assistant, database, wecom_api) -> None:
    url, _ = wecom_api
    client = TestClient(make_app(bundled_assistant, database, url))
    echostr, signature = encrypted("echo-5927361", "1700000000", "abc")
    params = {"msg_signature": signature, "timestamp": "1700000000", "nonce": "abc", "echostr": echostr}
    good = client.get("/channels/wecom", params=params)
    assert good.status_code == 200 and good.text == "echo-5927361"
    bad = client.get("/channels/wecom", params={**params, "msg_signature": "0" * 40})
    assert bad.status_code == 403 and "echo-5927361" not in bad.text


def test_the_channel_is_off_without_a_token(bundled_assistant, database) -> None:
    client = TestClient(create_app(bundled_assistant.config, assistant=bundled_assistant, database=database))
    response = client.post("/channels/wecom", content=b"<xml/>")
    assert response.status_code == 404 and "BOT__CHANNELS__WECOM__TOKEN" in response.json()["detail"]


def test_the_environment_configures_the_channel(project_root: Path) -> None:
    environ = {"BOT__CHANNELS__WECOM__TOKEN": TOKEN, "BOT__CHANNELS__WECOM__CORP_ID": CORP_ID,
               "BOT__CHANNELS__WECOM__SECRET": SECRET, "BOT__CHANNELS__WECOM__ENCODING_AES_KEY": AES_KEY,
               "BOT__CHANNELS__WECOM__HANDOFF": "wecom"}
    wecom = load_config(project_root / "config.yml", environ=environ).channels.wecom
    assert (wecom.token, wecom.corp_id, wecom.handoff, wecom.api_base) == (
        TOKEN, CORP_ID, "wecom", "https://qyapi.weixin.qq.com")
    with pytest.raises(ConfigError, match="corp_id, secret and encoding_aes_key"):
        load_config(project_root / "config.yml", environ={"BOT__CHANNELS__WECOM__TOKEN": TOKEN})


def test_a_customer_text_is_answered_by_send_msg(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    state.customer_says("我的卡丢了", "msg-0001")
    with TestClient(app) as client:
        synced(client, app)
    assert state.sync_cursors == [""]
    assert len(state.sent) == 1
    sent = state.sent[0]
    assert (sent["touser"], sent["open_kfid"], sent["msgtype"]) == (USER, KFID, "text")
    assert "卡号后四位" in sent["text"]["content"] and "<" not in sent["text"]["content"]
    assert app.state.conversations.store.cursor(f"wecom:{KFID}") == "1"
    user_events = [e for e in app.state.conversations.store.sender_events("wecom", USER) if e["event"] == "user"]
    assert user_events[0]["metadata"] == {"open_kfid": KFID, "wecom_type": "text"}


def test_menu_clicks_and_other_kinds_of_message(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    state.customer_says("挂失银行卡", "msg-0101", menu_id="MENU_LOSS")
    state.customer_sends("image", {"image": {"media_id": "m1"}}, "msg-0102")
    state.customer_sends("voice", {"voice": {"media_id": "m2"}}, "msg-0103")
    state.customer_sends("location", {"location": {"latitude": 31.2, "longitude": 121.5, "name": "陆家嘴",
                                                   "address": "浦东新区世纪大道"}}, "msg-0104")
    state.customer_sends("link", {"link": {"title": "领奖", "url": "http://phish.example"}}, "msg-0105")
    with TestClient(app) as client:
        synced(client, app)
    menu, image, voice, location, link = state.texts()
    assert "卡号后四位" in menu  # the menu item stands for "我的卡丢了"
    assert "文字" in image and "语音" in voice and "网点" in location and "不会通过链接" in link
    transcript = [e["text"] for e in app.state.conversations.store.sender_events("wecom", USER)
                  if e["event"] == "user"]
    assert transcript[1:] == ["[图片]", "[语音]", "[位置] 陆家嘴 浦东新区世纪大道", "[链接] 领奖"]


def test_paging_persists_the_cursor_and_a_new_instance_resumes(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    state.page_size = 2
    for i, question in enumerate(["美元汇率多少", "我的卡丢了", "补卡要多少钱"]):
        state.customer_says(question, f"msg-1{i}")
    first = make_app(bundled_assistant, database, url)
    with TestClient(first) as client:
        synced(client, first)
    assert state.sync_cursors == ["", "2"] and len(state.sent) == 3
    assert "USD" in state.sent[0]["text"]["content"]

    state.customer_says("营业时间", "msg-13")
    second = make_app(bundled_assistant, database, url)  # e.g. after a restart, on the same database
    with TestClient(second) as client:
        synced(client, second)
    assert state.sync_cursors[2:] == ["3"] and len(state.sent) == 4
    assert count(database, Event.type == "user") == 4


def test_retried_callbacks_and_a_msgid_in_two_pages_are_handled_once(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    state.page_size, state.sync_delay = 1, 0.3
    message = state.customer_says("美元汇率多少", "msg-2001")
    state.add(dict(message))  # WeCom delivers the same msgid again on the next page
    app = make_app(bundled_assistant, database, url)
    with TestClient(app) as client:
        responses = [callback(client) for _ in range(3)]  # WeCom retries the callback
        assert [r.text for r in responses] == ["success"] * 3
        wait_for(lambda: not app.state.background)
    # one loop read both pages; the callbacks that came meanwhile made it read once more (nothing new)
    assert state.sync_cursors == ["", "1", "2"]
    assert len(state.sent) == 1 and "USD" in state.sent[0]["text"]["content"]
    assert count(database, Event.type == "user") == 1


def test_two_workers_never_sync_one_account_at_once(bundled_assistant, database, wecom_api) -> None:
    """Callbacks reach two workers (one database); a lease lets one of them read at a time, and the
    other's callbacks make the leaseholder read again: every message answered once."""
    url, state = wecom_api
    state.page_size, state.sync_delay = 1, 0.2
    for n, text in enumerate(["美元汇率多少", "网点几点开门", "信用卡怎么还款"]):
        state.customer_says(text, f"msg-2101-{n}")
    first, second = make_app(bundled_assistant, database, url), make_app(bundled_assistant, database, url)
    with TestClient(first) as one, TestClient(second) as two:
        for client in (one, two, one, two):
            assert callback(client).text == "success"
        wait_for(lambda: not first.state.background and not second.state.background)
        state.customer_says("你好", "msg-2101-3")  # after both stopped: a callback to either still reads it
        assert callback(two).text == "success"
        wait_for(lambda: not first.state.background and not second.state.background)
    assert state.most_syncing == 1
    assert len(state.sent) == 4 and count(database, Event.type == "user") == 4


def test_a_slow_answer_leaves_the_callback_answered_at_once(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    service = app.state.conversations
    handle = service.handle
    service.handle = lambda inbound: (time.sleep(2), handle(inbound))[1]
    state.customer_says("我的卡丢了", "msg-3001")
    with TestClient(app) as client:
        started = time.monotonic()
        response = callback(client)
        assert response.text == "success" and time.monotonic() - started < 1.0  # WeCom waits 5 s at most
        assert state.sent == []
        wait_for(lambda: state.sent)
    assert "卡号后四位" in state.sent[0]["text"]["content"]


def test_an_expired_access_token_is_refreshed_and_the_call_retried_once(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    state.customer_says("美元汇率多少", "msg-4001")
    with TestClient(app) as client:
        synced(client, app)
        assert state.token_fetches == 1 and state.expired_replies == 0
        state.current_token = "ROTATED"  # WeCom expired the token early
        state.customer_says("我的卡丢了", "msg-4002")
        synced(client, app)
    assert state.token_fetches == 2 and state.expired_replies == 1
    assert len(state.sent) == 2 and "卡号后四位" in state.sent[1]["text"]["content"]


def test_enter_session_gets_the_welcome(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    state.welcome_codes.add("WELCOME-CODE-1")
    state.event("enter_session", scene="branch7", welcome_code="WELCOME-CODE-1")
    with TestClient(app) as client:
        synced(client, app)
    assert len(state.welcomes) == 1 and "欢迎咨询示例银行" in state.welcomes[0]["text"]["content"]
    assert state.sent == []
    assert app.state.conversations.store.cursor(f"wecom-kf:{USER}") == KFID


XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       f"<xml><ToUserName>{CORP_ID}</ToUserName><Encrypt>&xxe;</Encrypt><AgentID></AgentID></xml>")
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
          '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><xml><Encrypt>&lol3;</Encrypt></xml>')
INNER_XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
             f"<xml><ToUserName>{CORP_ID}</ToUserName><MsgType>event</MsgType><Event>kf_msg_or_event</Event>"
             f"<Token>&xxe;</Token><OpenKfId>{KFID}</OpenKfId></xml>")
INNER_LAUGHS = LAUGHS.replace("<Encrypt>&lol3;</Encrypt>", f"<Event>kf_msg_or_event</Event><OpenKfId>{KFID}"
                                                           "</OpenKfId><Token>&lol3;</Token>")


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"body": XXE}, 400), ({"body": LAUGHS}, 400), ({"inner": INNER_XXE}, 400), ({"inner": INNER_LAUGHS}, 400),
    ({"body": "<xml><unclosed>"}, 400), ({"body": "<xml>" + "a" * 70_000 + "</xml>"}, 413),
    ({"signature": "f" * 40}, 403), ({"timestamp": str(int(time.time()) - 3600)}, 400)],
    ids=["xxe", "billion-laughs", "inner-xxe", "inner-billion-laughs", "malformed", "too-big", "bad-signature",
         "replayed"])
def test_hostile_or_forged_callbacks_are_refused_and_nothing_synced(bundled_assistant, database, wecom_api, caplog,
                                                                   kwargs: dict, status: int) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    state.customer_says("我的卡丢了", "msg-5001")
    with TestClient(app) as client:
        response = callback(client, **kwargs)
        assert response.status_code == status and "root:" not in response.text
        assert not app.state.background
    assert "wecom callback refused" in caplog.text or "refused POST /channels/wecom" in caplog.text
    assert state.sync_cursors == [] and state.calls == [] and state.sent == []
    assert count(database, Event.id.is_not(None)) == 0


def test_desk_handoff_agent_reply_and_close_end_the_wecom_session(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    create_agent(database, "wang", "小王", PASSWORD, groups=["借记卡与账户", "综合服务"])
    with TestClient(app) as client:
        state.customer_says("我的卡丢了", "msg-6001")
        state.customer_says("转人工", "msg-6002")
        synced(client, app)
        assert "您是下一位" in state.texts()[-1]
        agent = login(client, "wang")
        waiting = client.get("/api/agent/queue", headers=agent).json()["waiting"]
        assert len(waiting) == 1 and waiting[0]["channel"] == "wecom"
        handoff = waiting[0]["handoff_id"]
        assert client.post(f"/api/agent/handoffs/{handoff}/accept", headers=agent).status_code == 200

        reply = client.post(f"/api/agent/handoffs/{handoff}/messages", headers=agent, json={"text": "您好，我是小王"})
        assert reply.json()["delivered"] is True
        assert state.sent[-1]["touser"] == USER and state.texts()[-1] == "您好，我是小王"
        sent_so_far = len(state.sent)

        state.customer_says("卡号后四位是1234", "msg-6003")  # with the agent: stored, the bot keeps quiet
        synced(client, app)
        assert len(state.sent) == sent_so_far, state.texts()

        closed = client.post(f"/api/agent/handoffs/{handoff}/close", headers=agent, json={"disposition": "已解决"})
        assert closed.status_code == 200
        assert "请为本次服务打分" in state.texts()[-1]
        assert [(t["service_state"], t["external_userid"]) for t in state.transfers] == [(4, USER)]
        assert state.calls.index("/cgi-bin/kf/service_state/trans") > len(state.calls) - 2  # after the survey

        state.customer_says("5", "msg-6004")  # a new WeCom session: the bot takes the rating
        synced(client, app)
    assert "感谢您的评价" in state.texts()[-1]


def test_wecom_handoff_to_the_pool_then_back_to_the_bot(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url, handoff="wecom")
    with TestClient(app) as client:
        state.customer_says("转人工", "msg-7001")
        synced(client, app)
        assert "正在为您转接人工客服" in state.texts()[-1] and "您是下一位" not in state.texts()[-1]
        assert state.transfers == [{"open_kfid": KFID, "external_userid": USER, "service_state": 2}]
        conversation = app.state.conversations.store.find_conversation_of("wecom", USER)
        assert app.state.desk.open_handoff(conversation.id) is None  # not in our desk's queue
        assert len(audits(database, "handoff_to_wecom")) == 1
        handoffs = [e for e in app.state.conversations.store.events(conversation.id) if e["event"] == "handoff"]
        assert handoffs[-1]["status"] == "closed" and handoffs[-1]["disposition"] == "转企业微信人工客服"

        state.states[USER] = 3  # a WeCom servicer took it from the pool
        state.event("session_status_change", change_type=1, new_servicer_userid="lisi")
        state.customer_says("我的卡丢了", "msg-7002")
        state.add({"msgid": "msg-7003", "open_kfid": KFID, "external_userid": USER, "origin": 5,
                   "servicer_userid": "lisi", "msgtype": "text", "text": {"content": "您好，我是李四，请讲"}})
        synced(client, app)
        assert len(state.sent) == 1 and state.refused == []  # the bot did not even try
        events = app.state.conversations.store.sender_events("wecom", USER)
        assert [e["text"] for e in events if e["event"] == "user"][-1] == "我的卡丢了"
        servicer = [e for e in events if e["event"] == "bot" and e["data"]["source"] == "agent"]
        assert [e["text"] for e in servicer] == ["您好，我是李四，请讲"]

        state.states[USER] = 4
        state.event("session_status_change", change_type=3, old_servicer_userid="lisi")
        state.customer_says("美元汇率多少", "msg-7004")
        synced(client, app)
    assert len(state.sent) == 2 and "USD" in state.texts()[-1]


def test_wecom_handoff_to_a_named_servicer_and_a_missed_end(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url, handoff="wecom", servicer_userid="zhangsan")
    with TestClient(app) as client:
        state.customer_says("转人工", "msg-8001")
        synced(client, app)
        assert state.transfers == [{"open_kfid": KFID, "external_userid": USER, "service_state": 3,
                                    "servicer_userid": "zhangsan"}]
        state.customer_says("美元汇率多少", "msg-8002")
        synced(client, app)
        assert len(state.sent) == 1 and state.refused == []

        state.states[USER] = 4  # the session ended without our seeing the event
        state.customer_says("美元汇率多少", "msg-8003")
        synced(client, app)
    assert len(state.sent) == 2 and "USD" in state.texts()[-1]
    assert state.calls.count("/cgi-bin/kf/service_state/get") == 2


def test_a_proactive_notification_and_the_customers_answer(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    atm = {"card_tail": "6688", "time": "11月23日 14:05", "atm_id": "SH0231", "address": "浦东新区世纪大道100号"}
    with TestClient(app) as client:
        state.customer_says("你好", "msg-9001")
        synced(client, app)
        app.state.conversations.store.link_customer("wecom", USER, "C0001", name="张伟", verified=True)
        notified = client.post("/api/v1/notify", headers={"X-API-Key": NOTIFY_KEY},
                               json={"customer_id": "C0001", "event": "atm_card_retained", "data": atm})
        assert notified.status_code == 202 and notified.json()["status"] == "sent"
        assert notified.json()["channel"] == "wecom"
        assert state.sent[-1]["touser"] == USER and "SH0231" in state.texts()[-1]

        state.customer_says("是的", "msg-9002")
        synced(client, app)
    assert "世纪大道100号" in state.texts()[-1] and "领取" in state.texts()[-1]
