"""The live model of a running app, swapped without downtime.

load the new version beside the serving one → warm it up → one reference assignment each for `app.state.assistant`
and `ConversationService.assistant`. A turn reads `service.assistant` once, so requests in flight finish on the model
they started with. Every process checks the database for the active version (and an experiment's candidate) and
swaps when it changed, so an activation reaches every worker: at once when Redis is configured (`ModelSignal`: the
worker that activated publishes, every other worker's listener wakes its check), otherwise by polling every few
seconds. With Redis, polling stays as the safety net at a longer interval while the listener is subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bot.assistant import Assistant
from bot.config import BotConfig
from bot.dialogue.engine import DialogueState, TurnOutcome
from bot.model import MODEL_FILE, latest_model_dir
from bot.nlu.pipeline import ParseResult
from bot.storage import Database
from bot.trainer import registry

POLL_SECONDS = 3.0
SIGNALLED_POLL_SECONDS = 60.0  # the safety net while the Redis signal is heard
RECONNECT_MAX_SECONDS = 5.0
VERSION_NAME = re.compile(r"[\w-][\w.-]{0,63}")
WARM_UP_PARSES = 5
logger = logging.getLogger(__name__)


def bucket(key: str) -> float:
    """A stable number in [0, 1) for a conversation key: the same key always lands in the same place."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32


class ExperimentAssistant(Assistant):
    """Answers the conversations whose key falls below `share` with the candidate, the others with the active
    model, and records which model answered in the turn's parse (`parse_data.model` of the user event).
    Everything else (the external turns of reminders, /model/parse, /status) is the active model's."""

    def __init__(self, active: Assistant, candidate: Assistant, share: float) -> None:  # noqa: D107
        # not Assistant.__init__: this wraps two assistants that are loaded already
        self.active, self.candidate, self.share = active, candidate, share
        self.model, self.config = active.model, active.config
        self.responder, self.engine = active.responder, active.engine

    def arm(self, key: str) -> str:
        return "candidate" if bucket(key) < self.share else "active"

    def respond(self, text: str, channel: str = "web", state: DialogueState | None = None,
                sender_id: str = "default", history: list[dict[str, Any]] | None = None,
                metadata: dict[str, Any] | None = None) -> tuple[ParseResult, TurnOutcome]:
        arm = self.arm(sender_id)
        assistant = self.candidate if arm == "candidate" else self.active
        parse, outcome = assistant.respond(text, channel, state, sender_id=sender_id, history=history,
                                       metadata=metadata)
        outcome.parse["model"] = {"version": assistant.version, "arm": arm}
        return parse, outcome


