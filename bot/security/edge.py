"""The HTTP edge: what every request passes before a route sees it, and what every response carries.

- a body limit (`server.max_body_bytes`): 413 from Content-Length, or as soon as a streamed (chunked) body
  passes it; never more than the limit is buffered;
- JSON bodies (and the Rasa paths, which are read as JSON whatever their Content-Type) decoded by
  `loads_guarded`: invalid UTF-8, lone surrogates, hostile nesting or NaN/Infinity get 400 before anything
  can be stored;
- security headers on every response: CSP without inline scripts, nosniff, Referrer-Policy, framing (the
  consoles and the API never, the widget's pages by the server itself and `server.allowed_origins`), HSTS
  when `server.behind_tls`; `Cache-Control: no-store` on JSON that does not say otherwise;
- CORS for `server.allowed_origins` only, without credentials.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.config import BotConfig
from bot.security.json_guard import MAX_DEPTH, UnsafeJson, loads_guarded

log = logging.getLogger(__name__)

# The widget's own pages may be framed by the server itself and the bank's pages; nothing else may be framed.
WIDGET_PATHS = frozenset({"/", "/widget.js", "/widget.css", "/demo.js", "/demo.css"})
HSTS = "max-age=31536000; includeSubDomains"
HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
DIGITS = re.compile(r"^[0-9]+$")
ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")
HINTS = {
    "unicode": "Send the JSON as UTF-8; \\uXXXX escapes of surrogates must come in valid pairs.",
    "depth": "Send a flatter document.",
    # FastAPI's 422 echoes its input and could not write NaN back either, so the edge refuses it
    "number": "Send finite numbers.",
}
class Refused(Exception):
    """A request answered at the edge; `detail` tells the caller what to change."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ClientGone(Exception):
    """The client disconnected while its body was being read."""


@dataclass(frozen=True)
class EdgePolicy:
    max_body_bytes: int
    json_paths: frozenset[str]  # read as JSON whatever their Content-Type
    frame_origins: tuple[str, ...]  # besides the server itself, may frame the widget's pages
    hsts: bool
    own_limits: tuple[tuple[str, int], ...] = ()  # (path prefix, bytes): channels configured with their own

    def body_limit(self, path: str) -> int:
        return next((limit for prefix, limit in self.own_limits if path.startswith(prefix)), self.max_body_bytes)

    def headers(self, path: str, host: str | None) -> dict[str, str]:
        """The security headers of a response to `path` (`host` from the request, for connect-src)."""
        headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "strict-origin-when-cross-origin"}
        if path in WIDGET_PATHS:
            headers["Content-Security-Policy"] = page_csp(host, " ".join(("'self'", *self.frame_origins)))
            if not self.frame_origins:  # X-Frame-Options cannot name other origins: rely on CSP then
                headers["X-Frame-Options"] = "SAMEORIGIN"
        else:
            headers["Content-Security-Policy"] = page_csp(host, "'none'")
            headers["X-Frame-Options"] = "DENY"
        if self.hsts:
            headers["Strict-Transport-Security"] = HSTS
        return headers


def page_csp(host: str | None, frame_ancestors: str) -> str:
    # 'self' covers same-host WebSockets in CSP 3 browsers only, so ws:/wss: of the host are named too
    sockets = f" ws://{host} wss://{host}" if host and HOST.match(host) else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
            f"connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {frame_ancestors}")


class EdgeMiddleware:
    """Pure ASGI, so the body is checked before FastAPI reads it and the headers reach every response."""

    def __init__(self, app: ASGIApp, policy: EdgePolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(scope, send)
        try:
            body = await read_body(scope, receive, self.policy.body_limit(scope["path"]))
            if body and self._is_json(scope):
                guard_json(body)
        except ClientGone:
            return
        except Refused as e:
            log.warning("refused %s %s: %s", scope["method"], scope["path"], e.detail)
            await JSONResponse({"detail": e.detail}, status_code=e.status)(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    def _is_json(self, scope: Scope) -> bool:
        media_type = _header(scope, b"content-type").split(";")[0].strip().lower()
        return media_type == "application/json" or media_type.endswith("+json") or scope["path"] in \
            self.policy.json_paths

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        extra = self.policy.headers(scope["path"], _header(scope, b"host") or None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", []))
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("application/json"):
                    headers.setdefault("Cache-Control", "no-store")  # answers may hold personal data
            await send(message)

        return send_with_headers


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, or Refused(413) as soon as it is known to be larger than `limit`."""
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def guard_json(body: bytes) -> None:
    """Refused(400) for invalid UTF-8, lone surrogates, deep nesting or non-finite numbers. Plain syntax
    errors go on to the route, which answers 422 with the position as FastAPI always does."""
    try:
        loads_guarded(body, MAX_DEPTH, finite=True)
    except UnsafeJson as e:
        if e.kind == "syntax":
            return
        raise Refused(400, f"request body refused: {e.message}. {HINTS.get(e.kind, '')}".strip()) from e


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the buffered body, then waits for the client's disconnect as usual."""
    delivered = False

    async def receive_again() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def install_edge(app: FastAPI, config: BotConfig, json_paths: Iterable[str] = ()) -> None:
    """Add CORS (when origins are configured) and, outside it, the edge middleware to `app`."""
    server = config.server
    origins = _origins(server.allowed_origins)
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"],
                           max_age=600)
    # WeChat and WeCom have a limit of their own (their callbacks' XML), which their routes check again
    own_limits = (("/channels/wechat", config.channels.wechat.max_body_bytes),
                  ("/channels/wecom", config.channels.wecom.max_body_bytes),
                  # a file and its multipart framing
                  ("/channels/app/attachments", config.attachments.max_bytes + 64 * 1024))
    app.add_middleware(EdgeMiddleware, policy=EdgePolicy(
        max_body_bytes=server.max_body_bytes, json_paths=frozenset(json_paths), frame_origins=origins,
        hsts=server.behind_tls, own_limits=own_limits))


def _origins(configured: list[str]) -> tuple[str, ...]:
    origins = []
    for origin in (o.rstrip("/") for o in configured):
        if ORIGIN.match(origin):
            origins.append(origin)
        else:  # it would end up in a header: only scheme://host[:port]
            log.warning("server.allowed_origins: ignoring %r, expected e.g. https://www.bank.example", origin)
    return tuple(origins)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length").strip()
    if not value:
        return None
    if not DIGITS.match(value):
        raise Refused(400, "Content-Length must be a whole number of bytes")
    return int(value) if len(value) <= 18 else 10**18


def _too_large(limit: int) -> Refused:
    return Refused(413, f"request body too large: at most {limit} bytes are accepted. Send a shorter message "
                        "or smaller metadata.")
