"""Text normalisation for Chinese customer messages.

`fold` maps characters one to one, so entity offsets stay valid on the original text; `normalise` goes
further and is what intent classification and retrieval see, identically at train and parse time.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache

import cn2an
import opencc


@dataclass(frozen=True)
class NormaliserOptions:
    traditional_to_simplified: bool = True
    fullwidth_to_halfwidth: bool = True
    lowercase: bool = True
    chinese_numerals: bool = True
    strip_emoji: bool = True
    collapse_whitespace: bool = True


def fold(text: str, options: NormaliserOptions = NormaliserOptions()) -> str:
    """Traditional -> simplified, full-width -> half-width, lowercase; always `len(fold(t)) == len(t)`."""
    if options.traditional_to_simplified:
        text = _to_simplified(text)
    if options.fullwidth_to_halfwidth:
        text = text.translate(_FULLWIDTH)
    if options.lowercase:
        text = _lowercase(text)
    return text


def normalise(text: str, options: NormaliserOptions = NormaliserOptions()) -> str:
    """fold, strip emoji, collapse whitespace, Chinese numerals -> Arabic digits. Idempotent, never raises."""
    text = fold(text, options)
    if options.strip_emoji:
        text = "".join(ch for ch in text if not _is_symbol(ch))
    if options.collapse_whitespace:
        text = _collapse_whitespace(text)
    if options.chinese_numerals:
        text = _NUMERAL_RE.sub(_replace_numeral, text)
    return text


def parse_number(text: str) -> int | float | None:
    """Value of a numeral ("5,000", "1.5万", "5k", "2万3", "两万三", "三点五", "一二三四"), else None."""
    value = _to_decimal(text.replace(",", "").strip().lower())
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


# --- fold ---------------------------------------------------------------------------------------------------

_FULLWIDTH: dict[int, int] = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {
    0x3000: 0x20, 0xFFE0: 0xA2, 0xFFE1: 0xA3, 0xFFE2: 0xAC, 0xFFE3: 0xAF, 0xFFE4: 0xA6, 0xFFE5: 0xA5,
    0xFFE6: 0x20A9,
}  # fmt: skip
_T2S_CHARS: dict[str, str] = {}


@cache
def _opencc() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _to_simplified(text: str) -> str:
    if text.isascii():
        return text
    converted = text
    # OpenCC is not quite idempotent (薴 -> 苧 -> 苎), so convert until stable.
    for _ in range(3):
        try:
            step = _opencc().convert(converted)
        except Exception:  # e.g. lone surrogates cannot be encoded as UTF-8
            break
        if len(step) != len(text):
            break
        if step == converted:
            return converted
        converted = step
    # A phrase converted to a different length: fall back to one character at a time.
    return "".join(map(_t2s_char, text))


def _t2s_char(ch: str) -> str:
    out = _T2S_CHARS.get(ch)
    if out is None:
        out = ch
        for _ in range(3):
            try:
                step = _opencc().convert(out)
            except Exception:
                break
            if len(step) != 1 or step == out:
                break
            out = step
        _T2S_CHARS[ch] = out
    return out


def _lowercase(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):  # lower() never shrinks a character, so equal length means one to one
        return lowered
    return "".join(ch.lower()[0] for ch in text)  # İ lowers to "i" + combining dot: keep the "i"


# --- emoji and whitespace ---------------------------------------------------------------------------------

_EMOJI_PARTS = frozenset("\u200d\u20e3") | frozenset(map(chr, range(0xFE00, 0xFE10)))


def _is_symbol(ch: str) -> bool:
    return (
        unicodedata.category(ch) in ("So", "Sk")
        or ch in _EMOJI_PARTS
        or "\U000e0020" <= ch <= "\U000e007f"  # tag characters (subdivision flags)
        or "\U000e0100" <= ch <= "\U000e01ef"  # variation selectors supplement
    )


_INVISIBLE_RE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACE_RUN_RE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_CJK = (
    "\u2e80-\u2fdf\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f"
)
_CJK_GAP_RE = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")


def _collapse_whitespace(text: str) -> str:
    text = _SPACE_RUN_RE.sub(" ", _INVISIBLE_RE.sub("", text)).strip(" ")
    return _CJK_GAP_RE.sub("", text)


# --- Chinese numerals ---------------------------------------------------------------------------------------

_DIGITS = "零〇一二两三四五六七八九"
_NUMERALS = _DIGITS + "十百千万亿"
_DIGIT_VALUES = {ord(ch): str(i) for i, ch in enumerate("零一二三四五六七八九")}
_DIGIT_VALUES |= {ord("〇"): "0", ord("两"): "2"}
_MULTIPLIERS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
# Words whose numerals are not quantities. Single digits without a unit (一下, 星期一, 第一) are never
# converted, so only words that would otherwise form a longer numeral or contain a unit are listed.
_PROTECTED = (
    "万一", "千万", "万万", "千千万万", "十分(?!钟)", "十足", "十字", "十全十美", "十之八九", "一五一十",
    "三三两两", "七七八八", "乱七八糟", "五一", "一一",
)  # fmt: skip
# Two neighbouring digits mean "two or three", not 23: 两三天, 三四千, 十五六.
_APPROXIMATE = frozenset(("一两", "两三", "二三", "三四", "四五", "五六", "六七", "七八", "八九", "三五"))
_APPROXIMATE_RE = re.compile("[一二两三四五六七八九]{2}")
_NUMERAL_RE = re.compile(
    f"(?P<keep>(?:{'|'.join(_PROTECTED)})(?![{_NUMERALS}]))"
    rf"|百分之(?P<percent>[{_NUMERALS}]+(?:点[{_DIGITS}]+)?|\d+(?:\.\d+)?)"
    rf"|(?<![\d.{_NUMERALS}])(?P<arabic>\d+(?:\.\d+)?[千万亿][\d{_NUMERALS}]*)(?![{_NUMERALS}\d.])"
    f"|(?P<chinese>[{_NUMERALS}]+(?:点[{_DIGITS}]+(?![十百千])[万亿]?)?)",
    re.ASCII,
)
_ASCII_DIGITS = frozenset("0123456789")
_ARABIC_RE = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_DECIMAL_RE = re.compile(f"(?P<int>[{_NUMERALS}]+)点(?P<frac>[{_DIGITS}]+)(?P<mult>[万亿]?)")


def _replace_numeral(match: re.Match[str]) -> str:
    whole = match.group(0)
    if match.group("keep") is not None:
        return whole
    text, start, end = match.string, match.start(), match.end()
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    if before in ("几", "数") or after == "几":  # 几十, 数千, 十几: vague quantities stay words
        return whole
    if (percent := match.group("percent")) is not None:
        value = _to_decimal(percent)
        return whole if value is None else _format_decimal(value) + "%"
    if match.group("arabic") is not None:
        value = _to_decimal(whole)
        return whole if value is None else _format_decimal(value)
    if _touches_arabic_number(text, start, end):  # mixed runs (12三四, 五0万) are left alone
        return whole
    return _convert_chinese(whole)


def _touches_arabic_number(text: str, start: int, end: int) -> bool:
    before, after = text[max(0, start - 2) : start], text[end : end + 2]
    return (
        before[-1:] in _ASCII_DIGITS
        or (before[-1:] == "." and before[:1] in _ASCII_DIGITS)
        or after[:1] in _ASCII_DIGITS
        or (after[:1] == "." and after[1:] in _ASCII_DIGITS)
    )


def _convert_chinese(span: str) -> str:
    if not any(ch in _MULTIPLIERS or ch == "点" for ch in span):  # digit by digit, as in card tails
        return span if len(span) == 1 or span in _APPROXIMATE else span.translate(_DIGIT_VALUES)
    if _APPROXIMATE_RE.search(span):
        return span
    value = _to_decimal(span)
    return span if value is None else _format_decimal(value)


@lru_cache(maxsize=4096)
def _to_decimal(span: str) -> Decimal | None:
    if not span:
        return None
    if _ARABIC_RE.fullmatch(span):
        return Decimal(span)
    if span[-1] in "kw" and _ARABIC_RE.fullmatch(span[:-1]):
        return Decimal(span[:-1]) * (1000 if span[-1] == "k" else 10_000)
    if all(ch in _DIGITS for ch in span):
        return Decimal(span.translate(_DIGIT_VALUES))
    if decimal := _DECIMAL_RE.fullmatch(span):
        whole = _to_decimal(decimal["int"])
        if whole is None or whole != whole.to_integral_value():
            return None
        fraction = decimal["frac"].translate(_DIGIT_VALUES)
        return Decimal(f"{whole}.{fraction}") * _MULTIPLIERS.get(decimal["mult"], 1)
    try:
        return Decimal(str(cn2an.cn2an(span, "smart")))
    except Exception:  # cn2an raises ValueError and friends on anything it cannot read
        return None


def _format_decimal(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
