"""Live delivery inside one process: the open sockets of customers and agents, and pushing frames to them from
any thread (the desk and the conversation service run in FastAPI's thread pool). `RedisBus` builds on it."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

CustomerKey = tuple[str, str]  # (channel, sender)


class Feed(Protocol):
    """A socket as the bus sees it: a Starlette WebSocket, or a wrapper such as the desk's masked feed."""

    async def send_json(self, data: Any) -> None: ...


Socket = tuple[Feed, asyncio.AbstractEventLoop]  # a socket and the event loop that serves it


class LocalBus:
    """This process's sockets. Every method is safe to call from any thread."""

    def __init__(self) -> None:
        self._customers: defaultdict[CustomerKey, set[Socket]] = defaultdict(set)
        self._agents: defaultdict[int, set[Socket]] = defaultdict(set)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Nothing to listen to in one process."""

    def stop(self) -> None:
        with self._lock:
            self._customers.clear()
            self._agents.clear()

    def add_customer(self, channel: str, sender: str, websocket: Feed) -> None:
        with self._lock:
            self._customers[(channel, sender)].add((websocket, asyncio.get_running_loop()))

    def remove_customer(self, channel: str, sender: str, websocket: Feed) -> None:
        with self._lock:
            _discard(self._customers, (channel, sender), websocket)

    def add_agent(self, agent_id: int, websocket: Feed) -> None:
        with self._lock:
            self._agents[agent_id].add((websocket, asyncio.get_running_loop()))

    def remove_agent(self, agent_id: int, websocket: Feed) -> None:
        with self._lock:
            _discard(self._agents, agent_id, websocket)

    def customer_connected(self, channel: str, sender: str) -> bool:
        with self._lock:
            return bool(self._customers.get((channel, sender)))

    def agent_connected(self, agent_id: int) -> bool:
        with self._lock:
            return bool(self._agents.get(agent_id))

    def to_customer(self, channel: str, sender: str, frame: dict[str, Any]) -> int:
        """Send `frame` to every open socket of this customer here; returns how many got it."""
        with self._lock:
            sockets = list(self._customers.get((channel, sender), ()))
        return _send_all(sockets, frame)

    def to_agents(self, frame: dict[str, Any], agent_ids: list[int] | None = None) -> int:
        """Send `frame` to the given agents' sockets here, or to every connected agent."""
        with self._lock:
            wanted = list(self._agents.keys() if agent_ids is None else agent_ids)
            sockets = [s for agent_id in wanted for s in self._agents.get(agent_id, ())]
        return _send_all(sockets, frame)

    def customers_here(self) -> list[CustomerKey]:
        """The customers with an open socket in this process."""
        with self._lock:
            return [key for key, sockets in self._customers.items() if sockets]

    def agents_here(self) -> list[int]:
        """The agents with an open console in this process."""
        with self._lock:
            return [agent_id for agent_id, sockets in self._agents.items() if sockets]


def _discard(registry: defaultdict[Any, set[Socket]], key: Any, websocket: Feed) -> None:
    remaining = {s for s in registry.get(key, ()) if s[0] is not websocket}
    if remaining:
        registry[key] = remaining
    else:
        registry.pop(key, None)


def _send_all(sockets: Iterable[Socket], frame: dict[str, Any]) -> int:
    return sum(_send(socket, frame) for socket in sockets)


def _send(socket: Socket, frame: dict[str, Any]) -> bool:
    websocket, loop = socket
    if loop.is_closed():
        return False
    asyncio.run_coroutine_threadsafe(_safe_send(websocket, frame), loop)
    return True


async def _safe_send(websocket: Feed, frame: dict[str, Any]) -> None:
    try:
        await websocket.send_json(frame)
    except Exception:  # noqa: BLE001 - the socket closed meanwhile; the frame is in the stored history
        return
