"""The WeChat official account (公众号) server endpoint: URL verification, signed messages in plaintext,
compatible and safe (AES) modes, passive replies.

Untrusted XML is parsed with defusedxml first (no DTDs, no entity expansion, a size cap) and only then handed
to wechatpy. WeChat retries a message it got no answer for within 5 s, with the same MsgId: the conversation
service recognises the id and answers with the stored reply instead of processing it again.

A picture (MsgType image) is fetched from the media API by its MediaId (with the account's access token, so only
when `app_secret` is set), checked and stored for the agent desk (bot.storage.attachments). Pushes by the
customer-service API return a `Delivery`: undelivered with the reason (45015: outside the 48 hours) for the agent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot.channels.callback_guard import Rejected, check_size_and_time, parse_untrusted_xml
from bot.channels.delivery import DELIVERED, Delivery
from bot.channels.wechat_api import WeChatAPIError, WeChatClient, refusal_reason
from bot.config import WeChatChannelConfig
from bot.dialogue.service import ConversationService, Inbound, MessageRejected
from bot.storage.attachments import AttachmentRefused, Upload, not_fetched_text, receive

CHANNEL = "wechat"
log = logging.getLogger(__name__)


def wechat_router() -> APIRouter:
    router = APIRouter(prefix="/channels/wechat", tags=["wechat"])

    @router.get("", response_class=PlainTextResponse)
    def verify(request: Request, signature: str = "", timestamp: str = "", nonce: str = "",
               echostr: str = "") -> str:
        """WeChat's URL check: echo `echostr` only when the signature matches our token."""
        config = _config(request)
        try:
            check_signature(config.token, signature, timestamp, nonce)
        except InvalidSignatureException as e:
            raise HTTPException(status_code=403, detail="signature mismatch") from e
        return echostr

    @router.post("")
    async def receive(request: Request, signature: str = "", timestamp: str = "", nonce: str = "",
                      msg_signature: str = "", encrypt_type: str = "raw") -> Response:
        config = _config(request)
        body = await request.body()
        try:
            message, crypto = _open(config, body, signature, timestamp, nonce, msg_signature, encrypt_type)
        except Rejected as e:
            log.warning("wechat request refused: %s", e)
            raise HTTPException(status_code=e.status, detail=str(e)) from e
        service: ConversationService = request.app.state.conversations
        message_id = _message_id(message)
        if await run_in_threadpool(service.store.delivered_by, CHANNEL, message.source, message_id) == "api":
            return PlainTextResponse("success")  # a retry of a message whose late answer went by the API
        answering = asyncio.ensure_future(run_in_threadpool(_answer, request.app, config, message))
        done, _ = await asyncio.wait({answering}, timeout=config.reply_budget_seconds)
        if not done:  # WeChat gives up at 5 s: say "success" now, deliver by the customer-service API later
            answering.add_done_callback(lambda task: _deliver_late(request.app, message.source, message_id, task))
            return PlainTextResponse("success")
        text, _ = answering.result()
        if text is None or not await run_in_threadpool(service.store.claim_delivery, CHANNEL, message.source,
                                                       message_id, "reply"):
            return PlainTextResponse("success")  # nothing to say, or the answer went by the API
        reply = TextReply(source=message.target, target=message.source, content=text).render()
        if crypto is not None:
            reply = crypto.encrypt_message(reply, nonce, timestamp)
        return Response(reply, media_type="application/xml")

    return router


def _config(request: Request) -> WeChatChannelConfig:
    config: WeChatChannelConfig = request.app.state.config.channels.wechat
    if not config.token:
        raise HTTPException(status_code=404, detail="the WeChat channel is not configured "
                                                    "(set BOT__CHANNELS__WECHAT__TOKEN)")
    return config


def _open(config: WeChatChannelConfig, body: bytes, signature: str, timestamp: str, nonce: str,
          msg_signature: str, encrypt_type: str) -> tuple[Any, WeChatCrypto | None]:
    """Check size, freshness, signature and XML safety; decrypt in safe mode; parse the message."""
    check_size_and_time(body, timestamp, config.max_body_bytes, config.max_clock_skew_seconds)
    try:
        check_signature(config.token, signature, timestamp, nonce)
    except InvalidSignatureException as e:
        raise Rejected("bad signature", status=403) from e
    parse_untrusted_xml(body)
    crypto = None
    if encrypt_type == "aes":
        if not (config.encoding_aes_key and config.app_id):
            raise Rejected("an encrypted message, but no encoding_aes_key/app_id is configured")
        crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.app_id)
        try:
            body = crypto.decrypt_message(body, msg_signature, timestamp, nonce).encode()
        except Exception as e:  # wechatpy raises several kinds for a bad signature or ciphertext
            raise Rejected(f"bad msg_signature or ciphertext: {type(e).__name__}", status=403) from e
        parse_untrusted_xml(body)
    elif config.mode == "safe":
        raise Rejected("plaintext message refused: the account is in safe mode")
    return parse_message(body), crypto


