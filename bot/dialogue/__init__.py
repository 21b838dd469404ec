"""The turn: what the bot says in reply to a parsed message."""

from bot.dialogue.responder import Reply, Responder

__all__ = ["Reply", "Responder"]
