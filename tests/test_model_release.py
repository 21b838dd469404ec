"""Train, compare, release: candidates trained through the API with visible progress, compared with the active
model, activated and rolled back by hot swap (measured under load on real uvicorn servers), picked up by a
second process, tried on a share of conversations; Rasa's model API; conversation tests."""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bot.assistant import Assistant
from bot.cli import app as cli
from bot.config import load_config
from bot.handoff.agents import create_agent
from bot.model import train
from bot.storage import Database
from bot.trainer.conversation_tests import load_tests, run_tests
from bot.trainer.keys import message_key
from bot.trainer.swap import bucket
from bot.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
MINIBOT = Path(__file__).parent / "fixtures" / "minibot"
TOKEN = "release-api-token-0000000001"
PASSWORD = "release-pass-0001"
UNLIMITED = {"BOT__SECURITY__RATE_LIMITS__PER_IP": "100000000", "BOT__SECURITY__RATE_LIMITS__PER_SENDER": "100000000"}
# a new intent the candidate learns: the active model cannot answer it
LIMIT_INTENT = """
- intent: credit_limit
  examples: |
    - 信用卡额度是多少
    - 我的额度有多少
    - 怎么提高信用卡额度
    - 临时额度怎么申请
    - 额度不够用怎么办
    - 帮我查一下信用额度
"""
LIMIT_RESPONSE = """  utter_credit_limit:
  - text: 信用卡额度可以在手机银行“信用卡-额度管理”查看和申请调整。
"""
LIMIT_RULE = """- rule: limit
  steps:
  - intent: credit_limit
  - action: utter_credit_limit
"""
LIMIT_ANSWER = "信用卡额度可以在手机银行“信用卡-额度管理”查看和申请调整。"
GREET_TEST = """stories:
- story: 打招呼
  steps:
  - user: 你好
    intent: greet
  - action: utter_greet
"""


