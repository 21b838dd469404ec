"""The embeddable web chat widget: its files, a demo help page and the WebSocket it talks over.

A bank embeds `<script src="https://bot.example/widget.js" data-server="https://bot.example"></script>`.
Protocol (JSON text frames on `/ws/chat?sender=<visitor id>&channel=web`):

client → server  {"type": "message", "text", "message_id", "title"?}   {"type": "history"}
server → client  {"type": "history", "messages"}   {"type": "typing"}   {"type": "ack", "message_id", "duplicate"}
                 {"type": "bot", "text", "buttons", "timestamp", "reply_to", "duplicate"}
                 {"type": "error", "message", "message_id"?}   (the socket stays open)

Frames of one socket are handled one at a time, so replies keep the order of the questions.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse

from bot.dialogue.service import Inbound

STATIC = Path(__file__).parent / "static"
MAX_TEXT_CHARS = 2000
# The visitor id is a random UUID made by the widget; the channel is fixed so that a web visitor can never
# read another channel's history by naming its sender (a WeChat openid, say).
SENDER = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
CHANNELS = {"web"}
NO_CACHE = {"Cache-Control": "no-cache"}  # the bank's page always gets the current widget after an upgrade

log = logging.getLogger(__name__)


class FrameError(Exception):
    """A frame the widget should not have sent; the message is shown to the customer."""

    def __init__(self, message: str, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.message_id = message_id


def widget_router() -> APIRouter:
    router = APIRouter(tags=["widget"])

    @router.get("/", include_in_schema=False)
    def demo_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)

    @router.get("/widget.js", include_in_schema=False)
    def widget_js() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript; charset=utf-8", headers=NO_CACHE)

    @router.get("/widget.css", include_in_schema=False)
    def widget_css() -> FileResponse:
        return FileResponse(STATIC / "widget.css", media_type="text/css; charset=utf-8", headers=NO_CACHE)

    @router.websocket("/ws/chat")
    async def chat(websocket: WebSocket, sender: str = "", channel: str = "web") -> None:
        await websocket.accept()
        if not SENDER.match(sender) or channel not in CHANNELS:
            await websocket.send_json({"type": "error", "message": "访客标识无效，请刷新页面后重试。"})
            await websocket.close(code=1008)
            return
        service = getattr(websocket.app.state, "conversations", None)
        if service is None:
            await websocket.send_json({"type": "error", "message": "在线客服暂时不可用，请稍后再试或拨打客服热线。"})
            await websocket.close(code=1011)
            return
        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    return
                await _answer(websocket, service, channel, sender, frame.get("text") or _decode(frame.get("bytes")))
        except WebSocketDisconnect:
            return

    return router


def _decode(data: bytes | None) -> str:
    try:
        return (data or b"").decode("utf-8")
    except UnicodeDecodeError:
        return ""


async def _answer(websocket: WebSocket, service: Any, channel: str, sender: str, raw: str) -> None:
    try:
        frame = _parse(raw)
        if frame["type"] == "history":
            messages = await run_in_threadpool(service.history, channel, sender)
            await websocket.send_json(jsonable_encoder({"type": "history", "messages": messages}))
        else:
            await _message(websocket, service, channel, sender, frame)
    except FrameError as e:
        await websocket.send_json(_error(e.message, e.message_id))


async def _message(websocket: WebSocket, service: Any, channel: str, sender: str, frame: dict[str, Any]) -> None:
    message_id = frame.get("message_id")
    if message_id is not None and not (isinstance(message_id, str) and MESSAGE_ID.match(message_id)):
        raise FrameError("消息编号无效，请刷新页面后重试。")
    text = frame.get("text")
    if not isinstance(text, str) or not text.strip():
        raise FrameError("消息是空的，请输入您的问题。", message_id)
    if len(text) > MAX_TEXT_CHARS:
        raise FrameError(f"消息太长了，请控制在 {MAX_TEXT_CHARS} 字以内。", message_id)
    title = frame.get("title")
    metadata = {"button_title": title[:200]} if isinstance(title, str) and title else {}

    await websocket.send_json({"type": "typing"})
    try:
        result = await run_in_threadpool(service.handle, Inbound(channel, sender, text, message_id, metadata))
    except ValueError as e:  # the service's own refusals carry a message for the customer
        raise FrameError(str(e), message_id) from e
    except Exception as e:
        log.exception("web chat turn failed for sender %s", sender)
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
