"""Full card, ID and phone numbers and an e-mail address sent through every channel (REST, the widget's socket,
the app's REST and socket, WeChat, WeCom) end up nowhere in the database (SQLite and PostgreSQL) or the logs
in clear: only their masked forms are kept."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_wechat import OPENID, sign, text_xml
from test_wecom import AES_KEY, CORP_ID, KFID, NOTIFY_KEY, SECRET, TOKEN, synced, wecom_api  # noqa: F401

from bot.channels.app import AppCustomer, sign_token
from bot.config import AppChannelConfig, ChannelsConfig, NotifyConfig, WeChatChannelConfig, WeComChannelConfig
from bot.storage import Database
from bot.storage.models import Base
from bot.web.app import create_app
from tests.chat_support import app_socket, widget_socket

CARD, ID_NUMBER, PHONE, EMAIL = "6222021234567890128", "11010519491231002X", "13812345678", "zhang.san@example.com"
SECRETS = [CARD, ID_NUMBER, ID_NUMBER[:17], PHONE, "zhang.san", "6222 0212 3456 7890 128"]
APP_SECRET = "privacy-test-secret-of-the-app-backend-01"


def message(channel: str) -> str:
    return f"{channel}：我的卡号{CARD}，身份证{ID_NUMBER}，手机{PHONE}，邮箱{EMAIL}，卡 6222 0212 3456 7890 128"


@pytest.fixture
def app(bundled_assistant, database_url: str, wecom_api):  # noqa: F811
    url, _ = wecom_api
    channels = ChannelsConfig(
        app=AppChannelConfig(secret=APP_SECRET),
        wechat=WeChatChannelConfig(token="privacytoken", app_id="wx0123456789abcdef", mode="plain"),
        wecom=WeComChannelConfig(token=TOKEN, corp_id=CORP_ID, secret=SECRET, encoding_aes_key=AES_KEY,
                                 api_base=url))
    config = bundled_assistant.config.model_copy(update={"channels": channels,
                                                     "notify": NotifyConfig(api_keys=[NOTIFY_KEY])})
    return create_app(config, assistant=bundled_assistant, database=Database(database_url))


def everything_stored(database: Database) -> str:
    with database.session() as session:
        return "\n".join(str(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in session.execute(select(table)))


def test_no_channel_stores_or_logs_a_full_number(app, wecom_api, caplog) -> None:  # noqa: F811
    _, wecom = wecom_api
    caplog.set_level(logging.DEBUG)
    token = sign_token(AppCustomer(customer_id="C0001", name="张伟"), APP_SECRET)
    with TestClient(app) as client:
        wecom.customer_says(message("wecom"), "p-wecom")
        synced(client, app)  # first: the sockets below leave grace-period tasks that synced() would wait for
        assert wecom.sent, "WeCom's customer got no answer"
        assert client.post("/webhooks/rest/webhook", json={"sender": "p-rest", "message": message("rest"),
                                                           "metadata": {"note": f"卡{CARD}"}}).status_code == 200
        with widget_socket(client) as (socket, _):
            socket.send_json({"type": "message", "text": message("web"), "message_id": "p-web",
                              "title": f"按钮{PHONE}"})
            while socket.receive_json()["type"] != "ack":
                pass
        app_reply = client.post("/channels/app/messages", headers={"Authorization": f"Bearer {token}"},
                                json={"message": message("app"), "message_id": "p-app"})
        assert app_reply.status_code == 200
        with app_socket(client, token) as socket:
            socket.send_json({"type": "message", "text": message("app-ws"), "message_id": "p-app-ws"})
            while socket.receive_json()["type"] != "ack":
                pass
        stamp, nonce = str(int(time.time())), "n0nce42"
        wechat = client.post("/channels/wechat", content=text_xml(message("wechat"), 9001).encode(),
                             params={"timestamp": stamp, "nonce": nonce, "openid": OPENID,
                                     "signature": sign(stamp, nonce, "privacytoken")},
                             headers={"Content-Type": "text/xml"})
        assert wechat.status_code == 200
    stored = everything_stored(app.state.database)
    for channel in ("rest", "web", "app", "app-ws", "wechat", "wecom"):
        assert f"{channel}：我的卡号" in stored, f"the {channel} message was not stored"
    assert "****************0128" in stored or "***************0128" in stored
    leaked = [s for s in SECRETS if s in stored]
    assert leaked == [], f"stored in clear: {leaked}"
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert [s for s in SECRETS if s in logged] == []
    assert "sync_msg?access_token=***" in logged and "access_token=TOKEN" not in logged  # WeCom's token too