def environ(database_url: str) -> dict[str, str]:
    return {"BOT__STORAGE__URL": database_url, "BOT__SECURITY__API_TOKEN": TOKEN, **UNLIMITED}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the fixture bot with one model trained (the one the server starts with) and a conversation
    test of its own."""
    root = tmp_path / "bot"
    shutil.copytree(MINIBOT, root)
    (root / "tests" / "conversations").mkdir(parents=True)
    (root / "tests" / "conversations" / "greet.yml").write_text(GREET_TEST, "utf-8")
    train(load_config(root / "config.yml", environ={}))
    return root


def teach_credit_limit(root: Path) -> None:
    data = root / "nlu_data"
    (data / "nlu.yml").write_text((data / "nlu.yml").read_text("utf-8") + LIMIT_INTENT, "utf-8")
    domain = (data / "domain.yml").read_text("utf-8")
    domain = domain.replace("responses:\n", "responses:\n" + LIMIT_RESPONSE, 1).replace(
        "rules:\n", "rules:\n" + LIMIT_RULE, 1)
    (data / "domain.yml").write_text(domain, "utf-8")


def open_app(root: Path, database_url: str):
    config = load_config(root / "config.yml", environ=environ(database_url))
    database = Database(database_url)
    for role in ("trainer", "agent"):
        try:
            create_agent(database, f"release-{role}", role, PASSWORD, role=role, groups=["综合服务"])
        except Exception:  # noqa: BLE001 - the account exists (a second app over the same database)
            pass
    return create_app(config, database=database)


def login(client: TestClient, role: str = "trainer") -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": f"release-{role}", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def train_through_api(client: TestClient, headers: dict[str, str]) -> tuple[str, list[dict]]:
    """Start a candidate and watch it train; the versions it was seen in while training."""
    started = client.post("/api/trainer/models", headers=headers)
    assert started.status_code == 202, started.text
    version = started.json()["version"]
    seen = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        row = next(v for v in client.get("/api/trainer/models", headers=headers).json()["versions"]
                   if v["version"] == version)
        seen.append(row)
        if row["status"] != "training":
            break
        time.sleep(0.05)
    assert seen[-1]["status"] == "ready", seen[-1]
    return version, seen


def say(client: TestClient, sender: str, text: str) -> list[dict]:
    response = client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text})
    assert response.status_code == 200, response.text
    return response.json()


# --- train, compare, activate, roll back -----------------------------------------------------------------------


def test_a_candidate_trains_in_the_background_is_compared_and_activated_without_restart(project: Path,
                                                                                        tmp_path: Path) -> None:
    app = open_app(project, f"sqlite:///{tmp_path / 'bot.db'}")
    with TestClient(app) as client:
        headers = login(client)
        first = client.get("/status").json()["model_id"]
        baseline, _ = train_through_api(client, headers)  # the same data, recorded with its metrics
        assert client.put("/api/trainer/models/active", headers=headers,
                          json={"version": baseline}).json()["status"] == "active"
        assert say(client, "before", "信用卡额度是多少")[0]["text"] != LIMIT_ANSWER

        teach_credit_limit(project)
        candidate, seen = train_through_api(client, headers)
        training = [v for v in seen if v["status"] == "training"]
        assert training and training[-1]["progress"]["total"] == 8 and training[-1]["progress"]["step"]
        ready = seen[-1]
        assert ready["trained_by"].startswith("agent:") and ready["data_fingerprint"]
        assert ready["trained_by_name"] == "trainer"  # the account's display name, for the page
        assert ready["config"]["retrieval"]["encoder"] == "usem3"

        comparison = client.get(f"/api/trainer/models/{candidate}/comparison", headers=headers,
                                params={"message": ["信用卡额度是多少", "你好"]}).json()
        assert comparison["active"] == baseline and comparison["candidate"] == candidate
        for side in ("candidate", "active"):
            assert 0 < comparison["cross_validation"][side]["accuracy"] <= 1
            assert 0 < comparison["cross_validation"][side]["macro_f1"] <= 1
        changes = {i["intent"]: i for i in comparison["cross_validation"]["per_intent"]}
        assert changes["credit_limit"]["active_f1"] is None and changes["credit_limit"]["candidate_f1"] > 0
        assert changes["greet"]["change"] is not None
        assert comparison["conversation_tests"]["candidate"]["passed"] == 1
        assert comparison["conversation_tests"]["active"]["passed"] == 1
        assert "skipped" in comparison["replay"]  # the fixture bot has no labelled replay messages
        [change] = comparison["outcome_changes"]  # "你好" is answered the same by both
        assert change["text"] == "信用卡额度是多少" and change["after"] == {**change["after"], "outcome": "answer",
                                                                     "answer": "credit_limit"}
        assert change["before"]["answer"] != "credit_limit"

        activated = client.put("/api/trainer/models/active", headers=headers, json={"version": candidate})
        assert activated.status_code == 200 and activated.json()["activated_by"].startswith("agent:")
        assert activated.json()["activated_by_name"] == "trainer"
        listed = client.get("/api/trainer/models", headers=headers).json()["versions"]
        assert next(v for v in listed if v["version"] == candidate)["activated_by_name"] == "trainer"
        assert client.get("/status").json()["model_id"] == candidate
        assert say(client, "after", "信用卡额度是多少")[0]["text"] == LIMIT_ANSWER

        rolled_back = client.put("/api/trainer/models/active", headers=headers, json={"version": first})
        assert rolled_back.status_code == 200
        assert client.get("/status").json()["model_id"] == first
        assert say(client, "rolled-back", "信用卡额度是多少")[0]["text"] != LIMIT_ANSWER
        statuses = {v["version"]: v["status"] for v in client.get("/api/trainer/models", headers=headers)
                    .json()["versions"]}
        assert statuses == {first: "active", baseline: "retired", candidate: "retired"}


def test_a_version_that_failed_or_does_not_exist_cannot_be_activated(project: Path, tmp_path: Path) -> None:
    app = open_app(project, f"sqlite:///{tmp_path / 'bot.db'}")
    with TestClient(app) as client:
        headers = login(client)
        assert client.put("/api/trainer/models/active", headers=headers, json={"version": "nope"}).status_code == 404
        (project / "nlu_data" / "nlu.yml").write_text("nlu:\n- intent: broken\n  examples: 不是列表\n", "utf-8")
        version = client.post("/api/trainer/models", headers=headers).json()["version"]
        for _ in range(200):
            row = next(v for v in client.get("/api/trainer/models", headers=headers).json()["versions"]
                       if v["version"] == version)
            if row["status"] != "training":
                break
            time.sleep(0.05)
        assert row["status"] == "failed" and "nlu.yml" in row["error"]
        refused = client.put("/api/trainer/models/active", headers=headers, json={"version": version})
        assert refused.status_code == 409 and "failed" in refused.json()["detail"]


# --- a second process over the same database --------------------------------------------------------------------


def test_a_second_app_over_the_same_database_picks_up_the_activation_by_polling(project: Path,
                                                                                 tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    first_app, second_app = open_app(project, url), open_app(project, url)
    older = first_app.state.assistant.version
    first_app.state.live_model.poll_seconds = second_app.state.live_model.poll_seconds = 0.2
    with TestClient(first_app) as first, TestClient(second_app) as second:
        newer = train(load_config(project / "config.yml", environ={})).name  # `bot train` beside the servers
        time.sleep(0.5)
        assert second.get("/status").json()["model_id"] == older  # a new directory is not served unless activated
        assert first.put("/model", headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"model_file": f"models/{newer}"}).status_code == 204
        assert first.get("/status").json()["model_id"] == newer  # the process that activated: at once
        deadline = time.monotonic() + 10
        while second.get("/status").json()["model_id"] != newer and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second.get("/status").json()["model_id"] == newer
        assert second.get("/status").json()["active_version"] == newer


# --- an experiment: a share of conversations to the candidate ---------------------------------------------------


def test_an_experiment_sends_its_share_of_conversations_to_the_candidate(project: Path, tmp_path: Path) -> None:
    app = open_app(project, f"sqlite:///{tmp_path / 'bot.db'}")
    teach_credit_limit(project)
    candidate = train(load_config(project / "config.yml", environ={})).name
    with TestClient(app) as client:
        headers = login(client)
        client.get("/api/trainer/models", headers=headers)  # records the directory `bot train` wrote
        share = client.put(f"/api/trainer/models/{candidate}/experiment", headers=headers, json={"share": 0.3})
        assert share.status_code == 200 and share.json()["experiment_share"] == 0.3
        senders = [f"exp-{i}" for i in range(200)]
        answered = {s: say(client, s, "信用卡额度是多少")[0]["text"].startswith("信用卡额度可以") for s in senders}
        expected = {s: bucket(s) < 0.3 for s in senders}
        assert answered == expected  # decided per conversation, by its key alone
        assert 0.2 < sum(answered.values()) / len(senders) < 0.4
        again = {s: say(client, s, "信用卡额度是多少")[-1]["text"].startswith("信用卡额度可以") for s in senders[:30]}
        assert again == {s: expected[s] for s in senders[:30]}  # the same conversation stays with its model
        outcomes = client.get(f"/api/trainer/models/{candidate}/comparison", headers=headers,
                              params={"message": ["你好"]}).json()["experiment"]
        in_candidate = sum(expected.values()) + sum(expected[s] for s in senders[:30])
        assert outcomes["candidate"] == {"turns": in_candidate, "answer": in_candidate}
        assert outcomes["active"]["turns"] == 230 - in_candidate
        assert client.get("/status").json()["experiment"] == {"candidate": candidate, "share": 0.3}
        assert client.put(f"/api/trainer/models/{candidate}/experiment", headers=headers,
                          json={"share": 0}).status_code == 200
        assert client.get("/status").json()["experiment"] is None


# --- Rasa's model API -------------------------------------------------------------------------------------------


def test_rasa_model_api_with_the_token_or_a_trainer_and_refused_otherwise(project: Path, tmp_path: Path) -> None:
    app = open_app(project, f"sqlite:///{tmp_path / 'bot.db'}")
    token = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        status = client.get("/status").json()
        assert {"model_file", "model_id", "num_active_training_jobs", "fingerprint"} <= status.keys()
        assert status["num_active_training_jobs"] == 0 and status["active_version"] == status["model_id"]
        first = status["model_id"]
        assert client.post("/model/train").status_code == 401
        assert client.post("/model/train", headers=login(client, "agent")).status_code == 403
        assert client.put("/model", json={"model_file": first}).status_code == 401
        assert client.put("/model", headers=login(client, "agent"), json={"model_file": first}).status_code == 403
        refused = client.post("/model/train", headers=token, content="nlu:\n- intent: x\n")
        assert refused.status_code == 400 and "空的请求体" in refused.json()["detail"]

        trained = client.post("/model/train", headers=token)
        assert trained.status_code == 200, trained.text
        version = trained.json()["version"]
        assert trained.headers["filename"] == version and trained.json()["model_file"] == f"models/{version}"
        assert trained.json()["metrics"]["cross_validation"]["accuracy"] > 0
        assert client.put("/model", headers=token, json={"model_file": f"models/{version}"}).status_code == 204
        assert client.get("/status").json()["model_id"] == version
        assert client.put("/model", headers=login(client), json={"model_file": first}).status_code == 204
        assert client.get("/status").json()["model_id"] == first
        assert client.put("/model", headers=token, json={"model_file": "models/unknown"}).status_code == 404


# --- hot swap under load on real servers -----------------------------------------------------------------------

SERVER = """
import sys
import uvicorn
from bot.config import load_config
from bot.web.app import create_app
config = load_config(sys.argv[1], environ={"BOT__STORAGE__URL": sys.argv[2], "BOT__SECURITY__API_TOKEN": sys.argv[5],
                                           "BOT__SECURITY__RATE_LIMITS__PER_IP": "100000000",
                                           "BOT__SECURITY__RATE_LIMITS__PER_SENDER": "100000000"})
