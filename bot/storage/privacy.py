"""Personal data never reaches the database in clear: the columns that hold what customers and agents wrote
(event data, dialogue state, stored replies, hand-over detail and comment, audit details) are masked with
`bot.security.masking` as every session flushes, whichever code wrote them. The turn itself runs on the
unmasked text in memory; only what is stored is masked.

Bulk statements (`session.execute(insert(...)/update(...))`) bypass the flush: they must not carry free text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

from bot.security.masking import mask_text, mask_value
from bot.storage.models import AuditEntry, Conversation, Event, Handoff, InboundMessage, Reminder

ORIGINAL_KEY = "text_encrypted"  # the user event's original text, Fernet-encrypted, when the bank keeps it
# top-level keys of Event.data stored as given: a message id must match its retry (it is no personal data of
# the customer's, and a masked one could collide with another); a ciphertext must stay decryptable
KEPT_EVENT_KEYS = frozenset({"message_id", ORIGINAL_KEY})
# keys of a user event's parse_data stored as given: which model answered (an experiment's arm and version: a
# version named by its training time, 20261130-021607-519501, holds a Luhn-valid 14-digit run one time in ten, and
# masked it no longer matches the candidate)
KEPT_PARSE_KEYS = frozenset({"model"})
MASKED_COLUMNS: dict[type, tuple[str, ...]] = {
    Event: ("data",),
    Conversation: ("state",),
    InboundMessage: ("replies",),
    Handoff: ("detail", "comment"),
    AuditEntry: ("details", "note"),
    Reminder: ("entities",),
}


def install_masking(sessions: sessionmaker[Session]) -> None:
    """Mask personal data in every row the sessions of `sessions` (a new factory) write. No `event.contains`
    check first: SQLAlchemy's registry is keyed by object id, so a new factory at the address of a collected
    one may look registered already and would then write in clear."""
    event.listen(sessions, "before_flush", _mask_pending)


def mask_event_data(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value if key in KEPT_EVENT_KEYS else _masked_item(key, value) for key, value in (data or {}).items()}


def _masked_item(key: str, value: Any) -> Any:
    if key == "parse_data" and isinstance(value, dict):
        return {name: item if name in KEPT_PARSE_KEYS else mask_value(item) for name, item in value.items()}
    return mask_value(value)


def _mask_pending(session: Session, _context: Any, _instances: Any) -> None:
    for row in session.new:
        _mask_row(row, MASKED_COLUMNS.get(type(row), ()))
    for row in session.dirty:  # only the columns set since the last flush: the others were masked then
        changed = inspect(row).attrs
        _mask_row(row, [c for c in MASKED_COLUMNS.get(type(row), ()) if changed[c].history.has_changes()])


def _mask_row(row: Any, columns: Iterable[str]) -> None:
    for column in columns:
        value = getattr(row, column)
        masked = _masked(row, column, value)
        if masked != value:
            setattr(row, column, masked)


def _masked(row: Any, column: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(row, Event):
        return mask_event_data(value)
    if not isinstance(value, str):
        return mask_value(value)
    masked = mask_text(value)
    length = getattr(row.__table__.c[column].type, "length", None)  # an e-mail's mask is longer than it
    return masked[:length] if length else masked
