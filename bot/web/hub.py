"""Live delivery inside one process: the open WebSockets of customers and agents, and pushing frames to them
from any thread (the desk and the conversation service run in FastAPI's thread pool).

Several workers need a shared bus (Redis pub/sub) instead; everything is stored first, so a missed push only
means the frame arrives with the next history load.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket
from fastapi.concurrency import run_in_threadpool

Socket = tuple[WebSocket, asyncio.AbstractEventLoop]


class LiveHub:
    def __init__(self) -> None:
        self._customers: defaultdict[tuple[str, str], set[Socket]] = defaultdict(set)
        self._agents: defaultdict[int, set[Socket]] = defaultdict(set)
        self._lock = threading.Lock()

    def add_customer(self, channel: str, sender: str, websocket: WebSocket) -> None:
        with self._lock:
            self._customers[(channel, sender)].add((websocket, asyncio.get_running_loop()))

    def remove_customer(self, channel: str, sender: str, websocket: WebSocket) -> None:
        with self._lock:
            key = (channel, sender)
            self._customers[key] = {s for s in self._customers[key] if s[0] is not websocket}

    def add_agent(self, agent_id: int, websocket: WebSocket) -> None:
        with self._lock:
            self._agents[agent_id].add((websocket, asyncio.get_running_loop()))

    def remove_agent(self, agent_id: int, websocket: WebSocket) -> None:
        with self._lock:
            self._agents[agent_id] = {s for s in self._agents[agent_id] if s[0] is not websocket}

    def customer_connected(self, channel: str, sender: str) -> bool:
        with self._lock:
            return bool(self._customers.get((channel, sender)))

    def agent_connected(self, agent_id: int) -> bool:
        with self._lock:
            return bool(self._agents.get(agent_id))

    def to_customer(self, channel: str, sender: str, frame: dict[str, Any]) -> int:
        """Send `frame` to every open socket of this customer; returns how many got it."""
        with self._lock:
            sockets = list(self._customers.get((channel, sender), ()))
        return sum(_send(socket, frame) for socket in sockets)

    def to_agents(self, frame: dict[str, Any], agent_ids: list[int] | None = None) -> int:
        """Send `frame` to the given agents' sockets, or to every connected agent."""
        with self._lock:
            wanted = self._agents.keys() if agent_ids is None else agent_ids
            sockets = [s for agent_id in list(wanted) for s in self._agents.get(agent_id, ())]
        return sum(_send(socket, frame) for socket in sockets)


def _send(socket: Socket, frame: dict[str, Any]) -> bool:
    websocket, loop = socket
    if loop.is_closed():
        return False
    asyncio.run_coroutine_threadsafe(_safe_send(websocket, frame), loop)
    return True


async def _safe_send(websocket: WebSocket, frame: dict[str, Any]) -> None:
    try:
        await websocket.send_json(frame)
    except Exception:  # noqa: BLE001 - the socket closed meanwhile; the frame is in the stored history
        return


async def after_grace(seconds: float, still_gone: Callable[[], bool], action: Callable[[], Any]) -> None:
    """Run `action` (blocking, in a worker thread) if `still_gone()` after `seconds`: a page reload or a short
    network drop reconnects within the grace period and nothing happens."""
    await asyncio.sleep(seconds)
    if still_gone():
        await run_in_threadpool(action)
