"""One place that masks personal data: bank card numbers (Luhn-checked, 13-19 digits), PRC resident ID numbers
(18 characters with their check character), mainland mobile numbers and e-mail addresses.

Everything stored, logged or shown goes through `mask_text` (strings) or `mask_value` (JSON-like values).
Masked forms keep what a person needs to confirm a number with the customer, and what the dialogue's forms
need: a card's or an ID's last four characters (`************6688`, `**************002X`), a phone's first
three and last four digits (`138****5678`), an address's first character and domain (`z***@example.com`).

Numbers are found in any decimal digits (ASCII, full-width `６２２２`), in groups separated by one space or
dash (`6222 0212 3456 7890`, `+86 138-1234-5678`), and spelt in Chinese numerals (`一三八一二三四五六七八`).
Digits glued to ASCII letters on their left (`GS20240501000001`) are a reference code, not a card. Masking is
idempotent: the digits a masked form keeps (after four asterisks, or before them in a phone) never become part
of a number again.
"""

from __future__ import annotations

import logging
import re
import traceback
import unicodedata
from typing import Any

_CN_NUMERALS = "〇零一二三四五六七八九幺"
_CN_VALUES = str.maketrans({**{c: str(i) for i, c in enumerate("零一二三四五六七八九")}, "〇": "0", "幺": "1"})
# digit groups joined by single separators, an optional leading + (country code) and an ID's trailing X
_RUN = re.compile(r"(?<!\d)(?P<plus>[+＋])?(?P<body>\d+(?:[ \-－\u3000]\d+)*)(?P<x>[XxＸｘ])?(?!\d)")
_CN_RUN = re.compile(rf"(?<![{_CN_NUMERALS}\d])[{_CN_NUMERALS}]{{11,19}}[XxＸｘ]?"
                     rf"(?![{_CN_NUMERALS}\d])")
