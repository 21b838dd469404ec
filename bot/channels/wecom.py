"""WeCom customer service (企业微信「微信客服」): the callback at /channels/wecom and the pull-based message flow.

WeCom's callback only says "there is something new for open_kfid X" (an encrypted `kf_msg_or_event` event with
a sync token). The endpoint answers "success" at once and reads the messages in the background with
`kf/sync_msg`, page by page from the cursor stored after the previous page, one sync at a time per open_kfid
(a lease in the database, so also across workers); a callback that arrives during a sync makes it read once
more. Customer messages go through the conversation service with WeCom's msgid as message id, so a page read
twice (a crash before its cursor was saved, or the same msgid in two pages) is answered once. Answers go by
`kf/send_msg`, which returns a `Delivery` (undelivered with the reason in Chinese, for the agent). Pictures and
files are fetched by `media/get` and stored for the agent desk (bot.storage.attachments).

A page of `kf/sync_msg` may hold messages read before (history): the customer's last-seen time, from which WeCom's
48-hour window runs, is each message's own `send_time`, never "now". An answer with `has_more` whose cursor did
not move stops the sync (logged): asking again would get the same answer, forever.

Untrusted XML (the envelope and the decrypted message) is parsed with defusedxml (no DTDs, no entities, a size
cap); wechatpy only gets the `Encrypt` value to check and decrypt.

Per customer, the store keeps (as named values beside the sync cursors): the open_kfid they write to
(`wecom-kf:<external_userid>`), so agents' replies and notifications can reach them later, and whether a
WeCom servicer holds the chat (`wecom-held:<external_userid>`), while which the bot stores their messages
without answering.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from sqlalchemy import select
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from bot.channels.callback_guard import Rejected, check_size_and_time, parse_untrusted_xml
from bot.channels.delivery import DELIVERED, Delivery
from bot.channels.wechat_api import WeChatAPIError, refusal_reason
from bot.channels.wecom_api import ENDED, POOL, SERVICER, WeComClient
from bot.config import WeComChannelConfig
from bot.dialogue.service import Inbound, MessageRejected, clean_text
from bot.storage.attachments import AttachmentRefused, Upload, not_fetched_text, receive
from bot.storage.models import ChannelIdentity, aware_utc

CHANNEL = "wecom"
UNKNOWN_KFID = 0  # our own code: we never learnt which open_kfid the customer writes to
SESSION_STATE_REFUSED = 95018  # the session is with a WeCom servicer (or ended): the API may not write
FROM_CUSTOMER, SYSTEM_EVENT, FROM_SERVICER = 3, 4, 5  # sync_msg "origin"
SESSION_ENDED = 3  # session_status_change change_type; 1 taken from the pool, 2 transferred, 4 reopened
HANDING_OVER = "正在为您转接人工客服，请稍候，人工客服接入后会在这里直接回复您。"
SEEN_SERVICER_MESSAGES = 10_000
LEASE_SECONDS = 60.0  # a worker that died mid-sync holds an account's sync no longer than this
log = logging.getLogger(__name__)


def wecom_router() -> APIRouter:
    router = APIRouter(prefix="/channels/wecom", tags=["wecom"])

    @router.get("", response_class=PlainTextResponse)
    def verify(request: Request, msg_signature: str = "", timestamp: str = "", nonce: str = "",
               echostr: str = "") -> str:
        """WeCom's URL check: the decrypted `echostr`, only when `msg_signature` matches."""
        config = _config(request)
        try:
            return _crypto(config).check_signature(msg_signature, timestamp, nonce, echostr)
        except InvalidSignatureException as e:
            log.warning("wecom URL verification refused: bad signature")
            raise HTTPException(status_code=403, detail="signature mismatch") from e
        except Exception as e:  # noqa: BLE001 - wechatpy raises several kinds for a bad echostr
            log.warning("wecom URL verification refused: %s", type(e).__name__)
            raise HTTPException(status_code=400, detail="echostr cannot be decrypted") from e

    @router.post("", response_class=PlainTextResponse)
    async def receive(request: Request, msg_signature: str = "", timestamp: str = "", nonce: str = "") -> str:
        config = _config(request)
        try:
            _check_length(config, request.headers.get("content-length"))
            fields = open_callback(config, await request.body(), msg_signature, timestamp, nonce)
        except Rejected as e:
            log.warning("wecom callback refused: %s", e)
            raise HTTPException(status_code=e.status, detail=str(e)) from e
        if fields.get("Event") == "kf_msg_or_event" and fields.get("OpenKfId"):
            await _start_sync(request.app, fields["OpenKfId"], fields.get("Token", ""))
        return "success"

    return router