app = create_app(config)
app.state.live_model.poll_seconds = float(sys.argv[4])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""
CLIENTS = 6
# the bound: during a swap the slowest 5% of requests may take at most 3x the baseline's 95th percentile, or
# 0.5 s more than it, whichever is larger (the new model loads on the same two cores that serve)
SLOWDOWN_FACTOR, SLOWDOWN_SECONDS = 3.0, 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, url: str, poll: float, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    script = tmp_path / "server.py"
    script.write_text(SERVER, "utf-8")
    process = subprocess.Popen([sys.executable, str(script), str(root / "config.yml"), url, str(port), str(poll),
                                TOKEN], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"server did not start: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")


class Load:
    """Several clients sending REST webhook messages, each to a new conversation, as fast as answered."""

    def __init__(self, base: str) -> None:
        self.base, self.results, self.stop = base, [], threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def _client(self, number: int) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    status = http.post(f"{self.base}/webhooks/rest/webhook", json={
                        "sender": f"load-{number}-{uuid.uuid4().hex[:8]}", "message": "帮我查一下余额"}).status_code
                except httpx.HTTPError as e:
                    status = repr(e)
                self.results.append((started, time.monotonic() - started, status))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def window(self, start: float, end: float) -> dict[str, float]:
        latencies = sorted(latency for at, latency, _ in self.results if start <= at < end)
        return {"n": len(latencies), "p50": statistics.median(latencies),
                "p95": latencies[int(0.95 * (len(latencies) - 1))], "max": latencies[-1]}


