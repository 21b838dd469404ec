"""Opening the database and bringing its schema up to date with Alembic, on every start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.privacy import install_masking

MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """An engine and a session factory for `url` (SQLAlchemy URL: `sqlite:///data/bot.db`,
    `postgresql+psycopg://user@host/db`). A relative SQLite path is resolved against `root`."""

    def __init__(self, url: str, root: Path | None = None, migrate: bool = True) -> None:
        self.url = _resolve_sqlite(url, root)
        self.engine = _engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        install_masking(self.sessions)  # personal data is masked in every row written through these sessions
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Apply every Alembic migration not yet applied (a no-op when the schema is current)."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def session(self) -> Session:
        return self.sessions()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def dispose(self) -> None:
        self.engine.dispose()


def _resolve_sqlite(url: str, root: Path | None) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    path = Path(parsed.database)
    if not path.is_absolute() and root is not None:
        path = root / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def _engine(url: str) -> Engine:
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
        connection.isolation_level = None  # let the "begin" hook below start transactions
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
        # take the write lock up front: a deferred transaction that reads, then writes after another writer
        # committed, fails at once with "database is locked" instead of waiting its turn
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
