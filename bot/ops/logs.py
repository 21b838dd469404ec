"""Structured logs: one JSON object per line (`server.log_format: json`), with the HTTP request's id and the
conversation's id when known, personal data masked as in every other log (bot/security/masking.py).

    {"time": "2026-11-30T15:04:05.123Z", "level": "INFO", "logger": "bot.ops", "message": "...",
     "request_id": "6f1c...", "conversation_id": "a1b2..."}

Every HTTP request and WebSocket gets a request id: the caller's `X-Request-ID` when it looks like one (a load
balancer's or nginx's `$request_id`), else a new one; it is returned in the response's `X-Request-ID`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from bot.security.masking import install_log_masking, mask_record, mask_text, mask_value

REQUEST_ID_HEADER = b"x-request-id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{7,127}")
# the attributes every LogRecord has: anything else on a record was passed with `extra=` and is logged too
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName",
                                                             "color_message"}  # uvicorn's message with ANSI colours
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("bot_request_id", default=None)
conversation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("bot_conversation_id", default=None)
Result = TypeVar("Result")


def in_conversation(turn: Callable[..., Result]) -> Callable[..., Result]:
    """Decorates a method of the turn that takes the turn's start (anything with a `conversation_id`): log
    records made while it runs carry that conversation's id."""

    @functools.wraps(turn)
    def logged(*args: Any, **kwargs: Any) -> Result:
        found = next((a.conversation_id for a in (*args, *kwargs.values()) if hasattr(a, "conversation_id")), None)
        token = conversation_id.set(str(found) if found else conversation_id.get())
        try:
            return turn(*args, **kwargs)
        finally:
            conversation_id.reset(token)

    return logged


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time (UTC), level, logger, message, request and conversation ids, the
    exception if any, and the record's `extra=` fields; every string masked."""

    def format(self, record: logging.LogRecord) -> str:
        mask_record(record)  # records made before masking was installed, or by a foreign record factory
        ids = {"request_id": getattr(record, "request_id", None) or request_id.get(),
               "conversation_id": getattr(record, "conversation_id", None) or conversation_id.get()}
        told: dict[str, Any] = {"message": record.getMessage()}
        told.update((key, _plain(value)) for key, value in record.__dict__.items()
                    if key not in _STANDARD and key not in ids and not key.startswith("_"))
        if record.exc_text:
            told["exception"] = record.exc_text
        if record.stack_info:
            told["stack"] = record.stack_info
        moment = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
        line = {"time": moment.replace("+00:00", "Z"), "level": record.levelname, "logger": record.name,
                **mask_value(told), **ids}
        return json.dumps(line, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    """A value as JSON has it: anything but JSON's own types becomes its text (masked with the rest)."""
    return value if isinstance(value, str | int | float | bool | dict | list | tuple) or value is None else str(value)


def install_json_logging(level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """Every record, uvicorn's included, goes to one handler on the root logger that writes JSON lines to
    `stream` (standard error). Idempotent: a second call replaces the handler."""
    install_log_masking()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in _UVICORN:  # uvicorn's own text handlers would print every line a second time
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


def sane_request_id(value: str | None) -> str:
    """The caller's request id when it looks like one (8-128 letters, digits, `.`, `_`, `:`, `-`; no phone or
    card number in it), else a new one."""
    sane = bool(value and SANE_REQUEST_ID.fullmatch(value) and mask_text(value) == value)
    return value if sane and value else uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives each HTTP request and WebSocket its request id for the logs, and returns it in `X-Request-ID`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), b"")
        current = sane_request_id(given.decode("latin-1"))
        token = request_id.set(current)

        async def with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, current.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            request_id.reset(token)


def configure_logs(log_format: str) -> None:
    """`server.log_format`: "json" writes JSON lines (install_json_logging); "text" leaves logging as it is."""
    if log_format == "json":
        install_json_logging()