def swap_under_load(load: Load, base: str, version: str) -> tuple[dict[str, float], dict[str, float]]:
    """Activate `version` through Rasa's PUT /model while `load` runs: latencies before and during the swap
    (requests started from the PUT until 1 s after it answered)."""
    time.sleep(3)
    before_start = time.monotonic() - 2.5
    swap_start = time.monotonic()
    response = httpx.put(f"{base}/model", headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"model_file": f"models/{version}"}, timeout=60)
    assert response.status_code == 204, response.text
    swap_end = time.monotonic() + 1.0
    time.sleep(1.5)
    during = {**load.window(swap_start, swap_end), "swap_seconds": swap_end - 1.0 - swap_start}
    return load.window(before_start, swap_start), during


def test_hot_swap_under_load_fails_no_request_and_reaches_every_process(project: Path, tmp_path: Path,
                                                                         postgres_url: str) -> None:
    older = load_config(project / "config.yml", environ={})
    teach_credit_limit(project)
    newer = train(older).name  # older's paths, the new data
    first = sorted(p.name for p in (project / "models").iterdir())[0]
    servers = [start_server(project, postgres_url, 0.5, tmp_path) for _ in range(2)]
    try:
        (_, base), (_, other) = servers
        assert httpx.get(f"{base}/status").json()["model_id"] == newer  # `bot train`'s newest, recorded at start
        with Load(base) as load:
            numbers = {"activate_rollback": swap_under_load(load, base, first),
                       "activate_newer": swap_under_load(load, base, newer)}
        failures = [r for r in load.results if r[2] != 200]
        print(json.dumps({"requests": len(load.results), "failed": len(failures), "clients": CLIENTS,
                          **{k: {"before": b, "during": d} for k, (b, d) in numbers.items()}}, indent=1))
        assert failures == []
        for before, during in numbers.values():
            assert during["n"] > 0 and before["n"] > 0
            assert during["p95"] <= max(SLOWDOWN_FACTOR * before["p95"], before["p95"] + SLOWDOWN_SECONDS)
        deadline = time.monotonic() + 10
        while httpx.get(f"{other}/status").json()["model_id"] != newer and time.monotonic() < deadline:
            time.sleep(0.2)
        assert httpx.get(f"{other}/status").json()["model_id"] == newer  # the other worker polled and swapped
        reply = httpx.post(f"{other}/webhooks/rest/webhook", json={"sender": "o", "message": "信用卡额度是多少"})
        assert reply.json()[0]["text"].startswith("信用卡额度可以")
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=30)


