"""The chat WebSocket protocol shared by the web widget and the app: JSON text frames.

client → server  {"type": "message", "text", "message_id", "title"?}   {"type": "history"}
server → client  {"type": "history", "messages"}   {"type": "typing"}   {"type": "ack", "message_id", "duplicate"}
                 {"type": "bot", "text", "buttons", "timestamp", "reply_to", "duplicate"}
                 {"type": "error", "message", "message_id"?}   (the socket stays open)
                 {"type": "queue", "position", "text"}   (waiting for a person: the place, 0 once out of the queue)
                 {"type": "handoff", "status", "agent", "employee_no", "text", "timestamp"}   (a person took, passed
                 on or handed back the chat: status agent_joined | agent_left | transferred | requeued, `text` the
                 notice to show, e.g. 客服小王（工号1024）为您服务; see `bot.handoff.notices`)
`bot` frames of an agent carry "source": "agent", "agent" (display name) and "employee_no"; `history` messages
carry the same `source`/`agent`/`employee_no` (source "handoff_notice" for a notice, "satisfaction" for the
rating prompt). Right after `history` the socket is told where a hand-over stands: a `queue` frame while
waiting, a `handoff` frame (agent_joined, empty text) while an agent has the chat.
Frames of one socket are handled one at a time, so replies keep the order of the questions.
A frame larger than `server.max_frame_bytes` or nested too deeply closes the socket with 1009, invalid UTF-8
or a lone surrogate with 1007; nothing of such a frame is kept (`receive_frame`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, NamedTuple

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder

from bot.channels.handoff_notices import state_frames
from bot.dialogue.service import Inbound, MessageRejected
from bot.handoff.notices import SOURCE as NOTICE_SOURCE
from bot.live import after_grace
from bot.security.json_guard import UnsafeJson, loads_guarded, scrub
from bot.security.limits import client_ip

MAX_TEXT_CHARS = 2000
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_FRAME_DEPTH = 8  # the protocol's frames are flat objects
MALFORMED = "消息格式有误，请刷新页面后重试。"
BUSY = "抱歉，系统繁忙，请稍后再试或拨打客服热线 400-820-8888。"
# replies after which the widget's status line may have changed: queued, given to an agent, or back to the bot
HANDOFF_SOURCES = frozenset({"handoff", "handoff_cancelled", NOTICE_SOURCE})


class Refusal(NamedTuple):
    """Why a hostile frame ends the socket: the close code, its reason, what the customer is told first."""

    code: int
    reason: str
    message: str


TOO_LARGE = Refusal(1009, "frame too large", "消息太长了，请删减后分几次发送。")
TOO_DEEP = Refusal(1009, "frame nested too deeply", MALFORMED)
NOT_UNICODE = Refusal(1007, "invalid UTF-8 or lone surrogate", "消息中含有无法识别的字符，请删除特殊符号后重新发送。")

log = logging.getLogger(__name__)


class FrameError(Exception):
    """A frame the client should not have sent; the message is shown to the customer."""

    def __init__(self, message: str, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.message_id = message_id


async def serve_chat(websocket: WebSocket, service: Any, channel: str, sender: str) -> None:
    """Answer an accepted socket's frames until the client goes away. Who the customer is the service knows
    from the identity the handshake linked; while open, the socket also gets what agents send."""
    max_bytes = websocket.app.state.config.server.max_frame_bytes
    hub = getattr(websocket.app.state, "hub", None)
    if hub is not None:
        hub.add_customer(channel, sender, websocket)
    try:
        while (frame := await receive_frame(websocket, max_bytes)) is not None:
            await _answer(websocket, service, channel, sender, frame)
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


async def receive_frame(websocket: WebSocket, max_bytes: int, max_depth: int = MAX_FRAME_DEPTH,
                        skip_malformed: bool = True) -> dict[str, Any] | None:
    """The next JSON object the client sends on an accepted socket, or None once the socket is gone. A hostile
    frame (see TOO_LARGE, TOO_DEEP, NOT_UNICODE) gets an error frame, then the socket is closed here and None
    returned; a frame that is merely not a JSON object gets an error frame and the next frame is read (or, with
    `skip_malformed` false, comes back as an empty object for the caller to refuse)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        raw = message["text"] if message.get("text") is not None else message.get("bytes") or b""
        try:
            frame = _load(raw, max_bytes, max_depth)
        except _Hostile as e:
            await _close(websocket, e.refusal)
            return None
        if isinstance(frame, dict):
            return frame
        if not skip_malformed:
            return {}
        await websocket.send_json(_error(MALFORMED, None))


