"""The WeChat official account endpoint, driven exactly as WeChat's servers call it: URL verification, signed
plaintext, compatible and safe-mode (AES) messages, retries with the same MsgId, hostile and forged requests."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto

from bot.config import ChannelsConfig, WeChatChannelConfig
from bot.storage import Database
from bot.storage.models import Event
from bot.web.app import create_app

TOKEN = "bankbottoken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx0123456789abcdef"
OPENID = "oWxCustomer0001"


def make_client(bundled_assistant, tmp_path: Path, mode: str) -> tuple[TestClient, Database]:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    wechat = WeChatChannelConfig(token=TOKEN, app_id=APP_ID, encoding_aes_key=AES_KEY, mode=mode,
                                 menu={"MENU_LOSS": "我要挂失"})
    config = bundled_assistant.config.model_copy(update={"channels": ChannelsConfig(wechat=wechat)})
    return TestClient(create_app(config, assistant=bundled_assistant, database=database)), database


def sign(timestamp: str, nonce: str, token: str = TOKEN) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def text_xml(content: str, msg_id: int, kind: str = "text") -> str:
    return (f"<xml><ToUserName><![CDATA[gh_bank]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{kind}]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")


def event_xml(event: str, key: str = "") -> str:
    return (f"<xml><ToUserName><![CDATA[gh_bank]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>")


def post(client: TestClient, xml: str, encrypt: bool = False, timestamp: str | None = None,
         signature: str | None = None):
    timestamp = timestamp or str(int(time.time()))
    nonce = "n0nce42"
    params = {"timestamp": timestamp, "nonce": nonce, "signature": signature or sign(timestamp, nonce),
              "openid": OPENID}
    body = xml.encode()
    if encrypt:
        envelope = WeChatCrypto(TOKEN, AES_KEY, APP_ID).encrypt_message(xml, nonce, timestamp)
        params |= {"encrypt_type": "aes", "msg_signature": parse_xml_field(envelope, "MsgSignature")}
        body = envelope.encode()
    return client.post("/channels/wechat", params=params, content=body,
                       headers={"Content-Type": "text/xml"}), timestamp, nonce


def parse_xml_field(xml: str, field: str) -> str:
    start = xml.index(f"<{field}>") + len(field) + 2
    value = xml[start : xml.index(f"</{field}>")]
    return value.removeprefix("<![CDATA[").removesuffix("]]>")


def reply_text(response, encrypted: bool = False, timestamp: str = "", nonce: str = "") -> str:
    body = response.text
    if encrypted:
        signature = parse_xml_field(body, "MsgSignature")
        body = WeChatCrypto(TOKEN, AES_KEY, APP_ID).decrypt_message(body, signature, timestamp, nonce)
    message = parse_message(body)
    assert message.source == "gh_bank" and message.target == OPENID
    return message.content


def test_url_verification_echoes_only_with_a_good_signature(bundled_assistant, tmp_path: Path) -> None:
    client, _ = make_client(bundled_assistant, tmp_path, "safe")
    good = client.get("/channels/wechat", params={"signature": sign("123", "abc"), "timestamp": "123",
                                                  "nonce": "abc", "echostr": "hello-wechat"})
    assert good.status_code == 200 and good.text == "hello-wechat"
    bad = client.get("/channels/wechat", params={"signature": "0" * 40, "timestamp": "123", "nonce": "abc",
                                                 "echostr": "hello-wechat"})
    assert bad.status_code == 403 and "hello-wechat" not in bad.text


@pytest.mark.parametrize("mode", ["plain", "compatible"])
def test_plaintext_messages_get_a_passive_text_reply(bundled_assistant, tmp_path: Path, mode: str) -> None:
    client, _ = make_client(bundled_assistant, tmp_path, mode)
    response, _, _ = post(client, text_xml("美元汇率多少", 1001))
    assert response.status_code == 200
    assert "USD" in reply_text(response)


def test_safe_mode_decrypts_and_encrypts(bundled_assistant, tmp_path: Path) -> None:
    client, _ = make_client(bundled_assistant, tmp_path, "safe")
    response, timestamp, nonce = post(client, text_xml("我的卡丢了", 2001), encrypt=True)
    assert response.status_code == 200 and "<Encrypt>" in response.text and "挂失" not in response.text
    assert "卡号后四位" in reply_text(response, True, timestamp, nonce)
    plain, _, _ = post(client, text_xml("你好", 2002))
    assert plain.status_code == 400  # safe mode refuses plaintext


def test_retries_of_the_same_msgid_are_answered_once(bundled_assistant, tmp_path: Path) -> None:
    client, database = make_client(bundled_assistant, tmp_path, "plain")
    replies = [reply_text(post(client, text_xml("补卡要多少钱", 3001))[0]) for _ in range(3)]
    assert len(set(replies)) == 1
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.type == "user")) == 1


def test_options_are_numbered_and_answered_by_number(bundled_assistant, tmp_path: Path) -> None:
    client, _ = make_client(bundled_assistant, tmp_path, "plain")
    greeting = reply_text(post(client, text_xml("你好", 9001))[0])
    assert "回复数字选择" in greeting and "1. 挂失银行卡" in greeting and "2. 查询余额" in greeting
    balance = reply_text(post(client, text_xml("２", 9002))[0])  # a full-width digit from a Chinese keyboard
    assert "余额" in balance and "1. 查交易明细" in balance
    assert "明细" in reply_text(post(client, text_xml("1", 9003))[0])
    not_an_option = reply_text(post(client, text_xml("7", 9004))[0])
    assert "明细" not in not_an_option  # outside the offered range a number is just a message


def test_subscribe_menu_click_voice_and_image(bundled_assistant, tmp_path: Path) -> None:
    client, _ = make_client(bundled_assistant, tmp_path, "plain")
    assert "欢迎关注示例银行" in reply_text(post(client, event_xml("subscribe", "qrscene_branch7"))[0])
    assert "卡号后四位" in reply_text(post(client, event_xml("CLICK", "MENU_LOSS"))[0])
    voice = (f"<xml><ToUserName>gh_bank</ToUserName><FromUserName>{OPENID}</FromUserName>"
             f"<CreateTime>{int(time.time())}</CreateTime><MsgType>voice</MsgType><MediaId>m1</MediaId>"
             f"<Format>amr</Format><Recognition>美元汇率多少</Recognition><MsgId>4001</MsgId></xml>")
    assert "USD" in reply_text(post(client, voice)[0])
    image = (f"<xml><ToUserName>gh_bank</ToUserName><FromUserName>{OPENID}</FromUserName>"
             f"<CreateTime>{int(time.time())}</CreateTime><MsgType>image</MsgType><PicUrl>http://x/y.jpg</PicUrl>"
             f"<MediaId>m2</MediaId><MsgId>4002</MsgId></xml>")
    assert "文字" in reply_text(post(client, image)[0])
    unsubscribed, _, _ = post(client, event_xml("unsubscribe"))
    assert unsubscribed.text == "success"


XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       f"<xml><ToUserName>gh_bank</ToUserName><FromUserName>{OPENID}</FromUserName><CreateTime>1</CreateTime>"
       "<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>5001</MsgId></xml>")
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
          '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><xml><Content>&lol3;</Content></xml>')


@pytest.mark.parametrize(("body", "status"), [(XXE, 400), (LAUGHS, 400), ("<xml><unclosed>", 400),
                                              ("<xml>" + "a" * 70_000 + "</xml>", 413)])
def test_hostile_or_malformed_xml_is_refused_and_nothing_stored(bundled_assistant, tmp_path: Path, body: str,
                                                                status: int) -> None:
    client, database = make_client(bundled_assistant, tmp_path, "plain")
    response, _, _ = post(client, body)
    assert response.status_code == status
    assert "root:" not in response.text
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_forged_or_replayed_requests_are_refused(bundled_assistant, tmp_path: Path) -> None:
    client, database = make_client(bundled_assistant, tmp_path, "plain")
    forged, _, _ = post(client, text_xml("你好", 6001), signature="f" * 40)
    assert forged.status_code == 403
    stale = str(int(time.time()) - 3600)
    replayed, _, _ = post(client, text_xml("你好", 6002), timestamp=stale)
    assert replayed.status_code == 400 and "stale" in replayed.json()["detail"]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_the_channel_is_off_without_a_token(bundled_assistant, tmp_path: Path) -> None:
    client = TestClient(create_app(bundled_assistant.config, assistant=bundled_assistant,
                                   database=Database(f"sqlite:///{tmp_path / 'bot.db'}")))
    assert client.get("/channels/wechat", params={"echostr": "x"}).status_code == 404