def warm_up(assistant: Assistant) -> None:
    """A few parses and one turn, so the first customer after the swap does not pay for lazy set-up."""
    examples = assistant.model.data.examples
    texts = [e.text for e in examples[:: max(1, len(examples) // WARM_UP_PARSES)][:WARM_UP_PARSES]] or ["你好"]
    for text in texts:
        assistant.parse(text)
    assistant.respond(texts[0], sender_id="warm-up")


def load_version(config: BotConfig, version: str) -> Assistant:
    directory = model_dir(config, version)
    if directory is None:
        raise FileNotFoundError(f"model version {version}: no directory {config.path(config.models_dir) / version}")
    assistant = Assistant.load(config, directory)
    warm_up(assistant)
    return assistant


def model_dir(config: BotConfig, version: str) -> Path | None:
    if not VERSION_NAME.fullmatch(version):  # a name from a request never leaves models_dir
        return None
    directory = config.path(config.models_dir) / version
    return directory if (directory / MODEL_FILE).exists() else None


def startup_assistant(config: BotConfig, database: Database) -> Assistant:
    """The model a starting process serves: the active version in the database. A newer model directory the
    database does not know was trained by `bot train`/`bot run` outside the registry: it is recorded and
    activated, as `bot run` has always served the newest model."""
    latest = latest_model_dir(config)
    active = registry.active_version(database)
    if latest is not None and not registry.is_known(database, latest.name) and (active is None
                                                                                or latest.name > active):
        registry.record_directory(database, latest, activate=True, actor="startup", config=config)
        active = latest.name
    if active is not None and model_dir(config, active) is not None:
        return Assistant.load(config, model_dir(config, active))
    return Assistant.load(config, latest)


class ModelSignal:
    """"The model versions changed", from the worker that changed them to every other worker of the installation:
    one Redis pub/sub channel (`bankbot:model:<db>:changed`); a listening thread per worker calls `on_signal` for
    each other worker's message, and once each time it (re)subscribes, since messages sent meanwhile were missed.
    Redis errors are logged, never raised: polling still brings every worker to the database's state."""

    def __init__(self, url: str, namespace: str | None = None) -> None:
        self.origin = uuid.uuid4().hex  # this worker's messages, which its own listener skips
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        database = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{namespace or f'bankbot:model:{database}'}:changed"
        self.listening = threading.Event()  # set while subscribed
        self._stopping = threading.Event()

    def publish(self) -> None:
        try:
            self._redis.publish(self.channel, self.origin)
        except (redis.RedisError, OSError) as e:
            logger.warning("model change not signalled (Redis: %s); other workers see it by polling", type(e).__name__)

    def start(self, on_signal: Callable[[], None]) -> None:
        self._stopping = threading.Event()  # each listening thread its own: a stopped one never comes back
        threading.Thread(target=self._listen, args=(on_signal, self._stopping), name="model-signal",
                         daemon=True).start()

    def stop(self) -> None:
        """The thread ends within a second (it is not waited for: this runs on the event loop at shutdown)."""
        self._stopping.set()

    def _listen(self, on_signal: Callable[[], None], stopping: threading.Event) -> None:
        wait = 0.5
        while not stopping.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.listening.set()
                wait = 0.5
                on_signal()  # a change signalled while this worker was not subscribed would be missed
                while not stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("data") != self.origin.encode():
                        on_signal()
            except (redis.RedisError, OSError) as e:
                logger.warning("model signal: lost Redis (%s); subscribing again in %.1f s", type(e).__name__, wait)
                stopping.wait(wait)
                wait = min(wait * 2, RECONNECT_MAX_SECONDS)
            finally:
                self.listening.clear()
                pubsub.close()


class LiveModel:
    """Holds what one process serves: the active assistant and, during an experiment, a candidate with its share.
    `app_state` is the FastAPI app's state (its `assistant` and `conversations`). With `security.redis_url` a
    change made here is signalled to the other workers (`ModelSignal`)."""

    def __init__(self, app_state: Any, config: BotConfig, database: Database,
                 poll_seconds: float = POLL_SECONDS, signalled_poll_seconds: float = SIGNALLED_POLL_SECONDS) -> None:
        self.state, self.config, self.database = app_state, config, database
        self.poll_seconds, self.signalled_poll_seconds = poll_seconds, signalled_poll_seconds
        self.signal = ModelSignal(config.security.redis_url) if config.security.redis_url else None
        self.candidate: Assistant | None = None
        self.share = 0.0
        self.swaps = 0
        self._lock = threading.Lock()  # one load-and-swap at a time; serving never takes it

    @property
    def active(self) -> Assistant:
        return self.state.assistant

    def install(self, active: Assistant, candidate: Assistant | None, share: float) -> None:
        served = ExperimentAssistant(active, candidate, share) if candidate is not None and share > 0 else active
        changed = active is not self.state.assistant
        self.state.assistant = active
        self.state.conversations.assistant = served
        self.candidate, self.share = (candidate, share) if served is not active else (None, 0.0)
        self.swaps += changed

    def sync(self) -> bool:
        """After this process changed the database's versions (activation, experiment): swap here and signal every
        other worker; True when something was swapped here."""
        swapped = self.refresh()
        if self.signal is not None:
            self.signal.publish()
        return swapped

    def refresh(self) -> bool:
        """Bring this process to the database's state; True when something was swapped."""
        wanted = registry.desired(self.database)
        with self._lock:
            active = self._agent(wanted.active, self.active) if self._servable(wanted.active) else self.active
            candidate = None
            if self._servable(wanted.candidate) and wanted.share > 0:
                candidate = self._agent(wanted.candidate, self.candidate)
            if active is self.active and candidate is self.candidate and (candidate is None
                                                                          or wanted.share == self.share):
                return False
            self.install(active, candidate, wanted.share)
            return True

    def _servable(self, version: str | None) -> bool:
        """A version this process can load: one of its own project's model directories."""
        return version is not None and model_dir(self.config, version) is not None

    def _agent(self, version: str | None, loaded: Assistant | None) -> Assistant:
        assert version is not None
        if loaded is not None and loaded.version == version:
            return loaded
        if self.active.version == version:
            return self.active
        if self.candidate is not None and self.candidate.version == version:
            return self.candidate
        logger.info("loading model version %s", version)
        return load_version(self.config, version)

    def adopt(self) -> None:
        """On start: trainings abandoned by a process that ended are marked failed, and a database without an
        active version learns the one this process serves (when it is a directory of this project's models), so
        that /status, comparisons and other workers agree."""
        registry.fail_abandoned(self.database)
        if registry.active_version(self.database) is None:
            directory = model_dir(self.config, self.active.version)
            if directory is not None:
                registry.record_directory(self.database, directory, activate=True, actor="startup",
                                          config=self.config)

    async def run(self) -> None:
        """Check the database until cancelled: when another worker signals a change, and every `poll_seconds`
        (`signalled_poll_seconds` while the signal is heard); a failed check (database away, a broken model) is
        logged and tried again."""
        await asyncio.to_thread(self._adopt_quietly)
        loop, signalled = asyncio.get_running_loop(), asyncio.Event()

        def wake() -> None:  # from the listening thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: the app has stopped
                loop.call_soon_threadsafe(signalled.set)

        if self.signal is not None:
            self.signal.start(wake)
        try:
            while True:
                signalled.clear()
                try:
                    await asyncio.to_thread(self.refresh)
                except Exception:
                    logger.exception("model version check failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signalled.wait(), self._poll_interval())
        finally:
            if self.signal is not None:
                self.signal.stop()

    def _poll_interval(self) -> float:
        heard = self.signal is not None and self.signal.listening.is_set()
        return max(self.poll_seconds, self.signalled_poll_seconds) if heard else self.poll_seconds

    def _adopt_quietly(self) -> None:
        try:
            self.adopt()
        except Exception:
            logger.exception("recording the served model version failed")
