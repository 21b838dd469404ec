"""Built-in entity extractors: amounts, card tails, phone and ID numbers, dates, currencies and plain numbers
(Duckling's `number`, for Rasa projects that ask for it).

They read `fold(text)`, which has the length of the text, so offsets are valid on what the customer typed.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Callable, Iterable, Iterator
from typing import NotRequired, TypedDict

from bot.nlu.normalise import fold, parse_number
from bot.security.masking import luhn_ok

EXTRACTOR = "builtin"
DIMENSIONS = ("amount", "card_tail", "phone", "id_number", "date", "currency")


class Entity(TypedDict):
    """Rasa's entity format."""

    entity: str
    value: str | float | int | dict[str, str]
    start: int
    end: int
    extractor: str
    text: NotRequired[str]
    currency: NotRequired[str]
    unit: NotRequired[str]


def extract(
    text: str, dimensions: Iterable[str] = DIMENSIONS, today: datetime.date | None = None
) -> list[Entity]:
    """Entities of the requested dimensions, sorted by start; of overlapping spans the longer one wins."""
    wanted = (dimensions,) if isinstance(dimensions, str) else tuple(dict.fromkeys(dimensions))
    unknown = [name for name in wanted if name not in _EXTRACTORS]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"unknown dimension(s) {names}; valid: {', '.join(_EXTRACTORS)}")
    folded, today = fold(text), today or datetime.date.today()
    entities = _resolve([entity for name in wanted for entity in _EXTRACTORS[name](folded, today)])
    for entity in entities:
        entity["text"] = text[entity["start"] : entity["end"]]
    return entities


def _entity(dimension: str, value: str | float | dict[str, str], start: int, end: int) -> Entity:
    return {"entity": dimension, "value": value, "start": start, "end": end, "extractor": EXTRACTOR}


_TIE_BREAK = ("id_number", "phone", "card_tail", "date", "amount", "currency", "number")  # for spans of equal length
_PRIORITY = {name: rank for rank, name in enumerate(_TIE_BREAK)}


def _resolve(entities: list[Entity]) -> list[Entity]:
    kept: list[Entity] = []
    for entity in sorted(entities, key=lambda e: (e["start"] - e["end"], _PRIORITY[e["entity"]], e["start"])):
        if all(entity["end"] <= k["start"] or entity["start"] >= k["end"] for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e["start"])


# --- shared pieces ------------------------------------------------------------------------------------------

_DIGITS = "零〇一二两三四五六七八九"
_NUMERALS = _DIGITS + "十百千万亿"
_TAIL_DIGITS = "0-9零〇一二三四五六七八九幺"
_TAIL_VALUES = str.maketrans("零〇一二三四五六七八九幺", "001234567891")


def _alternation(words: Iterable[str]) -> str:
    """Longest first; ASCII words get letter boundaries so "usd" does not match inside "usdt"."""
    parts = []
    for word in sorted(words, key=len, reverse=True):
        part = re.escape(word)
        if word[0].isascii() and word[0].isalpha():
            part = "(?<![a-z])" + part
        if word[-1].isascii() and word[-1].isalpha():
            part += "(?![a-z])"
        parts.append(part)
    return "|".join(parts)


# --- amount and currency ------------------------------------------------------------------------------------

