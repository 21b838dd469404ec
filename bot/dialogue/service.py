"""The conversation service: the one path every customer message takes, whatever the channel.

clean the text → store it (claiming its message id) → understand and answer → store the answer.
A duplicate message id gets the first answer back; turns of one customer run one at a time. A reminder an
action scheduled takes the same path when it is due, its intent standing for the customer's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bot.assistant import Assistant
from bot.channels.registry import channel_info, channel_label
from bot.dialogue.engine import DialogueState, TurnOutcome
from bot.dialogue.responder import Reply
from bot.handoff.handover import Escalated, Handover
from bot.handoff.reasons import SENSITIVE
from bot.ops.logs import in_conversation
from bot.ops.metrics import counted_turn
from bot.security.limits import MemoryLimiter, RateLimiter, Throttled
from bot.storage import ConversationStore, TurnStart
from bot.storage.locks import ConversationBusy, TurnLocks
from bot.storage.models import utcnow
from bot.storage.reminders import DueReminder, ReminderStore, entity_list
from bot.storage.store import AbandonedMessage, ClaimLost
from bot.training_data import DisplayNames

MAX_MESSAGE_CHARS = 2000
BINDING_CODE = re.compile(r"^(?:绑定|綁定|bind)\s*[:：]?\s*(\d{6})$", re.IGNORECASE)
# channels whose sender the server verified (a signature, or a credential it issued): only these may be linked
# to a bank customer by a binding code; a REST sender is whatever the caller wrote
BINDABLE_CHANNELS = {"wechat", "wecom", "web"}
# who the customer is comes from the channel's verified identity, never from what a client put in metadata
IDENTITY_KEYS = frozenset({"customer_id", "verified", "tier", "name", "identity_verified"})
URGENT_PREFIX = "utter_urgent_"  # a sensitive matter's urgent self-service step, said before the hand-over
EXTERNAL_PREFIX = "EXTERNAL: "  # Rasa's text of a message the server makes from an intent (reminders, triggers)
logger = logging.getLogger(__name__)


class MessageRejected(ValueError):
    """A message that cannot be handled; the text is meant for the customer (Chinese)."""


class TooManyMessages(Throttled, MessageRejected):
    """A sender or an address over its message rate; `retry_after` in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("您发送得太快了，请稍等片刻再试。", retry_after)


