"""Customers' pictures and files, end to end against local stand-ins of WeChat's and WeCom's APIs and the app's
multipart upload: checked by their content and size, stored, answered, pushed live to the agent who has the
chat, and served only to agents who may see the conversation. Also what a refused push tells the agent (45015),
and the two WeCom defects: a cursor that does not advance, and old messages moving the customer's last-seen time.
"""

from __future__ import annotations

import datetime as dt
import logging
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from json_stand_in import serving
from sqlalchemy import func, select
from test_agent_api import NOON, PASSWORD, desk_socket, login, until
from test_wechat import AES_KEY, APP_ID, OPENID, TOKEN, post, reply_text
from test_wechat_api import Media, StandIn
from test_wechat_api import handler_for as wechat_handler
from test_wecom import KFID, USER, WeCom, make_app, synced
from test_wecom import handler_for as wecom_handler

from bot.channels.app import AppCustomer, sign_token
from bot.channels.wechat import send_by_api
from bot.channels.wecom import send_text
from bot.config import AppChannelConfig, AttachmentsConfig, ChannelsConfig, NotifyConfig, WeChatChannelConfig
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.storage.attachments import AttachmentRefused, Upload, check, clean_filename, sniff_mime
from bot.storage.models import Attachment, ChannelIdentity, Handoff
from bot.web.app import create_app

APP_SECRET = "attachments-test-secret-of-the-app-backend-01"
ZHANG = AppCustomer(customer_id="C0001", name="张伟", verified=True)
GROUPS = ["信用卡", "借记卡与账户", "贷款", "理财", "投诉与反诈", "综合服务"]


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG (grey pixels), as a phone would send."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png()
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200  # a Windows program
TYPE_REFUSED = "暂不支持该类型的文件，请发送图片或PDF（不超过5MB）"


# --- the checks -------------------------------------------------------------------------------------------


def test_the_content_decides_the_type_and_the_size_is_limited() -> None:
    config = AttachmentsConfig()
    assert [sniff_mime(d) for d in (PNG, b"\xff\xd8\xff\xe0" + b"\x00" * 20, b"GIF89a....", PDF,
                                    b"RIFF\x10\x00\x00\x00WEBPVP8 ")] == \
        ["image/png", "image/jpeg", "image/gif", "application/pdf", "image/webp"]
    assert check(Upload(PNG, "照片.png", "image/png"), config) == "image/png"
    assert check(Upload(PDF, "x.png", "image/png"), config) == "application/pdf"  # what it is, not its name
    with pytest.raises(AttachmentRefused, match=TYPE_REFUSED):
        check(Upload(EXE, "发票.png", "image/png"), config)  # a program renamed .png
    with pytest.raises(AttachmentRefused, match=TYPE_REFUSED):
        check(Upload(b"<html><script>alert(1)</script>", "a.gif", "image/gif"), config)
    exactly = PNG + b"\x00" * (config.max_bytes - len(PNG))
    assert check(Upload(exactly), config) == "image/png"
    with pytest.raises(AttachmentRefused, match="文件太大了，请发送不超过5MB的图片或PDF"):
        check(Upload(exactly + b"\x00"), config)


def test_file_names_lose_their_path_and_personal_numbers() -> None:
    name = clean_filename("../../etc/身份证11010519491231002X.png", "image/png")
    assert "/" not in name and "11010519491231" not in name and name.endswith(".png")
    assert clean_filename("工具.exe", "application/pdf") == "工具.pdf"
    assert clean_filename(None, "image/jpeg") == "图片.jpg"
    assert clean_filename("\x00\n", "application/pdf") == "文件.pdf"


# --- WeChat -----------------------------------------------------------------------------------------------


@pytest.fixture
def wechat_api() -> Iterator[tuple[str, StandIn]]:
    state = StandIn()
    with serving(wechat_handler(state)) as url:
        yield url, state