_CURRENCY_NAMES = {
    "人民币": "CNY", "rmb": "CNY", "cny": "CNY",
    "美元": "USD", "美金": "USD", "usd": "USD",
    "欧元": "EUR", "eur": "EUR",
    "港币": "HKD", "港元": "HKD", "hkd": "HKD",
    "日元": "JPY", "日币": "JPY", "jpy": "JPY",
    "英镑": "GBP", "gbp": "GBP",
    "澳元": "AUD", "澳币": "AUD", "aud": "AUD",
    "加元": "CAD", "加币": "CAD", "cad": "CAD",
    "新加坡元": "SGD", "新币": "SGD", "sgd": "SGD",
    "瑞士法郎": "CHF", "chf": "CHF",
    "韩元": "KRW", "韩币": "KRW", "krw": "KRW",
}  # fmt: skip
# Markers that only count next to a number.
_CURRENCY_MARKERS = _CURRENCY_NAMES | {
    "元": "CNY", "块": "CNY", "块钱": "CNY", "¥": "CNY", "刀": "USD", "$": "USD", "us$": "USD", "€": "EUR",
    "hk$": "HKD", "£": "GBP",
}  # fmt: skip
_SUFFIX = f"(?:{_alternation(_CURRENCY_MARKERS)})(?![旦儿])"  # 元旦 and 一块儿 are not money
_PREFIX = _alternation(set(_CURRENCY_MARKERS) - {"元", "块", "块钱", "刀"})
_AMOUNT_RE = re.compile(
    rf"(?:(?P<pre>{_PREFIX})\s?)?(?<![\d.,])"
    rf"(?P<num>(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?(?:[kw](?![a-z])|[千万亿][\d{_NUMERALS}]*)?"
    rf"|[{_NUMERALS}]+(?:点[{_DIGITS}]+)?[万亿]?)"
    rf"(?!\.?\d)(?:\s?(?P<suf>{_SUFFIX}))?",
    re.ASCII,
)
_MAGNITUDE_RE = re.compile("[kw千万亿]")
# A bare number right after one of these verbs is money: 转账3000, 取现5000, 额度是5万.
_TRIGGER_RE = re.compile(
    r"(?:转账?|汇款?|取(?:现|款|钱)?|存(?:入|款|钱)?|还(?:款|钱)?|付款?|支付|充值|额度|限额|金额)"
    r"(?:给[^\d\s号位尾卡]{1,4})?(?:了|为|是|:|\s)*$",
    re.ASCII,
)
_NOT_MONEY_AFTER = frozenset("次个天号月年位张笔日点时分秒周岁期件%人步米条台户")
_CURRENCY_RE = re.compile(_alternation(_CURRENCY_NAMES))


def _amounts(text: str, today: datetime.date) -> Iterator[Entity]:
    for match in _AMOUNT_RE.finditer(text):
        num, marker = match["num"], match["pre"] or match["suf"]
        value = parse_number(num)
        if value is None or not _is_money(text, match, marker):
            continue
        entity = _entity("amount", value, match.start(), match.end())
        entity["currency"] = _CURRENCY_MARKERS[marker] if marker else "CNY"
        yield entity


def _is_money(text: str, match: re.Match[str], marker: str | None) -> bool:
    num, start = match["num"], match.start("num")
    if marker is not None:  # but 一块 (a piece) and 砍一刀 (a cut) are not
        return match["pre"] is not None or not (len(num) == 1 and num in _DIGITS and marker in ("块", "刀"))
    if match.end() < len(text) and text[match.end()] in _NOT_MONEY_AFTER:
        return False
    return bool(_MAGNITUDE_RE.search(num)) or bool(_TRIGGER_RE.search(text, max(0, start - 10), start))


def _currencies(text: str, today: datetime.date) -> Iterator[Entity]:
    for match in _CURRENCY_RE.finditer(text):
        yield _entity("currency", _CURRENCY_NAMES[match.group()], match.start(), match.end())


# --- card tail, phone, ID number ----------------------------------------------------------------------------

_CARD_TAIL_RE = re.compile(
    r"(?:尾号|尾数|(?:后|末|最后)(?:四|4)位(?:数字|数|号码)?"
    r"|ending(?:\s+(?:in|with))?|tail(?:\s+number)?|last\s+(?:4|four)(?:\s+digits)?)"
    rf"(?:是|为|:|\s)*(?P<tail>[{_TAIL_DIGITS}]{{4}})(?![{_TAIL_DIGITS}十百千万])",
    re.ASCII,
)
_CARD_NUMBER_RE = re.compile(r"(?<!\d)(?:\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{13,19})(?!\d)", re.ASCII)
_MOBILE_RE = re.compile(
    r"(?<![\d+])(?:(?:\+|00)?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)", re.ASCII
)
_LANDLINE_RE = re.compile(
    r"(?<![\d+-])(?:0\d{2,3}[\s-]?\d{7,8}|[48]00[\s-]?\d{3}[\s-]?\d{4})(?![\d-])"
    r"|(?<![\d.,])9[56]\d{3}(?![\d.,])",  # 95588-style bank hotlines
    re.ASCII,
)
_ID_RE = re.compile(r"(?<!\d)[1-9]\d{16}[\dx](?![\dx])", re.ASCII)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_SPACES_RE = re.compile(r"\s+", re.ASCII)


def _card_tails(text: str, today: datetime.date) -> Iterator[Entity]:
    for match in _CARD_TAIL_RE.finditer(text):
        tail = match["tail"].translate(_TAIL_VALUES)
        yield _entity("card_tail", tail, match.start("tail"), match.end("tail"))
    for match in _CARD_NUMBER_RE.finditer(text):  # a whole card number: its tail, over any 4 digits inside it
        digits = re.sub(r"\D", "", match.group())
        if luhn_ok(digits):
            yield _entity("card_tail", digits[-4:], match.start(), match.end())


