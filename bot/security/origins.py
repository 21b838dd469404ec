"""Which web pages may talk to us: the server's own origin and the bank's pages named in
`server.allowed_origins`. Browsers always send `Origin` on a WebSocket handshake, so a socket opened by a
page elsewhere is refused; native clients (the bank's app) send none and authenticate by their token."""

from __future__ import annotations

from starlette.requests import HTTPConnection


def own_origin(connection: HTTPConnection) -> str:
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    return f"{scheme}://{connection.headers.get('host', connection.url.netloc)}"


def origin_allowed(connection: HTTPConnection, allowed: list[str]) -> bool:
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    return origin == own_origin(connection) or origin in {a.rstrip("/") for a in allowed}