# --- conversation tests -----------------------------------------------------------------------------------------


def test_the_bundled_bots_conversation_tests_pass(bundled_assistant) -> None:
    stories = load_tests(ROOT / "tests" / "conversations")
    assert len(stories) >= 4
    result = run_tests(bundled_assistant.config, bundled_assistant, stories)
    assert result["failed"] == 0, "\n".join(result["failures"])


def test_bot_test_conversations_passes_and_fails_with_a_clear_message(project: Path) -> None:
    runner = CliRunner()
    folder = project / "tests" / "conversations"
    arguments = ["test", "conversations", "--config", str(project / "config.yml"), "--dir", str(folder)]
    passed = runner.invoke(cli, [*arguments, "--json"])
    assert passed.exit_code == 0, passed.output
    assert json.loads(passed.stdout.strip().splitlines()[-1])["passed"] == 1

    (folder / "broken.yml").write_text(GREET_TEST.replace("intent: greet", "intent: check_balance")
                                       .replace("打招呼", "打招呼却期待查余额"), "utf-8")
    failed = runner.invoke(cli, arguments)
    assert failed.exit_code == 1
    assert "打招呼却期待查余额" in failed.stdout and "# predicted: greet" in failed.stdout
    assert "broken.yml" in failed.stdout

    (folder / "broken.yml").write_text(GREET_TEST.replace("action: utter_greet", "acton: utter_greet"), "utf-8")
    malformed = runner.invoke(cli, arguments)
    assert malformed.exit_code == 1 and "broken.yml" in malformed.stderr and "acton" in malformed.stderr


def test_a_trainer_turns_a_real_conversation_into_a_passing_test(project: Path, tmp_path: Path) -> None:
    app = open_app(project, f"sqlite:///{tmp_path / 'bot.db'}")
    with TestClient(app) as client:
        say(client, "click-1", "你好")
        say(client, "click-1", "我的卡丢了")
        created = client.post("/api/trainer/conversations/click-1/test", headers=login(client),
                              json={"name": "真实对话：挂失"})
        assert created.status_code == 201, created.text
        assert client.post("/api/trainer/conversations/nobody/test", headers=login(client)).status_code == 404
    path = project / created.json()["file"]
    assert path.parent == project / "tests" / "conversations"
    [story] = [s for s in load_tests(path.parent) if s["source"] == str(path)]
    assert story["story"] == "真实对话：挂失"
    assert [s.get("user") for s in story["steps"] if "user" in s] == ["你好", "我的卡丢了"]
    agent = app.state.assistant
    assert run_tests(agent.config, agent, [story])["failed"] == 0


