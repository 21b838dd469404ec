"""The agent desk's library: past conversations found and read again (`search`), labels agents put on them
(`labels`), and canned replies kept in the database per agent, per skill group and for everyone (`canned`).

Who may see a past conversation: supervisors and admins every one; an agent the conversations handed over to
one of their skill groups (at any point, transfers included) or that they served. Everything returned is
masked as the desk's context is (`bot.security.masking`)."""

from __future__ import annotations


class LibraryError(ValueError):
    """A request the library refuses; the message (Chinese) says why and is shown to the agent."""


class NotVisible(LookupError):
    """No such conversation or reply, or not one this agent may see: the same answer, so ids tell nothing."""


class Conflict(LibraryError):
    """The request clashes with what is stored (a code already used in the same scope)."""


class Forbidden(LibraryError):
    """The agent may see it but not change it (a group's or everyone's reply, for an agent)."""
