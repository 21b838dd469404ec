"""Messages the bank starts or a person writes, pushed to a customer now, whatever their channel: WeChat's
customer-service API, WeCom's `kf/send_msg`, or the customer's open widget/app sockets."""

from __future__ import annotations

from typing import Any

from bot.channels import wecom
from bot.channels.wechat import send_by_api

API_CHANNELS = frozenset({"wechat", "wecom"})  # reachable without an open socket, within 48 hours


def push_to_customer(app: Any, channel: str, sender: str, frame: dict[str, Any]) -> bool:
    """Whether it reached the customer (a `bot` frame: its text is what API channels get)."""
    if channel == "wechat":
        return send_by_api(app, sender, frame["text"])
    if channel == "wecom":
        return wecom.send_text(app, sender, frame["text"])
    return app.state.hub.to_customer(channel, sender, frame) > 0