class ServiceUnavailable(RuntimeError):
    """No turn can be answered now (the worker is shutting down, the conversation's lock is not free): the
    channel answers 503 with Retry-After, the widget's socket an error frame."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    """How much one sender or one address may do: messages per window, wrong binding codes per window."""

    limiter: RateLimiter
    per_sender: int = 30
    per_ip: int = 120
    window_seconds: float = 60
    binding_failures: int = 5
    binding_window_seconds: float = 3600


@dataclass(frozen=True)
class Inbound:
    channel: str  # web | app | wechat | rest ...
    sender: str  # the channel's id for the customer: web visitor id, app user id, WeChat openid
    text: str
    message_id: str | None  # client or channel message id, for de-duplication
    metadata: dict[str, Any] = field(default_factory=dict)  # from the client: never says who the customer is
    client_ip: str | None = None  # the caller's address, for rate limits (None: a channel's server, e.g. WeChat)


class _Done(NamedTuple):
    """What a turn did: replies, the parse it acted on, events and state to store, reminders to (un)schedule."""

    replies: list[Reply]
    parse: dict[str, Any] | None
    events: list[dict[str, Any]]
    state: dict[str, Any]
    reminders: list[dict[str, Any]] = []


@dataclass(frozen=True)
class TurnResult:
    conversation_id: str
    replies: list[dict[str, Any]]  # {"text", "buttons": [{"title", "payload"}] | None, "timestamp"}
    duplicate: bool = False


class ConversationService:
    def __init__(self, assistant: Assistant, store: ConversationStore, duplicate_wait: float = 10.0,
                 handoff: Handover | None = None, limits: Limits | None = None) -> None:
        self.assistant = assistant
        self.store = store
        self.handoff = handoff
        self.limits = limits or Limits(MemoryLimiter())
        self.duplicate_wait = duplicate_wait
        self.reminders = ReminderStore(store.database)
        # turns of one customer never overlap, in this process and (on PostgreSQL) in every other worker
        database = store.database
        self.locks = TurnLocks(None if database.is_sqlite else database.url, pool=database.pool)
        self.draining = False  # set when the worker shuts down: turns in flight finish, no new one starts
        self._in_flight = 0
        self._in_flight_changed = threading.Condition()

    @counted_turn(rejected=MessageRejected)  # bot_messages_total{channel,outcome}, bot_turn_seconds
    def handle(self, inbound: Inbound) -> TurnResult:
        text = clean_text(inbound.text)
        self._check_rate(inbound)
        message_id = inbound.message_id or uuid.uuid4().hex
        with self._turn_slot(inbound.channel, inbound.sender):
            start = self._claim(inbound.channel, inbound.sender, text, message_id, inbound.metadata)
            if start.duplicate:
                return TurnResult(start.conversation_id, start.replies, duplicate=True)
            return self._run(inbound, start, lambda: self._turn(inbound, text, start))

    @in_conversation  # log lines of the turn carry its conversation id
    def _run(self, inbound: Inbound, start: TurnStart, turn: Callable[[], _Done]) -> TurnResult:
        """Answer a claimed message: store what `turn` did, or record the failure (a retry answers it again)."""
        try:
            done = turn()
        except Exception as e:
            self.store.fail_turn(start, f"{type(e).__name__}: {e}")
            raise
        try:
            stamped = self._finish(inbound, start, done)
        except ClaimLost:  # this worker was too slow: whoever took the message over has answered it
            logger.warning("message %s of %s:%s was taken over; its stored answer stands", start.message_id,
                           inbound.channel, inbound.sender)
            return TurnResult(start.conversation_id, self.store.inbound_status(start.inbound_id)[1], duplicate=True)
        return TurnResult(start.conversation_id, stamped)

    def _claim(self, channel: str, sender: str, text: str, message_id: str,
               metadata: dict[str, Any]) -> TurnStart:
        """Store and claim the message; a duplicate carries the first delivery's replies (waiting for them while
        its claimer still holds a lease; taking the message over when the lease runs out unanswered)."""
        start = self.store.begin_turn(channel, sender, text, message_id, metadata)
        if not start.duplicate:
            return start
        status, replies = self._first_delivery(start)
        if status == "abandoned":  # its worker died mid-turn: this delivery answers it
            start = self.store.begin_turn(channel, sender, text, message_id, metadata)
            if not start.duplicate:
                return start
            status, replies = start.status, start.replies
        if status != "answered":
            raise MessageRejected("这条消息正在处理中，请稍候再试。")
        return dataclasses.replace(start, replies=replies)

    @contextlib.contextmanager
    def claimed_turn(self, channel: str, sender: str, text: str, message_id: str,
                     metadata: dict[str, Any]) -> Iterator[TurnStart]:
        """A turn answered outside `handle` (an attachment, bot.storage.attachments): the conversation's lock and
        the message claimed exactly as for text; a duplicate's start carries its first delivery's replies. The
        caller finishes the turn (`store.finish_turn`) or fails it (`store.fail_turn`)."""
        with self._turn_slot(channel, sender):
            yield self._claim(channel, sender, text, message_id, metadata)

    @contextlib.contextmanager
    def _turn_slot(self, channel: str, sender: str) -> Iterator[None]:
        """The conversation's lock, counted as a turn in flight; refused while the worker shuts down."""
        with self._in_flight_changed:
            if self.draining:
                raise ServiceUnavailable("shutting down")
            self._in_flight += 1
        try:
            with self.locks.hold(channel, sender):
                yield
        except ConversationBusy as e:
            raise ServiceUnavailable("conversation busy") from e
        finally:
            with self._in_flight_changed:
                self._in_flight -= 1
                self._in_flight_changed.notify_all()

    def drain(self, timeout: float = 30.0) -> bool:
        """Stop starting turns and wait up to `timeout` seconds for those in flight; True when none is left."""
        deadline = time.monotonic() + timeout
        with self._in_flight_changed:
            self.draining = True
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._in_flight_changed.wait(left)
            return self._in_flight == 0

    # --- messages whose worker died mid-turn -----------------------------------------------------------------

    def answer_abandoned(self, deliver: Callable[[str, str, str, list[dict[str, Any]]], None] | None = None) -> int:
        """Answer every message whose claim's lease ran out unanswered and whose customer did not send it again;
        `deliver(channel, sender, message_id, replies)` pushes each answer where it can. Returns how many."""
        answered = 0
        for message in self.store.abandoned():
            try:
                replies = self._answer_abandoned(message)
            except Exception:  # one broken message must not stop the others
                logger.exception("answering abandoned message %s of %s:%s failed", message.message_id,
                                 message.channel, message.sender)
                continue
            if replies is not None:
                answered += 1
                if deliver is not None and replies:
                    deliver(message.channel, message.sender, message.message_id, replies)
        return answered

    def _answer_abandoned(self, message: AbandonedMessage) -> list[dict[str, Any]] | None:
        with self._turn_slot(message.channel, message.sender):
            start = self.store.reclaim_abandoned(message.inbound_id)
            if start is None:  # answered or taken over meanwhile
                return None
            inbound = Inbound(message.channel, message.sender, message.text, message.message_id, message.metadata)
            if message.metadata.get("is_external") and message.text.startswith(EXTERNAL_PREFIX):
                intent = message.text.removeprefix(EXTERNAL_PREFIX)
                result = self._run(inbound, start, lambda: self._external_turn(inbound, intent, [], start))
            else:
                result = self._run(inbound, start, lambda: self._turn(inbound, message.text, start))
            return None if result.duplicate else result.replies

    def _finish(self, inbound: Inbound, start: TurnStart, done: _Done) -> list[dict[str, Any]]:
        """Store the turn's events, replies and state, then the reminders it scheduled or cancelled."""
        stamped = [_reply_dict(r) for r in done.replies]
        bot_events = [{"event": "bot", "text": r["text"], "data": _bot_data(r)} for r in stamped]
        self.store.finish_turn(start, done.parse, [*done.events, *bot_events], stamped, done.state)
        self.reminders.apply(start.conversation_id, inbound.channel, inbound.sender, done.reminders)
        return stamped

    # --- reminders ------------------------------------------------------------------------------------------

    def fire_due_reminders(self, now: dt.datetime | None = None) -> int:
        """Handle every reminder whose time has come, as Rasa's scheduler does; returns how many fired."""
        fired = 0
        for reminder in self.reminders.due(now):
            try:
                fired += self._fire(reminder)
            except Exception:  # one broken reminder must not stop the others
                logger.exception("reminder %s of %s:%s failed", reminder.name, reminder.channel, reminder.sender)
        return fired

    def _fire(self, reminder: DueReminder) -> bool:
        if reminder.kill_on_user_message and self.reminders.customer_wrote_since(
                reminder.channel, reminder.sender, reminder.scheduled_at):
            self.reminders.claim(reminder.id, "killed")
            return False
        conversation = self.store.find_conversation_of(reminder.channel, reminder.sender)
        if conversation is not None and conversation.status in ("queued", "human"):
            self.reminders.claim(reminder.id, "skipped")  # a person holds the conversation
            return False
        if not self.reminders.claim(reminder.id, "fired"):
            return False
        self.trigger_intent(reminder.channel, reminder.sender, reminder.intent, reminder.entities,
                            message_id=f"reminder:{reminder.id}")
        return True

    def trigger_intent(self, channel: str, sender: str, intent: str, entities: Any = None,
                       message_id: str | None = None) -> TurnResult:
        """Handle `intent` with `entities` as if the customer had sent them (Rasa's external `trigger_intent`):
        stored as the user message "EXTERNAL: <intent>", answered by the dialogue without NLU."""
        inbound = Inbound(channel, sender, f"{EXTERNAL_PREFIX}{intent}", message_id or uuid.uuid4().hex,
                          metadata={"is_external": True})
        with self._turn_slot(channel, sender):
            start = self._claim(channel, sender, inbound.text, str(inbound.message_id), inbound.metadata)
            if start.duplicate:
                return TurnResult(start.conversation_id, start.replies, duplicate=True)
            return self._run(inbound, start, lambda: self._external_turn(inbound, intent, entity_list(entities), start))

    def _external_turn(self, inbound: Inbound, intent: str, entities: list[dict[str, Any]],
                       start: TurnStart) -> _Done:
        history = self._history(start)
        dialogue = DialogueState.model_validate(start.state.get("dialogue") or {})
        parse = {"text": inbound.text, "intent": {"name": intent, "confidence": 1.0},
                 "intent_ranking": [{"name": intent, "confidence": 1.0}], "entities": entities,
                 "metadata": {"is_external": True}}
        session = self._session_start(start, _reply_channel(inbound.channel), inbound.sender, dialogue)
        if session is not None:
            dialogue, history = session.state, [*history, *session.events]
        outcome = self.assistant.engine.turn(dialogue, parse, _reply_channel(inbound.channel), inbound.sender, history)
        _after_session_start(session, outcome)
        state = {**start.state, "dialogue": outcome.state.model_dump()}
        return _Done(list(outcome.replies), outcome.parse, outcome.events, state, outcome.reminders)

    def _turn(self, inbound: Inbound, text: str,
              start: TurnStart) -> _Done:
        """What one turn did: with a person, a rating, or the bot."""
        if start.conversation_status in ("queued", "human") and self.handoff is not None:
            return _Done(self.handoff.while_with_people(start, text), None, [], start.state)
        state = dict(start.state)
        code = binding_code(text)
        if code is not None and inbound.channel in BINDABLE_CHANNELS:  # the app is where codes come from
            return _Done(self._bind(inbound, code, state), None, [], state)
        options = state.pop("numbered_options", None)
        survey = state.pop("survey_handoff", None)
        if survey is not None and self.handoff is not None:
            thanks = self.handoff.take_rating(int(survey), text)
            if thanks:
                return _Done(thanks, None, [], state)
        text = chosen_option(text, options) or text
        parse, outcome = self._respond(inbound, text, start)
        replies = list(outcome.replies)
        if start.continued_from:
            replies.insert(0, continuation(start.continued_from))
        handed_over = self.handoff.escalate_if_needed(start, text, parse, outcome.state, self.display_names) \
            if self.handoff else None
        events = outcome.events
        if handed_over is not None:
            replies = self._handover_replies(replies, handed_over, outcome.state, inbound.channel)
            events = [*events, *self._start_afresh(outcome.state)]
        state = {**state, "dialogue": outcome.state.model_dump()}
        if channel_info(inbound.channel).plain_text:  # no buttons: numbered options, answered by number
            replies, state["numbered_options"] = numbered(replies)
        return _Done(replies, parse, events, state, outcome.reminders)

    def _handover_replies(self, replies: list[Reply], handed_over: Escalated, dialogue: DialogueState,
                          channel: str) -> list[Reply]:
        """What the customer reads when a person is asked for: the form's "let's continue" prompts and the offer
        of a person would only confuse, so they go; for fraud or a stolen card (a `sensitive` hand-over) the
        urgent self-service step (freeze the card, the 24-hour hotline) comes first, then the hand-over."""
        form = dialogue.active_loop
        kept = [r for r in replies if r.source != form and not r.source.startswith(("utter_ask_", "utter_offer_human"))]
        if handed_over.escalation.kind == SENSITIVE:
            urgent = self._urgent_step(handed_over.escalation.intent, channel)
            if urgent:  # the step replaces the turn's general advice, which would bury it
                kept = [*(r for r in kept if r.source == "continuation"), *urgent]
        return [*kept, *handed_over.replies]

    def _urgent_step(self, intent: str | None, channel: str) -> list[Reply]:
        """The urgent self-service step for a sensitive matter, from the project's responses: for a sensitive
        intent its `utter_urgent_<intent>` (none for a complaint: nothing to freeze), for a sensitive word
        ("盗刷", "被骗") `utter_urgent_sensitive`."""
        responder = getattr(self.assistant, "responder", None)
        name = f"{URGENT_PREFIX}{intent or 'sensitive'}"
        if responder is None or name not in responder.responses:
            return []
        return list(responder.utter(name, _reply_channel(channel), {}))

    def _start_afresh(self, dialogue: DialogueState) -> list[dict[str, Any]]:
        """A person takes over: every counter of the bot's attempt is reset (`DialogueState.start_afresh`), so that
        what the customer says after the person closes the chat starts from zero; the events that say so."""
        assert self.handoff is not None
        reset = dialogue.start_afresh(self.handoff.config.failure_slots)
        return [{"event": "active_loop", "name": None}, *({"event": "slot", "name": n, "value": None} for n in reset)]

    @property
    def display_names(self) -> DisplayNames:
        """The loaded model's display names of intents, slots and forms (stand-ins of the assistant: none)."""
        model = getattr(self.assistant, "model", None)
        return getattr(model, "display_names", None) or DisplayNames()

    def _bind(self, inbound: Inbound, code: str, state: dict[str, Any]) -> list[Reply]:
        """Link this channel identity to the app customer who was given `code` (state counts failures)."""
        limits, counters = self.limits, self._binding_counters(inbound)
        if any(limits.limiter.retry_after(key, limit, limits.binding_window_seconds) > 0 for key, limit in counters):
            return [Reply(text="绑定码错误次数过多，已暂停绑定。请稍后再试，或回复“转人工”。", source="binding_locked")]
        customer_id = self.store.redeem_binding_code(code, inbound.channel, inbound.sender)
        if customer_id is None:
            for key, _ in counters:
                limits.limiter.record(key, limits.binding_window_seconds)
            return [Reply(text="绑定码无效或已过期。请在手机银行App“我的-绑定微信”获取新的6位绑定码，"
                               "再发送“绑定+绑定码”，例如：绑定 123456。", source="binding_failed")]
        customer = self.store.customer(customer_id)
        name = customer.name if customer and customer.name else ""
        replies = [Reply(text=f"绑定成功！{name}您好，您的{channel_label(inbound.channel)}已与"
                              "手机银行App关联，人工客服也能看到您在各渠道的咨询记录。", source="binding_done")]
        elsewhere = self.store.live_state_elsewhere(customer_id, inbound.channel, inbound.sender) \
            if self.store.state_follows_customer else None
        if elsewhere is not None:
            state["dialogue"], continued_from = elsewhere
            replies.append(continuation(continued_from))
            if state["dialogue"].get("active_loop") and continued_from.get("last_bot"):
                replies.append(Reply(text=continued_from["last_bot"], source="continuation"))  # its open question
        return replies

    def _binding_counters(self, inbound: Inbound) -> list[tuple[str, int]]:
        """Wrong codes are counted per sender, per address and over all senders (a guesser with many
        senders and addresses still meets the last), each with its limit."""
        most = self.limits.binding_failures
        counters = [(f"bind:sender:{inbound.channel}:{inbound.sender}", most), ("bind:all", most * 20)]
        if inbound.client_ip:
            counters.append((f"bind:ip:{inbound.client_ip}", most * 2))
        return counters

    def _check_rate(self, inbound: Inbound) -> None:
        limits = self.limits
        keys = [(f"msg:sender:{inbound.channel}:{inbound.sender}", limits.per_sender)]
        if inbound.client_ip:
            keys.append((f"msg:ip:{inbound.client_ip}", limits.per_ip))
        for key, limit in keys:
            wait = limits.limiter.hit(key, limit, limits.window_seconds)
            if wait > 0:
                raise TooManyMessages(wait)

    def _respond(self, inbound: Inbound, text: str, start: TurnStart) -> tuple[dict[str, Any], TurnOutcome]:
        history = self._history(start)
        state = DialogueState.model_validate(start.state.get("dialogue") or {})
        metadata = {k: v for k, v in inbound.metadata.items() if k not in IDENTITY_KEYS}
        if start.customer_id:  # linked by a verified source: the app's token, a binding code, a signed-in page
            metadata.update(customer_id=start.customer_id, verified=start.customer_verified,
                            tier=start.customer_tier)
        session = self._session_start(start, _reply_channel(inbound.channel), inbound.sender, state)
        if session is not None:
            state, history = session.state, [*history, *session.events]
        parse, outcome = self.assistant.respond(text, _reply_channel(inbound.channel), state, sender_id=inbound.sender,
                                            history=history, metadata=metadata)
        _after_session_start(session, outcome)
        return dict(parse), outcome

    def _history(self, start: TurnStart) -> list[dict[str, Any]]:
        """The conversation's events before this message (read with the claim when it could be)."""
        if start.history is not None:
            return start.history
        return [e for e in self.store.events(start.conversation_id) if e.get("message_id") != start.message_id]

    def _session_start(self, start: TurnStart, channel: str, sender: str,
                       state: DialogueState) -> TurnOutcome | None:
        """Rasa's action_session_start when this message opened a new conversation and the bot does something
        then (slots carried over from the expired one, or the project's own action); None otherwise."""
        engine = getattr(self.assistant, "engine", None)  # stand-ins of the assistant may have none
        if not start.new_session or engine is None or not engine.starts_sessions:
            return None
        previous = self.store.dialogue_slots(start.previous_conversation) if start.previous_conversation else {}
        return engine.session_start(state, previous, channel, sender)

    def history(self, channel: str, sender: str) -> list[dict[str, Any]]:
        """The customer's messages and the bot's replies on this channel, oldest first; each reply says who
        wrote it (`source`: e.g. "agent" with the agent's name and `employee_no`, or "handoff_notice"), so an
        agent's reply and a hand-over notice look the same after a reload as when they arrived."""
        history = []
        for event in self.store.sender_events(channel, sender):
            moment = dt.datetime.fromtimestamp(event["timestamp"], dt.UTC).isoformat()
            if event["event"] == "user":
                history.append({"role": "user", "text": event["text"], "buttons": None, "timestamp": moment,
                                "message_id": event.get("message_id")})
            elif event["event"] == "bot":
                data = event.get("data") or {}
                history.append({"role": "bot", "text": event["text"], "buttons": data.get("buttons"),
                                "timestamp": moment, "message_id": None, "source": data.get("source"),
                                "agent": data.get("agent"), "employee_no": data.get("employee_no")})
        return history

    def _first_delivery(self, start: TurnStart) -> tuple[str, list[dict[str, Any]]]:
        """(status, replies) of the first delivery; while it is still being answered elsewhere, wait for it (at
        most `duplicate_wait` seconds): "answered", "abandoned" (its lease ran out) or still "received"."""
        deadline = time.monotonic() + self.duplicate_wait
        status, replies = start.status, start.replies
        while status == "received" and time.monotonic() < deadline:
            time.sleep(0.05)
            status, replies = self.store.inbound_status(start.inbound_id)
        return status, replies


