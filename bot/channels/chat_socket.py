"""The chat WebSocket protocol shared by the web widget and the app: JSON text frames.

client → server  {"type": "message", "text", "message_id", "title"?}   {"type": "history"}
server → client  {"type": "history", "messages"}   {"type": "typing"}   {"type": "ack", "message_id", "duplicate"}
                 {"type": "bot", "text", "buttons", "timestamp", "reply_to", "duplicate"}
                 {"type": "error", "message", "message_id"?}   (the socket stays open)
                 {"type": "queue", "position", "text"}   (waiting for a person: the place, 0 once out of the queue)
Frames of one socket are handled one at a time, so replies keep the order of the questions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder

from bot.dialogue.service import Inbound
from bot.web.hub import after_grace

MAX_TEXT_CHARS = 2000
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

log = logging.getLogger(__name__)


class FrameError(Exception):
    """A frame the client should not have sent; the message is shown to the customer."""

    def __init__(self, message: str, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.message_id = message_id


async def serve_chat(websocket: WebSocket, service: Any, channel: str, sender: str,
                     metadata: dict[str, Any] | None = None) -> None:
    """Answer an accepted socket's frames until the client goes away. `metadata` goes with every message
    (e.g. the app customer's verified identity). While open, the socket also gets what agents send."""
    hub = getattr(websocket.app.state, "hub", None)
    if hub is not None:
        hub.add_customer(channel, sender, websocket)
    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            raw = frame.get("text") or _decode(frame.get("bytes"))
            await _answer(websocket, service, channel, sender, raw, metadata or {})
    except WebSocketDisconnect:
        return
    finally:
        if hub is not None:
            hub.remove_customer(channel, sender, websocket)
            _leave_queue_unless_back(websocket, service, channel, sender)


def _leave_queue_unless_back(websocket: WebSocket, service: Any, channel: str, sender: str) -> None:
    """A customer who closed the chat while waiting for a person leaves the queue, unless they come back
    (a reload, a network drop) within `handoff.customer_grace_seconds`."""
    state = websocket.app.state
    desk = getattr(state, "desk", None)
    if desk is None:
        return

    def leave() -> None:
        conversation = service.store.find_conversation_of(channel, sender)
        if conversation is not None and conversation.status == "queued":
            desk.customer_left(conversation.id)
            state.handover.queue_changed()

    task = asyncio.ensure_future(after_grace(state.config.handoff.customer_grace_seconds,
                                             lambda: not state.hub.customer_connected(channel, sender), leave))
    state.background.add(task)
    task.add_done_callback(state.background.discard)


def _decode(data: bytes | None) -> str:
    try:
        return (data or b"").decode("utf-8")
    except UnicodeDecodeError:
        return ""


async def _answer(websocket: WebSocket, service: Any, channel: str, sender: str, raw: str,
                  metadata: dict[str, Any]) -> None:
    try:
        frame = _parse(raw)
        if frame["type"] == "history":
            messages = await run_in_threadpool(service.history, channel, sender)
            await websocket.send_json(jsonable_encoder({"type": "history", "messages": messages}))
        else:
            await _message(websocket, service, channel, sender, frame, metadata)
    except FrameError as e:
        await websocket.send_json(_error(e.message, e.message_id))


async def _message(websocket: WebSocket, service: Any, channel: str, sender: str, frame: dict[str, Any],
                   metadata: dict[str, Any]) -> None:
    message_id = frame.get("message_id")
    if message_id is not None and not (isinstance(message_id, str) and MESSAGE_ID.match(message_id)):
        raise FrameError("消息编号无效，请刷新页面后重试。")
    text = frame.get("text")
    if not isinstance(text, str) or not text.strip():
        raise FrameError("消息是空的，请输入您的问题。", message_id)
    if len(text) > MAX_TEXT_CHARS:
        raise FrameError(f"消息太长了，请控制在 {MAX_TEXT_CHARS} 字以内。", message_id)
    title = frame.get("title")
    if isinstance(title, str) and title:
        metadata = {**metadata, "button_title": title[:200]}

    await websocket.send_json({"type": "typing"})
    try:
        result = await run_in_threadpool(service.handle, Inbound(channel, sender, text, message_id, metadata))
    except ValueError as e:  # the service's own refusals carry a message for the customer
        raise FrameError(str(e), message_id) from e
    except Exception as e:
        log.exception("%s chat turn failed for sender %s", channel, sender)
        raise FrameError("抱歉，系统繁忙，请稍后再试或拨打客服热线 400-820-8888。", message_id) from e
    for reply in result.replies:
        await websocket.send_json(jsonable_encoder({
            "type": "bot", "text": reply.get("text", ""), "buttons": reply.get("buttons") or None,
            "timestamp": reply.get("timestamp"), "reply_to": message_id, "duplicate": result.duplicate,
        }))
    await websocket.send_json({"type": "ack", "message_id": message_id, "duplicate": result.duplicate})


def _parse(raw: str) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except ValueError:
        frame = None
    if not isinstance(frame, dict):
        raise FrameError("消息格式有误，请刷新页面后重试。")
    if frame.get("type") not in ("message", "history"):
        raise FrameError("不支持的消息类型，请刷新页面后重试。")
    return frame


def _error(message: str, message_id: str | None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "message": message}
    if message_id:
        frame["message_id"] = message_id
    return frame
