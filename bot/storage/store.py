"""The conversation store: every turn is recorded in two transactions.

`begin_turn` stores the customer's message (and claims its message id) before anything answers it;
`finish_turn` adds the parse result, the bot's events and replies, and the new dialogue state. A message id
seen before is a duplicate: it gets the replies stored the first time and is never processed again.

Everything is stored masked (`bot.storage.privacy` masks each row as it is flushed); with
`security.keep_originals_encrypted` the user event also keeps the original text, Fernet-encrypted with a key
from the environment, which no reader of this store returns: only `reveal_original` decrypts it, audited.
Readers pass what they return through `scrub`, so rows stored before input was checked still read.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import and_, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.config import SecurityConfig
from bot.security.json_guard import scrub
from bot.storage.database import Database
from bot.storage.models import (
    AuditEntry,
    BindingCode,
    ChannelCursor,
    ChannelIdentity,
    Conversation,
    Customer,
    Event,
    InboundMessage,
    aware_utc,
    utcnow,
)
from bot.storage.privacy import ORIGINAL_KEY, mask_event_data

KEY_HELP = "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


WORKER = f"{socket.gethostname()}:{os.getpid()}"[:60]  # who claims a message: this process
DEFAULT_CLAIM_LEASE = dt.timedelta(seconds=30)


class ClaimLost(RuntimeError):
    """The message this turn answered was taken over after its lease ran out (and answered by the new claimer):
    this turn's answer is not stored."""


class OriginalsKeyError(RuntimeError):
    """`security.keep_originals_encrypted` is on, but its key is missing or not a Fernet key."""


# how stale an identity's last_seen_at may be (it decides WeChat's 48-hour push window): one write a minute per
# customer instead of one a message
LAST_SEEN_PRECISION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class TurnStart:
    conversation_id: str
    inbound_id: int
    user_event_id: int
    message_id: str
    state: dict[str, Any]
    duplicate: bool = False
    status: str = "received"  # of the inbound message: received | answered | failed
    conversation_status: str = "bot"  # bot | queued | human
    customer_id: str | None = None
    customer_tier: str | None = None
    customer_verified: bool = False
    replies: list[dict[str, Any]] = field(default_factory=list)
    continued_from: dict[str, Any] | None = None  # {"channel", "conversation_id", "last_text"}: state taken over
    new_session: bool = False  # this message opened the conversation: the dialogue's session starts
    previous_conversation: str | None = None  # the one whose silence ended it, for slots carried over
    claim: str | None = None  # this turn's claim on the message ("<worker>/<token>"); finishing checks it
    lease_until: dt.datetime | None = None  # until when the message's current claimer may answer it
    # the conversation's earlier events (as `events` gives them), read in the same transaction; None: not read
    history: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class AbandonedMessage:
    """A customer message whose claim ran out unanswered (its worker died mid-turn)."""

    inbound_id: int
    channel: str
    sender: str
    message_id: str
    text: str  # as stored (masked)
    metadata: dict[str, Any]


def originals_cipher(security: SecurityConfig | None, environ: dict[str, str] | None = None) -> Fernet | None:
    """The cipher for the original message texts when the bank keeps them, else None; `OriginalsKeyError`
    when the option is on and the environment variable it names holds no valid Fernet key."""
    if security is None or not security.keep_originals_encrypted:
        return None
    name = security.originals_key_env
    key = (os.environ if environ is None else environ).get(name, "").strip()
    if not key:
        raise OriginalsKeyError(f"security.keep_originals_encrypted is on but the environment variable {name} "
                                f"is not set; {KEY_HELP}")
    try:
        return Fernet(key)
    except ValueError as e:
        raise OriginalsKeyError(f"the environment variable {name} is not a Fernet key (32 url-safe base64 "
                                f"bytes); {KEY_HELP}") from e


class _Opened(NamedTuple):
    conversation: Conversation
    new: bool  # opened by this message: a new session
    expired: str | None  # the conversation whose silence ended (its slots may carry over)


