"""Prometheus metrics: what the operations team watches, with no personal data in any label.

Counted where they happen (module-level metrics, one set per process):
    bot_messages_total{channel, outcome}       customer messages by how the turn ended (OUTCOMES)
    bot_turn_seconds{channel}                  a customer message's turn, from cleaning the text to the stored answer
                                               (duplicates included: their wait for the first answer; refusals not)
    bot_nlu_seconds                            one parse (NLU + knowledge retrieval)
    bot_handovers_total{reason}                hand-overs requested, by trigger kind (request, fallbacks, anger, ...)
Outcomes: answered; clarified (a menu of what it may be, or "which product?"); handed_over (a hand-over requested
this turn); fallback (the fallback response, or a person offered because the message was not understood);
duplicate (a repeated message id: the first answer again); rejected (empty, too long, over the rate limit);
with_people (queued or with an agent: the bot only says where the customer stands, or nothing); error.
Computed from the database when scraped (the same on every worker):
    bot_queue_length{group}                    customers waiting for a person
    bot_queue_longest_wait_seconds{group}      how long the longest of them has waited
    bot_active_conversations{status}           conversations not closed and active within the session expiry
    bot_model_info{version}                    the model version this worker serves (always 1)

With several worker processes (`bot run --workers N`) `PROMETHEUS_MULTIPROC_DIR` names a directory where each
process writes its counters and histograms; a scrape answered by any worker sums them all (prometheus_client's
multiprocess mode). With one process the default registry is read directly.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# 5 ms to 5 s: a routine answer takes tens of milliseconds, a slow action server seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
OUTCOMES = ("answered", "clarified", "handed_over", "fallback", "duplicate", "rejected", "with_people", "error")
# reply sources that say how the bot fared (bot/dialogue/engine.py, responder.py, handoff/)
CLARIFYING_SOURCES = frozenset({"clarify", "clarify_product", "utter_ask_affirmation", "utter_ask_rephrase"})
FALLBACK_PREFIXES = ("utter_offer_human",)  # offered a person because the message was not understood
WITH_PEOPLE_SOURCES = frozenset({"handoff", "handoff_cancelled"})

disable_created_metrics()  # no *_created series: one series less per label set, nothing a dashboard uses
MESSAGES = Counter("bot_messages", "Customer messages by channel and how their turn ended.", ["channel", "outcome"])
TURN_SECONDS = Histogram("bot_turn_seconds", "Time to handle one customer message, by channel.", ["channel"],
                         buckets=LATENCY_BUCKETS)
NLU_SECONDS = Histogram("bot_nlu_seconds", "Time of one parse: NLU and knowledge retrieval.", buckets=LATENCY_BUCKETS)
HANDOVERS = Counter("bot_handovers", "Hand-overs to a person requested, by reason.", ["reason"])

Result = TypeVar("Result")
logger = logging.getLogger("bot.turns")


@dataclass
class _TurnNotes:
    """What the code a turn runs says about it while it runs (a hand-over was requested)."""

    handed_over: bool = False


_turn_notes: contextvars.ContextVar[_TurnNotes | None] = contextvars.ContextVar("bot_turn_notes", default=None)


def counted_turn(rejected: type[BaseException]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorates `ConversationService.handle(self, inbound)`: counts the message by channel and outcome and
    times its turn. `rejected`: the exception a message refused for the customer's sake raises."""

    def decorate(handle: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handle)
        def counted(service: Any, inbound: Any, *args: Any, **kwargs: Any) -> Any:
            notes, started = _TurnNotes(), time.perf_counter()
            token = _turn_notes.set(notes)
            outcome, conversation = "error", None
            try:
                result = handle(service, inbound, *args, **kwargs)
                outcome, conversation = turn_outcome(result, notes, _fallback_response(service)), result.conversation_id
                return result
            except rejected:
                outcome = "rejected"
                raise
            finally:
                _turn_notes.reset(token)
                seconds = time.perf_counter() - started
                turn_finished(str(inbound.channel), outcome, seconds)
                logger.info("turn finished", extra={"channel": str(inbound.channel), "outcome": outcome,
                                                    "duration_ms": round(seconds * 1000, 1),
                                                    "conversation_id": conversation})

        return counted

    return decorate


def turn_finished(channel: str, outcome: str, seconds: float) -> None:
    """Count the message; time it unless it was refused before a turn (a refusal is not an answer's latency)."""
    MESSAGES.labels(channel=channel, outcome=outcome).inc()
    if outcome != "rejected":
        TURN_SECONDS.labels(channel=channel).observe(seconds)


