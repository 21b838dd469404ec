"""Opening the database and bringing its schema up to date with Alembic, on every start."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.privacy import install_masking

MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_SECONDS = 5  # a database that does not answer fails a request quickly (503) instead of hanging it
MIGRATION_LOCK_KEY = 0x62616E6B626F74  # "bankbot": the advisory lock migrations hold on PostgreSQL
SQLITE_WRITER_WAIT_SECONDS = 30  # as long as SQLite's own busy timeout
_HOLDS_WRITER = "bankbot_sqlite_writer"  # in a connection's info while its transaction holds the writer lock
# what SQLAlchemy raises when the database cannot be reached (down, restarting, network) or the pool is exhausted
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)


class PoolSize(NamedTuple):
    """Connections a worker keeps open (`size`) and may open beyond them at peaks (`overflow`)."""

    size: int = 5
    overflow: int = 5


class Database:
    """An engine and a session factory for `url` (SQLAlchemy URL: `sqlite:///data/bot.db`,
    `postgresql+psycopg://user@host/db`). A relative SQLite path is resolved against `root`."""

    def __init__(self, url: str, root: Path | None = None, migrate: bool = True, pool: PoolSize = PoolSize()) -> None:
        self.url = _resolve_sqlite(url, root)
        self.pool = pool
        self.engine = _engine(self.url, pool)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        install_masking(self.sessions)  # personal data is masked in every row written through these sessions
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Apply every Alembic migration not yet applied (a no-op when the schema is current)."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if not self.is_sqlite:  # workers and hosts starting together migrate one after the other
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def session(self) -> Session:
        return self.sessions()

    def ping(self, timeout_seconds: float = 2.0) -> str | None:
        """None when the database answers `SELECT 1` within `timeout_seconds`, else why not (for /ready)."""
        try:  # on the DBAPI connection: no SQLAlchemy "begin" hook (SQLite's BEGIN IMMEDIATE would wait on writers)
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                if not self.is_sqlite:  # LOCAL: gone with the rollback, the pooled connection keeps no timeout
                    cursor.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_seconds * 1000))}")
                cursor.execute("SELECT 1")
                cursor.fetchone()
                cursor.close()
                connection.rollback()
            finally:
                connection.close()
        except Exception as e:  # noqa: BLE001 - whatever it is, the database is not usable
            return why_unavailable(e)
        return None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def dispose(self) -> None:
        self.engine.dispose()


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot be reached now (a 503 to retry later), not a bug."""
    return isinstance(error, UNAVAILABLE_ERRORS)


def why_unavailable(error: BaseException, limit: int = 200) -> str:
    """The error in one short line (its type and the first line of its message), for /ready and the logs."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:limit]


def _resolve_sqlite(url: str, root: Path | None) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    path = Path(parsed.database)
    if not path.is_absolute() and root is not None:
        path = root / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def _engine(url: str, pool: PoolSize) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend != "sqlite":
        # pre-ping: connections broken while the database was away are replaced, so service resumes by itself
        timeout = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if backend == "postgresql" else {}
        return create_engine(url, pool_pre_ping=True, pool_timeout=10, pool_size=pool.size, max_overflow=pool.overflow,
                             connect_args=timeout)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
        connection.isolation_level = None  # let the "begin" hook below start transactions
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    writer = threading.Lock()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
        # This process's threads queue for SQLite's one writer on a lock of ours, in turn: SQLite's own busy
        # handler sleeps and polls (up to 100 ms a try), which under load left turns waiting seconds.
        if writer.acquire(timeout=SQLITE_WRITER_WAIT_SECONDS):  # else SQLite's busy timeout decides
            connection.info[_HOLDS_WRITER] = writer
        # take the write lock up front: a deferred transaction that reads, then writes after another writer
        # committed, fails at once with "database is locked" instead of waiting its turn
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release_writer(connection)
            raise

    event.listen(engine, "commit", _release_writer)
    event.listen(engine, "rollback", _release_writer)
    return engine


def _release_writer(connection: Connection) -> None:
    held = connection.info.pop(_HOLDS_WRITER, None)
    if held is not None:
        held.release()
