"""Reading untrusted JSON safely: valid UTF-8 only, no lone surrogates (a `"\\ud800"` escape decodes to a
string that can never be encoded again, so it would break every later read), bounded nesting.

Used by the HTTP edge middleware for request bodies and by the chat sockets for frames.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32


class UnsafeJson(ValueError):
    """Why a JSON document was refused: `kind` is "syntax", "unicode" or "depth"; the message is for people."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def loads_guarded(raw: bytes | str, max_depth: int = MAX_DEPTH, finite: bool = False) -> Any:
    """The document in `raw`, or UnsafeJson: invalid UTF-8 or lone surrogates, nesting deeper than
    `max_depth`, NaN or Infinity when `finite`, or not JSON at all."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UnsafeJson("unicode", f"body is not valid UTF-8 (byte {e.start})") from e
    if _opening_depth(raw) > max_depth:
        raise UnsafeJson("depth", f"JSON nested deeper than {max_depth} levels")
    try:
        value = json.loads(raw)
    except RecursionError as e:
        raise UnsafeJson("depth", f"JSON nested deeper than {max_depth} levels") from e
    except ValueError as e:
        raise UnsafeJson("syntax", f"not valid JSON: {e}") from e
    check_value(value, max_depth, finite)
    return value


def check_value(value: Any, max_depth: int = MAX_DEPTH, finite: bool = False) -> None:
    """UnsafeJson when a string anywhere in `value` (keys too) cannot be encoded as UTF-8, when it nests
    deeper than `max_depth`, or (when `finite`) when a number is NaN or infinite: Python reads NaN, Infinity and
    1e999 where JSON has no such numbers, and nothing can write them back. Iterative, so hostile nesting
    cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise UnsafeJson("depth", f"JSON nested deeper than {max_depth} levels")
        if isinstance(item, str):
            if not is_valid_text(item):
                raise UnsafeJson("unicode", "text contains an invalid character (a lone UTF-16 surrogate)")
        elif isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif finite and isinstance(item, float) and not math.isfinite(item):
            raise UnsafeJson("number", "NaN and Infinity are not JSON numbers")


def is_valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scrub(value: Any) -> Any:
    """A value safe to serialise whatever was stored before input was checked: lone surrogates become U+FFFD."""
    if isinstance(value, str):
        return value if is_valid_text(value) else value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _opening_depth(raw: str) -> int:
    """The deepest bracket nesting outside strings, found without recursion (json.loads would recurse)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