class _Hostile(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def _load(raw: str | bytes, max_bytes: int, max_depth: int) -> Any:
    """The frame's JSON value (None when it is not JSON); _Hostile when the socket must close."""
    if len(raw) > max_bytes or (isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > max_bytes):
        raise _Hostile(TOO_LARGE)
    try:
        return loads_guarded(raw, max_depth)
    except UnsafeJson as e:
        if e.kind == "syntax":
            return None
        raise _Hostile(NOT_UNICODE if e.kind == "unicode" else TOO_DEEP) from e


async def _close(websocket: WebSocket, refusal: Refusal) -> None:
    log.warning("closing a chat socket (%s): %s", refusal.code, refusal.reason)
    try:
        await websocket.send_json(_error(refusal.message, None))
        await websocket.close(code=refusal.code, reason=refusal.reason)
    except (WebSocketDisconnect, RuntimeError):  # the client left first
        return


async def _answer(websocket: WebSocket, service: Any, channel: str, sender: str, frame: dict[str, Any]) -> None:
    try:
        _check_type(frame)
        if frame["type"] == "history":
            await _history(websocket, service, channel, sender)
        else:
            await _message(websocket, service, channel, sender, frame)
    except FrameError as e:
        await websocket.send_json(_error(e.message, e.message_id))


async def _history(websocket: WebSocket, service: Any, channel: str, sender: str) -> None:
    try:
        messages = await run_in_threadpool(service.history, channel, sender)
        states = await run_in_threadpool(state_frames, websocket.app, channel, sender)
    except Exception as e:
        log.exception("%s history failed for sender %s", channel, sender)
        raise FrameError(BUSY) from e
    # scrub: rows stored before input was checked may hold lone surrogates, which no frame can carry
    await websocket.send_json(jsonable_encoder({"type": "history", "messages": scrub(messages)}))
    for frame in states:  # after a reload or a reconnect: the queue place, or who is serving
        await websocket.send_json(jsonable_encoder(frame))


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
        ip = client_ip(websocket, websocket.app.state.config.server.trusted_proxies)
        result = await run_in_threadpool(service.handle, Inbound(channel, sender, text, message_id, metadata, ip))
    except MessageRejected as e:  # only the service's own refusals carry a message meant for the customer
        raise FrameError(str(e), message_id) from e
    except Exception as e:
        log.exception("%s chat turn failed for sender %s", channel, sender)
        raise FrameError(BUSY, message_id) from e
    for reply in result.replies:
        notice = {"source": NOTICE_SOURCE} if reply.get("source") == NOTICE_SOURCE else {}  # shown as a line
        await websocket.send_json(jsonable_encoder({
            "type": "bot", "text": reply.get("text", ""), "buttons": reply.get("buttons") or None,
            "timestamp": reply.get("timestamp"), "reply_to": message_id, "duplicate": result.duplicate, **notice,
        }))
    if any(reply.get("source") in HANDOFF_SOURCES for reply in result.replies):  # the status line follows
        for state in await run_in_threadpool(state_frames, websocket.app, channel, sender):
            await websocket.send_json(jsonable_encoder(state))
    await websocket.send_json({"type": "ack", "message_id": message_id, "duplicate": result.duplicate})


def _check_type(frame: dict[str, Any]) -> None:
    if frame.get("type") not in ("message", "history"):
        raise FrameError("不支持的消息类型，请刷新页面后重试。")


def _error(message: str, message_id: str | None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "message": message}
    if message_id:
        frame["message_id"] = message_id
    return frame
