"""Checks shared by the WeChat and WeCom callbacks, before anything reads what the internet sent:
size, freshness (replays), and XML parsed with defusedxml (no DTDs, no entity expansion, no external entities)."""

from __future__ import annotations

import time
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring


class Rejected(Exception):
    """A callback that is not from Tencent or not well-formed; nothing of it is processed."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status  # 403 for a bad signature, 400 for the rest


def check_size_and_time(body: bytes, timestamp: str, max_body_bytes: int, max_clock_skew_seconds: int) -> None:
    if len(body) > max_body_bytes:
        raise Rejected(f"body of {len(body)} bytes is over {max_body_bytes}")
    try:
        sent_at = int(timestamp)
    except ValueError as e:
        raise Rejected("timestamp missing or not a number") from e
    if abs(time.time() - sent_at) > max_clock_skew_seconds:
        raise Rejected(f"timestamp {sent_at} is stale or in the future (replay?)")


def parse_untrusted_xml(body: bytes) -> Element:
    try:
        return fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise Rejected(f"hostile XML refused: {type(e).__name__}") from e
    except Exception as e:  # noqa: BLE001 - any parse error: malformed
        raise Rejected(f"malformed XML: {e}") from e