def _config(request: Request) -> WeComChannelConfig:
    config: WeComChannelConfig = request.app.state.config.channels.wecom
    if not config.token:
        raise HTTPException(status_code=404, detail="the WeCom customer-service channel is not configured "
                                                    "(set BOT__CHANNELS__WECOM__TOKEN, __CORP_ID, __SECRET and "
                                                    "__ENCODING_AES_KEY)")
    return config


def _crypto(config: WeComChannelConfig) -> WeChatCrypto:
    return WeChatCrypto(config.token, config.encoding_aes_key, config.corp_id)


# --- the callback -----------------------------------------------------------------------------------------


def _check_length(config: WeComChannelConfig, declared: str | None) -> None:
    if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
        raise Rejected(f"body of {declared} bytes is over {config.max_body_bytes}")


def open_callback(config: WeComChannelConfig, body: bytes, msg_signature: str, timestamp: str,
                  nonce: str) -> dict[str, str]:
    """Check size, freshness, XML safety and signature, decrypt; the inner message's fields."""
    check_size_and_time(body, timestamp, config.max_body_bytes, config.max_clock_skew_seconds)
    encrypted = safe_xml(body).get("Encrypt")
    if not encrypted:
        raise Rejected("no Encrypt element: WeCom callbacks are always encrypted")
    try:  # a dict, so wechatpy parses no XML of its own
        inner = _crypto(config).decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
    except InvalidSignatureException as e:
        raise Rejected("bad msg_signature", status=403) from e
    except Exception as e:  # noqa: BLE001 - wechatpy raises several kinds for a bad ciphertext or corp id
        raise Rejected(f"ciphertext cannot be decrypted: {type(e).__name__}") from e
    return safe_xml(inner.encode())


def safe_xml(body: bytes) -> dict[str, str]:
    """The root's child elements as {tag: text}; hostile (DTD, entities) or malformed XML is refused."""
    root = parse_untrusted_xml(body)
    return {child.tag: (child.text or "").strip() for child in root}


async def _start_sync(app: Any, open_kfid: str, token: str) -> None:
    syncer = getattr(app.state, "wecom_sync", None)
    if syncer is None:
        syncer = app.state.wecom_sync = Syncer(app)
    if await run_in_threadpool(syncer.wanted, open_kfid, token):
        future = asyncio.ensure_future(run_in_threadpool(syncer.run, open_kfid))
        app.state.background.add(future)
        future.add_done_callback(app.state.background.discard)


