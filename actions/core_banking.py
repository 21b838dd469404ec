"""The bank back-end behind the custom actions.

`CoreBankingClient` is the only thing the actions know about the bank's systems. A bank replaces the
bundled in-memory `DemoCoreBanking` with its own implementation (calling its core-banking, card and
branch systems) and names it in the environment: `BOT_CORE_BANKING=mybank.corebank:CoreBankingAdapter`.
The class is instantiated without arguments, once per process.
"""

from __future__ import annotations

import importlib
import itertools
import os
import threading
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

CardKind = Literal["debit", "credit"]
CardStatus = Literal["正常", "挂失"]
TransferChannel = Literal["手机银行", "网上银行", "柜台", "ATM"]
TRANSFER_CHANNELS: tuple[TransferChannel, ...] = ("手机银行", "网上银行", "柜台", "ATM")


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    level: str  # 普卡 / 金卡 / 白金卡: decides the transfer limits


@dataclass(frozen=True)
class Card:
    tail: str  # last 4 digits of the card number
    kind: CardKind
    product: str  # e.g. 借记卡（一类户）, 白金信用卡
    status: CardStatus = "正常"


@dataclass(frozen=True)
class Balance:
    card_tail: str
    kind: CardKind
    available: Decimal  # debit: 可用余额; credit: 可用额度
    ledger: Decimal  # debit: 账面余额; credit: 信用额度
    currency: str = "CNY"


@dataclass(frozen=True)
class Transaction:
    when: date
    merchant: str
    amount: Decimal  # negative: money out
    balance_after: Decimal | None = None


@dataclass(frozen=True)
class TransferLimit:
    channel: TransferChannel
    per_transaction: Decimal | None  # None: no limit
    per_day: Decimal | None


@dataclass(frozen=True)
class CreditCardBill:
    card_tail: str
    statement_date: date  # 账单日
    due_date: date  # 还款日
    amount_due: Decimal  # 应还金额
    minimum_payment: Decimal  # 最低还款额


@dataclass(frozen=True)
class Branch:
    name: str
    city: str
    district: str
    address: str
    hours: str
    phone: str


@dataclass(frozen=True)
class ExchangeRate:
    currency: str  # ISO 4217 code
    name: str  # 美元
    spot_buy: Decimal  # 现汇买入价, CNY per 100 units
    spot_sell: Decimal  # 现汇卖出价, CNY per 100 units


@runtime_checkable
class CoreBankingClient(Protocol):
    """What the actions need from the bank. Replace `DemoCoreBanking` with your own implementation.

    Unknown customers, cards, cities and currencies give `None` or an empty list, never an exception;
    an exception means the back-end itself failed.
    """

    def find_customer(self, customer_id: str) -> Customer | None: ...

    def cards(self, customer_id: str) -> list[Card]: ...

    def balance(self, customer_id: str, card_tail: str) -> Balance | None: ...

    def recent_transactions(self, customer_id: str, card_tail: str, limit: int = 5) -> list[Transaction]: ...

    def transfer_limits(self, customer_id: str | None, channel: str | None = None) -> list[TransferLimit]:
        """The customer's limits (the bank's standard limits when `customer_id` is None), all channels if None."""
        ...

    def report_card_loss(self, customer_id: str, card_tail: str) -> str:
        """Report a card lost; returns the reference number. Reporting the same card again returns the same one."""
        ...

    def credit_card_bill(self, customer_id: str) -> CreditCardBill | None: ...

    def branches(self, city: str, district: str | None = None) -> list[Branch]: ...

    def cities(self) -> list[str]: ...

    def exchange_rate(self, currency: str) -> ExchangeRate | None: ...

    def currencies(self) -> list[str]: ...

    def verify_identity(self, customer_id: str, id_last4: str) -> bool:
        """True when `id_last4` are the last 4 characters of the customer's PRC ID number."""
        ...

    def identify_cardholder(self, card_tail: str, id_last4: str) -> str | None:
        """The customer id of the only holder of a card with this tail and ID, for customers not logged in."""
        ...


# ---- demo data -------------------------------------------------------------------------------------

