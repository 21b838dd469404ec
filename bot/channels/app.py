"""The bank's mobile app channel: REST and WebSocket, for customers the app has already logged in.

The app's back end signs a short-lived JWT (HS256, the secret shared in `channels.app.secret`) naming the
customer: `sub` = the bank's customer id, `iat`, `exp`, optionally `name`, `tier`, `verified`, `iss`. The bot
verifies it on every request, links the conversation to that customer and tells the actions who is asking.
A missing, forged or expired token is refused with 401 before anything is stored.

    POST /channels/app/messages   Authorization: Bearer <token>   {"message", "message_id"}
    GET  /channels/app/history    Authorization: Bearer <token>
    GET  /channels/app/transcript   Authorization: Bearer <token>   → the conversation as a text file
    POST /channels/app/attachments   Authorization: Bearer <token>   multipart: file, message_id (optional)
    POST /channels/app/binding-code   Authorization: Bearer <token>   → a code to send in WeChat: "绑定 123456"
    WS   /channels/app/ws   first frame {"type": "auth", "token": "<token>"}, then as in bot.channels.chat_socket
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, WebSocket
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from bot.channels.chat_socket import serve_chat
from bot.channels.handshake import first_frame
from bot.channels.transcript import transcript_response
from bot.config import AppChannelConfig
from bot.dialogue.service import ConversationService, Inbound, MessageRejected, TooManyMessages
from bot.security.credentials import bearer_token
from bot.security.limits import Throttled, client_ip, too_many_requests
from bot.storage.attachments import Upload, kind_of, receive, sniff_mime

CHANNEL = "app"
CLOCK_SKEW_SECONDS = 30


class AppCustomer(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)
    name: str | None = None
    tier: str = "standard"
    verified: bool = True  # the app logged the customer in; it may say otherwise (e.g. a guest session)


class TokenRejected(Exception):
    """Why a token was refused; the message names the problem but never echoes the token."""


class AppMessage(BaseModel):
    message: str = Field(min_length=1, max_length=2000)
    message_id: str | None = Field(None, min_length=1, max_length=128)


class AppReply(BaseModel):
    text: str
    buttons: list[dict[str, str]] | None = None
    timestamp: str


class BindingCodeOut(BaseModel):
    code: str
    expires_in_seconds: int
    instruction: str  # what the app shows the customer


class AttachmentOut(BaseModel):
    id: str
    kind: str  # image | file
    mime: str
    size: int
    filename: str | None


class AppAttachmentTurn(BaseModel):
    conversation_id: str
    duplicate: bool
    stored: bool
    attachment: AttachmentOut | None  # what was stored
    refused: str | None  # why not, as told to the customer (also the reply)
    replies: list[AppReply]


class AppTurn(BaseModel):
    conversation_id: str
    duplicate: bool
    replies: list[AppReply]


def verify_token(token: str, config: AppChannelConfig, now: float | None = None) -> AppCustomer:
    if not config.secret:
        raise TokenRejected("the app channel is not configured (set BOT__CHANNELS__APP__SECRET)")
    try:
        claims = jwt.decode(token, config.secret, algorithms=["HS256"], issuer=config.issuer,
                            leeway=CLOCK_SKEW_SECONDS, options={"require": ["sub", "iat", "exp"]})
    except jwt.ExpiredSignatureError as e:
        raise TokenRejected("token expired") from e
    except jwt.PyJWTError as e:
        raise TokenRejected(f"invalid token: {e}") from e
    age = (now or time.time()) - float(claims["iat"])
    if age > config.max_token_age_seconds + CLOCK_SKEW_SECONDS:
        raise TokenRejected(f"token issued {int(age)} s ago; at most {config.max_token_age_seconds} s allowed")
    try:
        return AppCustomer(customer_id=str(claims["sub"]), name=claims.get("name"),
                           tier=str(claims.get("tier") or "standard"), verified=bool(claims.get("verified", True)))
    except ValueError as e:
        raise TokenRejected(f"invalid claims: {e}") from e


def sign_token(customer: AppCustomer, secret: str, lifetime_seconds: int = 300, issuer: str | None = None) -> str:
    """What the app's back end does (here for tests and demos; the bank signs with its own code)."""
    now = int(time.time())
    claims = {"sub": customer.customer_id, "iat": now, "exp": now + lifetime_seconds, "name": customer.name,
              "tier": customer.tier, "verified": customer.verified}
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def _service(request: Request) -> ConversationService:
    return request.app.state.conversations


def _customer(request: Request, authorization: Annotated[str | None, Header()] = None) -> AppCustomer:
    token = bearer_token(authorization)
    if not token:
        raise _unauthorized("send the customer's token as 'Authorization: Bearer <token>'")
    try:
        return verify_token(token, request.app.state.config.channels.app)
    except TokenRejected as e:
        raise _unauthorized(str(e)) from e


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": "Bearer"})


CustomerDep = Annotated[AppCustomer, Depends(_customer)]
ServiceDep = Annotated[ConversationService, Depends(_service)]


