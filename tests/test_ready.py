"""/ready tells whether this worker can answer, and a database that goes away means 503 + Retry-After on the
channels (an error frame on the widget's socket), not 500; when it comes back, service resumes without a restart.
The app reaches the real PostgreSQL server through a TCP proxy the test starts and stops. Messages written for
these tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

import tests.test_wechat as wechat_tests
import tests.test_wecom as wecom_tests
from bot.channels.app import AppCustomer, sign_token
from bot.config import AppChannelConfig, ChannelsConfig, WeChatChannelConfig, WeComChannelConfig
from bot.storage import Database
from bot.web.app import create_app
from tests.chat_support import widget_socket

APP_SECRET = "test-secret-of-the-banks-app-backend-0123456789"
APP_CUSTOMER = AppCustomer(customer_id="C0001", name="张伟", tier="金卡", verified=True)


def app_says(client: TestClient, text: str, message_id: str):  # noqa: ANN201 - the response
    return client.post("/channels/app/messages", json={"message": text, "message_id": message_id},
                       headers={"Authorization": f"Bearer {sign_token(APP_CUSTOMER, APP_SECRET)}"})


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `stop` refuses new connections and cuts the open ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept() (close alone does not)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by stop()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[str, TcpProxy]]:
    Database(postgres_url).dispose()  # the schema, migrated directly
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    try:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.stop()


@pytest.fixture
def client(proxied: tuple[str, TcpProxy], minibot_assistant) -> TestClient:
    """The app on the proxied database, with the WeChat channel (plain mode), WeCom's and the app channel on."""
    url, _ = proxied
    wechat = WeChatChannelConfig(token=wechat_tests.TOKEN, app_id=wechat_tests.APP_ID,
                                 encoding_aes_key=wechat_tests.AES_KEY, mode="plain")
    app_channel = AppChannelConfig(secret=APP_SECRET, max_token_age_seconds=600)
    wecom = WeComChannelConfig(token=wecom_tests.TOKEN, corp_id=wecom_tests.CORP_ID, secret=wecom_tests.SECRET,
                               encoding_aes_key=wecom_tests.AES_KEY, api_base="http://127.0.0.1:9")  # never synced
    channels = ChannelsConfig(wechat=wechat, app=app_channel, wecom=wecom)
    config = minibot_assistant.config.model_copy(update={"channels": channels})
    return TestClient(create_app(config, assistant=minibot_assistant, database=Database(url, migrate=False)))


def say(client: TestClient, text: str, message_id: str):  # noqa: ANN201 - the response
    return client.post("/webhooks/rest/webhook", json={"sender": "db-away", "message": text,
                                                       "message_id": message_id})


def test_ready_reports_each_part(client: TestClient, minibot_assistant) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["model"] == minibot_assistant.version
    assert body["checks"] == {"database": "ok", "model": "ok"} and body["down"] == []


def test_database_away_means_503_with_retry_after_then_service_resumes_by_itself(
        client: TestClient, proxied: tuple[str, TcpProxy]) -> None:
    _, proxy = proxied
    assert say(client, "你好", "before").status_code == 200
    proxy.stop()

    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["down"] == ["database"]
    assert ready.json()["checks"]["model"] == "ok" and int(ready.headers["Retry-After"]) > 0
    refused = say(client, "你好", "while-away")
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) > 0 and "稍后再试" in refused.json()["detail"]
    with widget_socket(client) as (chat, _):
        chat.send_json({"type": "message", "text": "你好", "message_id": "socket-away"})
        frames = [chat.receive_json() for _ in range(2)]
    assert frames[0]["type"] == "typing"
    assert frames[1]["type"] == "error" and frames[1]["message_id"] == "socket-away"
    wechat, _, _ = wechat_tests.post(client, wechat_tests.text_xml("你好", 880001))
    assert wechat.status_code == 503 and "Retry-After" in wechat.headers  # WeChat sends it again
    app_refused = app_says(client, "你好", "app-away")
    assert app_refused.status_code == 503 and "Retry-After" in app_refused.headers
    wecom = wecom_tests.callback(client)  # the callback's token is noted in the database before "success"
    assert wecom.status_code == 503 and "Retry-After" in wecom.headers  # WeCom calls back again

    proxy.start()  # the database is back: no restart of the app
    assert client.get("/ready").status_code == 200
    back = say(client, "你好", "while-away")  # the refused message, retried
    assert back.status_code == 200 and back.json()
    assert say(client, "营业时间", "after").status_code == 200
    wechat, _, _ = wechat_tests.post(client, wechat_tests.text_xml("你好", 880001))
    assert wechat.status_code == 200 and "<Content>" in wechat.text  # the retried message is answered
    assert app_says(client, "你好", "app-away").status_code == 200
    assert wecom_tests.callback(client).text == "success"


def test_redis_when_configured_is_checked(proxied: tuple[str, TcpProxy], minibot_assistant) -> None:
    url, _ = proxied
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    config = minibot_assistant.config
    for redis_url, expected in ((f"redis://127.0.0.1:{closed_port}/14", 503), ("redis://127.0.0.1:6379/14", 200)):
        configured = config.model_copy(update={"security": config.security.model_copy(
            update={"redis_url": redis_url})})
        app = create_app(configured, assistant=minibot_assistant, database=Database(url, migrate=False))
        response = TestClient(app).get("/ready")
        assert response.status_code == expected, response.text
        assert (response.json()["checks"]["redis"] == "ok") == (expected == 200)
        assert ("redis" in response.json()["down"]) == (expected == 503)


def test_a_worker_shutting_down_answers_503(client: TestClient) -> None:
    assert client.app.state.conversations.drain(timeout=1)
    response = say(client, "你好", "during-shutdown")
    assert response.status_code == 503 and "Retry-After" in response.headers


def test_shutdown_drains_and_a_restarted_app_answers_again(client: TestClient) -> None:
    with client:
        assert say(client, "你好", "first-run").status_code == 200
    assert client.app.state.conversations.draining  # the lifespan's shutdown stopped new turns
    with client:
        assert say(client, "你好", "second-run").status_code == 200