def clean_text(text: str) -> str:
    """The message without control characters and surrounding blanks; refused when empty or too long."""
    if not isinstance(text, str):
        raise MessageRejected("消息必须是文字。")
    cleaned = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc").strip()
    if not cleaned:
        raise MessageRejected("消息是空的，请输入您的问题。")
    if len(cleaned) > MAX_MESSAGE_CHARS:
        raise MessageRejected(f"消息太长了（{len(cleaned)} 字），请控制在 {MAX_MESSAGE_CHARS} 字以内。")
    return cleaned


def numbered(replies: list[Reply]) -> tuple[list[Reply], list[dict[str, str]] | None]:
    """Buttons as numbered lines for channels without buttons; the options the customer can answer by number
    (those of the last reply that had buttons)."""
    options = None
    plain = []
    for reply in replies:
        if not reply.buttons:
            plain.append(reply)
            continue
        lines = [f"{n}. {b.title}" for n, b in enumerate(reply.buttons, 1)]
        plain.append(Reply(text="\n".join([reply.text, "回复数字选择：", *lines]), source=reply.source))
        options = [{"title": b.title, "payload": b.payload} for b in reply.buttons]
    return plain, options


def chosen_option(text: str, options: list[dict[str, str]] | None) -> str | None:
    """The payload of the option the customer picked by number ("2", "２", "2."), if they did."""
    digits = unicodedata.normalize("NFKC", text).strip().rstrip(".。、")
    if not options or not digits.isdigit() or not 1 <= int(digits) <= len(options):
        return None
    return options[int(digits) - 1]["payload"]