def test_experiment_buckets_are_stable_and_uniform() -> None:
    values = [bucket(f"conversation-{i}") for i in range(5000)]
    assert all(0 <= v < 1 for v in values) and bucket("x") == bucket("x")
    assert abs(sum(v < 0.25 for v in values) / len(values) - 0.25) < 0.03


def test_agent_of_a_model_directory_is_what_startup_serves(project: Path, tmp_path: Path) -> None:
    """`bot train` then `bot run` serves the newest model, as before; a candidate trained through the registry
    is not served by a restart until it is activated."""
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    config = load_config(project / "config.yml", environ=environ(url))
    newest = max(p.name for p in (project / "models").iterdir())
    assert create_app(config).state.assistant.version == newest
    from bot.trainer import registry

    candidate = registry.start_training(Database(url), config, trained_by="test")
    for _ in range(400):
        if registry.get(Database(url), candidate).status != "training":
            break
        time.sleep(0.05)
    assert isinstance(create_app(config).state.assistant, Assistant)
    assert create_app(config).state.assistant.version == newest


def test_the_comparison_replays_the_review_inbox_by_default(project: Path, tmp_path: Path) -> None:
    """Without `message`, the messages compared are the review inbox's open ones: a fallback the candidate
    now answers is listed with its outcome before and after."""
    app = open_app(project, f"sqlite:///{tmp_path / 'bot.db'}")
    with TestClient(app) as client:
        headers = login(client)
        missed = say(client, "inbox-1", "额度不够用怎么办")
        teach_credit_limit(project)
        candidate, _ = train_through_api(client, headers)
        comparison = client.get(f"/api/trainer/models/{candidate}/comparison", headers=headers).json()
    assert "收件箱" in comparison["messages_from"] and comparison["messages_compared"] >= 1
    changed = {c["text"]: c for c in comparison["outcome_changes"]}
    assert missed[0]["text"] != LIMIT_ANSWER and changed["额度不够用怎么办"]["after"]["answer"] == "credit_limit"


def test_the_comparison_replays_what_the_trainer_just_fixed_and_is_cached_per_message_set(project: Path,
                                                                                          tmp_path: Path) -> None:
    """A message fixed from the inbox is no longer open, yet its changed outcome is what the trainer wants to see:
    the default replays it. A new inbox message makes a new comparison, not the cached one; the messages may
    also come in a POST body."""
    app = open_app(project, f"sqlite:///{tmp_path / 'bot.db'}")
    with TestClient(app) as client:
        headers = login(client)
        fixed, dismissed = "我的信用卡额度太低了能调高吗", "额度能不能再多一点"
        say(client, "inbox-1", fixed)
        say(client, "inbox-1", dismissed)
        teach_credit_limit(project)
        done = client.post("/api/trainer/fixes", headers=headers,
                           json={"kind": "add_to_intent", "intent": "credit_limit", "texts": [fixed]})
        assert done.status_code == 200, done.text
        assert client.post("/api/trainer/inbox/dismiss", headers=headers,
                           json={"keys": [message_key(dismissed)]}).json()["dismissed"] == [message_key(dismissed)]
        candidate, _ = train_through_api(client, headers)
        url = f"/api/trainer/models/{candidate}/comparison"
        first = client.get(url, headers=headers).json()
        changed = {c["text"]: c for c in first["outcome_changes"]}
        assert changed[fixed]["after"]["answer"] == "credit_limit" and dismissed not in changed
        assert "已修正" in first["messages_from"]

        say(client, "inbox-2", "额度不够用怎么办")  # a new open message: the cached comparison no longer holds
        second = client.get(url, headers=headers).json()
        assert second["messages_compared"] == first["messages_compared"] + 1
        assert "额度不够用怎么办" in {c["text"] for c in second["outcome_changes"]}

        posted = client.post(url, headers=headers, json={"messages": [fixed, "你好"]})
        assert posted.status_code == 200, posted.text
        assert posted.json()["messages_compared"] == 2 and posted.json()["messages_from"] == "request"
        assert [c["text"] for c in posted.json()["outcome_changes"]] == [fixed]


