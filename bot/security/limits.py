"""Counting events per key in a sliding window, to refuse floods: failed logins, wrong binding codes, messages
per sender and per IP. In memory for one process; in Redis (a sorted set per key) when several workers must
share the counts.

    limiter.retry_after(key, limit, window)  # seconds to wait when `limit` events are already in the window, else 0
    limiter.record(key, window)              # count one event
    limiter.hit(key, limit, window)          # count one event unless over the limit; the wait, or 0
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from typing import Any, Protocol

from fastapi import HTTPException
from starlette.requests import HTTPConnection

logger = logging.getLogger(__name__)
MAX_MEMORY_KEYS = 100_000  # the least recently used keys are forgotten beyond this


class Throttled(Exception):
    """Too many attempts; `retry_after` is in seconds and the message is meant for the person (Chinese)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, math.ceil(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def too_many_requests(error: Throttled) -> HTTPException:
    """The HTTP answer to any flood: 429, the message, and when to try again."""
    return HTTPException(status_code=429, detail=error.message, headers=error.headers)


class RateLimiter(Protocol):
    def retry_after(self, key: str, limit: int, window: float) -> float: ...

    def record(self, key: str, window: float) -> None: ...

    def hit(self, key: str, limit: int, window: float) -> float: ...

    def clear(self, key: str) -> None: ...


class MemoryLimiter:
    """Sliding windows in this process (timestamps per key), bounded in memory."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock

    def _recent(self, key: str, window: float) -> deque[float]:
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
            if len(self._events) > MAX_MEMORY_KEYS:
                self._events.popitem(last=False)
        self._events.move_to_end(key)
        while events and events[0] <= now - window:
            events.popleft()
        return events

    def retry_after(self, key: str, limit: int, window: float) -> float:
        with self._lock:
            events = self._recent(key, window)
            if len(events) < limit:
                return 0.0
            return events[len(events) - limit] + window - self._clock()

    def record(self, key: str, window: float) -> None:
        with self._lock:
            self._recent(key, window).append(self._clock())

    def hit(self, key: str, limit: int, window: float) -> float:
        with self._lock:
            events = self._recent(key, window)
            if len(events) >= limit:
                return events[len(events) - limit] + window - self._clock()
            events.append(self._clock())
            return 0.0

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)


class RedisLimiter:
    """Sliding windows shared by every worker: one sorted set of event times per key, expiring with the window.
    `hit` is one atomic round trip (a Lua script), so workers racing on one key never let extra events through.
    While Redis cannot be reached each worker counts in its own memory (limits still hold, per worker) and logs
    it; the shared counts resume when Redis is back."""

    def __init__(self, url: str, prefix: str = "bankbot:limit:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self._hit = self._redis.register_script(_HIT_SCRIPT)
        self._local = MemoryLimiter(clock=time.time)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._warned_at = 0.0

    def _window(self, key: str, window: float) -> tuple[str, float]:
        now = time.time()
        name = self._prefix + key
        self._redis.zremrangebyscore(name, "-inf", now - window)
        return name, now

    def retry_after(self, key: str, limit: int, window: float) -> float:
        try:
            name, now = self._window(key, window)
            if self._redis.zcard(name) < limit:
                return 0.0
            oldest = self._redis.zrange(name, -limit, -limit, withscores=True)
            return (oldest[0][1] + window - now) if oldest else window
        except self._errors as error:
            self._away(error)
            return self._local.retry_after(key, limit, window)

    def record(self, key: str, window: float) -> None:
        try:
            name, now = self._window(key, window)
            with self._redis.pipeline() as pipe:
                pipe.zadd(name, {uuid.uuid4().hex: now})
                pipe.expire(name, math.ceil(window))
                pipe.execute()
        except self._errors as error:
            self._away(error)
            self._local.record(key, window)

    def hit(self, key: str, limit: int, window: float) -> float:
        try:
            wait = self._hit(keys=[self._prefix + key], args=[time.time(), window, limit, uuid.uuid4().hex])
            return float(wait)
        except self._errors as error:
            self._away(error)
            return self._local.hit(key, limit, window)

    def clear(self, key: str) -> None:
        self._local.clear(key)
        try:
            self._redis.delete(self._prefix + key)
        except self._errors as error:
            self._away(error)

    def _away(self, error: BaseException) -> None:
        if time.monotonic() - self._warned_at > 30:  # once in a while, not once per message
            self._warned_at = time.monotonic()
            logger.warning("Redis unreachable for rate limits (%s): counting in this worker until it is back",
                           type(error).__name__)


# count one event unless `limit` are in the window; the wait in seconds (a string: Redis truncates Lua numbers)
_HIT_SCRIPT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(window))
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


def make_limiter(redis_url: str | None) -> RateLimiter:
    return RedisLimiter(redis_url) if redis_url else MemoryLimiter()


def client_ip(connection: HTTPConnection, trusted_proxies: list[str] | tuple[str, ...] = ()) -> str:
    """The caller's IP: the socket's peer, or the last untrusted address of X-Forwarded-For when the peer is
    one of our own proxies (a client can write anything in that header, so only proxies are believed)."""
    peer = connection.client.host if connection.client else "unknown"
    if peer not in trusted_proxies:
        return peer
    forwarded = [a.strip() for a in connection.headers.get("x-forwarded-for", "").split(",") if a.strip()]
    for address in reversed(forwarded):
        if address not in trusted_proxies:
            return address
    return peer
