from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.nlu.extractors import DIMENSIONS, extract

TODAY = date(2026, 11, 23)  # a Monday
TRICKY = (
    "0123456789 ,.-+/:xX幺零一二两三四五六七八九十百千万亿点"
    "尾号后四位转账取存元块美元$¥￥年月日号周下上个近今明天１２３"
)


def found(text: str, dimension: str) -> list[tuple[Any, str]]:
    """(value, surface) of each entity, the surface sliced from the ORIGINAL text by the offsets."""
    entities = extract(text, [dimension], today=TODAY)
    for entity in entities:
        assert entity["entity"] == dimension
        assert entity["extractor"] == "builtin"
        assert entity["text"] == text[entity["start"] : entity["end"]]
    return [(entity["value"], text[entity["start"] : entity["end"]]) for entity in entities]


def with_check_digit(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


# --- amount -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "currency", "surface"),
    [
        ("我要转五千元给我妈", 5000, "CNY", "五千元"),
        ("取5000块", 5000, "CNY", "5000块"),
        ("额度提到5k", 5000, "CNY", "5k"),
        ("能借5K吗", 5000, "CNY", "5K"),
        ("贷款5w", 50000, "CNY", "5w"),
        ("存了5万", 50000, "CNY", "5万"),
        ("借两万三", 23000, "CNY", "两万三"),
        ("1.5万够不够", 15000, "CNY", "1.5万"),
        ("¥5,000", 5000, "CNY", "¥5,000"),
        ("付了￥5000.00", 5000, "CNY", "￥5000.00"),
        ("５，０００元", 5000, "CNY", "５，０００元"),
        ("RMB 3000", 3000, "CNY", "RMB 3000"),
        ("换3000人民币", 3000, "CNY", "3000人民币"),
        ("换100美元", 100, "USD", "100美元"),
        ("汇$200", 200, "USD", "$200"),
        ("200刀", 200, "USD", "200刀"),
        ("一百五十块", 150, "CNY", "一百五十块"),
        ("转三千五", 3500, "CNY", "三千五"),
        ("转账3000", 3000, "CNY", "3000"),
        ("额度是8000", 8000, "CNY", "8000"),
        ("转给妈妈500", 500, "CNY", "500"),
        ("年费12.5元", 12.5, "CNY", "12.5元"),
        ("500欧元", 500, "EUR", "500欧元"),
        ("HK$100", 100, "HKD", "HK$100"),
        ("一万日元", 10000, "JPY", "一万日元"),
        ("50英镑", 50, "GBP", "50英镑"),
        ("五块钱", 5, "CNY", "五块钱"),
        ("轉賬兩萬塊", 20000, "CNY", "兩萬塊"),
    ],
)
def test_amount(text: str, value: float, currency: str, surface: str) -> None:
    entities = extract(text, ["amount"], today=TODAY)
    assert [(e["value"], e["currency"], text[e["start"] : e["end"]]) for e in entities] == [
        (value, currency, surface)
    ]
    assert type(entities[0]["value"]) is type(value)


@pytest.mark.parametrize(
    "text",
    [
        "尾号1234",  # a plain number is not an amount
        "我的手机13800138000",
        "我有3张卡",
        "利率3.5%",
        "转2次",
        "砍一刀",
        "我们一块去吧",
        "我想查一下余额",
        "万一卡丢了",
        "元旦营业吗",
        "2026年",
    ],
)
def test_not_an_amount(text: str) -> None:
    assert found(text, "amount") == []


# --- card tail ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "surface"),
    [
        ("尾号1234的卡", "1234", "1234"),
        ("尾号是6688", "6688", "6688"),
        ("尾号：8888", "8888", "8888"),
        ("卡号后四位是0012", "0012", "0012"),
        ("后4位5678", "5678", "5678"),
        ("末四位 0001", "0001", "0001"),
        ("尾号六六八八", "6688", "六六八八"),
        ("尾號幺二三四", "1234", "幺二三四"),
        ("尾号１２３４", "1234", "１２３４"),
        ("card ending in 4321", "4321", "4321"),
        ("Tail 9876", "9876", "9876"),
    ],
)
def test_card_tail(text: str, value: str, surface: str) -> None:
    assert found(text, "card_tail") == [(value, surface)]


@pytest.mark.parametrize("text", ["尾号123", "尾号12345", "卡号1234", "尾号五千", "我的卡6688"])
def test_not_a_card_tail(text: str) -> None:
    assert found(text, "card_tail") == []


# --- phone --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "surface"),
    [
        ("我的手机号13800138000", "13800138000", "13800138000"),
        ("打138 0013 8000找我", "13800138000", "138 0013 8000"),
        ("139-1234-5678", "13912345678", "139-1234-5678"),
        ("+86 13800138000", "13800138000", "+86 13800138000"),
        ("008615912345678", "15912345678", "008615912345678"),
        ("手机１３８００１３８０００", "13800138000", "１３８００１３８０００"),
        ("座机010-12345678", "010-12345678", "010-12345678"),
        ("0755 1234567", "07551234567", "0755 1234567"),
        ("客服400-820-8888", "400-820-8888", "400-820-8888"),
        ("拨打95588", "95588", "95588"),
    ],
)
def test_phone(text: str, value: str, surface: str) -> None:
    assert found(text, "phone") == [(value, surface)]