_CUSTOMERS = (
    Customer("C0001", "张伟", "金卡"),
    Customer("C0002", "李娜", "普卡"),
    Customer("C0003", "王芳", "白金卡"),
)
# well-formed (their check characters are right), so a customer who types one whole sees it masked when stored
_ID_NUMBERS = {"C0001": "310104198507023456", "C0002": "440106199203095721", "C0003": "11010819780906402X"}
_CARDS = {
    "C0001": (Card("6688", "debit", "借记卡（一类户）"), Card("3721", "credit", "金卡信用卡")),
    "C0002": (Card("1234", "debit", "借记卡（一类户）"), Card("5566", "debit", "借记卡（二类户）")),
    "C0003": (Card("8899", "debit", "借记卡（一类户）"), Card("4321", "credit", "白金信用卡")),
}
_CREDIT_LINES = {"3721": Decimal("50000"), "4321": Decimal("200000")}
_CREDIT_USED = {"3721": Decimal("12385.80"), "4321": Decimal("45632.00")}
# card tail -> (账单日 as day of month, 应还金额 of the last statement); 还款日 is 20 days after 账单日
_STATEMENTS = {"3721": (5, Decimal("8650.30")), "4321": (18, Decimal("36420.00"))}
_OPENING_BALANCES = {"6688": Decimal("28650.00"), "1234": Decimal("5230.18"), "5566": Decimal("860.00"),
                     "8899": Decimal("152340.66")}
# (days ago, merchant, amount)
_MOVEMENTS = {
    "6688": ((0, "美团外卖", "-38.50"), (1, "盒马鲜生（浦东店）", "-215.30"), (2, "上海地铁", "-6.00"),
             (3, "代发工资 上海某科技有限公司", "18500.00"), (4, "中国石化加油站", "-320.00"),
             (6, "京东商城", "-1299.00"), (8, "国家电网 电费", "-186.42"), (10, "星巴克（陆家嘴店）", "-42.00"),
             (12, "转账 张敏", "-2000.00"), (15, "滴滴出行", "-27.80")),
    "1234": ((0, "拼多多", "-59.90"), (1, "瑞幸咖啡", "-16.00"), (2, "广州地铁", "-5.00"),
             (4, "微信转账 陈晓", "300.00"), (5, "永辉超市", "-128.60"), (7, "中国移动 话费充值", "-100.00"),
             (9, "代发工资 广州某贸易有限公司", "8200.00"), (11, "房租 转账", "-3500.00"),
             (13, "肯德基", "-45.50"), (16, "淘宝", "-239.00")),
    "5566": ((1, "支付宝 余额宝转入", "-500.00"), (3, "美团单车", "-1.50"), (5, "转账 李娜", "1000.00"),
             (6, "喜茶", "-19.00"), (8, "12306 铁路客票", "-553.00"), (10, "饿了么", "-33.20"),
             (12, "屈臣氏", "-88.00"), (14, "网易云音乐会员", "-15.00"), (17, "全家便利店", "-12.80"),
             (20, "转账 李娜", "500.00")),
    "8899": ((0, "理财产品到期 稳健增利90天", "50000.00"), (1, "北京SKP", "-8650.00"),
             (2, "首都国际机场停车场", "-120.00"), (3, "同仁堂", "-468.00"), (5, "物业费 朝阳区某物业", "-1560.00"),
             (7, "全聚德（前门店）", "-736.00"), (9, "中国国航", "-4280.00"), (11, "北京燃气", "-230.15"),
             (14, "转账 王磊", "-10000.00"), (18, "股息入账", "3120.50")),
    "3721": ((0, "携程旅行", "-1860.00"), (2, "Apple Store", "-6999.00"), (4, "海底捞（徐汇店）", "-412.00"),
             (6, "优衣库", "-399.00"), (9, "还款", "5000.00"), (11, "大众点评", "-268.00"),
             (13, "万达影城", "-90.00"), (16, "麦当劳", "-36.50"), (19, "京东商城", "-2399.00"),
             (22, "中国东方航空", "-1320.00")),
    "4321": ((1, "香港免税店 DFS", "-12800.00"), (3, "希尔顿酒店", "-2360.00"), (5, "高尔夫俱乐部", "-3800.00"),
             (8, "还款", "30000.00"), (10, "国贸商城", "-5620.00"), (12, "顺丰速运", "-68.00"),
             (15, "米其林餐厅", "-2450.00"), (17, "滴滴出行", "-88.00"), (21, "中国南方航空", "-6580.00"),
             (24, "山姆会员店", "-1268.00")),
}
_LIMITS: dict[str, dict[TransferChannel, tuple[str | None, str | None]]] = {  # None: no limit
    "普卡": {"手机银行": ("50000", "200000"), "网上银行": ("50000", "200000"), "柜台": (None, None),
             "ATM": ("50000", "50000")},
    "金卡": {"手机银行": ("200000", "500000"), "网上银行": ("200000", "500000"), "柜台": (None, None),
             "ATM": ("50000", "50000")},
    "白金卡": {"手机银行": ("1000000", "2000000"), "网上银行": ("1000000", "2000000"), "柜台": (None, None),
               "ATM": ("50000", "50000")},
}
_STANDARD_LEVEL = "普卡"
_BRANCHES = (
    Branch("上海陆家嘴支行", "上海", "浦东新区", "浦东新区陆家嘴环路1000号", "周一至周五 9:00-17:00，周六 9:30-16:00",
           "021-58881234"),
    Branch("上海张江支行", "上海", "浦东新区", "浦东新区张江路665号", "周一至周日 9:00-17:00", "021-50801122"),
    Branch("上海徐家汇支行", "上海", "徐汇区", "徐汇区漕溪北路88号", "周一至周五 9:00-17:30", "021-64263388"),
    Branch("上海南京西路支行", "上海", "静安区", "静安区南京西路1266号", "周一至周五 9:00-17:00，周六 10:00-16:00",
           "021-62880066"),
    Branch("北京国贸支行", "北京", "朝阳区", "朝阳区建国门外大街1号", "周一至周五 9:00-17:00", "010-65052288"),
    Branch("北京望京支行", "北京", "朝阳区", "朝阳区望京街9号", "周一至周日 9:00-17:00", "010-84721166"),
    Branch("北京中关村支行", "北京", "海淀区", "海淀区中关村大街27号", "周一至周五 9:00-17:30，周六 9:30-16:00",
           "010-62551234"),
    Branch("北京金融街支行", "北京", "西城区", "西城区金融大街35号", "周一至周五 9:00-17:00", "010-66089900"),
    Branch("广州天河支行", "广州", "天河区", "天河区天河路385号", "周一至周日 9:00-17:00", "020-38771234"),
    Branch("广州珠江新城支行", "广州", "天河区", "天河区珠江东路6号", "周一至周五 9:00-17:00", "020-38392288"),
    Branch("广州越秀支行", "广州", "越秀区", "越秀区中山五路219号", "周一至周五 9:00-17:00，周六 9:30-16:00",
           "020-83336677"),
    Branch("深圳南山支行", "深圳", "南山区", "南山区深南大道9678号", "周一至周日 9:00-17:00", "0755-86081234"),
    Branch("深圳科技园支行", "深圳", "南山区", "南山区科苑路15号", "周一至周五 9:00-17:30", "0755-26551188"),
    Branch("深圳福田支行", "深圳", "福田区", "福田区福华一路98号", "周一至周五 9:00-17:00，周六 9:30-16:00",
           "0755-82088866"),
)
_RATES = (
    ExchangeRate("USD", "美元", Decimal("710.52"), Decimal("713.51")),
    ExchangeRate("EUR", "欧元", Decimal("822.16"), Decimal("828.21")),
    ExchangeRate("JPY", "日元", Decimal("4.6321"), Decimal("4.6681")),
    ExchangeRate("HKD", "港币", Decimal("91.28"), Decimal("91.64")),
    ExchangeRate("GBP", "英镑", Decimal("933.74"), Decimal("940.62")),
)


