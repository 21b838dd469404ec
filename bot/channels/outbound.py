"""Messages the bank starts or a person writes, pushed to a customer now, whatever their channel: how is the
channel registry's `push` (bot/channels/registry.py): the platform's send API (WeChat's customer-service API,
WeCom's `kf/send_msg`), the customer's open widget/app sockets, or nothing (a REST caller, an unknown channel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.channels import wechat, wecom
from bot.channels.delivery import DELIVERED, Delivery
from bot.channels.registry import CHANNELS, channel_info

# reachable without an open socket, within 48 hours of the customer's last message
API_CHANNELS = frozenset(name for name, info in CHANNELS.items() if info.push == "api")
NO_SOCKET = "客户已离开聊天窗口，消息未能即时送达，客户下次打开对话时可以看到"
CANNOT_PUSH = "该渠道不支持主动发送消息，客户无法收到"
API_REFUSED = "{label}未能送达（可能已超过48小时未互动），请改用短信或电话联系客户"

Sender = Callable[[Any, str, str], Any]  # (app, the customer's id on the platform, text) -> Delivery | bool
API_SENDERS: dict[str, Sender] = {  # looked up when called, so a replaced sender (a test's stand-in) is used
    "wechat": lambda app, sender, text: wechat.send_by_api(app, sender, text),
    "wecom": lambda app, sender, text: wecom.send_text(app, sender, text),
}


def push_to_customer(app: Any, channel: str, sender: str, frame: dict[str, Any]) -> Delivery:
    """Whether it reached the customer, and why not (a `bot` frame: its text is what API channels get). The
    result is truthy when delivered, so callers that only ask "did it arrive?" treat it as a bool."""
    info = channel_info(channel)
    if info.push == "socket":
        reached = app.state.hub.to_customer(channel, sender, frame) > 0
        return DELIVERED if reached else Delivery(False, NO_SOCKET)
    if info.push == "api" and (send := API_SENDERS.get(channel)) is not None:
        return _as_delivery(send(app, sender, frame["text"]), API_REFUSED.format(label=info.label))
    return Delivery(False, CANNOT_PUSH)


def _as_delivery(result: Any, reason: str) -> Delivery:
    """A sender's answer as a Delivery: senders that still return a bool get the channel's usual reason."""
    if isinstance(result, Delivery):
        return result
    return DELIVERED if result else Delivery(False, reason)