@pytest.mark.parametrize(
    "text",
    [
        "138001380001",  # 12 digits
        "1380013800",  # 10 digits
        "12345678901",  # no mobile prefix 12
        "卡号6222021234567890123",
        "1234",
        "金额1955880",
        "手机١٣٨٠٠١٣٨٠٠٠",  # Arabic-Indic digits
    ],
)
def test_not_a_phone(text: str) -> None:
    assert found(text, "phone") == []


# --- ID number ----------------------------------------------------------------------------------------------


FULLWIDTH_ID = "１１０１０１１９９００３０７４５１４"
VALID_IDS = [
    "110101199003074514",
    "11010519491231002X",
    with_check_digit("44030820000229123"),  # leap day
    with_check_digit("31011519851111001"),
    with_check_digit("51010720260101002"),  # born this year
    with_check_digit("65010219120101003"),
]


@pytest.mark.parametrize(
    ("text", "value", "surface"),
    [
        ("身份证号110101199003074514", "110101199003074514", "110101199003074514"),
        ("身份证11010519491231002x", "11010519491231002X", "11010519491231002x"),
        (f"证件号：{FULLWIDTH_ID}。", "110101199003074514", FULLWIDTH_ID),
        *[(f"我的身份证是{number}谢谢", number, number) for number in VALID_IDS[2:]],
        ("id 110101199003074514", "110101199003074514", "110101199003074514"),
    ],
)
def test_id_number(text: str, value: str, surface: str) -> None:
    assert found(text, "id_number") == [(value, surface)]


@pytest.mark.parametrize(
    "text",
    [
        "110101199003074515",  # wrong check digit
        "11010119900307451X",  # wrong check digit
        with_check_digit("11010119901301451"),  # month 13
        with_check_digit("44030820010229123"),  # 2001 is no leap year
        with_check_digit("11010120300101451"),  # born in the future
        "11010119900307451",  # 17 digits
        "1101011990030745141",  # 19 digits
    ],
)
def test_not_an_id_number(text: str) -> None:
    assert found(text, "id_number") == []


# --- date ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "surface"),
    [
        ("今天", "2026-11-23", "今天"),
        ("明天能到账吗", "2026-11-24", "明天"),
        ("后天", "2026-11-25", "后天"),
        ("大后天", "2026-11-26", "大后天"),
        ("昨天", "2026-11-22", "昨天"),
        ("前天", "2026-11-21", "前天"),
        ("下周一", "2026-11-30", "下周一"),
        ("下星期三", "2026-12-02", "下星期三"),
        ("下礼拜五", "2026-12-04", "下礼拜五"),
        ("这周五", "2026-11-27", "这周五"),
        ("本周五", "2026-11-27", "本周五"),
        ("周五还款", "2026-11-27", "周五"),
        ("周一", "2026-11-23", "周一"),  # today is a Monday
        ("星期天", "2026-11-29", "星期天"),
        ("上周一", "2026-11-16", "上周一"),
        ("3月5日", "2026-03-05", "3月5日"),
        ("3月5号", "2026-03-05", "3月5号"),
        ("三月五号", "2026-03-05", "三月五号"),
        ("十二月三十一日", "2026-12-31", "十二月三十一日"),
        ("2026年3月5日", "2026-03-05", "2026年3月5日"),
        ("二〇二五年十月一日", "2025-10-01", "二〇二五年十月一日"),
        ("2026-03-05", "2026-03-05", "2026-03-05"),
        ("2026/3/5", "2026-03-05", "2026/3/5"),
        ("２０２６／３／５", "2026-03-05", "２０２６／３／５"),
        ("月底", "2026-11-30", "月底"),
        ("下个月底", "2026-12-31", "下个月底"),
        ("下个月", {"from": "2026-12-01", "to": "2026-12-31"}, "下个月"),
        ("上个月的账单", {"from": "2026-10-01", "to": "2026-10-31"}, "上个月"),
        ("本月", {"from": "2026-11-01", "to": "2026-11-30"}, "本月"),
        ("这个月", {"from": "2026-11-01", "to": "2026-11-30"}, "这个月"),
        ("最近一周", {"from": "2026-11-17", "to": "2026-11-23"}, "最近一周"),
        ("近7天", {"from": "2026-11-17", "to": "2026-11-23"}, "近7天"),
        ("近三个月的流水", {"from": "2026-08-24", "to": "2026-11-23"}, "近三个月"),
        ("下周", {"from": "2026-11-30", "to": "2026-12-06"}, "下周"),
        ("下週二", "2026-12-01", "下週二"),
    ],
)
def test_date(text: str, value: str | dict[str, str], surface: str) -> None:
    assert found(text, "date") == [(value, surface)]


