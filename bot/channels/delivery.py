"""Whether a push reached the customer, and why not: what every channel's sender returns, so an agent sees an
undelivered reply (outside WeChat's 48 hours, no open socket, a channel that cannot be written to first)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    reason: str | None = None  # for people, in Chinese, when not delivered (e.g. 超过48小时，微信不允许主动发送)

    def __bool__(self) -> bool:
        return self.delivered


DELIVERED = Delivery(True)