def binding_code(text: str) -> str | None:
    """The code in "绑定 123456" (full-width digits and a colon allowed), else None."""
    found = BINDING_CODE.match(unicodedata.normalize("NFKC", text).strip())
    return found.group(1) if found else None


def continuation(continued_from: dict[str, Any]) -> Reply:
    """What the bot says when the customer carries on here what they started on another channel."""
    where = channel_label(str(continued_from.get("channel") or ""))
    said = str(continued_from.get("last_text") or "")
    said = said if len(said) <= 20 else said[:20] + "…"
    topic = f"聊到“{said}”" if said else "聊到一半"
    return Reply(text=f"我们在{where}里{topic}，您可以直接在这里接着办。", source="continuation")


def _after_session_start(session: TurnOutcome | None, outcome: TurnOutcome) -> None:
    """The session start's events and replies come first in the turn's."""
    if session is not None:
        outcome.events[:0] = session.events
        outcome.replies[:0] = session.replies


def _reply_channel(channel: str) -> str:
    """Which answer variant of a response a channel gets (`channel:` in nlu_data responses)."""
    return channel_info(channel).variant


def _reply_dict(reply: Reply) -> dict[str, Any]:
    buttons = [b.model_dump() for b in reply.buttons] or None
    extra = {key: value for key in ("image", "custom", "attachment") if (value := getattr(reply, key))}
    return {"text": reply.text, "buttons": buttons, "source": reply.source,
            "timestamp": utcnow().isoformat(), **extra}