@pytest.mark.parametrize(
    "text", ["2月30日", "13月1日", "周年庆", "一周", "每个月", "3月", "星期", "2026.13.01"]
)
def test_not_a_date(text: str) -> None:
    assert found(text, "date") == []


def test_date_defaults_to_today() -> None:
    assert extract("今天", ["date"])[0]["value"] == date.today().isoformat()


# --- currency -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "surface"),
    [
        ("美元汇率多少", "USD", "美元"),
        ("买美金", "USD", "美金"),
        ("USD怎么换", "USD", "USD"),
        ("欧元", "EUR", "欧元"),
        ("日元现钞", "JPY", "日元"),
        ("港幣", "HKD", "港幣"),
        ("港元", "HKD", "港元"),
        ("英镑", "GBP", "英镑"),
        ("澳元", "AUD", "澳元"),
        ("加元", "CAD", "加元"),
        ("新加坡元", "SGD", "新加坡元"),
        ("瑞士法郎", "CHF", "瑞士法郎"),
        ("韩元", "KRW", "韩元"),
        ("换成人民币", "CNY", "人民币"),
        ("rmb", "CNY", "rmb"),
    ],
)
def test_currency(text: str, value: str, surface: str) -> None:
    assert found(text, "currency") == [(value, surface)]


@pytest.mark.parametrize("text", ["usdt", "5元", "块钱", "元旦", "刀"])
def test_not_a_currency(text: str) -> None:
    assert found(text, "currency") == []


# --- all dimensions together --------------------------------------------------------------------------------


def spans(text: str) -> list[tuple[str, Any, str]]:
    return [(e["entity"], e["value"], e["text"]) for e in extract(text, today=TODAY)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("身份证110101199003074514", [("id_number", "110101199003074514", "110101199003074514")]),
        ("换100美元", [("amount", 100, "100美元")]),
        ("美元兑人民币", [("currency", "USD", "美元"), ("currency", "CNY", "人民币")]),
        ("转13800138000", [("phone", "13800138000", "13800138000")]),
        (
            "明天从尾号1234的卡转５千元到13800138000",
            [
                ("date", "2026-11-24", "明天"),
                ("card_tail", "1234", "1234"),
                ("amount", 5000, "５千元"),
                ("phone", "13800138000", "13800138000"),
            ],
        ),
        (
            "ＡＴＭ吞了我尾號６６８８的卡，下週一去取１萬元",
            [
                ("card_tail", "6688", "６６８８"),
                ("date", "2026-11-30", "下週一"),
                ("amount", 10000, "１萬元"),
            ],
        ),
    ],
)
def test_all_dimensions(text: str, expected: list[tuple[str, Any, str]]) -> None:
    assert spans(text) == expected


def test_offsets_index_the_original_text() -> None:
    text = "😀 我要轉賬５，０００元給尾號６６８８"
    for entity in extract(text, today=TODAY):
        assert text[entity["start"] : entity["end"]] == entity["text"]
    assert [e["text"] for e in extract(text, today=TODAY)] == ["５，０００元", "６６８８"]


def test_a_single_dimension_name_is_accepted() -> None:
    assert [e["value"] for e in extract("尾号1234", "card_tail")] == ["1234"]


def test_unknown_dimension_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: " + ", ".join(DIMENSIONS)):
        extract("转账", ["amount", "money"])


def test_empty_text() -> None:
    assert extract("") == []


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.text(alphabet=st.sampled_from(list(TRICKY)), max_size=40)))
def test_extract_never_raises_and_offsets_hold(text: str) -> None:
    entities = extract(text, today=TODAY)
    assert entities == sorted(entities, key=lambda e: e["start"])
    for entity, following in zip(entities, entities[1:], strict=False):
        assert entity["end"] <= following["start"]
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]


@pytest.mark.parametrize("text", ["卡号6222021234567886688丢了", "卡号 6222 0212 3456 7886 688",
                                  "6222-0212-3456-7886-688"])
def test_a_whole_card_number_gives_its_last_four_not_the_groups_inside(text: str) -> None:
    tails = [e for e in extract(text) if e["entity"] == "card_tail"]
    assert [t["value"] for t in tails] == ["6688"]


def test_digits_that_fail_the_luhn_check_are_no_card_number() -> None:
    assert [e for e in extract("单号6222021234567886689") if e["entity"] == "card_tail"] == []


@pytest.mark.parametrize("text", ["身份证号110105199001011234", "订单号2024010112345678", "流水号88881234999"])
def test_no_card_tail_is_read_from_inside_a_longer_number(bundled_assistant, text: str) -> None:
    entities = bundled_assistant.parse(text)["entities"]
    assert not [e for e in entities if e["entity"] == "card_tail"], entities
