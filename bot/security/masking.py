"""One place that masks personal data: bank card numbers (Luhn-checked, 13-19 digits), PRC resident ID numbers
(18 characters with their check character), mainland mobile numbers and e-mail addresses.

Everything stored, logged or shown to a role that does not need the full number goes through `mask_text`
(strings) or `mask_value` (JSON-like values). Masked forms keep what a person needs to confirm a number
with the customer: a card's or an ID's last four characters, a phone's first three and last four digits.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any

# digits may be typed full-width (６２２２…); `\d` matches them and unicodedata reads their value
_CARD = re.compile(r"(?<![\dA-Za-z])(\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{13,19})(?![\dA-Za-z])")
_ID = re.compile(r"(?<![\dA-Za-z])(\d{17}[\dXx])(?![\dA-Za-z])")
_PHONE = re.compile(r"(?<![\dA-Za-z])((?:\+?86[ -]?)?1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?![\dA-Za-z])")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _digits(text: str) -> str:
    return "".join(str(unicodedata.digit(c)) for c in text if unicodedata.digit(c, None) is not None)


def luhn_ok(number: str) -> bool:
    """The Luhn check every bank card number passes."""
    digits = [int(d) for d in _digits(number)]
    if not digits:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def id_number_ok(text: str) -> bool:
    """The ISO 7064 MOD 11-2 check of an 18-character PRC resident ID number."""
    body, check = _digits(text[:17]), text[17:].upper()
    if len(body) != 17 or len(text) != 18:
        return False
    expected = _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return (_digits(check) or check) == expected


def _mask_id(found: re.Match[str]) -> str:
    value = found.group(1)
    return "*" * 14 + value[-4:] if id_number_ok(value) else value


def _mask_card(found: re.Match[str]) -> str:
    value = found.group(1)
    if not luhn_ok(value):
        return value
    digits = _digits(value)
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_text(text: str) -> str:
    """`text` with every card, ID, mobile number and e-mail address replaced by its masked form."""
    if not text or not isinstance(text, str):
        return text
    text = _ID.sub(_mask_id, text)
    text = _CARD.sub(_mask_card, text)
    text = _PHONE.sub(lambda m: f"{_digits(m.group(1))[-3:]}****{_digits(m.group(3))}", text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def mask_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with every string masked; a bare number that is a
    card, ID or phone number becomes its masked string."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**10:
        masked = mask_text(str(value))
        return value if masked == str(value) else masked
    return value


class MaskingFilter(logging.Filter):
    """Masks personal data in every log record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_masking() -> None:
    """Mask what the root logger and uvicorn's loggers write (their handlers, present and future)."""
    masking = MaskingFilter()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "fastapi"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskingFilter) for f in logger.filters):
            logger.addFilter(masking)
        for handler in logger.handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(masking)