def _phones(text: str, today: datetime.date) -> Iterator[Entity]:
    for match in _MOBILE_RE.finditer(text):
        yield _entity("phone", "".join(match.groups()), match.start(), match.end())
    for match in _LANDLINE_RE.finditer(text):
        yield _entity("phone", _SPACES_RE.sub("", match.group()), match.start(), match.end())


def _id_numbers(text: str, today: datetime.date) -> Iterator[Entity]:
    for match in _ID_RE.finditer(text):
        number = match.group().upper()
        if _valid_id(number, today):
            yield _entity("id_number", number, match.start(), match.end())


def _valid_id(number: str, today: datetime.date) -> bool:
    """ISO 7064 MOD 11-2 check digit and a real birth date between 1900 and today."""
    total = sum(int(digit) * weight for digit, weight in zip(number, _ID_WEIGHTS, strict=False))
    if "10X98765432"[total % 11] != number[17]:
        return False
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= born <= today


# --- dates --------------------------------------------------------------------------------------------------

_MONTH = r"\d{1,2}|十[一二]?|[一二三四五六七八九]"
_DAY = r"\d{1,2}|三十一?|[一二]?十[一二三四五六七八九]?|[一二三四五六七八九]"
_RELATIVE_DAYS = {"大前天": -3, "前天": -2, "昨天": -1, "昨日": -1, "今天": 0, "今日": 0,
                  "明天": 1, "明日": 1, "后天": 2, "大后天": 3}  # fmt: skip
_OFFSETS = {"上上": -2, "上": -1, "这": 0, "本": 0, "下": 1, "下下": 2}
_WEEKDAYS = dict(zip("一二三四五六日天1234567", (1, 2, 3, 4, 5, 6, 7, 7, 1, 2, 3, 4, 5, 6, 7), strict=True))
_RECENT_UNITS = {
    "天": "day", "日": "day", "周": "week", "星期": "week", "礼拜": "week", "月": "month", "年": "year",
}  # fmt: skip

_FULL_DATE_RE = re.compile(
    rf"(?<![\d{_NUMERALS}])(?P<y>\d{{4}}|[{_DIGITS}]{{4}})\s*年\s*(?P<m>{_MONTH})\s*月\s*(?P<d>{_DAY})(?:\s*[日号])?"
    r"|(?<![\d.])(?P<iy>\d{4})(?P<sep>[-/.])(?P<im>\d{1,2})(?P=sep)(?P<id>\d{1,2})(?![\d.])",
    re.ASCII,
)
_MONTH_DAY_RE = re.compile(rf"(?<![\d{_NUMERALS}])(?P<m>{_MONTH})\s*月\s*(?P<d>{_DAY})\s*[日号]", re.ASCII)
_RELATIVE_DAY_RE = re.compile(_alternation(_RELATIVE_DAYS))
_PREFIX_WORDS = "上上|下下|上|下|这|本"
_WEEK_RE = re.compile(rf"(?:(?P<pre>{_PREFIX_WORDS})个?)?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天1-7]|末)?")
_MONTH_RE = re.compile(rf"(?:(?P<pre>{_PREFIX_WORDS})个?|(?<![\d{_NUMERALS}个]))月(?P<edge>底|初)?", re.ASCII)
_RECENT_RE = re.compile(
    rf"(?:最近|近|过去)\s*(?P<n>\d{{1,3}}|[{_NUMERALS}]{{1,3}}|半)\s*个?\s*(?P<unit>{'|'.join(_RECENT_UNITS)})",
    re.ASCII,
)

DateValue = str | dict[str, str]


def _full_date(match: re.Match[str], today: datetime.date) -> DateValue | None:
    if match["iy"] is not None:
        return _iso(int(match["iy"]), int(match["im"]), int(match["id"]))
    return _iso(parse_number(match["y"]), parse_number(match["m"]), parse_number(match["d"]))


def _month_day(match: re.Match[str], today: datetime.date) -> DateValue | None:
    return _iso(today.year, parse_number(match["m"]), parse_number(match["d"]))


def _relative_day(match: re.Match[str], today: datetime.date) -> DateValue | None:
    return (today + datetime.timedelta(days=_RELATIVE_DAYS[match.group()])).isoformat()


