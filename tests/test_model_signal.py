"""A model activated on one worker is served by every other worker at once, through the real Redis at
127.0.0.1:6379 (database 12): two workers on one PostgreSQL database, one in this process, one in a process of its
own served by uvicorn, both polling only once an hour, so only the signal can explain the swap."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from test_model_release import TOKEN, free_port

from bot.config import load_config
from bot.model import train
from bot.storage import Database
from bot.trainer.swap import ModelSignal
from bot.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
MINIBOT = Path(__file__).parent / "fixtures" / "minibot"
REDIS_URL = "redis://127.0.0.1:6379/12"  # this file's database number: other tests use theirs
CHANNEL = "bankbot:model:12:changed"
HOUR = 3600.0
WORKER = """
import sys
import uvicorn
from bot.config import load_config
from bot.web.app import create_app
config = load_config(sys.argv[1], environ={"BOT__STORAGE__URL": sys.argv[2], "REDIS_URL": sys.argv[3],
                                           "BOT__SECURITY__API_TOKEN": sys.argv[4]})
app = create_app(config)
app.state.live_model.poll_seconds = app.state.live_model.signalled_poll_seconds = float(sys.argv[5])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[6]), log_level="warning")
"""


def environ(database_url: str) -> dict[str, str]:
    return {"BOT__STORAGE__URL": database_url, "REDIS_URL": REDIS_URL, "BOT__SECURITY__API_TOKEN": TOKEN}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the fixture bot with the model the workers start with."""
    root = tmp_path / "bot"
    shutil.copytree(MINIBOT, root)
    train(load_config(root / "config.yml", environ={}))
    return root


@pytest.fixture
def other_worker(project: Path, postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """The second worker, in its own process; its base URL once it answers and listens for the signal."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER, "utf-8")
    port = free_port()
    process = subprocess.Popen([sys.executable, str(script), str(project / "config.yml"), postgres_url, REDIS_URL,
                                TOKEN, str(HOUR), str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _answers(base):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def served_version(base: str) -> str:
    return httpx.get(f"{base}/status", timeout=5).json()["model_id"]


def seconds_until_served(base: str, version: str, limit: float = 10.0) -> float:
    started = time.monotonic()
    while served_version(base) != version:
        assert time.monotonic() - started < limit, f"{version} not served within {limit} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_an_activation_on_one_worker_is_served_by_the_other_at_once(project: Path, postgres_url: str,
                                                                     other_worker: str) -> None:
    first_app = create_app(load_config(project / "config.yml", environ=environ(postgres_url)),
                           database=Database(postgres_url))
    first_app.state.live_model.poll_seconds = first_app.state.live_model.signalled_poll_seconds = HOUR
    listeners = redis.Redis.from_url(REDIS_URL)
    with TestClient(first_app) as first:
        older = first.get("/status").json()["model_id"]
        assert served_version(other_worker) == older
        deadline = time.monotonic() + 10
        while listeners.pubsub_numsub(CHANNEL)[0][1] < 2:  # both workers subscribed
            assert time.monotonic() < deadline, "the workers do not listen for the signal"
            time.sleep(0.05)
        newer = train(load_config(project / "config.yml", environ={})).name  # `bot train` beside the workers
        token = {"Authorization": f"Bearer {TOKEN}"}

        assert first.put("/model", headers=token, json={"model_file": f"models/{newer}"}).status_code == 204
        assert first.get("/status").json()["model_id"] == newer
        assert seconds_until_served(other_worker, newer) < 1.5  # the poll would take an hour

        assert first.put("/model", headers=token, json={"model_file": f"models/{older}"}).status_code == 204
        assert seconds_until_served(other_worker, older) < 1.5  # a rollback travels the same way
    listeners.close()


def test_a_signal_without_reachable_redis_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    ModelSignal(f"redis://127.0.0.1:{free_port()}/0").publish()  # the activation stands: the others poll
    assert any("not signalled" in r.getMessage() for r in caplog.records)