def test_failed_conversation_tests_gate_the_release_in_the_workbench(project: Path, tmp_path: Path) -> None:
    (project / "tests" / "conversations" / "wrong.yml").write_text(
        GREET_TEST.replace("intent: greet", "intent: check_balance").replace("打招呼", "期待查余额"), "utf-8")
    app = open_app(project, f"sqlite:///{tmp_path / 'bot.db'}")
    with TestClient(app) as client:
        headers = login(client)
        candidate, seen = train_through_api(client, headers)
        assert seen[-1]["metrics"]["conversation_tests"]["failed_tests"] == ["wrong.yml: 期待查余额"]
        gated = client.put("/api/trainer/models/active", headers=headers, json={"version": candidate})
        assert gated.status_code == 409 and "期待查余额" in gated.json()["detail"]
        assert "force" not in gated.json()["detail"] and gated.json()["detail"].endswith("仍要启用吗？")
        forced = client.put("/api/trainer/models/active", headers=headers, json={"version": candidate, "force": True})
        assert forced.status_code == 200 and client.get("/status").json()["model_id"] == candidate


def test_a_training_abandoned_by_an_ended_process_is_marked_failed(tmp_path: Path) -> None:
    import datetime as dt

    from bot.storage.models import ModelVersion
    from bot.trainer import registry

    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=7)
    with database.session() as session, session.begin():
        session.add(ModelVersion(version="old", status="training", config={}, metrics={}, progress={},
                                 trained_by="test", trained_at=long_ago, experiment_share=0.0))
    assert registry.training_jobs(database) == 1
    assert registry.fail_abandoned(database) == 1 and registry.training_jobs(database) == 0
    assert "训练中断" in (registry.get(database, "old").error or "")


def test_cross_validation_uses_fewer_folds_for_a_new_small_intent(project: Path, tmp_path: Path) -> None:
    """Right after 新建意图 from the inbox an intent has two or three examples: the candidate is still
    cross-validated (with as many folds as they allow), an intent of one example is left out with a note."""
    from bot.trainer import registry

    data = project / "nlu_data" / "nlu.yml"
    data.write_text(data.read_text("utf-8") + "- intent: credit_limit\n  examples: |\n    - 信用卡额度是多少\n"
                    "    - 我的额度有多少\n    - 怎么提高信用卡额度\n"
                    "- intent: thanks\n  examples: |\n    - 谢谢\n", "utf-8")
    result = registry.cross_validation(load_config(project / "config.yml", environ={}), tmp_path / "results")
    assert "skipped" not in result and 0 < result["accuracy"] <= 1
    assert result["folds"] == 3 and result["left_out"] == ["thanks"]
    assert result["note"] == "有意图只有 3 条例句，改做 3 折交叉验证；只有 1 条例句的意图未参加交叉验证：thanks"
    assert "credit_limit" in result["per_intent_f1"] and "thanks" not in result["per_intent_f1"]
    assert "nlu_fallback" not in result["per_intent_f1"]


def test_the_fallback_is_no_intent_in_the_per_intent_comparison() -> None:
    from bot.storage.models import ModelVersion
    from bot.trainer.registry import _cross_validation

    def row(f1: dict[str, float], **cv) -> ModelVersion:
        return ModelVersion(metrics={"cross_validation": {"accuracy": 0.9, "macro_f1": 0.8, "per_intent_f1": f1,
                                                          **cv}})

    compared = _cross_validation(row({"greet": 0.9, "nlu_fallback": 0.0}, folds=3, note="改做 3 折"),
                                 row({"greet": 0.8, "nlu_fallback": 0.0}))
    assert [i["intent"] for i in compared["per_intent"]] == ["greet"]
    assert compared["candidate"]["folds"] == 3 and compared["candidate"]["note"] == "改做 3 折"
