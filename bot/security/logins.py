"""Password logins that a flood cannot abuse.

- `LoginGuard`: failed logins are counted per account and per client IP in a sliding window
  (`security.login_max_failures`, `login_ip_max_failures`, `login_window_minutes`); past either limit every
  attempt, even with the right password, is `Throttled` until the window has room again.
- `PasswordGate`: at most `security.password_hash_concurrency` password checks at once (argon2 takes ~64 MB
  and ~100 ms each). Waiting logins are coroutines, not threads, so a flood neither exhausts memory nor
  occupies the thread pool that customers' messages are answered in; a login that waits too long gets 503.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from bot.config import SecurityConfig
from bot.security.limits import RateLimiter, Throttled

T = TypeVar("T")
MAX_WAIT_SECONDS = 20.0


class Busy(Exception):
    """Too many logins waiting for a password check; try again shortly."""

    retry_after = 5
    message = "登录人数较多，请稍后再试。"


class LoginGuard:
    def __init__(self, limiter: RateLimiter, security: SecurityConfig) -> None:
        self.limiter = limiter
        self.account_limit = security.login_max_failures
        self.ip_limit = security.login_ip_max_failures
        self.window = security.login_window_minutes * 60

    def check(self, username: str, ip: str) -> None:
        """Throttled when the account or the IP has used up its failures in the window."""
        wait = self.limiter.retry_after(_account_key(username), self.account_limit, self.window)
        if wait > 0:
            raise Throttled(f"该账号登录失败次数过多，已暂时锁定，请{_minutes(wait)}分钟后再试。", wait)
        wait = self.limiter.retry_after(_ip_key(ip), self.ip_limit, self.window)
        if wait > 0:
            raise Throttled(f"来自您网络的登录失败次数过多，请{_minutes(wait)}分钟后再试。", wait)

    def failed(self, username: str, ip: str) -> None:
        self.limiter.record(_account_key(username), self.window)
        self.limiter.record(_ip_key(ip), self.window)

    def succeeded(self, username: str) -> None:
        """The account's count starts again; the IP's does not (one known password must not reset a guesser)."""
        self.limiter.clear(_account_key(username))


class PasswordGate:
    """At most `limit` calls at once in worker threads, per event loop (an asyncio semaphore belongs to one)."""

    def __init__(self) -> None:
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
            weakref.WeakKeyDictionary()

    async def run(self, limit: int, call: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.setdefault(loop, asyncio.Semaphore(limit))
        try:
            await asyncio.wait_for(semaphore.acquire(), MAX_WAIT_SECONDS)
        except TimeoutError as e:
            raise Busy() from e
        try:
            return await run_in_threadpool(call, *args)
        finally:
            semaphore.release()


def _account_key(username: str) -> str:
    return f"login:account:{username.casefold()}"


def _ip_key(ip: str) -> str:
    return f"login:ip:{ip}"


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))
