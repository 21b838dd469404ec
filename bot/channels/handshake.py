"""The first frame of an authenticated socket: credentials travel in it, never in the URL (URLs are logged).

    widget  {"type": "hello", "visitor"?: credential, "token"?: app token}
    app     {"type": "auth", "token": app token}
    agents  {"type": "auth", "token": session token}
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import WebSocket

from bot.channels.chat_socket import receive_frame

HANDSHAKE_SECONDS = 10.0


async def first_frame(websocket: WebSocket, expected_type: str = "hello") -> dict[str, Any] | None:
    """The accepted socket's first frame when it is of `expected_type`; otherwise the socket is closed (4401
    when nothing came in time, 1008 for another frame) and None returned."""
    try:
        frame = await asyncio.wait_for(receive_frame(websocket, websocket.app.state.config.server.max_frame_bytes,
                                                     skip_malformed=False), HANDSHAKE_SECONDS)
    except TimeoutError:
        await websocket.close(code=4401, reason="no credentials")
        return None
    if frame is None:
        return None
    if frame.get("type") != expected_type:
        await websocket.send_json({"type": "error", "message": "连接未通过验证，请刷新页面后重试。"})
        await websocket.close(code=1008, reason=f"the first frame must be {expected_type}")
        return None
    return frame

