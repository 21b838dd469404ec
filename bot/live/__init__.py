"""Live events: the open WebSockets of customers (widget, app) and agents (desk consoles) and pushing frames to
them from any thread or worker. Below the channels and the desk: `bot.channels` and `bot.web` import this, never
the other way round.

`LiveBus` is the interface; `LocalBus` (bot/live/local.py) serves one process, `RedisBus` (bot/live/redis_bus.py)
fans pushes out through Redis pub/sub to every worker and keeps who is connected in Redis. `make_bus` picks one.
Everything is stored before it is pushed, so a missed push only means the frame arrives with the next history load.
"""

from __future__ import annotations

from typing import Any, Protocol

from bot.live.grace import after_grace
from bot.live.local import Feed, LocalBus


class LiveBus(Protocol):
    """What the channels, the desk and the hand-over use. Sockets are anything with `async send_json(frame)`."""

    def start(self) -> None:
        """Begin listening to other workers (with the app's start); nothing to do in one process."""

    def stop(self) -> None:
        """Stop listening and forget this worker's sockets (at the app's shutdown)."""

    def add_customer(self, channel: str, sender: str, websocket: Feed) -> None: ...

    def remove_customer(self, channel: str, sender: str, websocket: Feed) -> None: ...

    def add_agent(self, agent_id: int, websocket: Feed) -> None: ...

    def remove_agent(self, agent_id: int, websocket: Feed) -> None: ...

    def customer_connected(self, channel: str, sender: str) -> bool:
        """Whether the customer has an open socket on any worker."""
        ...

    def agent_connected(self, agent_id: int) -> bool:
        """Whether the agent has an open console on any worker."""
        ...

    def to_customer(self, channel: str, sender: str, frame: dict[str, Any]) -> int:
        """Send `frame` to every open socket of this customer; how many sockets it is on its way to (0: none)."""
        ...

    def to_agents(self, frame: dict[str, Any], agent_ids: list[int] | None = None) -> int:
        """Send `frame` to the given agents' consoles, or to every connected agent; how many on this worker."""
        ...


def make_bus(redis_url: str | None) -> LiveBus:
    """Redis pub/sub when a Redis URL is configured (several workers), otherwise this process alone."""
    if redis_url:
        from bot.live.redis_bus import RedisBus

        return RedisBus(redis_url)
    return LocalBus()


__all__ = ["Feed", "LiveBus", "LocalBus", "after_grace", "make_bus"]