_MASKED_PHONE_REST = re.compile(r"\*{4}\d")  # what follows the first three digits of a masked phone
_GROUP = re.compile(r"\d+")
# what every pattern above needs at least one of: a digit, a Chinese numeral, an at sign
_CANDIDATE = re.compile(rf"[\d{_CN_NUMERALS}@＠]")
_X = "XxＸｘ"
_MOBILE = re.compile(r"(?:86)?(1[3-9]\d{9})")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+\-])([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*[@＠]"
                    r"([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_LUHN_ODD = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # every second digit from the right, doubled and its digits summed
_LONGEST_NUMBER = 19  # digits of the longest card number
_SHORTEST_NUMBER = 11  # a mobile number
_MOST_GROUPS = 6  # in how many groups a number is written at most ("+86 138 1234 5678", "6228 4800 1234 5678 903")


def _digits(text: str) -> str:
    """The decimal digits in `text` as ASCII (full-width and other scripts' digits read by their value)."""
    if text.isascii() and text.isdigit():
        return text
    return "".join(str(unicodedata.decimal(c)) for c in text if unicodedata.decimal(c, None) is not None)


def luhn_ok(number: str) -> bool:
    """The Luhn check every bank card number passes."""
    digits = _digits(number)
    return bool(digits) and _luhn(digits)


def _luhn(digits: str) -> bool:
    """The Luhn check of a string of ASCII digits."""
    total = sum(_LUHN_ODD[int(d)] if i % 2 else int(d) for i, d in enumerate(reversed(digits)))
    return total % 10 == 0


def id_number_ok(text: str) -> bool:
    """The ISO 7064 MOD 11-2 check of an 18-character PRC resident ID number."""
    body, check = _digits(text[:17]), text[17:].upper()
    if len(body) != 17 or len(text) != 18:
        return False
    expected = _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return (_digits(check) or check) == expected


def _kind(digits: str, with_x: bool, glued: bool) -> str | None:
    """What a candidate number is: "id", "phone", "card" or None. `glued`: it follows an ASCII letter."""
    if with_x:
        return "id" if len(digits) == 17 and id_number_ok(digits + "X") else None
    if len(digits) == 18 and id_number_ok(digits):
        return "id"
    if len(digits) in (11, 13) and _MOBILE.fullmatch(digits):
        return "phone"
    if not glued and 13 <= len(digits) <= _LONGEST_NUMBER and _luhn(digits):
        return "card"
    return None


def _masked(kind: str, digits: str, with_x: bool) -> str:
    if kind == "phone":
        mobile = digits[-11:]
        return f"{mobile[:3]}****{mobile[-4:]}"
    tail = digits[-3:] + "X" if with_x else digits[-4:]
    return "*" * (14 if kind == "id" else len(digits) - 4) + tail


def _longest(groups: list[str], first: int, x_at_end: bool, glued: bool) -> tuple[int, str, bool] | None:
    """(last group, kind, uses the X) of the longest number that starts at group `first`, if any."""
    ends, total = [], 0
    for last in range(first, min(len(groups), first + _MOST_GROUPS)):
        total += len(groups[last])
        if total > _LONGEST_NUMBER:
            break
        if total >= _SHORTEST_NUMBER:
            ends.append(last)
    for last in reversed(ends):
        digits = "".join(groups[first:last + 1])
        for with_x in (True, False) if x_at_end and last == len(groups) - 1 else (False,):
            kind = _kind(digits, with_x, glued)
            if kind is not None:
                return last, kind, with_x
    return None


def _unmasked_groups(found: re.Match[str], groups: list[str]) -> range:
    """The groups of a run that are not what an earlier masking kept: the four characters after a masked
    card's or ID's asterisks, the three digits before a masked phone's. This makes masking idempotent."""
    x = 1 if found.group("x") and len(groups) == 1 else 0
    tail = found.string[max(0, found.start() - 4):found.start()] == "****" and len(groups[0]) + x == 4
    head = len(groups[-1]) == 3 and not found.group("x") and bool(_MASKED_PHONE_REST.match(found.string,
                                                                                           found.end()))
    return range(1 if tail else 0, len(groups) - (1 if head else 0))


def _mask_run(found: re.Match[str]) -> str:
    """A run of digit groups with every card, ID and mobile number in it masked (leftmost, then longest)."""
    spans = [(g.start(), g.end()) for g in _GROUP.finditer(found.group(0))]
    groups = [_digits(found.group(0)[start:end]) for start, end in spans]
    before = found.string[found.start() - 1] if found.start() else ""
    glued = not found.group("plus") and before.isascii() and before.isalpha()
    usable = _unmasked_groups(found, groups)
    groups = groups[:usable.stop]
    text, pieces, cursor, first = found.group(0), [], 0, usable.start
    while first < len(groups):
        number = _longest(groups, first, bool(found.group("x")) and usable.stop == len(spans), glued and first == 0)
        if number is None:
            first += 1
            continue
        last, kind, with_x = number
        start = 0 if first == 0 and kind == "phone" else spans[first][0]  # a phone takes its "+" along
        end = spans[last][1] + (1 if with_x else 0)
        pieces += [text[cursor:start], _masked(kind, "".join(groups[first:last + 1]), with_x)]
        cursor, first = end, last + 1
    return "".join([*pieces, text[cursor:]])


def _mask_chinese_numerals(found: re.Match[str]) -> str:
    value = found.group(0)
    with_x = value[-1] in _X
    digits = value.rstrip(_X).translate(_CN_VALUES)
    kind = _kind(digits, with_x, glued=False)
    return value if kind is None else _masked(kind, digits, with_x)


def mask_text(text: str) -> str:
    """`text` with every card, ID, mobile number and e-mail address replaced by its masked form."""
    if not text or not isinstance(text, str):
        return text
    if _CANDIDATE.search(text) is None:  # most strings (words, tokens, intent names) hold nothing to mask
        return text
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = _RUN.sub(_mask_run, text)
    return _CN_RUN.sub(_mask_chinese_numerals, text)


def mask_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with every string masked, dictionary keys too; a bare
    number that is a card, ID or phone number becomes its masked string. Tuples become lists."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {mask_value(key): mask_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**10:
        masked = mask_text(str(value))
        return value if masked == str(value) else masked
    return value


# credentials that third-party APIs put in URLs (WeChat's and WeCom's access_token, gettoken's corpsecret)
_URL_CREDENTIAL = re.compile(r"(?i)\b(access_token|corpsecret|secret|token|ticket)=([^&\s\"'<>]+)")


def redact_credentials(text: str) -> str:
    """`text` with the values of credential query parameters replaced by `***`."""
    return _URL_CREDENTIAL.sub(r"\1=***", text)


def _for_logs(text: str) -> str:
    return redact_credentials(mask_text(text))


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message, exception and stack text masked. The arguments are masked one by one
    (formatters such as uvicorn's access log unpack them); when that is not enough, the message is formatted
    now and the arguments go."""
    message = _message(record)
    if message is not None and _for_logs(message) != message:
        if isinstance(record.msg, str):
            record.msg = _for_logs(record.msg)
        if isinstance(record.args, tuple | dict):
            record.args = mask_value(record.args) if isinstance(record.args, dict) else \
                tuple(_masked_argument(a) for a in record.args)
        formatted = _message(record)
        if formatted is None or _for_logs(formatted) != formatted:
            record.msg, record.args = _for_logs(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = _for_logs(record.exc_text)
    if record.stack_info:
        record.stack_info = _for_logs(record.stack_info)
    return record


def _message(record: logging.LogRecord) -> str | None:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - arguments that do not fit the format: logging reports that itself
        return None


def _masked_argument(argument: Any) -> Any:
    if isinstance(argument, str | dict | list | tuple):
        return mask_value(argument) if not isinstance(argument, tuple) else tuple(mask_value(list(argument)))
    if isinstance(argument, int | float | bool) or argument is None:
        return argument  # a bare number is checked in the formatted message
    return mask_text(str(argument))


class MaskingFilter(logging.Filter):
    """Masks personal data in every log record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def install_log_masking() -> None:
    """Mask every log record when it is made (so handlers added later, and records of any logger, are
    covered), and keep a filter on the root logger's and uvicorn's handlers present now."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "masks_personal_data", False):
        def masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return mask_record(factory(*args, **kwargs))

        masking_factory.masks_personal_data = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(masking_factory)
    masking = MaskingFilter()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "fastapi"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskingFilter) for f in logger.filters):
            logger.addFilter(masking)
        for handler in logger.handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(masking)
