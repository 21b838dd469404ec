"""Agent accounts: created by an admin (`bot agents add`), passwords hashed with argon2."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.storage.database import Database
from bot.storage.models import AgentAccount

ROLES = ("agent", "supervisor", "admin")
MIN_PASSWORD_CHARS = 10
_hasher = PasswordHasher()


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


def create_agent(database: Database, username: str, display_name: str, password: str, *, role: str = "agent",
                 groups: list[str] | None = None, max_chats: int = 3) -> AgentAccount:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    account = AgentAccount(username=username, display_name=display_name, password_hash=_hasher.hash(password),
                           role=role, groups=list(groups or []), max_chats=max_chats, presence="offline")
    try:
        with database.session() as session, session.begin():
            session.add(account)
    except IntegrityError as e:
        raise AccountError(f"an agent called {username!r} already exists") from e
    return account


def authenticate(database: Database, username: str, password: str) -> AgentAccount | None:
    """The account when the password is right, else None (the same answer for an unknown name)."""
    with database.session() as session:
        account = session.scalar(select(AgentAccount).where(AgentAccount.username == username))
    if account is None:
        _hasher.hash(password)  # spend the same time as a real check
        return None
    try:
        _hasher.verify(account.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return account