class Syncer:
    """One sync at a time per open_kfid across all workers (a lease in the database); a callback that arrives
    during a sync, on any worker, leaves its token as pending and the leaseholder reads once more."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._guard = threading.Lock()
        self._running: set[str] = set()  # open_kfids this process has a loop for

    def wanted(self, open_kfid: str, token: str) -> bool:
        """Note a callback; True when the caller must start a loop (this process has none for open_kfid)."""
        self._store.save_cursor(_pending(open_kfid), f"t:{token}")
        with self._guard:
            if open_kfid in self._running:
                return False
            self._running.add(open_kfid)
            return True

    def run(self, open_kfid: str) -> None:
        try:
            while True:
                outcome = self._lead(open_kfid)
                if outcome == "busy":  # another worker holds the lease: it will see the pending token
                    return
                with self._guard:
                    if outcome == "done" and not self._store.cursor(_pending(open_kfid)):
                        self._running.discard(open_kfid)
                        return
        finally:
            with self._guard:
                self._running.discard(open_kfid)

    def _lead(self, open_kfid: str) -> str:
        """Sync while holding the lease: "busy" (not ours), "more" (a callback came meanwhile) or "done"."""
        lease = f"wecom-sync-lease:{open_kfid}"
        if not self._store.take_lease(lease, self.holder, LEASE_SECONDS):
            return "busy"
        try:
            while pending := self._store.pop_cursor(_pending(open_kfid)):
                try:
                    sync(self.app, open_kfid, pending.removeprefix("t:"),
                         renew=lambda: self._store.take_lease(lease, self.holder, LEASE_SECONDS))
                except Exception:  # the cursor stays where it was: WeCom's next callback reads again
                    log.exception("wecom sync of %s failed", open_kfid)
        finally:
            self._store.release_lease(lease, self.holder)
        return "more" if self._store.cursor(_pending(open_kfid)) else "done"

    @property
    def _store(self) -> Any:
        return self.app.state.conversations.store


def _pending(open_kfid: str) -> str:
    return f"wecom-sync-pending:{open_kfid}"


def sync(app: Any, open_kfid: str, token: str, renew: Callable[[], bool] = lambda: True) -> None:
    """Read and handle everything new for `open_kfid`, storing the cursor after each page; `renew` keeps
    the lease between pages (False: another worker took it over, so stop)."""
    store = app.state.conversations.store
    name = f"wecom:{open_kfid}"
    cursor = store.cursor(name)
    while renew():
        page = wecom_client(app).sync_msg(open_kfid, cursor, token)
        for message in page.get("msg_list") or []:
            _handle_safely(app, message)
        previous, cursor = cursor, str(page.get("next_cursor") or cursor)
        store.save_cursor(name, cursor)
        if not page.get("has_more"):
            return
        if cursor == previous:  # "more" from where we stand: asking again would get the same page, forever
            log.warning("wecom sync of %s stopped: has_more without an advancing cursor (%r)", open_kfid, cursor)
            return


def _handle_safely(app: Any, message: dict[str, Any]) -> None:
    """One message; a failure is logged and audited, and does not hold up the messages after it."""
    try:
        origin = int(message.get("origin", 0))
        if origin == FROM_CUSTOMER:
            _from_customer(app, message)
        elif origin == SYSTEM_EVENT:
            _on_event(app, message.get("event") or {})
        elif origin == FROM_SERVICER:
            _from_servicer(app, message)
    except Exception as e:
        log.exception("wecom message %s failed", message.get("msgid"))
        app.state.conversations.store.audit("wecom", "message_failed", str(message.get("msgid", ""))[:128],
                                            {"error": f"{type(e).__name__}: {e}"[:300]})


# --- customers' messages ----------------------------------------------------------------------------------


def _from_customer(app: Any, message: dict[str, Any]) -> None:
    """One customer message; the customer was last seen when they sent it, however late (or often) we read it."""
    store = app.state.conversations.store
    user = message["external_userid"]
    seen_before = _last_seen(store, user)
    try:
        _customer_message(app, message)
    finally:
        _set_last_seen(store, user, seen_before, message.get("send_time"))


def _customer_message(app: Any, message: dict[str, Any]) -> None:
    config: WeComChannelConfig = app.state.config.channels.wecom
    store = app.state.conversations.store
    user, open_kfid, msgid = message["external_userid"], message["open_kfid"], str(message["msgid"])
    _remember_open_kfid(store, user, open_kfid)
    metadata = {"open_kfid": open_kfid, "wecom_type": message.get("msgtype", "")}
    text = customer_text(config, message)
    if _held_by_wecom(app, open_kfid, user):
        _store_only(store, user, text or describe(message), msgid, metadata)
    elif message.get("msgtype") in ATTACHMENT_TYPES and _media_id(message):
        _attachment(app, message, metadata)
    elif text is not None:
        _answer(app, config, Inbound(CHANNEL, user, text, msgid, metadata))
    elif _status(store, user) in ("queued", "human"):  # our desk has them: the agent sees what came
        _answer(app, config, Inbound(CHANNEL, user, describe(message), msgid, metadata))
    else:
        _canned(app, user, message, metadata)


def _answer(app: Any, config: WeComChannelConfig, inbound: Inbound) -> None:
    """A turn of the conversation service; the replies go as one message (WeCom allows only a few per
    customer message), and a hand-over goes to WeCom's servicers when the channel is set up that way."""
    open_kfid = inbound.metadata["open_kfid"]
    try:
        turn = app.state.conversations.handle(inbound)
    except MessageRejected as e:
        send_text(app, inbound.sender, str(e), open_kfid)
        return
    if turn.duplicate:
        return
    handing = config.handoff == "wecom" and any(r["source"] == "handoff" for r in turn.replies) \
        and _status(app.state.conversations.store, inbound.sender) == "queued"
    texts = [HANDING_OVER if handing and r["source"] == "handoff" else r["text"] for r in turn.replies]
    if texts:  # before a hand-over: once WeCom's servicers have the session, the API may not write
        send_text(app, inbound.sender, "\n\n".join(texts), open_kfid)
    if handing:
        _hand_to_wecom(app, config, open_kfid, inbound.sender, turn.conversation_id)


