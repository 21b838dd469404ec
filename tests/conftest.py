from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_support import fresh_postgres_url

ROOT = Path(__file__).resolve().parents[1]
MINIBOT = Path(__file__).parent / "fixtures" / "minibot"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def minibot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the small fixture bot, so training writes its models/ outside the repo."""
    target = tmp_path_factory.mktemp("minibot")
    shutil.copytree(MINIBOT, target, dirs_exist_ok=True)
    return target


@pytest.fixture(scope="session")
def minibot_assistant(minibot: Path):
    from bot.assistant import Assistant
    from bot.config import load_config
    from bot.model import train

    config = load_config(minibot / "config.yml", environ={})
    return Assistant.load(config, train(config))


@pytest.fixture(scope="session")
def bundled_assistant(tmp_path_factory: pytest.TempPathFactory):
    """The bundled bank bot, trained once per test session into a temporary models directory."""
    from bot.assistant import Assistant
    from bot.config import load_config
    from bot.model import train

    models = tmp_path_factory.mktemp("models")
    config = load_config(ROOT / "config.yml", environ={"BOT__MODELS_DIR": str(models)})
    return Assistant.load(config, train(config))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server every test machine runs at 127.0.0.1:5432, dropped afterwards."""
    with fresh_postgres_url() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on a real SQLite file and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.db'}"
    return request.getfixturevalue("postgres_url")
