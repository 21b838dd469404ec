"""Nothing stays stuck: a message claimed by a worker that died mid-turn (claimed and never finished, or a real
process killed after claiming) is answered exactly once, by a retry after the claim's lease or by the sweep, on
SQLite and PostgreSQL. A worker that wakes up after its message was taken over stores nothing. Messages written
for these tests."""

from __future__ import annotations

import datetime as dt
import functools
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.dialogue.service import ConversationService, Inbound, MessageRejected, ServiceUnavailable, deliver_late
from bot.storage import ConversationStore, Database
from bot.storage.models import Event, InboundMessage
from bot.storage.store import ClaimLost
from bot.web.app import create_app
from tests.chat_support import widget_socket

LEASE = dt.timedelta(seconds=0.6)

# a worker that claims a message and is killed before it answers it
DYING_WORKER = """
import datetime as dt, sys, time
from bot.storage import ConversationStore, Database
store = ConversationStore(Database(sys.argv[1]), claim_lease=dt.timedelta(seconds=0.6))
store.begin_turn("rest", "killed-mid-turn", "你好", "k-1")
print("claimed", flush=True)
time.sleep(120)
"""


@pytest.fixture
def service(database_url: str, minibot_assistant) -> ConversationService:
    store = ConversationStore(Database(database_url), claim_lease=LEASE)
    return ConversationService(minibot_assistant, store, duplicate_wait=0.2)


def answer_rows(service: ConversationService, sender: str, message_id: str) -> tuple[InboundMessage, int]:
    """The stored message and how many bot events its conversation has."""
    with service.store.database.session() as session:
        inbound = session.scalar(select(InboundMessage).where(InboundMessage.message_id == message_id))
        assert inbound is not None
        bots = session.scalars(select(Event).where(Event.conversation_id == inbound.conversation_id,
                                                   Event.type == "bot")).all()
        return inbound, len(bots)


def die_mid_turn(service: ConversationService, sender: str, message_id: str, text: str = "你好") -> None:
    """What a worker that crashed after claiming the message leaves behind."""
    start = service.store.begin_turn("rest", sender, text, message_id)
    assert not start.duplicate and start.claim and start.lease_until is not None


def test_a_retry_within_the_lease_is_told_to_wait_and_after_it_is_answered(service: ConversationService) -> None:
    die_mid_turn(service, "retry-after-lease", "r-1")
    with pytest.raises(MessageRejected, match="正在处理中"):
        service.handle(Inbound("rest", "retry-after-lease", "你好", "r-1"))
    time.sleep(LEASE.total_seconds())
    result = service.handle(Inbound("rest", "retry-after-lease", "你好", "r-1"))
    assert not result.duplicate and result.replies
    inbound, bots = answer_rows(service, "retry-after-lease", "r-1")
    assert inbound.status == "answered" and len(inbound.replies) == bots == len(result.replies)
    again = service.handle(Inbound("rest", "retry-after-lease", "你好", "r-1"))
    assert again.duplicate and [r["text"] for r in again.replies] == [r["text"] for r in result.replies]
    assert answer_rows(service, "retry-after-lease", "r-1")[1] == bots  # nothing answered twice


def test_a_retry_waiting_for_the_first_delivery_takes_over_when_its_lease_runs_out(
        service: ConversationService) -> None:
    die_mid_turn(service, "wait-then-take-over", "w-1")
    service.duplicate_wait = 5  # longer than the lease: the wait ends with the lease, not with a refusal
    started = time.monotonic()
    result = service.handle(Inbound("rest", "wait-then-take-over", "你好", "w-1"))
    assert not result.duplicate and result.replies
    assert time.monotonic() - started < 3


def test_the_sweep_answers_a_message_nobody_retried_exactly_once(service: ConversationService) -> None:
    die_mid_turn(service, "never-retried", "s-1")
    delivered: list[tuple[str, str, str, list[dict]]] = []

    def deliver(channel: str, sender: str, message_id: str, replies: list[dict]) -> None:
        delivered.append((channel, sender, message_id, replies))

    assert service.answer_abandoned(deliver) == 0  # the lease still runs: its worker may yet answer
    time.sleep(LEASE.total_seconds())
    assert service.answer_abandoned(deliver) == 1
    assert service.answer_abandoned(deliver) == 0
    assert [(c, s, m) for c, s, m, _ in delivered] == [("rest", "never-retried", "s-1")]
    inbound, bots = answer_rows(service, "never-retried", "s-1")
    assert inbound.status == "answered" and bots == len(delivered[0][3]) > 0
    late = service.handle(Inbound("rest", "never-retried", "你好", "s-1"))  # the customer's late retry
    assert late.duplicate and [r["text"] for r in late.replies] == [r["text"] for r in delivered[0][3]]