class ConversationStore:
    def __init__(self, database: Database, session_expiry: dt.timedelta = dt.timedelta(hours=1),
                 state_follows_customer: bool = False, security: SecurityConfig | None = None,
                 claim_lease: dt.timedelta = DEFAULT_CLAIM_LEASE) -> None:
        self.database = database
        self.claim_lease = claim_lease  # how long a worker may take to answer a message before others may
        self.session_expiry = session_expiry
        # a linked customer who moves to another channel continues with the dialogue state they left there
        self.state_follows_customer = state_follows_customer
        self._originals = originals_cipher(security)  # refuses to start without the key the option needs

    # --- a turn ---------------------------------------------------------------------------------------------

    def begin_turn(self, channel: str, sender: str, text: str, message_id: str,
                   metadata: dict[str, Any] | None = None) -> TurnStart:
        """Record the customer's message, or recognise it as a duplicate of one already recorded."""
        try:
            return self._begin_turn(channel, sender, text, message_id, metadata or {})
        except IntegrityError:  # another worker claimed the same message id (or identity) a moment earlier
            return self._begin_turn(channel, sender, text, message_id, metadata or {})

    def _begin_turn(self, channel: str, sender: str, text: str, message_id: str,
                    metadata: dict[str, Any]) -> TurnStart:
        with self.database.session() as session, session.begin():
            identity = self._identity(session, channel, sender)
            seen = session.scalar(select(InboundMessage).where(InboundMessage.identity_id == identity.id,
                                                               InboundMessage.message_id == message_id)
                                  .with_for_update())
            if seen is not None:
                return self._seen(session, seen)
            conversation, opened, previous = self._open_conversation(session, identity)
            continued = self._follow_customer(session, conversation) if self.state_follows_customer else None
            user_event = self._append(session, conversation, "user", self._user_event(text, message_id, channel,
                                                                                    metadata))
            claim, lease_until = self._new_claim()
            inbound = InboundMessage(identity_id=identity.id, message_id=message_id, conversation_id=conversation.id,
                                     user_event_id=user_event.id, claimed_by=claim, lease_until=lease_until)
            session.add(inbound)
            session.flush()
            customer = session.get(Customer, conversation.customer_id) if conversation.customer_id else None
            return TurnStart(conversation.id, inbound.id, user_event.id, message_id, scrub(conversation.state or {}),
                             conversation_status=conversation.status, customer_id=conversation.customer_id,
                             customer_tier=customer.tier if customer else None,
                             customer_verified=bool(customer and customer.verified), continued_from=continued,
                             new_session=opened, previous_conversation=previous, claim=claim,
                             lease_until=lease_until, history=self._events_before(session, user_event))

    def _new_claim(self) -> tuple[str, dt.datetime]:
        return f"{WORKER}/{uuid.uuid4().hex[:16]}", utcnow() + self.claim_lease

    def _user_event(self, text: str, message_id: str, channel: str, metadata: dict[str, Any]) -> dict[str, Any]:
        data = {"text": text, "message_id": message_id, "input_channel": channel, "metadata": metadata,
                "parse_data": None}
        if self._originals is not None:
            data[ORIGINAL_KEY] = self._originals.encrypt(text.encode("utf-8")).decode("ascii")
        return data

    def _seen(self, session: Session, seen: InboundMessage) -> TurnStart:
        """A message stored before: answered or being answered (a duplicate), or to be answered again when its
        first attempt failed or its claimer's lease ran out (the worker died mid-turn): then this call claims it."""
        if seen.status == "failed" or (seen.status == "received" and self._lease_over(seen)):
            return self._reclaim(session, seen)
        conversation = session.get(Conversation, seen.conversation_id)
        assert conversation is not None
        return TurnStart(conversation.id, seen.id, seen.user_event_id, seen.message_id,
                         scrub(conversation.state or {}), duplicate=True, status=seen.status,
                         replies=scrub(list(seen.replies or [])), lease_until=seen.lease_until)

    def _lease_over(self, inbound: InboundMessage) -> bool:
        """Rows stored before claims had leases count from when they were received."""
        until = inbound.lease_until or (aware_utc(inbound.received_at) + self.claim_lease)
        return aware_utc(until) <= utcnow()

    def _reclaim(self, session: Session, seen: InboundMessage) -> TurnStart:
        conversation = self._locked_conversation(session, seen.conversation_id)
        customer = session.get(Customer, conversation.customer_id) if conversation.customer_id else None
        seen.status = "received"
        seen.claimed_by, seen.lease_until = self._new_claim()
        return TurnStart(conversation.id, seen.id, seen.user_event_id, seen.message_id,
                         scrub(conversation.state or {}), conversation_status=conversation.status,
                         customer_id=conversation.customer_id, customer_tier=customer.tier if customer else None,
                         customer_verified=bool(customer and customer.verified), claim=seen.claimed_by,
                         lease_until=seen.lease_until)

    def reclaim_abandoned(self, inbound_id: int) -> TurnStart | None:
        """Claim a message whose lease ran out unanswered, for the sweep; None when it was answered or claimed
        again meanwhile."""
        with self.database.session() as session, session.begin():
            seen = session.get(InboundMessage, inbound_id, with_for_update=True)
            if seen is None or seen.status != "received" or not self._lease_over(seen):
                return None
            return self._reclaim(session, seen)

    def abandoned(self, limit: int = 50) -> list[AbandonedMessage]:
        """Messages still "received" after their claim's lease ran out, oldest first."""
        now = utcnow()
        over = or_(InboundMessage.lease_until <= now,
                   and_(InboundMessage.lease_until.is_(None), InboundMessage.received_at <= now - self.claim_lease))
        with self.database.session() as session:
            rows = session.execute(
                select(InboundMessage, ChannelIdentity, Event).join(ChannelIdentity).join(
                    Event, Event.id == InboundMessage.user_event_id)
                .where(InboundMessage.status == "received", over)
                .order_by(InboundMessage.id).limit(limit)).all()
            return [AbandonedMessage(inbound.id, identity.channel, identity.external_id, inbound.message_id,
                                     str(scrub((event.data or {}).get("text") or "")),
                                     dict(scrub((event.data or {}).get("metadata") or {})))
                    for inbound, identity, event in rows]

    def finish_turn(self, start: TurnStart, parse_data: dict[str, Any] | None, events: list[dict[str, Any]],
                    replies: list[dict[str, Any]], state: dict[str, Any]) -> None:
        """Store what the turn did; `ClaimLost` (nothing stored) when another claimer took the message over."""
        with self.database.session() as session, session.begin():
            inbound = self._check_claim(session, start)
            conversation = self._locked_conversation(session, start.conversation_id)
            user_event = session.get(Event, start.user_event_id)
            assert user_event is not None
            if parse_data is not None:
                user_event.data = {**user_event.data, "parse_data": parse_data}
            append_events(session, conversation, [(item["event"], {k: v for k, v in item.items() if k != "event"})
                                                  for item in events])
            conversation.state = state
            inbound.status, inbound.replies, inbound.answered_at = "answered", replies, utcnow()

    def _check_claim(self, session: Session, start: TurnStart) -> InboundMessage:
        """The message, locked, while this turn's claim on it still stands; else `ClaimLost`."""
        inbound = session.get(InboundMessage, start.inbound_id, with_for_update=True)
        if inbound is None or inbound.status == "answered" or (start.claim and inbound.claimed_by != start.claim):
            raise ClaimLost(f"message {start.message_id} was taken over by {inbound and inbound.claimed_by}")
        return inbound

    def fail_turn(self, start: TurnStart, reason: str) -> None:
        """The message stays stored; a retry with the same message id is processed again."""
        with self.database.session() as session, session.begin():
            inbound = session.get(InboundMessage, start.inbound_id, with_for_update=True)
            if inbound is not None and inbound.status != "answered" and inbound.claimed_by in (None, start.claim):
                inbound.status, inbound.lease_until = "failed", None
            conversation = self._locked_conversation(session, start.conversation_id)
            self._append(session, conversation, "error", {"reason": reason[:500]})

    def inbound_status(self, inbound_id: int) -> tuple[str, list[dict[str, Any]]]:
        """(status, replies) of a stored message; status "abandoned" when it is "received" but its lease ran out."""
        with self.database.session() as session:
            inbound = session.get(InboundMessage, inbound_id)
            if inbound is None:
                return "unknown", []
            status = "abandoned" if inbound.status == "received" and self._lease_over(inbound) else inbound.status
            return status, scrub(list(inbound.replies or []))

    def claim_delivery(self, channel: str, sender: str, message_id: str, how: str) -> bool:
        """Record that the answer to this message goes out by `how`: "reply" (in the HTTP response, which may
        be repeated: a channel that retries did not get the earlier one) or "api" (pushed, exactly once).
        False when the other way has it already (another worker, another retry)."""
        with self.database.session() as session, session.begin():
            inbound = session.scalar(select(InboundMessage).join(ChannelIdentity).where(
                ChannelIdentity.channel == channel, ChannelIdentity.external_id == sender,
                InboundMessage.message_id == message_id).with_for_update())
            if inbound is None:  # not a stored message (an event, a picture): nothing to deliver twice
                return True
            if inbound.delivered_by not in (None, "reply" if how == "reply" else None):
                return False
            inbound.delivered_by = how
            return True

    def delivered_by(self, channel: str, sender: str, message_id: str) -> str | None:
        with self.database.session() as session:
            return session.scalar(select(InboundMessage.delivered_by).join(ChannelIdentity).where(
                ChannelIdentity.channel == channel, ChannelIdentity.external_id == sender,
                InboundMessage.message_id == message_id))

    # --- reading --------------------------------------------------------------------------------------------

    def find_conversation(self, key: str) -> Conversation | None:
        """By conversation id, else the newest conversation of a sender id on any channel (Rasa's
        conversation id is the sender id)."""
        with self.database.session() as session:
            found = session.get(Conversation, key)
            if found is not None:
                return found
            return session.scalar(select(Conversation).join(ChannelIdentity)
                                  .where(ChannelIdentity.external_id == key)
                                  .order_by(Conversation.updated_at.desc()).limit(1))

    def find_conversation_of(self, channel: str, sender: str) -> Conversation | None:
        """The newest conversation of one channel identity."""
        with self.database.session() as session:
            return session.scalar(select(Conversation).join(ChannelIdentity)
                                  .where(ChannelIdentity.channel == channel, ChannelIdentity.external_id == sender)
                                  .order_by(Conversation.started_at.desc()).limit(1))

    def events(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's events in order, in Rasa's tracker event format (masked, as stored)."""
        with self.database.session() as session:
            rows = session.execute(select(*EVENT_COLUMNS).where(Event.conversation_id == conversation_id)
                                   .order_by(Event.seq))
            return [_readable(*row) for row in rows]

    def _events_before(self, session: Session, event: Event) -> list[dict[str, Any]]:
        """The conversation's events before `event`, read within the turn's own transaction (no second one)."""
        rows = session.execute(select(*EVENT_COLUMNS).where(Event.conversation_id == event.conversation_id,
                                                            Event.seq < event.seq).order_by(Event.seq))
        return [_readable(*row) for row in rows]

    def sender_events(self, channel: str, sender: str) -> list[dict[str, Any]]:
        """Events of every conversation of one channel identity, oldest first (for history replay)."""
        with self.database.session() as session:
            rows = session.execute(
                select(*EVENT_COLUMNS).join(Conversation).join(ChannelIdentity)
                .where(ChannelIdentity.channel == channel, ChannelIdentity.external_id == sender)
                .order_by(Conversation.started_at, Event.seq))
            return [_readable(*row) for row in rows]

    def reveal_original(self, event_id: int, actor: str, reason: str) -> str | None:
        """The original, unmasked text of a customer's message, for the bank's own audited use (a dispute, a
        court order): only when `security.keep_originals_encrypted` was on when it was stored, and with the
        same key now. Every call is audited with `actor` and `reason`, whatever it finds. Nothing else in the
        application decrypts the originals and no API returns them."""
        if not reason.strip():
            raise ValueError("a reason is required to reveal an original message")
        with self.database.session() as session:
            event = session.get(Event, event_id)
            token = (event.data or {}).get(ORIGINAL_KEY) if event is not None and event.type == "user" else None
        self.audit(actor, "reveal_original", str(event_id), {"reason": reason, "found": token is not None})
        if token is None or self._originals is None:
            return None
        try:
            return self._originals.decrypt(str(token).encode("ascii")).decode("utf-8")
        except InvalidToken:  # stored under another key
            return None

    def link_customer(self, channel: str, sender: str, customer_id: str, *, name: str | None = None,
                      tier: str | None = None, verified: bool = False) -> None:
        """Record (or update) the bank customer and link this channel identity, and its open conversation, to it."""
        with self.database.session() as session, session.begin():
            customer = session.get(Customer, customer_id)
            if customer is None:
                customer = Customer(id=customer_id)
                session.add(customer)
            customer.name = name or customer.name
            customer.tier = tier or customer.tier or "standard"
            customer.verified = verified or bool(customer.verified)
            session.flush()
            identity = self._identity(session, channel, sender)
            if identity.customer_id != customer_id:
                identity.customer_id = customer_id
                session.add(AuditEntry(actor=f"{channel}:{sender}", action="link_customer", target=customer_id,
                                       details={"verified": verified}))
            for conversation in session.scalars(select(Conversation).where(Conversation.identity_id == identity.id,
                                                                           Conversation.status != "closed")):
                conversation.customer_id = customer_id

    def latest_identity(self, customer_id: str) -> ChannelIdentity | None:
        """The channel identity the customer used most recently."""
        with self.database.session() as session:
            return session.scalar(select(ChannelIdentity).where(ChannelIdentity.customer_id == customer_id)
                                  .order_by(ChannelIdentity.last_seen_at.desc()).limit(1))

    def add_bot_message(self, channel: str, sender: str, text: str, slots: dict[str, Any], source: str) -> str:
        """A message the bot starts (a notification): stored in the identity's conversation, with slots that
        let the dialogue understand the customer's answer. Returns the conversation id."""
        with self.database.session() as session, session.begin():
            identity = session.scalar(select(ChannelIdentity).where(ChannelIdentity.channel == channel,
                                                                    ChannelIdentity.external_id == sender))
            if identity is None:
                raise KeyError(f"{channel}:{sender}")
            conversation = self._open_conversation(session, identity).conversation
            dialogue = dict((conversation.state or {}).get("dialogue") or {})
            dialogue["slots"] = {**(dialogue.get("slots") or {}), **slots}
            conversation.state = {**(conversation.state or {}), "dialogue": dialogue}
            for name, value in slots.items():
                self._append(session, conversation, "slot", {"name": name, "value": value})
            self._append(session, conversation, "bot", {"text": text, "data": {"buttons": None, "source": source}})
            return conversation.id

    def customer(self, customer_id: str) -> Customer | None:
        with self.database.session() as session:
            return session.get(Customer, customer_id)

    def audit(self, actor: str, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        with self.database.session() as session, session.begin():
            session.add(AuditEntry(actor=actor, action=action, target=target, details=details or {}))

    # --- channel cursors and binding codes ------------------------------------------------------------------

    def cursor(self, name: str) -> str:
        """A stored stream position ("" before the first)."""
        with self.database.session() as session:
            found = session.get(ChannelCursor, name)
            return found.value if found else ""

    def save_cursor(self, name: str, value: str) -> None:
        with self.database.session() as session, session.begin():
            found = session.get(ChannelCursor, name, with_for_update=True)
            if found is None:
                session.add(ChannelCursor(name=name, value=value))
            else:
                found.value, found.updated_at = value, utcnow()

    def pop_cursor(self, name: str) -> str:
        """Read a stored value and clear it, in one step ("" when there was none)."""
        with self.database.session() as session, session.begin():
            found = session.get(ChannelCursor, name, with_for_update=True)
            if found is None or not found.value:
                return ""
            value, found.value, found.updated_at = found.value, "", utcnow()
            return value

    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or renew) the lease `name` for `holder`; False while another holder's lease runs. Workers use
        it so that one of them at a time does a job (e.g. reads a WeCom account's messages)."""
        until = time.time() + seconds
        try:
            with self.database.session() as session, session.begin():
                found = session.get(ChannelCursor, name, with_for_update=True)
                if found is None:
                    session.add(ChannelCursor(name=name, value=f"{holder}|{until}"))
                    return True
                owner, _, expires = found.value.partition("|")
                if owner not in ("", holder) and float(expires or 0) > time.time():
                    return False
                found.value, found.updated_at = f"{holder}|{until}", utcnow()
                return True
        except IntegrityError:  # another worker created the lease row a moment earlier
            return False

    def release_lease(self, name: str, holder: str) -> None:
        with self.database.session() as session, session.begin():
            found = session.get(ChannelCursor, name, with_for_update=True)
            if found is not None and found.value.partition("|")[0] == holder:
                found.value, found.updated_at = "", utcnow()

    def issue_binding_code(self, customer_id: str, ttl: dt.timedelta) -> str:
        """A fresh 6-digit code for a signed-in customer; earlier unused codes of theirs stop working."""
        with self.database.session() as session, session.begin():
            if session.get(Customer, customer_id) is None:
                raise KeyError(customer_id)
            now = utcnow()
            for old in session.scalars(select(BindingCode).where(BindingCode.customer_id == customer_id,
                                                                  BindingCode.used_at.is_(None))):
                old.expires_at = now
            while True:
                code = f"{secrets.randbelow(1_000_000):06d}"
                found = session.get(BindingCode, code)
                if found is None:
                    session.add(BindingCode(code=code, customer_id=customer_id, expires_at=now + ttl))
                    return code
                if found.used_at is not None or aware_utc(found.expires_at) <= now:
                    session.delete(found)
                    session.flush()

    def redeem_binding_code(self, code: str, channel: str, sender: str) -> str | None:
        """Link `channel:sender` to the code's customer; the customer id, or None for an unknown, used or
        expired code."""
        with self.database.session() as session, session.begin():
            found = session.get(BindingCode, code, with_for_update=True)
            if found is None or found.used_at is not None or aware_utc(found.expires_at) <= utcnow():
                return None
            found.used_at, found.used_by = utcnow(), f"{channel}:{sender}"
            customer_id = found.customer_id
        customer = self.customer(customer_id)
        self.link_customer(channel, sender, customer_id, verified=bool(customer and customer.verified))
        return customer_id

    # --- helpers --------------------------------------------------------------------------------------------

    def _identity(self, session: Session, channel: str, sender: str) -> ChannelIdentity:
        identity = session.scalar(select(ChannelIdentity).where(ChannelIdentity.channel == channel,
                                                                ChannelIdentity.external_id == sender))
        if identity is None:
            identity = ChannelIdentity(channel=channel, external_id=sender)
            session.add(identity)
            session.flush()
        elif utcnow() - aware_utc(identity.last_seen_at) >= LAST_SEEN_PRECISION:
            identity.last_seen_at = utcnow()
        return identity

    def _open_conversation(self, session: Session, identity: ChannelIdentity) -> _Opened:
        """The identity's current conversation, locked; a new one after `session_expiry` of silence or a close."""
        current = session.scalar(select(Conversation).where(Conversation.identity_id == identity.id,
                                                            Conversation.status != "closed")
                                 .order_by(Conversation.started_at.desc()).limit(1).with_for_update())
        if current is not None and utcnow() - aware_utc(current.updated_at) < self.session_expiry:
            return _Opened(current, False, None)
        if current is not None and current.status == "bot":
            current.status = "closed"
        conversation = Conversation(identity_id=identity.id, customer_id=identity.customer_id,
                                    channel=identity.channel, state={})
        session.add(conversation)
        session.flush()
        self._append(session, conversation, "session_started", {})
        return _Opened(conversation, True, current.id if current is not None else None)

    def dialogue_slots(self, conversation_id: str) -> dict[str, Any]:
        """The slots a conversation's dialogue ended with (for those a new session carries over)."""
        with self.database.session() as session:
            conversation = session.get(Conversation, conversation_id)
            state = scrub(conversation.state or {}) if conversation is not None else {}
        return dict((state.get("dialogue") or {}).get("slots") or {})

    def _follow_customer(self, session: Session, conversation: Conversation) -> dict[str, Any] | None:
        """Take over the dialogue state of the customer's conversation on another channel when that one is
        newer and still live (not with a person): the state belongs to the customer, not the channel."""
        if conversation.customer_id is None or conversation.status != "bot":
            return None
        found = self._live_state_elsewhere(session, conversation.customer_id, conversation.identity_id)
        if found is None:
            return None
        newer, dialogue, continued = found
        here_last = session.scalar(select(Event.timestamp).where(Event.conversation_id == conversation.id,
                                                                 Event.type.in_(("user", "bot")))
                                   .order_by(Event.seq.desc()).limit(1))
        if here_last is not None and aware_utc(here_last) >= aware_utc(newer.updated_at):
            return None
        conversation.state = {**(conversation.state or {}), "dialogue": dialogue}
        self._append(session, conversation, "continued", continued)
        return continued

    def live_state_elsewhere(self, customer_id: str, channel: str,
                             sender: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(dialogue state, {"channel", "conversation_id", "last_text"}) of the customer's newest live
        conversation on a channel identity other than this one, when there is one worth continuing."""
        with self.database.session() as session:
            identity_id = session.scalar(select(ChannelIdentity.id).where(ChannelIdentity.channel == channel,
                                                                          ChannelIdentity.external_id == sender))
            if identity_id is None:
                return None
            found = self._live_state_elsewhere(session, customer_id, identity_id)
            return None if found is None else (found[1], found[2])

    def _live_state_elsewhere(self, session: Session, customer_id: str,
                              identity_id: int) -> tuple[Conversation, dict[str, Any], dict[str, Any]] | None:
        newer = session.scalar(select(Conversation).where(
            Conversation.customer_id == customer_id, Conversation.identity_id != identity_id,
            Conversation.status == "bot").order_by(Conversation.updated_at.desc()).limit(1))
        if newer is None or utcnow() - aware_utc(newer.updated_at) >= self.session_expiry:
            return None
        dialogue = (newer.state or {}).get("dialogue") or {}
        if not dialogue.get("active_loop") and not any(v is not None for v in (dialogue.get("slots") or {}).values()):
            return None
        def last(kind: str) -> str:
            data = session.scalar(select(Event.data).where(Event.conversation_id == newer.id, Event.type == kind)
                                  .order_by(Event.seq.desc()).limit(1))
            return str((data or {}).get("text", ""))

        return newer, scrub(dialogue), {"channel": newer.channel, "conversation_id": newer.id,
                                        "last_text": scrub(last("user")), "last_bot": scrub(last("bot"))}

    def _locked_conversation(self, session: Session, conversation_id: str) -> Conversation:
        conversation = session.get(Conversation, conversation_id, with_for_update=True)
        if conversation is None:
            raise KeyError(f"conversation {conversation_id} not found")
        return conversation

    def _append(self, session: Session, conversation: Conversation, kind: str, data: dict[str, Any]) -> Event:
        return append_event(session, conversation, kind, data)


def append_event(session: Session, conversation: Conversation, kind: str, data: dict[str, Any]) -> Event:
    """Add the conversation's next event (its data is masked as it is flushed)."""
    event = Event(conversation_id=conversation.id, seq=conversation.next_seq, type=kind, data=data)
    conversation.next_seq += 1
    conversation.updated_at = utcnow()
    session.add(event)
    session.flush()
    return event


def append_events(session: Session, conversation: Conversation, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Add the conversation's next events, (kind, data) each, in one INSERT: the end of a turn, where nothing needs
    their ids. A bulk statement bypasses the flush's masking, so their data is masked here."""
    if not events:
        return
    now = utcnow()
    rows = [{"conversation_id": conversation.id, "seq": conversation.next_seq + offset, "type": kind,
             "data": mask_event_data(data), "timestamp": now} for offset, (kind, data) in enumerate(events)]
    session.execute(insert(Event), rows)
    conversation.next_seq += len(rows)
    conversation.updated_at = now


# what readers of events need, read as plain rows (no ORM objects: a turn reads its whole history)
EVENT_COLUMNS = (Event.type, Event.data, Event.timestamp)


def _readable(kind: str, data: dict[str, Any] | None, timestamp: dt.datetime) -> dict[str, Any]:
    """An event as readers get it: Rasa's tracker format, without the encrypted original, safe to serialise
    whatever was stored before input was checked."""
    kept = {key: value for key, value in (data or {}).items() if key != ORIGINAL_KEY}
    return scrub({"event": kind, "timestamp": timestamp.timestamp(), **kept})

