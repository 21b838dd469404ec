"""Turns of one conversation run one at a time across worker processes on one PostgreSQL database: two real
uvicorn servers share the database, and the card-loss form's ID check (3 attempts, then a person) counts each
wrong answer once and hands over exactly once however the answers are split between them. The lock dies with a
killed holder. Messages written for these tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.storage.locks import ConversationBusy, TurnLocks, lock_key
from bot.storage.models import ChannelIdentity, Conversation, Event, Handoff

# one worker process: the app on the configured database, the desk's clock at noon (in working hours)
WORKER = """
import datetime as dt, os, sys
from pathlib import Path
from zoneinfo import ZoneInfo
import uvicorn
from bot.config import load_config
from bot.web.app import create_app
app = create_app(load_config(Path("config.yml"), environ=dict(os.environ)))
app.state.desk.clock = lambda: dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

HOLDER = """
import sys, time
from bot.storage.locks import TurnLocks
with TurnLocks(sys.argv[1]).hold("rest", "held-by-a-dead-worker"):
    print("held", flush=True)
    time.sleep(120)
"""

WRONG_IDS = ["1111", "2222", "3333", "4444", "5555", "6666"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"worker exited with {process.returncode}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(port)


def post(port: int, sender: str, text: str, message_id: str) -> list[dict]:
    body = json.dumps({"sender": sender, "message": text, "message_id": message_id}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/rest/webhook", data=body,
                                     headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=120).read())


@pytest.fixture
def two_workers(bundled_assistant, postgres_url: str, project_root: Path) -> Iterator[tuple[int, int, Database]]:
    """Two uvicorn processes, each its own `create_app`, on one PostgreSQL database."""
    database = Database(postgres_url)
    create_agent(database, "wang", "小王", "correct horse battery", groups=["借记卡与账户", "综合服务"])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BOT__")},
           "BOT__MODELS_DIR": str(bundled_assistant.config.path(bundled_assistant.config.models_dir)),
           "DATABASE_URL": postgres_url}
    ports = [free_port(), free_port()]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(port)], cwd=project_root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    try:
        for port, worker in zip(ports, workers, strict=True):
            wait_ready(port, worker)
        yield ports[0], ports[1], database
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        database.dispose()


def conversation_events(database: Database, sender: str) -> list[Event]:
    with database.session() as session:
        conversation = session.scalar(select(Conversation).join(ChannelIdentity)
                                      .where(ChannelIdentity.external_id == sender))
        assert conversation is not None
        return list(session.scalars(select(Event).where(Event.conversation_id == conversation.id)
                                    .order_by(Event.seq)))


def test_six_wrong_ids_split_over_two_workers_count_three_and_hand_over_once(two_workers) -> None:
    port_a, port_b, database = two_workers
    sender = "split-over-workers"
    post(port_a, sender, "我的卡丢了", "m-start")
    assert "身份证" in " ".join(r["text"] for r in post(port_b, sender, "尾号6688", "m-card"))

    def answer(index: int) -> str:
        port = port_a if index % 2 == 0 else port_b
        return " ".join(r["text"] for r in post(port, sender, WRONG_IDS[index], f"m-id-{index}"))

    with ThreadPoolExecutor(len(WRONG_IDS)) as pool:
        replies = list(pool.map(answer, range(len(WRONG_IDS))))

    said = " ".join(replies)
    assert said.count("还可尝试2次") == 1 and said.count("还可尝试1次") == 1 and said.count("连续3次") == 1
    events = conversation_events(database, sender)
    attempts = [e.data["value"] for e in events if e.type == "slot" and e.data.get("name") == "id_attempts"
                and e.data.get("value") is not None]
    assert attempts == [1, 2, 3]  # each wrong answer evaluated once, each seeing the one before
    with database.session() as session:
        handoffs = list(session.scalars(select(Handoff)))
    assert len(handoffs) == 1 and handoffs[0].reason == "form_failed"
    assert _turns_never_interleave(events)