def _amount_or_unlimited(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _last_statement_date(today: date, day: int) -> date:
    this_month = today.replace(day=day)
    if this_month <= today:
        return this_month
    previous = today.replace(day=1) - timedelta(days=1)
    return previous.replace(day=day)


class DemoCoreBanking:
    """In-memory demo bank: 3 customers (C0001 张伟, C0002 李娜, C0003 王芳), cards, branches, rates.

    Dates are relative to `today` so the demo always looks current. Thread-safe for loss reports.
    """

    def __init__(self, today: date | None = None) -> None:
        self._today = today or date.today()
        self._customers = {c.customer_id: c for c in _CUSTOMERS}
        self._cards = {cid: {card.tail: card for card in cards} for cid, cards in _CARDS.items()}
        self._transactions = {tail: self._history(tail) for tail in _MOVEMENTS}
        self._loss_reports: dict[tuple[str, str], str] = {}
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()

    def _history(self, tail: str) -> list[Transaction]:
        """Newest first; debit cards carry the running balance."""
        running = _OPENING_BALANCES.get(tail)
        history = []
        for days_ago, merchant, amount in _MOVEMENTS[tail]:
            value = Decimal(amount)
            history.append(Transaction(self._today - timedelta(days=days_ago), merchant, value, running))
            if running is not None:
                running -= value
        return history

    def find_customer(self, customer_id: str) -> Customer | None:
        return self._customers.get(customer_id)

    def cards(self, customer_id: str) -> list[Card]:
        return list(self._cards.get(customer_id, {}).values())

    def _card(self, customer_id: str, card_tail: str) -> Card | None:
        return self._cards.get(customer_id, {}).get(card_tail)

    def balance(self, customer_id: str, card_tail: str) -> Balance | None:
        card = self._card(customer_id, card_tail)
        if card is None:
            return None
        if card.kind == "debit":
            available = _OPENING_BALANCES[card_tail]
            return Balance(card_tail, "debit", available, available)
        line = _CREDIT_LINES[card_tail]
        return Balance(card_tail, "credit", line - _CREDIT_USED[card_tail], line)

    def recent_transactions(self, customer_id: str, card_tail: str, limit: int = 5) -> list[Transaction]:
        if self._card(customer_id, card_tail) is None:
            return []
        return self._transactions[card_tail][:limit]

    def transfer_limits(self, customer_id: str | None, channel: str | None = None) -> list[TransferLimit]:
        customer = self._customers.get(customer_id) if customer_id else None
        level = customer.level if customer else _STANDARD_LEVEL
        return [
            TransferLimit(name, _amount_or_unlimited(per_tx), _amount_or_unlimited(per_day))
            for name, (per_tx, per_day) in _LIMITS[level].items()
            if channel is None or name == channel
        ]

    def report_card_loss(self, customer_id: str, card_tail: str) -> str:
        card = self._card(customer_id, card_tail)
        if card is None:
            raise KeyError(f"customer {customer_id!r} has no card ending {card_tail!r}")
        with self._lock:
            reference = self._loss_reports.get((customer_id, card_tail))
            if reference is None:
                reference = f"GS{date.today():%Y%m%d}{next(self._sequence):06d}"
                self._loss_reports[(customer_id, card_tail)] = reference
                self._cards[customer_id][card_tail] = replace(card, status="挂失")
        return reference

    def credit_card_bill(self, customer_id: str) -> CreditCardBill | None:
        card = next((c for c in self.cards(customer_id) if c.kind == "credit"), None)
        if card is None:
            return None
        day, amount_due = _STATEMENTS[card.tail]
        statement = _last_statement_date(self._today, day)
        minimum = (amount_due * Decimal("0.1")).quantize(Decimal("0.01"))
        return CreditCardBill(card.tail, statement, statement + timedelta(days=20), amount_due, minimum)

    def branches(self, city: str, district: str | None = None) -> list[Branch]:
        return [b for b in _BRANCHES if b.city == city and (district is None or b.district == district)]

    def cities(self) -> list[str]:
        return list(dict.fromkeys(b.city for b in _BRANCHES))

    def exchange_rate(self, currency: str) -> ExchangeRate | None:
        return next((r for r in _RATES if r.currency == currency.upper()), None)

    def currencies(self) -> list[str]:
        return [r.currency for r in _RATES]

    def verify_identity(self, customer_id: str, id_last4: str) -> bool:
        id_number = _ID_NUMBERS.get(customer_id)
        return id_number is not None and id_number[-4:].upper() == id_last4.upper()

    def identify_cardholder(self, card_tail: str, id_last4: str) -> str | None:
        holders = [cid for cid, cards in self._cards.items()
                   if card_tail in cards and self.verify_identity(cid, id_last4)]
        return holders[0] if len(holders) == 1 else None


_instance: CoreBankingClient | None = None
_instance_lock = threading.Lock()


def load_core_banking(spec: str) -> CoreBankingClient:
    """Instantiate `module:Class` (no arguments) and check it looks like a `CoreBankingClient`."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"BOT_CORE_BANKING must look like 'package.module:Class', got {spec!r}")
    client = getattr(importlib.import_module(module_name), class_name)()
    if not isinstance(client, CoreBankingClient):
        raise TypeError(f"{spec} does not implement CoreBankingClient")
    return client


def get_core_banking() -> CoreBankingClient:
    """The process-wide back-end: `BOT_CORE_BANKING=module:Class` if set, else `DemoCoreBanking`."""
    global _instance
    with _instance_lock:
        if _instance is None:
            spec = os.environ.get("BOT_CORE_BANKING", "").strip()
            _instance = load_core_banking(spec) if spec else DemoCoreBanking()
        return _instance
