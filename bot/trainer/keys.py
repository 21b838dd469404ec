"""One key per customer message text, shared by the inbox (grouping, hiding what was reviewed) and the fixes
(marking what was done): the same words, whatever their width, case or spacing, are the same message."""

from __future__ import annotations

import hashlib
import re
import unicodedata

SPACES = re.compile(r"\s+")


def normalised(text: str) -> str:
    return SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def message_key(text: str) -> str:
    """SHA-256 (hex) of the normalised text: `review_marks.message_key`."""
    return hashlib.sha256(normalised(text).encode("utf-8")).hexdigest()