def wechat_app(bundled_assistant, database: Database, url: str):
    wechat = WeChatChannelConfig(token=TOKEN, app_id=APP_ID, app_secret="s3cret", encoding_aes_key=AES_KEY,
                                 mode="plain", api_base=url)
    config = bundled_assistant.config.model_copy(update={"channels": ChannelsConfig(wechat=wechat)})
    app = create_app(config, assistant=bundled_assistant, database=database)
    app.state.desk.clock = lambda: NOON
    return app


def image_xml(media_id: str, msg_id: int) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_bank]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
            f"<PicUrl><![CDATA[http://mmbiz.qpic.cn/x.jpg]]></PicUrl><MediaId><![CDATA[{media_id}]]></MediaId>"
            f"<MsgId>{msg_id}</MsgId></xml>")


def text_xml(content: str, msg_id: int) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_bank]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'bot.db'}")


def attachments(database: Database) -> list[Attachment]:
    with database.session() as session:
        return list(session.scalars(select(Attachment).order_by(Attachment.created_at)))


def handoff_group(database: Database) -> str:
    with database.session() as session:
        return session.scalars(select(Handoff.group)).one()


def agents_in_and_out_of(database: Database, group: str) -> None:
    """小王 in the hand-over's group, 小李 only in another, and a supervisor."""
    create_agent(database, "wang", "小王", PASSWORD, groups=[group])
    create_agent(database, "li", "小李", PASSWORD, groups=[next(g for g in GROUPS if g != group)])
    create_agent(database, "boss", "张主管", PASSWORD, role="supervisor", groups=["综合服务"])


def test_a_wechat_picture_is_fetched_stored_and_served_to_agents_who_may_see_it(bundled_assistant, database,
                                                                              wechat_api) -> None:
    url, state = wechat_api
    state.media["MEDIA-1"] = Media(PNG, "image/jpeg")  # WeChat's declared type is only a hint
    app = wechat_app(bundled_assistant, database, url)
    with TestClient(app) as client:
        answered = reply_text(post(client, image_xml("MEDIA-1", 8001))[0])
        assert "收到您的图片" in answered and "转人工" in answered
        again = reply_text(post(client, image_xml("MEDIA-1", 8001))[0])  # WeChat's retry: the same answer
        assert again == answered and len(attachments(database)) == 1

        stored = attachments(database)[0]
        assert (stored.channel, stored.kind, stored.mime, stored.size, stored.data) == (
            "wechat", "image", "image/png", len(PNG), PNG)
        events = app.state.conversations.store.sender_events("wechat", OPENID)
        user = [e for e in events if e["event"] == "user"]
        assert user[0]["text"] == "[图片]"
        assert user[0]["attachment"] == {"id": stored.id, "kind": "image", "mime": "image/png", "size": len(PNG),
                                         "filename": "图片.png"}

        assert "您是下一位" in reply_text(post(client, text_xml("转人工", 8002))[0])
        waiting = reply_text(post(client, image_xml("MEDIA-1", 8003))[0])
        assert "您是下一位" in waiting and len(attachments(database)) == 2  # waiting: the place, not the bot

        agents_in_and_out_of(database, handoff_group(database))
        path = f"/api/agent/attachments/{stored.id}"
        assert client.get(path).status_code == 401
        assert client.get(path, headers=login(client, "li")).status_code == 404
        served = client.get(path, headers=login(client, "wang"))
        assert served.status_code == 200 and served.content == PNG
        assert served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.headers["content-disposition"].startswith("inline;")
        assert client.get(path, headers=login(client, "boss")).status_code == 200
        assert client.get("/api/agent/attachments/" + "0" * 32, headers=login(client, "boss")).status_code == 404


