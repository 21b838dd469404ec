"""Turns of one conversation run one at a time, in every worker process.

On PostgreSQL a turn holds a session-level advisory lock on a hash of channel + sender, on a connection of its own
(a small engine just for locks, so waiting for a lock never uses up the connections turns need). A worker that
dies takes its connection, and so its locks, with it: the server releases them at once. The lock is released
when the turn ends; if that fails, the connection is thrown away rather than returned to the pool still holding
the lock. On SQLite (one process) in-process locks do the same job.

The in-process lock is taken first on PostgreSQL too: threads of one worker queue in memory, and only one of them
at a time waits on the server. In-process locks exist only while a conversation's turn runs or waits, so memory
stays bounded however many customers there are.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine, text

from bot.storage.database import PoolSize

log = logging.getLogger(__name__)

LOCK_NAMESPACE = "conversation-turn"  # part of the hashed key, so other advisory locks do not collide


class ConversationBusy(RuntimeError):
    """The conversation's lock was not free within the wait allowed (another worker's turn takes too long)."""


class TurnLocks:
    """`hold(channel, sender)`: the conversation's lock for the duration of a `with` block."""

    def __init__(self, url: str | None = None, wait_seconds: float = 30.0, pool: PoolSize = PoolSize()) -> None:
        self._local: dict[int, _LocalLock] = {}  # conversations with a turn running or waiting in this process
        self._guard = threading.Lock()
        self.wait_seconds = wait_seconds
        self._engine = _lock_engine(url, pool, wait_seconds) if url is not None else None

    @property
    def across_processes(self) -> bool:
        return self._engine is not None

    @contextlib.contextmanager
    def hold(self, channel: str, sender: str) -> Iterator[None]:
        key = lock_key(channel, sender)
        with self._in_process(key):
            if self._engine is None:
                yield
                return
            with self._advisory(key):
                yield

    @contextlib.contextmanager
    def _in_process(self, key: int) -> Iterator[None]:
        with self._guard:
            local = self._local.setdefault(key, _LocalLock())
            local.users += 1
        try:
            with local.lock:
                yield
        finally:
            with self._guard:
                local.users -= 1
                if not local.users:
                    del self._local[key]

    @contextlib.contextmanager
    def _advisory(self, key: int) -> Iterator[None]:
        assert self._engine is not None
        connection = self._engine.connect()
        try:
            self._acquire(connection, key)
            try:
                yield
            finally:
                _release(connection, key)
        finally:
            connection.close()

    def _acquire(self, connection, key: int) -> None:  # type: ignore[no-untyped-def]
        """Wait for the lock at most `wait_seconds` (the connection's lock_timeout applies to advisory locks)."""
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        except Exception as e:
            if "lock timeout" in str(e).lower() or "LockNotAvailable" in type(getattr(e, "orig", e)).__name__:
                raise ConversationBusy("conversation lock not free") from e
            raise

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class _LocalLock:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0  # threads holding or waiting for it


def _release(connection, key: int) -> None:  # type: ignore[no-untyped-def]
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except Exception:  # never return a connection that may still hold the lock to the pool
        log.warning("advisory unlock failed; dropping the connection", exc_info=True)
        with contextlib.suppress(Exception):
            connection.invalidate()


def lock_key(channel: str, sender: str) -> int:
    """A signed 64-bit key for `pg_advisory_lock`, the same in every process (unlike `hash`)."""
    digest = hashlib.blake2b(f"{LOCK_NAMESPACE}\x00{channel}\x00{sender}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_engine(url: str, pool: PoolSize, wait_seconds: float) -> Engine:
    """One connection per conversation being answered, held for its turn; as many as the turns' own pool, so a
    worker uses at most 2 x (size + overflow) connections. Autocommit: a lock and an unlock are one round trip
    each; the wait for a lock is bounded by the connection's lock_timeout."""
    timeout_ms = max(1, int(wait_seconds * 1000))
    return create_engine(url, pool_pre_ping=True, pool_size=pool.size, max_overflow=pool.overflow, pool_timeout=30,
                         isolation_level="AUTOCOMMIT",
                         connect_args={"connect_timeout": 5, "options": f"-c lock_timeout={timeout_ms}"})