def _turns_never_interleave(events: list[Event]) -> bool:
    """Every customer message's turn (its user event, then what the bot did) ends before the next one starts:
    a message's answer is stored before the next message of the conversation is even recorded."""
    users = [e for e in events if e.type == "user"]
    bots_after = {u.id: [e for e in events if e.seq > u.seq and e.type == "bot"] for u in users}
    for current, following in zip(users, users[1:], strict=False):
        answered_before_next = [b for b in bots_after[current.id] if b.seq < following.seq]
        if not answered_before_next:
            return False
    return len(users) == 2 + len(WRONG_IDS)


def test_concurrent_messages_of_one_conversation_on_two_workers_run_one_at_a_time(two_workers) -> None:
    port_a, port_b, database = two_workers
    sender = "in-order"
    texts = ["你好", "营业时间", "谢谢", "查询网点", "信用卡怎么还款", "再见"]

    def send(index: int) -> None:
        post(port_a if index % 2 else port_b, sender, texts[index], f"o-{index}")

    with ThreadPoolExecutor(len(texts)) as pool:
        list(pool.map(send, range(len(texts))))
    events = conversation_events(database, sender)
    kinds = [e.type for e in events if e.type in ("user", "bot")]
    assert kinds.count("user") == len(texts)
    # user, bot..., user, bot...: a turn's replies come before the next message is recorded
    starts = [i for i, kind in enumerate(kinds) if kind == "user"]
    assert all(kinds[i + 1] == "bot" for i in starts), kinds


def test_a_killed_holder_releases_the_conversation_at_once(postgres_url: str, project_root: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, postgres_url], cwd=project_root,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        locks = TurnLocks(postgres_url, wait_seconds=0.5)
        with pytest.raises(ConversationBusy), locks.hold("rest", "held-by-a-dead-worker"):
            pass
        with locks.hold("rest", "someone-else"):  # other conversations are not held up
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        locks.wait_seconds = 10
        started = time.monotonic()
        with locks.hold("rest", "held-by-a-dead-worker"):
            waited = time.monotonic() - started
        assert waited < 5
        locks.dispose()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


def test_the_lock_is_held_for_the_whole_turn_and_released_after(postgres_url: str) -> None:
    first, second = TurnLocks(postgres_url, wait_seconds=0.3), TurnLocks(postgres_url, wait_seconds=0.3)
    entered = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with first.hold("app", "u-1"):
            entered.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    with pytest.raises(ConversationBusy), second.hold("app", "u-1"):
        pass
    leave.set()
    holder.join(10)
    with second.hold("app", "u-1"):
        pass
    first.dispose()
    second.dispose()


def test_lock_keys_are_stable_and_per_conversation() -> None:
    assert lock_key("rest", "a") == lock_key("rest", "a")
    assert len({lock_key("rest", "a"), lock_key("web", "a"), lock_key("rest", "b")}) == 3
    assert -(2 ** 63) <= lock_key("wechat", "openid") < 2 ** 63


def test_sqlite_keeps_in_process_locks(tmp_path: Path) -> None:
    locks = TurnLocks(None)
    assert not locks.across_processes
    with locks.hold("rest", "x"):
        pass


def test_in_process_locks_exist_only_while_used_and_hold_each_conversation_apart() -> None:
    locks = TurnLocks(None)
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with locks.hold("web", "v-1"):
            entered.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    with locks.hold("web", "v-2"):  # another conversation is not held up
        assert len(locks._local) == 2
    got_it = threading.Event()

    def wait_for_it() -> None:
        with locks.hold("web", "v-1"):
            got_it.set()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    assert not got_it.wait(0.3)  # the same conversation waits
    leave.set()
    assert got_it.wait(10)
    holder.join(10)
    waiter.join(10)
    assert locks._local == {}  # nothing kept for conversations with no turn running