def _week(match: re.Match[str], today: datetime.date) -> DateValue | None:
    prefix, weekday = match["pre"], match["wd"]
    if weekday in (None, "末"):
        if prefix is None and weekday is None:
            return None
        monday = today + datetime.timedelta(days=7 * _OFFSETS[prefix or "这"] - today.weekday())
        first = monday + datetime.timedelta(days=5 if weekday else 0)  # 周末: Saturday and Sunday
        return _range(first, monday + datetime.timedelta(days=6))
    wanted = _WEEKDAYS[weekday]
    if prefix in (None, "这", "本"):  # the next such day, today included
        return (today + datetime.timedelta(days=(wanted - today.isoweekday()) % 7)).isoformat()
    return (today + datetime.timedelta(days=7 * _OFFSETS[prefix] + wanted - today.isoweekday())).isoformat()


def _month(match: re.Match[str], today: datetime.date) -> DateValue | None:
    prefix, edge = match["pre"], match["edge"]
    if prefix is None and edge is None:
        return None
    first = _add_months(today.replace(day=1), _OFFSETS[prefix] if prefix else 0)
    last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
    if edge is None:
        return _range(first, last)
    return (last if edge == "底" else first).isoformat()


def _recent(match: re.Match[str], today: datetime.date) -> DateValue | None:
    """最近一周 / 近7天 / 近三个月: the last n units, today included."""
    unit = _RECENT_UNITS[match["unit"]]
    if match["n"] == "半":
        count, unit = {"year": (6, "month"), "month": (15, "day")}.get(unit, (0, unit))
    else:
        count = parse_number(match["n"])
    if not isinstance(count, int) or count <= 0:
        return None
    if unit in ("day", "week"):
        start = today - datetime.timedelta(days=count * (7 if unit == "week" else 1))
    else:
        start = _add_months(today, -count * (12 if unit == "year" else 1))
    return _range(start + datetime.timedelta(days=1), today)


DateRule = Callable[[re.Match[str], datetime.date], DateValue | None]
_DATE_RULES: tuple[tuple[re.Pattern[str], DateRule], ...] = (
    (_FULL_DATE_RE, _full_date),
    (_MONTH_DAY_RE, _month_day),
    (_RELATIVE_DAY_RE, _relative_day),
    (_WEEK_RE, _week),
    (_MONTH_RE, _month),
    (_RECENT_RE, _recent),
)


def _dates(text: str, today: datetime.date) -> Iterator[Entity]:
    for pattern, resolve in _DATE_RULES:
        for match in pattern.finditer(text):
            try:
                value = resolve(match, today)
            except (ValueError, OverflowError):  # 2月30日, or arithmetic past year 9999
                continue
            if value is not None:
                yield _entity("date", value, match.start(), match.end())


def _iso(year: float | None, month: float | None, day: float | None) -> str | None:
    if not (isinstance(year, int) and isinstance(month, int) and isinstance(day, int)):
        return None
    return datetime.date(year, month, day).isoformat()


def _range(start: datetime.date, end: datetime.date) -> dict[str, str]:
    return {"from": start.isoformat(), "to": end.isoformat()}


def _add_months(day: datetime.date, months: int) -> datetime.date:
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    return day.replace(year=year, month=month + 1, day=min(day.day, calendar.monthrange(year, month + 1)[1]))


# --- plain numbers (Duckling's `number`): digits, Chinese numerals, English number words --------------------

_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen").split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_WORD_VALUES = {**{word: value for value, word in enumerate(_UNITS)}, **_TENS, "hundred": 100, "dozen": 12}
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?P<digits>\d+(?:\.\d+)?)(?![\w.])"
    rf"|\b(?P<tens>{_alternation(_TENS)})(?:[\s-](?P<unit>{_alternation(_UNITS[1:10])}))?\b"
    rf"|\b(?P<word>{_alternation([*_UNITS, 'hundred', 'dozen'])})\b"
    r"|(?P<chinese>[零一二两三四五六七八九十百千万]+)",
    re.IGNORECASE,
)


def _numbers(text: str, today: datetime.date) -> Iterator[Entity]:
    for match in _NUMBER_RE.finditer(text):
        if match["digits"]:
            value: float | None = float(match["digits"])
        elif match["tens"]:
            value = _TENS[match["tens"].lower()] + (_WORD_VALUES[match["unit"].lower()] if match["unit"] else 0)
        elif match["word"]:
            value = _WORD_VALUES[match["word"].lower()]
        else:
            value = parse_number(match["chinese"])
        if value is not None:
            yield _entity("number", int(value) if float(value).is_integer() else value, match.start(), match.end())


_EXTRACTORS: dict[str, Callable[[str, datetime.date], Iterator[Entity]]] = {
    "amount": _amounts,
    "card_tail": _card_tails,
    "phone": _phones,
    "id_number": _id_numbers,
    "date": _dates,
    "currency": _currencies,
    "number": _numbers,
}
