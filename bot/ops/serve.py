"""What `bot run --workers N` needs to start N worker processes: each builds its app from the environment, and
their Prometheus counters meet in one multiprocess directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bot.ops.metrics import MULTIPROC_ENV

CONFIG_ENV = "BOT_RUN_CONFIG"  # config.yml of `bot run`, for each worker
PROJECT_ENV = "BOT_RUN_PROJECT"  # or the Rasa project directory


def prepare_workers(config: Path, project: Path | None) -> Path:
    """Tell the workers what to load and where to write their metrics: `PROMETHEUS_MULTIPROC_DIR` as given
    (emptied: counters of an earlier run must not add up) or a new temporary directory. Returns the directory."""
    os.environ[CONFIG_ENV] = str(config.resolve())
    if project is not None:
        os.environ[PROJECT_ENV] = str(project.resolve())
    given = os.environ.get(MULTIPROC_ENV)
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="bot-metrics-"))
    if given:
        shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def app_from_environment() -> Any:
    """The app of one worker process (uvicorn's factory), from the config `prepare_workers` named."""
    from bot.config import load_config
    from bot.project import is_rasa_config_file, load_project
    from bot.web.app import create_app

    config = Path(os.environ[CONFIG_ENV])
    project = Path(os.environ[PROJECT_ENV]) if os.environ.get(PROJECT_ENV) else None
    if project is None and is_rasa_config_file(config):
        project = config.parent
    settings = load_project(project).config if project is not None else load_config(config)
    return create_app(settings)
