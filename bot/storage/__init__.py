"""Persistence: SQLAlchemy models, Alembic migrations applied on start, and the conversation store."""

from bot.storage.database import Database
from bot.storage.store import ConversationStore, TurnStart

__all__ = ["ConversationStore", "Database", "TurnStart"]