def app_router() -> APIRouter:
    router = APIRouter(prefix="/channels/app", tags=["app channel"])

    @router.post("/messages", response_model=AppTurn)
    def message(body: AppMessage, customer: CustomerDep, service: ServiceDep, request: Request) -> AppTurn:
        """One message from a logged-in app customer; a repeated `message_id` gets the original replies."""
        link(service, customer)
        ip = client_ip(request, request.app.state.config.server.trusted_proxies)
        try:
            turn = service.handle(Inbound(CHANNEL, customer.customer_id, body.message, body.message_id,
                                          client_ip=ip))
        except TooManyMessages as e:
            raise too_many_requests(e) from e
        except MessageRejected as e:
            raise HTTPException(status_code=422, detail=str(e)) from e
        replies = [AppReply(text=r["text"], buttons=r["buttons"], timestamp=r["timestamp"]) for r in turn.replies]
        return AppTurn(conversation_id=turn.conversation_id, duplicate=turn.duplicate, replies=replies)

    @router.post("/binding-code", response_model=BindingCodeOut)
    def binding_code(customer: CustomerDep, service: ServiceDep, request: Request) -> BindingCodeOut:
        """A 6-digit code the customer sends in WeChat ("绑定 123456") to link that account to this one."""
        security = request.app.state.config.security
        wait = request.app.state.limiter.hit(f"bind:issue:{customer.customer_id}", security.binding_max_failures,
                                             security.binding_window_minutes * 60)
        if wait > 0:
            raise too_many_requests(Throttled("获取绑定码过于频繁，请稍后再试。", wait))
        link(service, customer)
        minutes = request.app.state.config.channels.binding_code_minutes
        code = service.store.issue_binding_code(customer.customer_id, dt.timedelta(minutes=minutes))
        return BindingCodeOut(code=code, expires_in_seconds=minutes * 60,
                              instruction=f"请在{minutes}分钟内，在本行微信公众号或微信客服中发送：绑定 {code}")

    @router.post("/attachments", response_model=AppAttachmentTurn,
                 openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                     "type": "object", "required": ["file"], "properties": {
                         "file": {"type": "string", "format": "binary"},
                         "message_id": {"type": "string", "maxLength": 128}}}}}}})
    async def attachment(customer: CustomerDep, service: ServiceDep, request: Request) -> AppAttachmentTurn:
        """A picture or PDF the customer sends (multipart: `file`, optional `message_id` for retries). Checked by
        its content; refused ones are answered with what may be sent (`stored: false`)."""
        rates = request.app.state.config.security.rate_limits
        wait = request.app.state.limiter.hit(f"attach:{customer.customer_id}", rates.per_sender,
                                             rates.window_seconds)
        if wait > 0:
            raise too_many_requests(TooManyMessages(wait))
        upload, message_id = read_upload(request.headers.get("content-type", ""), await request.body())
        await run_in_threadpool(link, service, customer)
        kind = kind_of(sniff_mime(upload.data) or upload.declared_mime or "")
        try:
            turn = await run_in_threadpool(receive, request.app, CHANNEL, customer.customer_id,
                                           message_id or uuid.uuid4().hex, kind, lambda: upload)
        except MessageRejected as e:
            raise HTTPException(status_code=422, detail=str(e)) from e
        replies = [AppReply(text=r["text"], buttons=r["buttons"], timestamp=r["timestamp"]) for r in turn.replies]
        return AppAttachmentTurn(conversation_id=turn.conversation_id, duplicate=turn.duplicate,
                                 stored=turn.attachment is not None, attachment=turn.attachment,
                                 refused=turn.refused, replies=replies)

    @router.get("/history")
    def history(customer: CustomerDep, service: ServiceDep) -> list[dict[str, Any]]:
        """The customer's app conversation so far, oldest first, with who said each bot message."""
        return service.history(CHANNEL, customer.customer_id)

    @router.get("/transcript", include_in_schema=False)
    def transcript(customer: CustomerDep, service: ServiceDep) -> Response:
        """The customer's app conversation as a text file to save (聊天记录-20261130.txt)."""
        return transcript_response(service, CHANNEL, customer.customer_id)

    @router.websocket("/ws")
    async def socket(websocket: WebSocket) -> None:
        """The first frame authenticates: `{"type": "auth", "token": "<token>"}` (never the URL: it is logged)."""
        await websocket.accept()
        hello = await first_frame(websocket, "auth")
        if hello is None:
            return
        try:
            customer = verify_token(str(hello.get("token") or ""), websocket.app.state.config.channels.app)
        except TokenRejected:
            await websocket.send_json({"type": "error", "message": "登录已失效，请重新登录手机银行后再咨询。"})
            await websocket.close(code=4401, reason="unauthorized")
            return
        await websocket.send_json({"type": "welcome"})
        service = websocket.app.state.conversations
        await run_in_threadpool(link, service, customer)
        await serve_chat(websocket, service, CHANNEL, customer.customer_id)

    return router


def link(service: ConversationService, customer: AppCustomer) -> None:
    service.store.link_customer(CHANNEL, customer.customer_id, customer.customer_id, name=customer.name,
                                tier=customer.tier, verified=customer.verified)


def read_upload(content_type: str, body: bytes) -> tuple[Upload, str | None]:
    """The `file` part (bytes, the name and type the app gave) and `message_id` of a multipart/form-data body;
    422 when there is no file. (The standard library's MIME parser: binary parts come back byte for byte.)"""
    if not content_type.lower().startswith("multipart/form-data"):
        raise HTTPException(status_code=422, detail="send the file as multipart/form-data (field `file`)")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()} \
        if message.is_multipart() else {}
    file = parts.get("file")
    data = file.get_payload(decode=True) if file is not None else None
    if not isinstance(data, bytes) or not data:
        raise HTTPException(status_code=422, detail="没有收到文件，请重新选择图片或PDF后发送。")
    id_part = parts.get("message_id")
    message_id = id_part.get_payload(decode=True) if id_part is not None else None
    message_id = message_id.decode("utf-8", "replace").strip()[:128] if isinstance(message_id, bytes) else None
    declared = file.get_content_type() if file.get("content-type") else None
    return Upload(data, file.get_filename(), declared), message_id or None
