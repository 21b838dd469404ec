"""Agent accounts: created by an admin (`bot agents add`), passwords hashed with argon2; who may reach which
hand-over.

A disabled account keeps its row (hand-overs refer to it) with "!" before its password hash, the convention of
/etc/shadow: no password verifies against it, its sessions end, and enabling it removes the mark.
"""

from __future__ import annotations

from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.storage.database import Database
from bot.storage.models import AgentAccount, AgentSessionRecord, Handoff, utcnow

ROLES = ("agent", "supervisor", "admin", "trainer", "manager")  # trainer: the workbench; manager: /ops only
SUPERVISING_ROLES = ("supervisor", "admin")  # reach every hand-over
OPS_ROLES = ("supervisor", "admin", "manager")  # the operations dashboard (/ops): figures, quality, alerts
DESK_ROLES = ("agent", "supervisor", "admin")  # serve customers at the desk
TRAINING_ROLES = ("trainer", "admin")  # the trainer's workbench
MIN_PASSWORD_CHARS = 10
DISABLED_MARK = "!"
_hasher = PasswordHasher()


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


class Reacher(Protocol):
    """Who asks: a signed-in agent's session."""

    @property
    def agent_id(self) -> int: ...

    @property
    def role(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]: ...


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
    """The account when the password is right, else None (the same answer, in the same time, for an unknown
    name or a disabled account). Takes ~100 ms and 64 MB of memory (argon2): callers bound the concurrency."""
    with database.session() as session:
        account = session.scalar(select(AgentAccount).where(AgentAccount.username == username))
    if account is None or is_disabled(account):
        _hasher.hash(password)  # spend the same time as a real check
        return None
    try:
        _hasher.verify(account.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return account


def is_disabled(account: AgentAccount) -> bool:
    return account.password_hash.startswith(DISABLED_MARK)


def set_disabled(database: Database, username: str, disabled: bool) -> AgentAccount:
    """Disable (no login, every session ended, offline) or enable an account; AccountError when unknown."""
    with database.session() as session, session.begin():
        account = session.scalar(select(AgentAccount).where(AgentAccount.username == username))
        if account is None:
            raise AccountError(f"no agent called {username!r}")
        bare = account.password_hash.removeprefix(DISABLED_MARK)
        account.password_hash = DISABLED_MARK + bare if disabled else bare
        if disabled:
            account.presence = "offline"
            session.execute(update(AgentSessionRecord).where(AgentSessionRecord.agent_id == account.id,
                                                             AgentSessionRecord.revoked_at.is_(None))
                            .values(revoked_at=utcnow()))
    return account


def may_reach(who: Reacher, handoff: Handoff) -> bool:
    """Supervisors and admins reach every hand-over; an agent the ones waiting in their groups and the ones
    assigned to them."""
    if who.role in SUPERVISING_ROLES or handoff.agent_id == who.agent_id:
        return True
    return handoff.status == "waiting" and handoff.group in who.groups
