from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.nlu.normalise import NormaliserOptions, fold, normalise, parse_number

TRADITIONAL = "幫掛帳戶銀號萬兩億轉賬餘額還頭開網離櫃實圖們這裡請為麼"
# Characters that make numeral, whitespace and folding rules interact; hypothesis mixes them freely.
TRICKY = list(
    "零〇一二两三四五六七八九十百千万亿点之几数多 0123456789.,%kw" + TRADITIONAL + "薴乾隆著名０１２ＡＢＫ　"
    "\n\t😀\u200d\ufe0f转账块元年月日号周星期下上个近底尾后位取存还额度$¥￥+-/x:美金İΣ"
)
texts = st.one_of(st.text(), st.text(alphabet=st.sampled_from(TRICKY), max_size=30))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # traditional -> simplified
        ("幫我掛失信用卡", "帮我挂失信用卡"),
        ("我的帳戶餘額是多少", "我的帐户余额是多少"),  # OpenCC: 帳 -> 帐, not 账
        ("網銀登錄不了", "网银登录不了"),
        # full-width -> half-width, lowercase
        ("ＡＴＭ吞卡１２３", "atm吞卡123"),
        ("Ｈｅｌｌｏ　Ｗｏｒｌｄ！", "hello world!"),
        ("我的ATM卡被吞了", "我的atm卡被吞了"),
        ("How do I reset my PIN?", "how do i reset my pin?"),
        ("手机银行App闪退", "手机银行app闪退"),
        # emoji and symbols
        ("😀😀", ""),
        ("谢谢👍🏻", "谢谢"),
        ("卡丢了😭😭怎么办", "卡丢了怎么办"),
        ("👨\u200d👩\u200d👧 家庭账户", "家庭账户"),
        ("1️⃣号窗口", "1号窗口"),
        # whitespace
        (" 转  账 \n", "转账"),
        ("我 要\t还 款", "我要还款"),
        ("转账\u200b失败", "转账失败"),
        ("credit  card\n\n limit", "credit card limit"),
        ("信用卡 limit 多少", "信用卡 limit 多少"),
        ("\x00\x07查询\x1b余额", "查询余额"),
        # Chinese numerals
        ("转五千块", "转5000块"),
        ("两万三千元", "23000元"),
        ("两万三", "23000"),
        ("三千五", "3500"),
        ("一百五十块", "150块"),
        ("年利率百分之三点五", "年利率3.5%"),
        ("百分之五", "5%"),
        ("尾号一二三四", "尾号1234"),
        ("尾号零零八八", "尾号0088"),
        ("二零二六年十一月二十三日", "2026年11月23日"),
        ("十分钟前", "10分钟前"),
        ("一点五万", "15000"),
        ("五 千", "5000"),
        ("5万", "50000"),
        ("1.5万元", "15000元"),
        ("2万3", "23000"),
        ("兩萬塊", "20000块"),
        ("幺", "幺"),
        ("尾号12三四", "尾号12三四"),  # mixed Arabic and Chinese digit runs are left alone
        ("五0万億", "五0万亿"),
        # words that contain numerals survive
        ("我想查一下余额", "我想查一下余额"),
        ("星期一", "星期一"),
        ("统一", "统一"),
        ("万一卡丢了怎么办", "万一卡丢了怎么办"),
        ("一些问题", "一些问题"),
        ("第一次", "第一次"),
        ("一般多久到账", "一般多久到账"),
        ("一起办理", "一起办理"),
        ("快一点", "快一点"),
        ("千万不要告诉别人", "千万不要告诉别人"),
        ("十分感谢", "十分感谢"),
        ("两三天到账", "两三天到账"),
        ("十几块钱", "十几块钱"),
        ("几百块", "几百块"),
        ("五一假期营业吗", "五一假期营业吗"),
        ("乱七八糟", "乱七八糟"),
        ("零钱通", "零钱通"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("幫我掛失", "帮我挂失"),
        ("ＡＴＭ　１２３", "atm 123"),
        ("￥５０００", "¥5000"),
        ("😀 转  账", "😀 转  账"),
        ("五千块", "五千块"),
        ("İstanbul", "istanbul"),
        ("薴", "苎"),
    ],
)
def test_fold(text: str, expected: str) -> None:
    assert fold(text) == expected
    assert len(fold(text)) == len(text)


@pytest.mark.parametrize(
    ("options", "text", "expected"),
    [
        (NormaliserOptions(traditional_to_simplified=False), "幫我", "幫我"),
        (NormaliserOptions(fullwidth_to_halfwidth=False), "ＡＴＭ", "ａｔｍ"),
        (NormaliserOptions(lowercase=False), "ATM", "ATM"),
        (NormaliserOptions(chinese_numerals=False), "转五千块", "转五千块"),
        (NormaliserOptions(strip_emoji=False), "好😀", "好😀"),
        (NormaliserOptions(collapse_whitespace=False), " 转 账 ", " 转 账 "),
    ],
)
def test_options_switch_steps_off(options: NormaliserOptions, text: str, expected: str) -> None:
    assert normalise(text, options) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5,000", 5000),
        ("5000.00", 5000),
        ("3.5", 3.5),
        ("5k", 5000),
        ("5W", 50000),
        ("1.5万", 15000),
        ("2万3", 23000),
        ("两万三", 23000),
        ("三点五", 3.5),
        ("一二三四", 1234),
        ("一点五万", 15000),
        ("万一", None),
        ("abc", None),
        ("", None),
    ],
)
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_fold_preserves_length(text: str) -> None:
    assert len(fold(text)) == len(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from([*TRADITIONAL, *map(chr, range(0xFF01, 0xFF5F))]), max_size=30))
def test_output_has_no_fullwidth_ascii_or_traditional(text: str) -> None:
    out = normalise(text)
    assert not any(0xFF01 <= ord(ch) <= 0xFF5E for ch in out)
    assert not set(out) & set(TRADITIONAL)
