"""Agent desk sessions, stored in the database so they survive a restart and every worker knows them.

The client holds a random token (`Authorization: Bearer <token>`, or the first frame of the desk's socket); the
table keeps only its SHA-256. A session ends when it expires (`security.session_hours`), at logout, when the
account is disabled or deleted, and when the account's role changes (the rights it was granted no longer hold).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from bot.handoff.agents import is_disabled
from bot.storage.database import Database
from bot.storage.models import AgentAccount, AgentSessionRecord, aware_utc, utcnow

DEFAULT_HOURS = 12.0
KEEP_ENDED_DAYS = 30  # ended sessions stay this long (who was signed in when), then are deleted


@dataclass(frozen=True)
class AgentSession:
    id: int
    agent_id: int
    role: str
    groups: tuple[str, ...]
    expires: dt.datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Sessions:
    """The desk's sessions in `database`, so every worker sharing it knows them and a restart keeps them."""

    def __init__(self, database: Database, hours: float = DEFAULT_HOURS) -> None:
        self.database = database
        self.hours = hours

    def start(self, account: AgentAccount) -> str:
        """A new session for `account`; the token is returned once and never stored."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self.database.session() as db, db.begin():
            db.execute(delete(AgentSessionRecord).where(
                AgentSessionRecord.expires_at < now - dt.timedelta(days=KEEP_ENDED_DAYS)))
            db.add(AgentSessionRecord(token_hash=hash_token(token), agent_id=account.id, role=account.role,
                                      created_at=now, expires_at=now + dt.timedelta(hours=self.hours)))
        return token

    def get(self, token: str) -> AgentSession | None:
        """The live session of `token`, or None (unknown, expired, revoked, account disabled or changed)."""
        if not token or self.database is None:
            return None
        with self.database.session() as db:
            found = db.execute(select(AgentSessionRecord, AgentAccount)
                               .join(AgentAccount, AgentAccount.id == AgentSessionRecord.agent_id)
                               .where(AgentSessionRecord.token_hash == hash_token(token),
                                      AgentSessionRecord.revoked_at.is_(None),
                                      AgentSessionRecord.expires_at > utcnow())).first()
        if found is None:
            return None
        record, account = found
        if account.role != record.role or is_disabled(account):
            return None
        return AgentSession(record.id, account.id, account.role, tuple(account.groups or ()),
                            aware_utc(record.expires_at))

    def revoke(self, session_id: int) -> None:
        with self.database.session() as db, db.begin():
            db.execute(update(AgentSessionRecord).where(AgentSessionRecord.id == session_id,
                                                        AgentSessionRecord.revoked_at.is_(None))
                       .values(revoked_at=utcnow()))