def test_a_worker_that_wakes_up_after_being_taken_over_stores_nothing(service: ConversationService) -> None:
    slow = service.store.begin_turn("rest", "slow-worker", "你好", "z-1")
    time.sleep(LEASE.total_seconds())
    taken_over = service.handle(Inbound("rest", "slow-worker", "你好", "z-1"))
    assert not taken_over.duplicate
    _, bots = answer_rows(service, "slow-worker", "z-1")
    with pytest.raises(ClaimLost):
        service.store.finish_turn(slow, None, [{"event": "bot", "text": "迟到的回答", "data": {}}],
                                  [{"text": "迟到的回答"}], {})
    service.store.fail_turn(slow, "too late")  # nor does its failure undo the answer
    inbound, bots_after = answer_rows(service, "slow-worker", "z-1")
    assert bots_after == bots and inbound.status == "answered"
    assert "迟到的回答" not in [r["text"] for r in inbound.replies]


def test_a_real_worker_killed_after_claiming(database_url: str, minibot_assistant, project_root: Path) -> None:
    database = Database(database_url)
    worker = subprocess.Popen([sys.executable, "-c", DYING_WORKER, database_url], cwd=project_root,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "claimed"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    service = ConversationService(minibot_assistant, ConversationStore(database, claim_lease=LEASE),
                                  duplicate_wait=5)
    result = service.handle(Inbound("rest", "killed-mid-turn", "你好", "k-1"))
    assert not result.duplicate and result.replies
    inbound, bots = answer_rows(service, "killed-mid-turn", "k-1")
    assert inbound.status == "answered" and bots == len(result.replies)
    assert service.handle(Inbound("rest", "killed-mid-turn", "你好", "k-1")).duplicate


def test_rows_from_before_leases_count_from_when_they_were_received(service: ConversationService) -> None:
    die_mid_turn(service, "old-row", "o-1")
    with service.store.database.session() as session, session.begin():
        inbound = session.scalar(select(InboundMessage).where(InboundMessage.message_id == "o-1"))
        inbound.lease_until, inbound.claimed_by = None, None
        inbound.received_at = inbound.received_at - dt.timedelta(minutes=5)
    assert service.answer_abandoned() == 1
    assert answer_rows(service, "old-row", "o-1")[0].status == "answered"


class SlowAssistant:
    """The assistant, taking its time over each answer (a turn still in flight when shutdown starts)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def respond(self, *args: object, **kwargs: object) -> object:
        time.sleep(0.8)
        return self.inner.respond(*args, **kwargs)


def test_a_draining_worker_finishes_turns_in_flight_and_starts_none(service: ConversationService) -> None:
    service.assistant = SlowAssistant(service.assistant)
    in_flight = threading.Thread(target=service.handle, args=(Inbound("rest", "drain", "你好", "d-1"),))
    in_flight.start()
    time.sleep(0.3)
    assert service.drain(timeout=10)
    assert answer_rows(service, "drain", "d-1")[0].status == "answered"  # finished before drain returned
    with pytest.raises(ServiceUnavailable):
        service.handle(Inbound("rest", "drain", "你好", "d-2"))
    in_flight.join(5)


def test_the_sweeps_answer_reaches_the_customers_open_socket(minibot_assistant, tmp_path: Path) -> None:
    app = create_app(minibot_assistant.config, assistant=minibot_assistant,
                     database=Database(f"sqlite:///{tmp_path / 'bot.db'}"))
    service: ConversationService = app.state.conversations
    service.store.claim_lease = LEASE
    with widget_socket(TestClient(app)) as (chat, credential):
        visitor = app.state.visitor_credentials.verify(credential)
        service.store.begin_turn("web", visitor, "你好", "sock-1")  # its worker dies here
        time.sleep(LEASE.total_seconds())
        assert service.answer_abandoned(functools.partial(deliver_late, app)) == 1
        frame = chat.receive_json()
    inbound, _ = answer_rows(service, visitor, "sock-1")
    assert frame["type"] == "bot" and frame["reply_to"] == "sock-1"
    assert frame["text"] == inbound.replies[0]["text"]
