"""Reading the project's YAML files with line numbers, for errors that point at the line to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError


def load_yaml(file: Path, error: type[ValueError]) -> Any:
    """Parse `file` keeping positions (ruamel round-trip); syntax problems raise `error` with file:line."""
    try:
        return YAML(typ="rt").load(file.read_text(encoding="utf-8"))
    except MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else 1
        raise error(f"{file}:{line}: YAML syntax error: {e.problem}") from e
    except UnicodeDecodeError as e:
        raise error(f"{file}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def plain(node: Any) -> Any:
    """ruamel's round-trip containers -> plain dicts, lists and strings."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return str(node) if isinstance(node, str) else node


def item_line(sequence: Any, index: int) -> int:
    """1-based line of a list item, or 1 when the list carries no positions."""
    try:
        return sequence.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return 1


def key_line(mapping: Any, key: Any) -> int:
    try:
        return mapping.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return 1
