"""Proactive notifications from the bank's internal systems: `POST /api/v1/notify` with `X-API-Key`.

The message goes to the channel the customer used most recently, if that channel lets the bank write first:
WeChat within 48 hours of the customer's last message (customer-service API), the app through its push
webhook or an open socket, the web widget through an open socket. Otherwise it waits, stored, for the
customer's next visit. The conversation remembers the event (slot `notified_event` and the event's data),
so the customer's answer ("是的", "不是我的卡") is understood in its light by rules conditioned on it.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from bot.channels.outbound import API_CHANNELS, push_to_customer
from bot.storage.models import aware_utc, utcnow

Event = Literal["atm_card_retained", "large_transaction", "card_expiring"]


class Notification(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)
    event: Event
    data: dict[str, str] = Field(default_factory=dict, description="values for the message, e.g. atm_id, time")


class NotifyResult(BaseModel):
    status: Literal["sent", "pending"]
    channel: str | None
    conversation_id: str | None
    text: str


def notify_router() -> APIRouter:
    router = APIRouter(tags=["notifications"])

    @router.post("/api/v1/notify", response_model=NotifyResult, status_code=202,
                 dependencies=[Depends(_check_key)])
    async def notify(body: Notification, request: Request) -> NotifyResult:
        """Tell a customer about an event on their account, on the channel they used last."""
        return await run_in_threadpool(deliver, request.app, body)

    return router


def _check_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """The caller is one of the bank's systems (checked before the body is even read)."""
    key = x_api_key
    keys = request.app.state.config.notify.api_keys
    if not keys:
        raise HTTPException(status_code=503, detail="notifications are off: set BOT__NOTIFY__API_KEYS")
    if not key or not any(hmac.compare_digest(key, k) for k in keys):
        raise HTTPException(status_code=401, detail="missing or unknown X-API-Key")


def deliver(app: Any, notification: Notification) -> NotifyResult:
    store = app.state.conversations.store
    if store.customer(notification.customer_id) is None:
        raise HTTPException(status_code=404, detail=f"no customer {notification.customer_id!r} known to the bot")
    text = _text(app, notification)
    identity = store.latest_identity(notification.customer_id)
    if identity is None:
        store.audit("notify", "pending", notification.customer_id, {"event": notification.event})
        return NotifyResult(status="pending", channel=None, conversation_id=None, text=text)
    slots = {"notified_event": notification.event, **notification.data}
    conversation_id = store.add_bot_message(identity.channel, identity.external_id, text, slots, "notification")
    sent = _push(app, identity.channel, identity.external_id, identity.last_seen_at, text)
    store.audit("notify", "sent" if sent else "pending", conversation_id, {"event": notification.event,
                                                                           "channel": identity.channel})
    return NotifyResult(status="sent" if sent else "pending", channel=identity.channel,
                        conversation_id=conversation_id, text=text)


def _text(app: Any, notification: Notification) -> str:
    agent = app.state.assistant
    replies = agent.responder.utter(f"utter_notify_{notification.event}", "web", dict(notification.data))
    if not replies:
        raise HTTPException(status_code=422, detail=f"no response utter_notify_{notification.event} in nlu_data")
    return replies[0].text


def _push(app: Any, channel: str, sender: str, last_seen: dt.datetime, text: str) -> bool:
    config = app.state.config.notify
    seen = aware_utc(last_seen)
    if channel in API_CHANNELS and utcnow() - seen > dt.timedelta(hours=config.wechat_window_hours):
        return False  # both may write only within 48 hours of the customer's last message
    frame = {"type": "bot", "text": text, "buttons": None, "timestamp": utcnow().isoformat(), "reply_to": None,
             "duplicate": False}
    if push_to_customer(app, channel, sender, frame):
        return True
    if channel == "app" and config.app_push_url:
        try:
            httpx.post(config.app_push_url, json={"customer_id": sender, "text": text}, timeout=5).raise_for_status()
            return True
        except httpx.HTTPError:
            return False
    return False