def _bot_data(reply: dict[str, Any]) -> dict[str, Any]:
    """A BotUttered event's `data`: buttons and why, plus image, custom and attachment when there are any."""
    return {"buttons": reply["buttons"], "source": reply["source"],
            **{key: reply[key] for key in ("image", "custom", "attachment") if key in reply}}


def deliver_late(app: Any, channel: str, sender: str, message_id: str, replies: list[dict[str, Any]]) -> None:
    """Push the answer to a message whose worker died to the customer where the channel allows it (the widget's
    and the app's sockets, WeChat's and WeCom's APIs, at most once); elsewhere it waits in the history."""
    from bot.channels.outbound import push_to_customer  # the channels import this module

    if channel_info(channel).push == "api" and not app.state.conversations.store.claim_delivery(
            channel, sender, message_id, "api"):
        return
    for reply in replies:
        frame = {"type": "bot", "text": reply.get("text", ""), "buttons": reply.get("buttons") or None,
                 "timestamp": reply.get("timestamp"), "reply_to": message_id}
        if not push_to_customer(app, channel, sender, frame):
            return


async def run_claim_sweep(service: ConversationService, deliver: Callable[..., None] | None = None,
                          every: float = 5.0) -> None:
    """Answer messages whose worker died mid-turn every `every` seconds until cancelled (the web app runs it)."""
    while True:
        try:
            await asyncio.to_thread(service.answer_abandoned, deliver)
        except Exception:  # the database may be away for a moment: try again on the next tick
            logger.exception("answering abandoned messages failed")
        await asyncio.sleep(every)


async def run_reminders(service: ConversationService, every: float = 1.0) -> None:
    """Fire due reminders every `every` seconds until cancelled (the web app runs it for its lifetime)."""
    while True:
        try:
            await asyncio.to_thread(service.fire_due_reminders)
        except Exception:  # the database may be away for a moment: try again on the next tick
            logger.exception("firing reminders failed")
        await asyncio.sleep(every)
