from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
def minibot_agent(minibot: Path):
    from bot.agent import Agent
    from bot.config import load_config
    from bot.model import train

    config = load_config(minibot / "config.yml", environ={})
    return Agent.load(config, train(config))


@pytest.fixture(scope="session")
def bundled_agent(tmp_path_factory: pytest.TempPathFactory):
    """The bundled bank bot, trained once per test session into a temporary models directory."""
    from bot.agent import Agent
    from bot.config import load_config
    from bot.model import train

    models = tmp_path_factory.mktemp("models")
    config = load_config(ROOT / "config.yml", environ={"BOT__MODELS_DIR": str(models)})
    return Agent.load(config, train(config))
