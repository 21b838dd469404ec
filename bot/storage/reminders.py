"""Reminders (Rasa's `ReminderScheduled` / `ReminderCancelled`) in the database: scheduled and cancelled with
the turn that asked for them, claimed once when due by whichever worker looks first.

Rasa keys a reminder by its name (a new one of the same name replaces it) and cancels by name, intent and
entities, each optional: `ReminderCancelled()` cancels all of the sender's reminders.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select, update

from bot.storage.database import Database
from bot.storage.models import ChannelIdentity, Conversation, Event, Reminder, aware_utc, utcnow


@dataclass(frozen=True)
class DueReminder:
    id: int
    conversation_id: str
    channel: str
    sender: str
    name: str
    intent: str
    entities: list[dict[str, Any]]
    kill_on_user_message: bool
    scheduled_at: dt.datetime


class ReminderStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def apply(self, conversation_id: str, channel: str, sender: str, events: list[dict[str, Any]]) -> None:
        """Store the turn's `reminder` and `cancel_reminder` events, in order."""
        if not events:
            return
        with self.database.session() as session, session.begin():
            for event in events:
                if event.get("event") == "reminder":
                    self._cancel(session, channel, sender, {"name": event["name"]})  # same name: replaced
                    session.add(Reminder(
                        conversation_id=conversation_id, channel=channel, sender=sender, name=str(event["name"]),
                        intent=str(event["intent"]), entities=entity_list(event.get("entities")),
                        kill_on_user_message=bool(event.get("kill_on_user_msg", True)),
                        scheduled_at=utcnow(), due_at=due_time(str(event["date_time"]))))
                elif event.get("event") == "cancel_reminder":
                    self._cancel(session, channel, sender, event)
                session.flush()

    def _cancel(self, session: Any, channel: str, sender: str, event: dict[str, Any]) -> None:
        query = select(Reminder).where(Reminder.channel == channel, Reminder.sender == sender,
                                       Reminder.status == "pending")
        if event.get("name"):
            query = query.where(Reminder.name == event["name"])
        if event.get("intent"):
            query = query.where(Reminder.intent == event["intent"])
        entities = entity_list(event.get("entities")) if event.get("entities") else None
        for reminder in session.scalars(query.with_for_update()):
            if entities is None or _same_entities(reminder.entities, entities):
                reminder.status = "cancelled"

    def due(self, now: dt.datetime | None = None, limit: int = 100) -> list[DueReminder]:
        with self.database.session() as session:
            rows = session.scalars(select(Reminder).where(Reminder.status == "pending",
                                                          Reminder.due_at <= (now or utcnow()))
                                   .order_by(Reminder.due_at).limit(limit))
            return [DueReminder(r.id, r.conversation_id, r.channel, r.sender, r.name, r.intent, list(r.entities),
                                r.kill_on_user_message, aware_utc(r.scheduled_at)) for r in rows]

    def pending(self, channel: str, sender: str) -> list[str]:
        """Names of the sender's reminders still to fire, soonest first."""
        with self.database.session() as session:
            return list(session.scalars(select(Reminder.name).where(
                Reminder.channel == channel, Reminder.sender == sender, Reminder.status == "pending")
                .order_by(Reminder.due_at)))

    def claim(self, reminder_id: int, status: str) -> bool:
        """Move a pending reminder to `status` (fired, killed, skipped); False if another worker had it."""
        with self.database.session() as session, session.begin():
            done = session.execute(update(Reminder).where(Reminder.id == reminder_id, Reminder.status == "pending")
                                   .values(status=status, fired_at=utcnow()))
            return bool(getattr(done, "rowcount", 0))

    def customer_wrote_since(self, channel: str, sender: str, moment: dt.datetime) -> bool:
        """Whether the sender sent a message after `moment` (Rasa's `kill_on_user_message`)."""
        with self.database.session() as session:
            return bool(session.scalar(select(exists().where(
                Event.conversation_id == Conversation.id, Conversation.identity_id == ChannelIdentity.id,
                ChannelIdentity.channel == channel, ChannelIdentity.external_id == sender,
                Event.type == "user", Event.timestamp > moment))))


def entity_list(entities: Any) -> list[dict[str, Any]]:
    """Rasa accepts entities as a list of entity dicts or as {entity: value}."""
    if isinstance(entities, dict):
        return [{"entity": str(k), "value": v} for k, v in entities.items()]
    return [dict(e) for e in entities or [] if isinstance(e, dict)]


def due_time(iso: str) -> dt.datetime:
    """A reminder's `date_time`; a time without a zone is the server's local time, as Rasa's scheduler reads it."""
    moment = dt.datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.astimezone()).astimezone(dt.UTC)


def _same_entities(stored: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    def key(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((str(e.get("entity")), str(e.get("value"))) for e in items)
    return key(stored) == key(wanted)

