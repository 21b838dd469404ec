"""The masking module (cards, ID numbers, mobiles, e-mail addresses) by example and by property, and the
message cleaner's promises by property (hypothesis)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.dialogue.service import MAX_MESSAGE_CHARS, MessageRejected, clean_text
from bot.security.masking import MaskingFilter, id_number_ok, luhn_ok, mask_text, mask_value

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def luhn_complete(body: str) -> str:
    """`body` with the check digit that makes it pass the Luhn check (computed independently of the module)."""
    total = 0
    for i, char in enumerate(reversed(body)):
        d = int(char)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def id_complete(body: str) -> str:
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


CARD_16 = luhn_complete("622202123456789")
CARD_19 = luhn_complete("622848001234567890")
ID_X = "11010519491231002X"
ID_DIGITS = id_complete("44030820000229123")
WRONG_ID = next(v for c in "0123456789X" if (v := "44030820000229123" + c) != ID_DIGITS and not luhn_ok(v))
PHONE = "13812345678"
WRONG_CARD = CARD_16[:-1] + str((int(CARD_16[-1]) + 1) % 10)
AMOUNT = next(a for a in ("500", "300", "200") if not luhn_ok(CARD_16 + a))  # not a 19-digit card together


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "0" <= c <= "9" else c for c in text)


def grouped(number: str, separator: str = " ") -> str:
    return separator.join(number[i:i + 4] for i in range(0, len(number), 4))


# --- examples -----------------------------------------------------------------------------------------------


def test_the_helpers_agree_with_the_independent_checks() -> None:
    assert luhn_ok(CARD_16) and luhn_ok(CARD_19) and not luhn_ok(WRONG_CARD)
    assert id_number_ok(ID_X) and id_number_ok(ID_DIGITS) and not id_number_ok(WRONG_ID)


@pytest.mark.parametrize(("text", "masked"), [
    (f"卡号{CARD_16}", f"卡号{'*' * 12}{CARD_16[-4:]}"),
    (f"卡号 {grouped(CARD_16)} 谢谢", f"卡号 {'*' * 12}{CARD_16[-4:]} 谢谢"),
    (f"卡号{grouped(CARD_16, '-')}。", f"卡号{'*' * 12}{CARD_16[-4:]}。"),
    (f"my card {CARD_19}", f"my card {'*' * 15}{CARD_19[-4:]}"),
    (f"卡号{grouped(CARD_19)}", f"卡号{'*' * 15}{CARD_19[-4:]}"),
    (f"全角{fullwidth(CARD_16)}", f"全角{'*' * 12}{CARD_16[-4:]}"),
    (f"{grouped(CARD_16)} {AMOUNT}元", f"{'*' * 12}{CARD_16[-4:]} {AMOUNT}元"),  # the amount after it stays
    (f"身份证{ID_X}", "身份证**************002X"),
    ("身份证110105 19491231 002x", "身份证**************002X"),
    (f"身份证{fullwidth(ID_X[:-1])}Ｘ", "身份证**************002X"),
    (f"身份证号{ID_DIGITS}。", f"身份证号**************{ID_DIGITS[-4:]}。"),
    ("手机13812345678", "手机138****5678"),
    ("电话+86 138 1234 5678，", "电话138****5678，"),
    ("+8613912345678", "139****5678"),
    ("86-138-1234-5678", "138****5678"),
    ("手机一三八一二三四五六七八", "手机138****5678"),
    ("邮箱zhang.san@example.com.cn", "邮箱z***@example.com.cn"),
    ("13812345678@qq.com", "1***@qq.com"),
    ("Wang＠bank.example", "W***@bank.example"),
])
def test_personal_numbers_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert mask_text(masked) == masked


@pytest.mark.parametrize("text", [
    "尾号6688的卡余额多少",
    f"卡号{WRONG_CARD}",  # fails the Luhn check: not a card
    f"身份证{WRONG_ID}",  # wrong check character, and no card either
    "挂失编号GS20240501000001",  # a reference code: digits glued to letters
    "客服热线400-820-8888，或95588",
    "金额1955880.00元，2024-05-01 12:30",
    "12345678901",  # no mobile prefix
    "我的卡被吞了怎么办",
    "",
])
def test_other_text_is_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_mask_value_masks_every_string_and_big_numbers_but_keeps_the_shape() -> None:
    value = {"text": f"卡号{CARD_16}", "nested": [{"phone": "13812345678"}, 3, None, True, 1.5],
             "card": int(CARD_16), "count": 12, f"key {CARD_16}": "x", "pair": ("a", 2)}
    masked = mask_value(value)
    assert masked == {"text": f"卡号{'*' * 12}{CARD_16[-4:]}", "nested": [{"phone": "138****5678"}, 3, None, True, 1.5],
                      "card": f"{'*' * 12}{CARD_16[-4:]}", "count": 12, f"key {'*' * 12}{CARD_16[-4:]}": "x",
                      "pair": ["a", 2]}


def test_log_records_are_masked_with_their_exception_text() -> None:
    try:
        raise ValueError(f"bad card {CARD_16}")
    except ValueError:
        record = logging.LogRecord("bot", logging.ERROR, __file__, 1, "customer %s wrote %s", ("C0001", ID_X),
                                   exc_info=__import__("sys").exc_info())
    MaskingFilter().filter(record)
    assert record.getMessage() == "customer C0001 wrote **************002X"
    assert CARD_16 not in record.exc_text and f"bad card {'*' * 12}{CARD_16[-4:]}" in record.exc_text


def test_log_arguments_keep_their_shape_for_formatters_that_unpack_them() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/x?phone={PHONE}", "1.1", 200), None)
    MaskingFilter().filter(record)
    assert len(record.args) == 5 and record.args[2] == "/x?phone=138****5678"
    big = logging.LogRecord("bot", logging.INFO, __file__, 1, "card %d", (int(CARD_16),), None)
    MaskingFilter().filter(big)
    assert big.getMessage() == f"card {'*' * 12}{CARD_16[-4:]}"


def test_a_record_that_cannot_be_formatted_does_not_break_logging() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    record = logging.LogRecord("bot", logging.INFO, __file__, 1, "value %s", (Unprintable(),), None)
    assert MaskingFilter().filter(record)


# --- properties -----------------------------------------------------------------------------------------------

NO_DIGITS = st.characters(blacklist_categories=("Nd", "Cs"))
CHINESE = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
PLAIN = st.text(alphabet=st.one_of(NO_DIGITS, CHINESE), max_size=20)  # random Chinese and ASCII, no digits
BEFORE = st.sampled_from([" ", "卡号", "：", ":", "，", "\n", "(", "是", "# "])
AFTER = st.sampled_from(["", " ", "。", "的卡", "，", ")", "card", "\n"])


def _with_check(length: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1).map(luhn_complete)


CARDS = st.integers(13, 19).flatmap(_with_check)
ID_NUMBERS = st.builds(lambda region, born, seq: id_complete(f"{region}{born:%Y%m%d}{seq:03d}"),
                       st.sampled_from(["110105", "310104", "440308", "510107"]),
                       st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31)), st.integers(0, 999))
MOBILES = st.builds(lambda second, rest: f"1{second}{rest:09d}", st.sampled_from("3456789"), st.integers(0, 10**9 - 1))
LAYOUTS = st.sampled_from(["plain", "spaces", "dashes", "fullwidth"])


def laid_out(number: str, layout: str) -> str:
    return {"plain": number, "spaces": grouped(number), "dashes": grouped(number, "-"),
            "fullwidth": fullwidth(number)}[layout]


def embedded(numbers: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
    """(the number, random text with the number written in some layout inside it)."""
    return st.tuples(numbers, LAYOUTS, PLAIN, BEFORE, AFTER, PLAIN).map(
        lambda t: (t[0], f"{t[2]}{t[3]}{laid_out(t[0], t[1])}{t[4]}{t[5]}"))


def assert_gone(number: str, masked: str) -> None:
    folded = unicodedata.normalize("NFKC", masked)
    assert number not in folded and number not in re.sub(r"[\s\-]", "", folded)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(embedded(CARDS))
def test_valid_card_numbers_never_survive(case: tuple[str, str]) -> None:
    number, text = case
    masked = mask_text(text)
    assert_gone(number, masked)
    assert number[-4:] in masked  # the last four stay, for the customer and the forms


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(embedded(ID_NUMBERS))
def test_valid_id_numbers_never_survive_and_keep_their_last_four(case: tuple[str, str]) -> None:
    number, text = case
    masked = mask_text(text)
    assert_gone(number, masked)
    assert "*" * 14 + number[-4:] in masked


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(embedded(MOBILES))
def test_mobile_numbers_never_survive(case: tuple[str, str]) -> None:
    number, text = case
    masked = mask_text(text)
    assert_gone(number, masked)
    assert f"{number[:3]}****{number[-4:]}" in masked


ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="0123456789 -+*Xx@a.一三八", max_size=60),  # digits, separators and masks colliding
    st.tuples(embedded(st.one_of(CARDS, ID_NUMBERS, MOBILES)), embedded(st.one_of(CARDS, MOBILES))).map(
        lambda pair: pair[0][1] + pair[1][1]),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEXT)
def test_masking_is_idempotent(text: str) -> None:
    once = mask_text(text)
    assert mask_text(once) == once


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(blacklist_categories=("Nd",),
                                      blacklist_characters="@＠〇零一二三四五六七八九幺")))
def test_text_without_digits_or_at_signs_is_unchanged(text: str) -> None:
    assert mask_text(text) == text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats(allow_nan=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15)


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return "dict", len(value), tuple(sorted(repr(shape(v)) for v in value.values()))
    if isinstance(value, list):
        return "list", tuple(shape(v) for v in value)
    return type(value).__name__


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_mask_value_preserves_structure(value: Any) -> None:
    masked = mask_value(value)
    assert shape(masked) == shape(value)
    assert mask_value(masked) == masked


# --- the message cleaner --------------------------------------------------------------------------------------

MESSAGES = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(["\x00", "\x1b", "\x7f", "\u0085", " ", "\n", "\t", "\u3000", "a", "卡"]),
            max_size=50),
    st.text(min_size=MAX_MESSAGE_CHARS - 5, max_size=MAX_MESSAGE_CHARS + 5),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(MESSAGES)
def test_clean_text_keeps_its_promises(text: str) -> None:
    try:
        cleaned = clean_text(text)
    except MessageRejected as e:
        assert str(e)  # a reason for the customer
        return
    assert 1 <= len(cleaned) <= min(len(text), MAX_MESSAGE_CHARS)
    assert cleaned == cleaned.strip()
    assert not any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in cleaned)


@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text()), st.dictionaries(st.text(), st.text())))
def test_clean_text_refuses_what_is_not_text(value: Any) -> None:
    with pytest.raises(MessageRejected):
        clean_text(value)
