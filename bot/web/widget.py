"""The embeddable web chat widget: its files, a demo help page and the WebSocket it talks over.

A bank embeds `<script src="https://bot.example/widget.js" data-server="https://bot.example"></script>`.
The socket is `/ws/chat`; the widget's first frame presents the visitor credential the server issued it
(`bot.security.credentials`), later frames are described in `bot.channels.chat_socket`. On a signed-in page
the first frame also carries `token`, a token of the app channel's kind (`bot.channels.app`): the visitor is
then linked to that bank customer. `GET /widget/transcript` with the credential as `Authorization: Bearer`
downloads the visitor's conversation as text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Request, Response, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from bot.channels.app import TokenRejected, verify_token
from bot.channels.chat_socket import serve_chat
from bot.channels.handshake import first_frame
from bot.channels.transcript import transcript_response
from bot.security.credentials import bearer_token
from bot.security.origins import origin_allowed

STATIC = Path(__file__).parent / "static"
CHANNEL = "web"  # fixed: a web visitor can never read another channel's history by naming its sender
NO_CACHE = {"Cache-Control": "no-cache"}  # the bank's page always gets the current widget after an upgrade


def widget_router() -> APIRouter:
    router = APIRouter(tags=["widget"])

    @router.get("/", include_in_schema=False)
    def demo_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)

    @router.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:  # an SVG: every browser the widget and consoles support shows it
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @router.get("/widget.js", include_in_schema=False)
    def widget_js() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript; charset=utf-8", headers=NO_CACHE)

    @router.get("/widget.css", include_in_schema=False)
    def widget_css() -> FileResponse:
        return FileResponse(STATIC / "widget.css", media_type="text/css; charset=utf-8", headers=NO_CACHE)

    @router.get("/demo.{kind}", include_in_schema=False)
    def demo_asset(kind: Literal["js", "css"]) -> FileResponse:
        """The demo page's script and styles, in files so that its CSP needs no 'unsafe-inline'."""
        media_type = {"js": "text/javascript", "css": "text/css"}[kind]
        return FileResponse(STATIC / f"demo.{kind}", media_type=f"{media_type}; charset=utf-8", headers=NO_CACHE)

    @router.get("/widget/transcript", include_in_schema=False)
    def transcript(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
        """The visitor's own conversation as a text file: `Authorization: Bearer <visitor credential>` (the one
        the socket's `welcome` gave); the credential names the visitor, so nobody else's can be read."""
        visitor_id = request.app.state.visitor_credentials.verify(bearer_token(authorization))
        if visitor_id is None:
            raise HTTPException(status_code=401, detail="请先打开在线客服再下载聊天记录。",
                                headers={"WWW-Authenticate": "Bearer"})
        return transcript_response(request.app.state.conversations, CHANNEL, visitor_id)

    @router.websocket("/ws/chat")
    async def chat(websocket: WebSocket) -> None:
        """The widget's socket. Its first frame is `{"type": "hello", "visitor"?: credential, "token"?: app
        token}`; the answer `{"type": "welcome", "visitor": credential}` carries the credential to keep (a new
        one when none or a forged one was presented). Then frames as in `bot.channels.chat_socket`."""
        state = websocket.app.state
        if not origin_allowed(websocket, state.config.server.allowed_origins):
            await websocket.close(code=4403)  # before accept: the browser sees the handshake refused
            return
        await websocket.accept()
        hello = await first_frame(websocket)
        if hello is None:
            return
        visitor_id = state.visitor_credentials.verify(hello.get("visitor"))
        credential = hello.get("visitor")
        if visitor_id is None:
            visitor_id, credential = state.visitor_credentials.issue()
        if hello.get("token"):
            try:
                customer = verify_token(str(hello["token"]), state.config.channels.app)
            except TokenRejected:
                await websocket.send_json({"type": "error", "message": "登录已失效，请重新登录网上银行后再咨询。"})
                await websocket.close(code=4401)
                return
            await run_in_threadpool(state.conversations.store.link_customer, CHANNEL, visitor_id,
                                    customer.customer_id, name=customer.name, tier=customer.tier,
                                    verified=customer.verified)
        await websocket.send_json({"type": "welcome", "visitor": credential})
        await serve_chat(websocket, state.conversations, CHANNEL, visitor_id)

    return router


