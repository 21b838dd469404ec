"""Opening the customer sockets as the widget and the app do: credentials in the first frame."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient


@contextmanager
def widget_socket(client: TestClient, visitor: str | None = None, token: str | None = None,
                  headers: dict[str, str] | None = None) -> Iterator[tuple[Any, str]]:
    """The widget's socket after its hello: (socket, the visitor credential to present next time)."""
    hello: dict[str, str] = {"type": "hello"}
    if visitor:
        hello["visitor"] = visitor
    if token:
        hello["token"] = token
    with client.websocket_connect("/ws/chat", headers=dict(headers or {})) as socket:
        socket.send_json(hello)
        welcome = socket.receive_json()
        assert welcome["type"] == "welcome", welcome
        yield socket, welcome["visitor"]


@contextmanager
def app_socket(client: TestClient, token: str) -> Iterator[Any]:
    """The app's socket after its auth frame."""
    with client.websocket_connect("/channels/app/ws") as socket:
        socket.send_json({"type": "auth", "token": token})
        welcome = socket.receive_json()
        assert welcome["type"] == "welcome", welcome
        yield socket