def test_a_wechat_picture_that_cannot_be_fetched_is_asked_for_again(bundled_assistant, database,
                                                                   wechat_api) -> None:
    url, _ = wechat_api
    app = wechat_app(bundled_assistant, database, url)
    with TestClient(app) as client:
        answer = reply_text(post(client, image_xml("EXPIRED", 8101))[0])
    assert "图片没有接收成功" in answer and attachments(database) == []
    user = [e for e in app.state.conversations.store.sender_events("wechat", OPENID) if e["event"] == "user"]
    assert user[0]["text"] == "[图片]" and "没有接收成功" in user[0]["attachment_refused"]


def test_45015_and_other_refusals_tell_the_agent_why(bundled_assistant, database, wechat_api) -> None:
    url, state = wechat_api
    app = wechat_app(bundled_assistant, database, url)
    delivered = send_by_api(app, OPENID, "您好")
    assert delivered and delivered.reason is None and state.sent[-1]["touser"] == OPENID
    outside = send_by_api(app, "o_silent_for_3_days", "您好")
    assert not outside and outside.reason == "客户超过48小时未互动，微信不允许主动发送"
    state.scripted = [{"errcode": 45047, "errmsg": "out of response count limit"}]
    limited = send_by_api(app, OPENID, "您好")
    assert not limited and "45047" in (limited.reason or "")

    unreachable = wechat_app(bundled_assistant, database, "http://127.0.0.1:9")  # nothing listens there
    offline = send_by_api(unreachable, OPENID, "您好")
    assert not offline and "无法连接" in (offline.reason or "")


# --- WeCom ------------------------------------------------------------------------------------------------


@pytest.fixture
def wecom_api() -> Iterator[tuple[str, WeCom]]:
    state = WeCom()
    with serving(wecom_handler(state)) as url:
        yield url, state


