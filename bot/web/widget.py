"""The embeddable web chat widget: its files, a demo help page and the WebSocket it talks over.

A bank embeds `<script src="https://bot.example/widget.js" data-server="https://bot.example"></script>`.
The socket is `/ws/chat?sender=<visitor id>&channel=web`; its frames are described in
`bot.channels.chat_socket`. On a signed-in page the widget also sends `token`, a token of the app channel's
kind (`bot.channels.app`): the visitor is then linked to that bank customer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from bot.channels.app import TokenRejected, verify_token
from bot.channels.chat_socket import serve_chat

STATIC = Path(__file__).parent / "static"
# The visitor id is a random UUID made by the widget; the channel is fixed so that a web visitor can never
# read another channel's history by naming its sender (a WeChat openid, say).
SENDER = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
CHANNELS = {"web"}
NO_CACHE = {"Cache-Control": "no-cache"}  # the bank's page always gets the current widget after an upgrade


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
    async def chat(websocket: WebSocket, sender: str = "", channel: str = "web", token: str = "") -> None:
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
        metadata: dict[str, Any] = {}
        if token:
            try:
                customer = verify_token(token, websocket.app.state.config.channels.app)
            except TokenRejected:
                await websocket.send_json({"type": "error", "message": "登录已失效，请重新登录网上银行后再咨询。"})
                await websocket.close(code=4401)
                return
            await run_in_threadpool(service.store.link_customer, channel, sender, customer.customer_id,
                                    name=customer.name, tier=customer.tier, verified=customer.verified)
            metadata = customer.metadata
        await serve_chat(websocket, service, channel, sender, metadata)

    return router


