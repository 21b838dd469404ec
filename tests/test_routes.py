"""Every route of the application, HTTP and WebSocket, against the declared table of who may call it
(bot/web/access.py): a route without an entry fails, and every route that needs credentials refuses a caller
without them (or with a weaker role's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from bot.channels.app import AppCustomer, sign_token
from bot.config import (
    AppChannelConfig,
    ChannelsConfig,
    NotifyConfig,
    WeChatChannelConfig,
    WeComChannelConfig,
)
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.web.access import ROUTES
from bot.web.app import create_app

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_SECRET = "routes-test-secret-of-the-app-backend-0123"
PASSWORDS = {"agent": "agent-pass-0001", "supervisor": "super-pass-0001", "admin": "admin-pass-0001",
             "trainer": "train-pass-0001"}
# roles that must be refused (403): a trainer does not serve customers, agents and supervisors do not train
WEAKER = {"agent": ["trainer"], "supervisor": ["agent", "trainer"], "admin": ["agent", "supervisor", "trainer"],
          "api": ["agent", "trainer"], "trainer": ["agent", "supervisor"], "trainer_or_api": ["agent", "supervisor"],
          "ops": ["agent", "trainer"]}


@pytest.fixture(scope="module")
def app(minibot_assistant, tmp_path_factory: pytest.TempPathFactory):
    channels = ChannelsConfig(
        app=AppChannelConfig(secret=APP_SECRET),
        wechat=WeChatChannelConfig(token="routestoken", app_id="wx0123456789abcdef", encoding_aes_key=AES_KEY),
        wecom=WeComChannelConfig(token="routestoken", corp_id="ww0123456789abcdef", secret="s" * 32,
                                 encoding_aes_key=AES_KEY))
    config = minibot_assistant.config.model_copy(update={
        "channels": channels, "notify": NotifyConfig(api_keys=["routes-notify-key-000001"]),
        "security": minibot_assistant.config.security.model_copy(update={"api_token": "routes-api-token-000001"})})
    database = Database(f"sqlite:///{Path(tmp_path_factory.mktemp('routes')) / 'bot.db'}")
    for role, password in PASSWORDS.items():
        create_agent(database, f"route-{role}", role, password, role=role, groups=["综合服务"])
    return create_app(config, assistant=minibot_assistant, database=database)


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app)


def served_routes(app) -> set[tuple[str, str]]:
    return flatten(app.routes, "")


def flatten(routes: list, prefix: str) -> set[tuple[str, str]]:
    """(method, path) of every route, "WS" for sockets; included routers (FastAPI keeps them as branches with
    their own prefix) are walked through."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, APIWebSocketRoute | WebSocketRoute):
            found.add(("WS", prefix + route.path))
        elif isinstance(route, APIRoute | Route):
            found |= {(method, prefix + route.path) for method in route.methods or () if method != "HEAD"}
        elif hasattr(route, "original_router"):
            found |= flatten(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            raise AssertionError(f"a kind of route this test does not know: {route!r}")
    return found


def test_every_route_has_a_declared_access_and_every_declaration_a_route(app) -> None:
    served = served_routes(app)
    assert served - ROUTES.keys() == set(), "routes without an entry in bot/web/access.py"
    assert ROUTES.keys() - served == set(), "entries in bot/web/access.py without a route"


def concrete(path: str) -> str:
    return path.replace("{conversation_id}", "someone").replace("{handoff_id}", "1").replace("{kind}", "js")


def login(client: TestClient, role: str) -> str:
    response = client.post("/api/agent/login", json={"username": f"route-{role}", "password": PASSWORDS[role]})
    assert response.status_code == 200, response.text
    return response.json()["token"]


def call(client: TestClient, method: str, path: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(method, concrete(path), headers=headers, json={} if method == "POST" else None)


HTTP_PROTECTED = sorted((m, p, a) for (m, p), a in ROUTES.items() if a != "public" and m != "WS")


@pytest.mark.parametrize(("method", "path", "access"), HTTP_PROTECTED)
def test_protected_http_routes_refuse_callers_without_credentials(client: TestClient, method: str, path: str,
                                                                   access: str) -> None:
    refused = call(client, method, path)
    assert refused.status_code in (400, 401, 403), (refused.status_code, refused.text)
    forged = call(client, method, path, token="forged-token-0000000000000000")
    assert forged.status_code in (400, 401, 403), (forged.status_code, forged.text)
    customer = sign_token(AppCustomer(customer_id="C0001"), APP_SECRET)
    if access != "customer":  # a customer's token opens nothing but the customer's own routes
        assert call(client, method, path, token=customer).status_code in (400, 401, 403)
    for weaker in WEAKER.get(access, []):
        assert call(client, method, path, token=login(client, weaker)).status_code == 403, (weaker, path)


@pytest.mark.parametrize(("path", "first"), [("/api/agent/ws", {"type": "auth", "token": "forged"}),
                                             ("/channels/app/ws", {"type": "auth", "token": "forged"}),
                                             ("/api/agent/ws", {"type": "history"}),
                                             ("/channels/app/ws", {"type": "message", "text": "你好"})])
def test_protected_sockets_close_without_credentials(client: TestClient, path: str, first: dict) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(path) as socket:  # noqa: PT012
        socket.send_json(first)
        while True:
            frame = socket.receive_json()
            assert frame["type"] == "error", frame  # nothing but the refusal
    assert closed.value.code in (1008, 4401)


def test_the_widget_socket_gives_a_caller_without_a_credential_a_new_empty_visitor(client: TestClient) -> None:
    with client.websocket_connect("/ws/chat") as socket:
        socket.send_json({"type": "hello"})
        welcome = socket.receive_json()
        assert welcome["type"] == "welcome" and welcome["visitor"].startswith("v1.")
        socket.send_json({"type": "history"})
        assert socket.receive_json() == {"type": "history", "messages": []}


def test_every_socket_route_is_covered_here() -> None:
    sockets = {p for (m, p) in ROUTES if m == "WS"}
    assert sockets == {"/api/agent/ws", "/channels/app/ws", "/ws/chat"}


def test_a_trainer_signs_in_at_the_desk_login_but_serves_no_customer(client: TestClient) -> None:
    token = login(client, "trainer")
    refused = call(client, "GET", "/api/agent/queue", token)
    assert refused.status_code == 403 and "训练工作台" in refused.json()["detail"]
    assert call(client, "POST", "/api/agent/logout", token).status_code == 200