def test_wecom_pictures_and_files_are_fetched_by_media_get(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    state.media = {"IMG-1": Media(PNG, "image/png"),
                   "FILE-1": Media(PDF, "application/octet-stream", "3月对账单.pdf"),
                   "FILE-2": Media(EXE, "application/octet-stream", "对账单.png")}
    app = make_app(bundled_assistant, database, url)
    state.customer_sends("image", {"image": {"media_id": "IMG-1"}}, "msg-a1")
    state.customer_sends("file", {"file": {"media_id": "FILE-1"}}, "msg-a2")
    state.customer_sends("file", {"file": {"media_id": "FILE-2"}}, "msg-a3")
    with TestClient(app) as client:
        synced(client, app)
        picture, pdf, program = state.texts()
        assert "收到您的图片" in picture and "收到您的文件" in pdf and TYPE_REFUSED in program
        stored = attachments(database)
        assert [(a.kind, a.mime, a.filename) for a in stored] == [("image", "image/png", "图片.png"),
                                                                  ("file", "application/pdf", "3月对账单.pdf")]
        lines = [e["text"] for e in app.state.conversations.store.sender_events("wecom", USER) if e["event"] == "user"]
        assert lines == ["[图片]", "[文件] 3月对账单.pdf", "[文件]"]

        state.customer_says("转人工", "msg-a4")
        synced(client, app)
        agents_in_and_out_of(database, handoff_group(database))
        path = f"/api/agent/attachments/{stored[1].id}"
        assert client.get(path, headers=login(client, "li")).status_code == 404
        served = client.get(path, headers=login(client, "wang"))
    assert served.status_code == 200 and served.content == PDF
    assert served.headers["content-type"] == "application/pdf"
    assert served.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''3%E6%9C%88" in served.headers["content-disposition"]


def test_a_wecom_cursor_that_does_not_advance_stops_the_sync(bundled_assistant, database, wecom_api,
                                                            caplog) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    state.customer_says("美元汇率多少", "msg-b1")
    with TestClient(app) as client:
        synced(client, app)
        assert state.sync_cursors == [""]
        state.stuck = True  # from now on: has_more=1 and the same cursor, however often it is asked
        with caplog.at_level(logging.WARNING, logger="bot.channels.wecom"):
            synced(client, app)
    assert state.sync_cursors == ["", "1"]  # one answer that did not move, then it stopped
    assert "has_more without an advancing cursor" in caplog.text


def last_seen(database: Database) -> dt.datetime:
    with database.session() as session:
        seen = session.scalars(select(ChannelIdentity.last_seen_at).where(ChannelIdentity.external_id == USER)).one()
    return seen if seen.tzinfo else seen.replace(tzinfo=dt.UTC)


def outside_the_window(database: Database) -> bool:
    """notify's test: more than `notify.wechat_window_hours` since the customer last wrote."""
    return dt.datetime.now(dt.UTC) - last_seen(database) > dt.timedelta(hours=NotifyConfig().wechat_window_hours)


def test_old_wecom_messages_do_not_move_the_customers_last_seen_time(bundled_assistant, database,
                                                                     wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    written = int(time.time()) - 50 * 3600  # the customer wrote 50 hours ago; we read it only now
    old = state.add({"msgid": "msg-c1", "open_kfid": KFID, "external_userid": USER, "send_time": written,
                     "origin": 3, "msgtype": "text", "text": {"content": "你好"}})
    with TestClient(app) as client:
        synced(client, app)
        assert abs(last_seen(database).timestamp() - written) < 2
        assert outside_the_window(database)  # what notifications and pushes go by

        app.state.conversations.store.save_cursor(f"wecom:{KFID}", "")  # WeCom's history is read again
        state.add(dict(old))
        synced(client, app)
        assert abs(last_seen(database).timestamp() - written) < 2  # not "now"
        assert outside_the_window(database)

        state.customer_says("在吗", "msg-c2")  # a new message opens the window again
        synced(client, app)
        assert time.time() - last_seen(database).timestamp() < 5


def test_a_wecom_refusal_says_why(bundled_assistant, database, wecom_api) -> None:
    url, state = wecom_api
    app = make_app(bundled_assistant, database, url)
    unknown = send_text(app, "wmNeverWrote", "您好")
    assert not unknown and "微信客服账号" in (unknown.reason or "")
    state.states[USER] = 3  # a WeCom servicer has the session
    held = send_text(app, USER, "您好", KFID)
    assert not held and "95018" in (held.reason or "")
    state.states[USER] = 1
    assert send_text(app, USER, "您好", KFID)


# --- the app ----------------------------------------------------------------------------------------------


def app_client(bundled_assistant, database: Database, **attachments_config) -> TestClient:
    channels = ChannelsConfig(app=AppChannelConfig(secret=APP_SECRET))
    config = bundled_assistant.config.model_copy(update={
        "channels": channels, "attachments": AttachmentsConfig(**attachments_config)})
    app = create_app(config, assistant=bundled_assistant, database=database)
    app.state.desk.clock = lambda: NOON
    return TestClient(app)


def customer(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or sign_token(ZHANG, APP_SECRET)}"}


def upload(client: TestClient, data: bytes, filename: str, mime: str, message_id: str | None = None,
           token: str | None = None):
    return client.post("/channels/app/attachments", headers=customer(token), files={"file": (filename, data, mime)},
                       data={"message_id": message_id} if message_id else None)


def test_an_app_upload_reaches_the_agent_live_and_only_agents_who_may_see_it(bundled_assistant, database) -> None:
    client = app_client(bundled_assistant, database)
    with client:
        alone = upload(client, PNG, "截图.png", "image/png", "up-1")
        assert alone.status_code == 200, alone.text
        body = alone.json()
        assert body["stored"] and body["attachment"]["kind"] == "image" and body["attachment"]["filename"] == "截图.png"
        assert "收到您的图片" in body["replies"][0]["text"]
        assert body["replies"][0]["buttons"] == [{"title": "转人工", "payload": "/request_human"}]
        retried = upload(client, PNG, "截图.png", "image/png", "up-1").json()
        assert retried["duplicate"] and retried["attachment"] == body["attachment"]
        assert len(attachments(database)) == 1

        asked = client.post("/channels/app/messages", headers=customer(),
                            json={"message": "转人工", "message_id": "m-1"})
        assert "您是下一位" in asked.json()["replies"][-1]["text"]
        agents_in_and_out_of(database, handoff_group(database))
        agent = login(client, "wang")
        handoff_id = client.get("/api/agent/queue", headers=agent).json()["waiting"][0]["handoff_id"]
        assert client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=agent).status_code == 200
        with desk_socket(client, agent) as desk:
            with_agent = upload(client, PDF, "流水.pdf", "application/pdf", "up-2").json()
            assert with_agent["stored"] and with_agent["replies"] == []  # the agent answers, not the bot
            live = until(desk, "message")
        assert live["handoff_id"] == handoff_id and live["text"] == "[文件] 流水.pdf"
        assert live["attachment"] == with_agent["attachment"] and live["timestamp"]

        # the stored transcript keeps it too: after a reload the agent still sees the file
        context = client.get(f"/api/agent/handoffs/{handoff_id}/context", headers=agent).json()
        assert [item["attachment"] for item in context["transcript"] if item.get("attachment")] == \
            [body["attachment"], with_agent["attachment"]]
        path = f"/api/agent/attachments/{live['attachment']['id']}"
        assert client.get(path).status_code == 401
        assert client.get(path, headers=login(client, "li")).status_code == 404
        served = client.get(path, headers=agent)
        assert served.status_code == 200 and served.content == PDF
        assert client.get(f"/api/agent/attachments/{body['attachment']['id']}", headers=agent).content == PNG


def test_app_uploads_of_the_wrong_type_or_size_are_refused_with_the_message(bundled_assistant, database) -> None:
    client = app_client(bundled_assistant, database, max_bytes=4096)
    program = upload(client, EXE, "发票.png", "image/png", "up-3")
    assert program.status_code == 200
    assert not program.json()["stored"] and program.json()["attachment"] is None
    assert program.json()["refused"] == "暂不支持该类型的文件，请发送图片或PDF（不超过4KB）。"
    big = upload(client, PNG + b"\x00" * 5000, "大图.png", "image/png", "up-4").json()
    assert not big["stored"] and big["refused"].startswith("文件太大了")
    assert attachments(database) == []
    assert upload(client, PNG, "a.png", "image/png", token="forged").status_code == 401
    no_file = client.post("/channels/app/attachments", headers=customer(),
                          files={"other": ("a.txt", b"x", "text/plain")})
    assert no_file.status_code == 422 and "没有收到文件" in no_file.text


def test_the_five_megabyte_limit_is_what_the_customer_is_told(bundled_assistant, database) -> None:
    client = app_client(bundled_assistant, database)
    program = upload(client, EXE, "发票.png", "image/png", "up-5").json()
    assert not program["stored"] and program["refused"] == TYPE_REFUSED + "。"
    assert program["replies"][0]["text"] == program["refused"]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Attachment)) == 0



def test_a_phone_photo_larger_than_the_servers_body_limit_is_accepted(bundled_assistant, database) -> None:
    """The server's general body limit (64 KB) would refuse a real photo: the upload route has its own."""
    client = app_client(bundled_assistant, database)
    photo = png(400, 400) + b"\x00" * 300_000  # a PNG of ~0.5 MB, as a phone camera's screenshot can be
    assert len(photo) > bundled_assistant.config.server.max_body_bytes
    answer = upload(client, photo, "截图.png", "image/png", "up-big")
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] and answer.json()["attachment"]["size"] == len(photo)
    too_big = upload(client, photo + b"\x00" * 5 * 1024 * 1024, "更大.png", "image/png", "up-huge")
    assert too_big.status_code == 413  # past the route's own limit the edge refuses before reading it all