def _answer(app: Any, config: WeChatChannelConfig, message: Any) -> tuple[str | None, bool]:
    """(the text to reply with or None for "success", whether the message was a duplicate)."""
    service: ConversationService = app.state.conversations
    if message.type == "image" and config.app_secret:  # without the secret the picture cannot be fetched
        return _image(app, message)
    text = _customer_text(config, message)
    if text is None:
        if message.type == "event" and getattr(message, "event", "") == "unsubscribe":
            service.store.audit(f"wechat:{message.source}", "unsubscribe", message.source)
        return _canned_reply(config, message), False
    message_id = _message_id(message)
    try:
        turn = service.handle(Inbound(CHANNEL, message.source, text, message_id, {"wechat_type": message.type}))
    except MessageRejected as e:
        return str(e), False
    return "\n\n".join(r["text"] for r in turn.replies) or None, turn.duplicate


def _image(app: Any, message: Any) -> tuple[str | None, bool]:
    """A picture: fetched from the media API by its MediaId, stored for the agent desk and answered (see
    bot.storage.attachments for what the bot says)."""
    limit = app.state.config.attachments.max_bytes

    def fetch() -> Upload:
        try:
            media = wechat_client(app).media(str(message.media_id), limit)
        except WeChatAPIError as e:
            log.warning("wechat picture of %s not fetched: %s", message.source, e)
            raise AttachmentRefused(not_fetched_text("image")) from e
        return Upload(media.data, media.filename, media.content_type)

    try:
        turn = receive(app, CHANNEL, message.source, _message_id(message), "image", fetch, {"wechat_type": "image"})
    except MessageRejected as e:
        return str(e), False
    return "\n\n".join(r["text"] for r in turn.replies) or None, turn.duplicate


def _message_id(message: Any) -> str:
    """WeChat's MsgId; events have none, so the sender and the time stand for it."""
    return str(getattr(message, "id", "") or f"{message.source}:{message.time}")


def _deliver_late(app: Any, openid: str, message_id: str, task: asyncio.Future) -> None:
    """The answer that missed the deadline goes by the customer-service API, unless a retry answered it."""
    if task.cancelled() or task.exception() is not None:
        log.error("wechat answer for %s failed: %s", openid, None if task.cancelled() else task.exception())
        return
    text, _ = task.result()
    if text is None:
        return
    future = asyncio.ensure_future(run_in_threadpool(_send_once, app, openid, message_id, text))
    app.state.background.add(future)
    future.add_done_callback(app.state.background.discard)


def _send_once(app: Any, openid: str, message_id: str, text: str) -> None:
    """The late answer, claimed in the database first: however many workers saw WeChat's retries, one sends."""
    if app.state.conversations.store.claim_delivery(CHANNEL, openid, message_id, "api"):
        send_by_api(app, openid, text)


def send_by_api(app: Any, openid: str, text: str) -> Delivery:
    """Send through the customer-service message API; when WeChat refuses (or cannot be reached), an undelivered
    Delivery with the reason in Chinese, and an audit entry. Truthy only when delivered."""
    client = wechat_client(app)
    try:
        client.send_text(openid, text)
        return DELIVERED
    except WeChatAPIError as e:
        conversation = app.state.conversations.store.find_conversation_of(CHANNEL, openid)
        log.warning("wechat delivery to %s failed: %s", openid, e)
        if conversation is not None:
            app.state.conversations.store.audit("wechat", "delivery_failed", conversation.id,
                                                {"errcode": e.errcode, "text": text[:200]})
        return Delivery(False, refusal_reason(e))


def wechat_client(app: Any) -> WeChatClient:
    client = getattr(app.state, "wechat_client", None)
    if client is None:
        config = app.state.config.channels.wechat
        client = WeChatClient(config.app_id or "", config.app_secret or "", config.api_base,
                              redis_url=app.state.config.security.redis_url)  # the token shared by every worker
        app.state.wechat_client = client
    return client


def _customer_text(config: WeChatChannelConfig, message: Any) -> str | None:
    """What the customer said, as text: a message, a recognised voice message, a menu click."""
    if message.type == "text":
        return message.content
    if message.type == "voice" and getattr(message, "recognition", None):
        return message.recognition
    if message.type == "event" and getattr(message, "event", "") == "click":
        return config.menu.get(getattr(message, "key", ""), None)
    return None


def _canned_reply(config: WeChatChannelConfig, message: Any) -> str | None:
    event = getattr(message, "event", "") if message.type == "event" else ""
    if event in ("subscribe", "subscribe_scan"):
        return config.welcome
    if message.type == "event":
        return None
    replies = {"image": "收到您的图片。小智暂时看不懂图片，请用文字描述您的问题，或回复“转人工”。",
               "voice": "抱歉，没有听清您的语音，请用文字发送您的问题。",
               "location": "收到您的位置。请告诉我您所在的城市和区，我帮您查询附近网点。",
               "link": "收到您分享的链接。请注意：本行不会通过链接索要密码或验证码，如有疑问请回复“转人工”。"}
    return replies.get(message.type, "暂不支持这种消息，请发送文字。")
