"""The live model of a running app, swapped without downtime.

load the new version beside the serving one → warm it up → one reference assignment each for `app.state.assistant`
and `ConversationService.assistant`. A turn reads `service.assistant` once, so requests in flight finish on the model
they started with. Every process polls the database for the active version (and an experiment's candidate)
every few seconds and swaps when it changed, so an activation reaches every worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
from pathlib import Path
from typing import Any

from bot.assistant import Assistant
from bot.config import BotConfig
from bot.dialogue.engine import DialogueState, TurnOutcome
from bot.model import MODEL_FILE, latest_model_dir
from bot.nlu.pipeline import ParseResult
from bot.storage import Database
from bot.trainer import registry

POLL_SECONDS = 3.0
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


class LiveModel:
    """Holds what one process serves: the active assistant and, during an experiment, a candidate with its share.
    `app_state` is the FastAPI app's state (its `assistant` and `conversations`)."""

    def __init__(self, app_state: Any, config: BotConfig, database: Database,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.state, self.config, self.database = app_state, config, database
        self.poll_seconds = poll_seconds
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
        """Poll until cancelled; a failed poll (database away, a broken model) is logged and tried again."""
        await asyncio.to_thread(self._adopt_quietly)
        while True:
            try:
                await asyncio.to_thread(self.sync)
            except Exception:
                logger.exception("model version poll failed")
            await asyncio.sleep(self.poll_seconds)

    def _adopt_quietly(self) -> None:
        try:
            self.adopt()
        except Exception:
            logger.exception("recording the served model version failed")
