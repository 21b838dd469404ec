from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_config


def test_bundled_config_is_valid(project_root: Path) -> None:
    config = load_config(project_root / "config.yml", environ={})
    assert config.step("intent_classifier").fallback_threshold == pytest.approx(0.3)
    assert config.root == project_root


def test_environment_overrides_nested_keys(project_root: Path) -> None:
    config = load_config(project_root / "config.yml",
                         environ={"BOT__SERVER__PORT": "9100", "BOT__RETRIEVAL__ENCODER": "none"})
    assert config.server.port == 9100
    assert config.retrieval.encoder == "none"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pipeline:\n- name: intent_classifer\n", "pipeline.0: unknown step name; known steps: normalizer"),
        ("pipeline:\n- name: normalizer\n", "an 'intent_classifier' step is required"),
        ("pipeline:\n- name: intent_classifier\nserver:\n  port: eighty\n", "server.port:"),
        ("pipeline:\n- name: intent_classifier\n  fallback_treshold: 0.2\n",
         "pipeline.0.intent_classifier.fallback_treshold"),
        ("pipeline: [\n", "line 2"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert expected in str(error.value)


def test_bad_environment_value_names_the_key(project_root: Path) -> None:
    with pytest.raises(ConfigError, match="server.port"):
        load_config(project_root / "config.yml", environ={"BOT__SERVER__PORT": "abc"})