def _attachment(app: Any, message: dict[str, Any], metadata: dict[str, Any]) -> None:
    """A picture or file: fetched by `media/get`, stored for the agent desk and answered (see
    bot.storage.attachments for what the bot says). One that cannot be fetched is asked for again."""
    user, kind = message["external_userid"], ATTACHMENT_TYPES[message["msgtype"]]
    limit = app.state.config.attachments.max_bytes

    def fetch() -> Upload:
        try:
            media = wecom_client(app).media(_media_id(message), limit)
        except WeChatAPIError as e:  # e.g. the media expired (3 days): the customer is asked to send it again
            log.warning("wecom %s of %s not fetched: %s", kind, user, e)
            raise AttachmentRefused(not_fetched_text(kind)) from e
        return Upload(media.data, media.filename, media.content_type)

    turn = receive(app, CHANNEL, user, str(message["msgid"]), kind, fetch, metadata)
    if turn.replies and not turn.duplicate:
        send_text(app, user, "\n\n".join(r["text"] for r in turn.replies), metadata["open_kfid"])


def _media_id(message: dict[str, Any]) -> str:
    return str((message.get(message.get("msgtype", "")) or {}).get("media_id") or "")


def _last_seen(store: Any, user: str) -> dt.datetime | None:
    with store.database.session() as session:
        return session.scalar(select(ChannelIdentity.last_seen_at).where(ChannelIdentity.channel == CHANNEL,
                                                                          ChannelIdentity.external_id == user))


