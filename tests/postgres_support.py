"""A fresh database on the PostgreSQL server every test machine runs at 127.0.0.1:5432, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fresh_postgres_url(prefix: str = "bankbot_test") -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database (`TEST_POSTGRES_ADMIN_URL` names the server to create it on)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