def turn_outcome(result: Any, notes: _TurnNotes, fallback_response: str = "utter_default") -> str:
    """How a handled message's turn ended, from the turn's notes and its replies' sources."""
    if getattr(result, "duplicate", False):
        return "duplicate"
    if notes.handed_over:
        return "handed_over"
    sources = [str(reply.get("source") or "") for reply in getattr(result, "replies", [])]
    if not sources or all(source in WITH_PEOPLE_SOURCES for source in sources):
        return "with_people"  # the conversation is queued or with an agent: the bot stays silent or says so
    if any(source in CLARIFYING_SOURCES for source in sources):
        return "clarified"
    if any(source == fallback_response or source.startswith(FALLBACK_PREFIXES) for source in sources):
        return "fallback"
    return "answered"


def _fallback_response(service: Any) -> str:
    config = getattr(getattr(service, "assistant", None), "config", None)
    return str(getattr(getattr(config, "dialogue", None), "fallback_response", "utter_default"))


def handed_over(reason: str) -> None:
    """A hand-over was requested for `reason` (the trigger's kind); the running turn's outcome says so."""
    HANDOVERS.labels(reason=reason).inc()
    notes = _turn_notes.get()
    if notes is not None:
        notes.handed_over = True


def timed_nlu(parse: Callable[..., Result]) -> Callable[..., Result]:
    """Decorates `Assistant.parse`: every parse's time goes into bot_nlu_seconds."""

    @functools.wraps(parse)
    def timed(*args: Any, **kwargs: Any) -> Result:
        with NLU_SECONDS.time():
            return parse(*args, **kwargs)

    return timed


class DatabaseCollector:
    """The gauges computed from the database at scrape time, and the served model version."""

    def __init__(self, state: Any) -> None:
        self.state = state  # the app's state: database, config, assistant (swapped when a model is activated)

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        yield self._active_conversations()
        model = GaugeMetricFamily("bot_model_info", "The model version this worker serves.", labels=["version"])
        model.add_metric([str(getattr(self.state.assistant, "version", "unknown"))], 1)
        yield model

    def _queue(self) -> Iterator[Metric]:
        from bot.storage.models import Handoff, utcnow

        length = GaugeMetricFamily("bot_queue_length", "Customers waiting for a person, by skill group.",
                                   labels=["group"])
        wait = GaugeMetricFamily("bot_queue_longest_wait_seconds",
                                 "How long the longest-waiting customer has waited, by skill group.", labels=["group"])
        now = utcnow().replace(tzinfo=None)
        query = select(Handoff.group, func.count(), func.min(Handoff.created_at)) \
            .where(Handoff.status == "waiting").group_by(Handoff.group)
        with self.state.database.session() as session:
            rows = session.execute(query).all()
        for group in {g.name for g in self.state.config.handoff.groups} | {row[0] for row in rows}:
            length.add_metric([group], 0)
            wait.add_metric([group], 0)
        for group, count, oldest in rows:
            length.add_metric([group], count)
            wait.add_metric([group], max(0.0, (now - _naive_utc(oldest)).total_seconds()))
        yield from (_deduplicated(length), _deduplicated(wait))

    def _active_conversations(self) -> Metric:
        from bot.storage.models import Conversation, utcnow

        gauge = GaugeMetricFamily("bot_active_conversations",
                                  "Conversations not closed with a message within the session expiry, by status.",
                                  labels=["status"])
        since = utcnow().replace(tzinfo=None) - \
            dt.timedelta(minutes=self.state.config.storage.session_expiry_minutes)
        query = select(Conversation.status, func.count()) \
            .where(Conversation.status != "closed", Conversation.updated_at >= since).group_by(Conversation.status)
        with self.state.database.session() as session:
            counts = dict(session.execute(query).all())
        for status in ("bot", "queued", "human"):
            gauge.add_metric([status], counts.get(status, 0))
        return gauge


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _deduplicated(metric: Metric) -> Metric:
    """The metric with one sample per label set, the last one added winning (groups seeded with 0)."""
    latest = {tuple(sorted(sample.labels.items())): sample for sample in metric.samples}
    metric.samples = list(latest.values())
    return metric


class _DefaultRegistry:
    """The process's default registry as one collector of a per-scrape registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def render(state: Any) -> bytes:
    """The exposition text of every metric: the counters of all worker processes (multiprocess mode) or of this
    one, and the database's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistry())  # type: ignore[arg-type]
    registry.register(DatabaseCollector(state))  # type: ignore[arg-type]
    return generate_latest(registry)