def _set_last_seen(store: Any, user: str, before: dt.datetime | None, send_time: Any) -> None:
    """Storing a message marks the customer seen "now"; WeCom's window runs from when they wrote, and a page
    read again (history) must not reopen it: the later of what we knew and the message's own time."""
    try:
        sent = dt.datetime.fromtimestamp(int(send_time), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return  # no time of its own: storing it counted as now
    sent = min(sent, dt.datetime.now(dt.UTC))
    if before is not None:
        sent = max(sent, aware_utc(before))
    with store.database.session() as session, session.begin():
        identity = session.scalar(select(ChannelIdentity).where(ChannelIdentity.channel == CHANNEL,
                                                                ChannelIdentity.external_id == user))
        if identity is not None:
            identity.last_seen_at = sent


def _canned(app: Any, user: str, message: dict[str, Any], metadata: dict[str, Any]) -> None:
    """A picture, voice message, location...: stored (as a description) and answered with a fixed text."""
    store = app.state.conversations.store
    reply = canned_reply(message)
    start = store.begin_turn(CHANNEL, user, describe(message), str(message["msgid"]), metadata)
    if start.duplicate:
        return
    bot = {"event": "bot", "text": reply, "data": {"buttons": None, "source": "wecom_canned"}}
    now = dt.datetime.now(dt.UTC).isoformat()
    stamped = {"text": reply, "buttons": None, "source": "wecom_canned", "timestamp": now}
    store.finish_turn(start, None, [bot], [stamped], start.state)
    send_text(app, user, reply, metadata["open_kfid"])


def _store_only(store: Any, user: str, text: str, msgid: str, metadata: dict[str, Any]) -> None:
    """Recorded in the conversation (the transcript stays whole) and not answered: a WeCom servicer has it."""
    try:
        text = clean_text(text)
    except MessageRejected:
        text = "[空消息]"
    start = store.begin_turn(CHANNEL, user, text, msgid, {**metadata, "held_by": "wecom"})
    if not start.duplicate:
        store.finish_turn(start, None, [], [], start.state)


def customer_text(config: WeComChannelConfig, message: dict[str, Any]) -> str | None:
    """What the customer said, as text: a text message, or the text a clicked menu item stands for."""
    if message.get("msgtype") != "text":
        return None
    text = message.get("text") or {}
    return config.menu.get(text.get("menu_id") or "") or text.get("content") or None


def describe(message: dict[str, Any]) -> str:
    """A non-text message as a line of the transcript."""
    kind = message.get("msgtype", "")
    if kind == "location":
        where = message.get("location") or {}
        return f"[位置] {where.get('name', '')} {where.get('address', '')}".strip()
    if kind in ("link", "miniprogram"):
        return f"[{LABELS[kind]}] {(message.get(kind) or {}).get('title', '')}".strip()
    if kind == "text":
        return (message.get("text") or {}).get("content") or "[空消息]"
    return f"[{LABELS.get(kind, kind or '未知消息')}]"


ATTACHMENT_TYPES = {"image": "image", "file": "file"}  # msgtype -> the attachment's kind
LABELS = {"image": "图片", "voice": "语音", "video": "视频", "file": "文件", "location": "位置", "link": "链接",
          "miniprogram": "小程序", "business_card": "名片"}
CANNED = {
    "image": "收到您的图片。小智暂时看不懂图片，请用文字描述您的问题，或回复“转人工”。",
    "voice": "抱歉，小智暂时听不了语音，请用文字发送您的问题。",
    "video": "收到您的视频。小智暂时看不了视频，请用文字描述您的问题，或回复“转人工”。",
    "file": "收到您的文件。为保护您的信息安全，请不要发送身份证、银行卡照片等资料；请用文字描述您的问题。",
    "location": "收到您的位置。请告诉我您所在的城市和区，我帮您查询附近网点。",
    "link": "收到您分享的链接。请注意：本行不会通过链接索要密码或验证码，如有疑问请回复“转人工”。",
    "miniprogram": "收到您分享的小程序。请注意：本行不会通过第三方小程序索要密码或验证码，如有疑问请回复“转人工”。",
}


def canned_reply(message: dict[str, Any]) -> str:
    return CANNED.get(message.get("msgtype", ""), "暂不支持这种消息，请发送文字。")


# --- events and servicers' messages -----------------------------------------------------------------------


def _on_event(app: Any, event: dict[str, Any]) -> None:
    store = app.state.conversations.store
    kind, user, open_kfid = event.get("event_type"), event.get("external_userid", ""), event.get("open_kfid", "")
    if kind == "enter_session":
        if user and open_kfid:
            _remember_open_kfid(store, user, open_kfid)
        if event.get("welcome_code"):
            _welcome(app, event["welcome_code"])
    elif kind == "session_status_change" and user:
        if int(event.get("change_type", 0)) == SESSION_ENDED:
            _release(app, user, "session ended")
        else:  # a WeCom servicer took the chat from the pool, was given it, or reopened it
            _hold(app, user, event.get("new_servicer_userid"))
    elif kind == "msg_send_fail":
        store.audit("wecom", "msg_send_fail", user or open_kfid,
                    {"fail_msgid": event.get("fail_msgid"), "fail_type": event.get("fail_type")})


def _welcome(app: Any, code: str) -> None:
    try:
        wecom_client(app).send_on_event(code, app.state.config.channels.wecom.welcome)
    except WeChatAPIError as e:  # e.g. the code was used already (the page was read twice) or expired
        log.warning("wecom welcome not sent: %s", e)


_seen_servicer_messages: dict[str, bool] = {}
_seen_lock = threading.Lock()


def _from_servicer(app: Any, message: dict[str, Any]) -> None:
    """What a WeCom servicer wrote in the WeCom app: an agent's message in the transcript."""
    msgid = str(message.get("msgid", ""))
    with _seen_lock:  # the store has no message-id claim for agents' lines: remember them in this process
        if msgid in _seen_servicer_messages:
            return
        _seen_servicer_messages[msgid] = True
        while len(_seen_servicer_messages) > SEEN_SERVICER_MESSAGES:
            _seen_servicer_messages.pop(next(iter(_seen_servicer_messages)))
    user = message["external_userid"]
    try:
        app.state.conversations.store.add_bot_message(CHANNEL, user, describe(message), {}, "agent")
    except KeyError:
        log.info("wecom servicer message for unknown customer %s not stored", user)


def _held_by_wecom(app: Any, open_kfid: str, user: str) -> bool:
    """Whether a WeCom servicer has the chat; asks WeCom when we think so, in case the end was missed."""
    if app.state.conversations.store.cursor(f"wecom-held:{user}") != "1":
        return False
    try:
        state, _ = wecom_client(app).service_state(open_kfid, user)
    except WeChatAPIError as e:
        log.warning("wecom service_state of %s unknown: %s", user, e)
        return True
    if state in (POOL, SERVICER):
        return True
    _release(app, user, f"service_state {state}")
    return False


def _hold(app: Any, user: str, servicer: str | None) -> None:
    store = app.state.conversations.store
    if store.cursor(f"wecom-held:{user}") != "1":
        store.save_cursor(f"wecom-held:{user}", "1")
        store.audit("wecom", "held_by_servicer", user, {"servicer_userid": servicer})


def _release(app: Any, user: str, why: str) -> None:
    store = app.state.conversations.store
    if store.cursor(f"wecom-held:{user}") == "1":
        store.save_cursor(f"wecom-held:{user}", "")
        store.audit("wecom", "back_to_bot", user, {"why": why})


def _hand_to_wecom(app: Any, config: WeComChannelConfig, open_kfid: str, user: str, conversation_id: str) -> None:
    """WeCom's servicers take the customer (a named one, or the pool), and the chat leaves our desk's queue.
    If WeCom refuses, the chat stays in our queue."""
    state = SERVICER if config.servicer_userid else POOL
    store = app.state.conversations.store
    try:
        wecom_client(app).transfer(open_kfid, user, state, config.servicer_userid)
    except WeChatAPIError as e:
        log.warning("wecom hand-over of %s failed, the desk keeps it: %s", user, e)
        store.audit("wecom", "handoff_failed", conversation_id, {"errcode": e.errcode})
        return
    app.state.desk.handed_elsewhere(conversation_id, "转企业微信人工客服")
    _hold(app, user, config.servicer_userid)
    store.audit("wecom", "handoff_to_wecom", conversation_id,
                {"service_state": state, "servicer_userid": config.servicer_userid})
    app.state.handover.queue_changed()


# --- sending ----------------------------------------------------------------------------------------------


def send_text(app: Any, external_userid: str, text: str, open_kfid: str | None = None) -> Delivery:
    """Send by `kf/send_msg`. Undelivered, with the reason in Chinese (and an audit entry), when WeCom refuses
    (48 hours passed, the send limit, a WeCom servicer has the session), cannot be reached, or the customer's
    open_kfid is not known. Truthy only when delivered."""
    store = app.state.conversations.store
    open_kfid = open_kfid or store.cursor(f"wecom-kf:{external_userid}")
    try:
        if not open_kfid:
            raise WeChatAPIError(UNKNOWN_KFID, "the customer's open_kfid is not known")
        wecom_client(app).send_text(open_kfid, external_userid, text)
        return DELIVERED
    except WeChatAPIError as e:
        log.warning("wecom delivery to %s failed: %s", external_userid, e)
        conversation = store.find_conversation_of(CHANNEL, external_userid)
        store.audit("wecom", "delivery_failed", conversation.id if conversation else external_userid,
                    {"errcode": e.errcode, "text": text[:200]})
        return Delivery(False, delivery_reason(e))


def delivery_reason(error: WeChatAPIError) -> str:
    """Why WeCom did not deliver, for the agent (Chinese)."""
    if error.errcode == UNKNOWN_KFID:
        return "不知道客户所在的微信客服账号（客户尚未在微信客服中发过消息），无法发送"
    if error.errcode == SESSION_STATE_REFUSED:
        return "客户的会话已由企业微信客服接待或已结束，机器人不能发送（错误码95018）"
    return refusal_reason(error, "企业微信")


def end_session(app: Any, external_userid: str) -> bool:
    """End the customer's WeCom session (service_state 4), e.g. when our agent closes the chat."""
    open_kfid = app.state.conversations.store.cursor(f"wecom-kf:{external_userid}")
    if not open_kfid:
        return False
    try:
        wecom_client(app).transfer(open_kfid, external_userid, ENDED)
        return True
    except WeChatAPIError as e:
        log.warning("wecom session of %s not ended: %s", external_userid, e)
        return False


_client_lock = threading.Lock()


def wecom_client(app: Any) -> WeComClient:
    """The app's one client (syncs, agents' replies and notifications share its token)."""
    with _client_lock:
        client = getattr(app.state, "wecom_client", None)
        if client is None:
            config = app.state.config.channels.wecom
            client = WeComClient(config.corp_id or "", config.secret or "", config.api_base,
                                 redis_url=app.state.config.security.redis_url)  # the token shared by every worker
            app.state.wecom_client = client
        return client


def _remember_open_kfid(store: Any, user: str, open_kfid: str) -> None:
    if store.cursor(f"wecom-kf:{user}") != open_kfid:
        store.save_cursor(f"wecom-kf:{user}", open_kfid)


def _status(store: Any, user: str) -> str | None:
    conversation = store.find_conversation_of(CHANNEL, user)
    return conversation.status if conversation else None
