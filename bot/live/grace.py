"""Waiting out a short absence before acting on it (a customer or agent whose socket closed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def after_grace(seconds: float, still_gone: Callable[[], bool], action: Callable[[], Any]) -> None:
    """Run `action` (blocking, in a worker thread) if `still_gone()` after `seconds`: a page reload or a short
    network drop reconnects within the grace period and nothing happens. `still_gone` runs in a thread too: with
    Redis it asks Redis who is connected."""
    await asyncio.sleep(seconds)
    if await asyncio.to_thread(still_gone):
        await asyncio.to_thread(action)
