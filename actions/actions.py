"""The bundled bank's custom actions (rasa_sdk). They talk to the bank only through `get_core_banking()`.

Slots read or set here (declare them in the domain): `customer_id`, `identity_verified`, `identity_failed`,
`id_attempts`, `pending_action`, `card_tail`, `id_last4`, `confirm_loss`, `loss_reference`, `city`,
`district`, `currency`, `channel`, `requested_slot`.

Who the customer is: the latest message's metadata `customer_id` (put there by the app channel), else the
slot `customer_id`; in the demo, when `BOT_DEMO_CUSTOMER` is set, its value (or C0001 when the value is not
a customer id). The customer is verified when the slot `identity_verified` is true or the metadata says
`"verified": true` for that customer. Account actions on an unverified customer start `identity_form`.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from decimal import Decimal
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.core_banking import Card, get_core_banking

DEMO_CUSTOMER = "C0001"
MAX_ID_ATTEMPTS = 3
LOGIN_REQUIRED = "为保障您的账户安全，请先登录手机银行或网上银行，或在人工服务中核实身份后再办理。"
HOTLINE = "400-820-8888"
CURRENCY_NAMES = {"美元": "USD", "美金": "USD", "刀": "USD", "欧元": "EUR", "日元": "JPY", "日币": "JPY",
                  "港币": "HKD", "港元": "HKD", "英镑": "GBP"}
CHANNEL_NAMES = {"手机银行": "手机银行", "手机": "手机银行", "app": "手机银行", "网银": "网上银行",
                 "网上银行": "网上银行", "柜台": "柜台", "柜面": "柜台", "网点": "柜台", "atm": "ATM",
                 "取款机": "ATM"}
YES_WORDS = ("是", "对", "确认", "好的", "好", "可以", "嗯", "没错")
NO_WORDS = ("不", "否", "取消", "算了", "别")
CARD_LOSS_FORM_SLOTS = ("card_tail", "id_last4", "confirm_loss", "id_attempts")


# ---- who is asking --------------------------------------------------------------------------------

def message_metadata(tracker: Tracker) -> dict[str, Any]:
    """Metadata of the latest user message (Rasa puts it in `latest_message` and in the `user` event)."""
    metadata = (tracker.latest_message or {}).get("metadata")
    if metadata:
        return metadata
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return event.get("metadata") or {}
    return {}


def customer_id_of(tracker: Tracker) -> str | None:
    customer_id = message_metadata(tracker).get("customer_id") or tracker.get_slot("customer_id")
    if customer_id:
        return str(customer_id)
    demo = os.environ.get("BOT_DEMO_CUSTOMER", "").strip()
    if demo:
        return demo if re.fullmatch(r"C\d{4}", demo) else DEMO_CUSTOMER
    return None


def is_verified(tracker: Tracker, customer_id: str) -> bool:
    if tracker.get_slot("identity_verified") is True:
        return True
    metadata = message_metadata(tracker)
    return metadata.get("verified") is True and metadata.get("customer_id") == customer_id


def entity_or_slot(tracker: Tracker, name: str) -> Any:
    """The value the customer just gave (entity) wins over the one remembered in the slot."""
    return next(tracker.get_latest_entity_values(name), None) or tracker.get_slot(name)


# ---- formatting -----------------------------------------------------------------------------------

def yuan(amount: Decimal) -> str:
    return f"{amount:,.2f}元"


def card_label(card: Card) -> str:
    kind = "借记卡" if card.kind == "debit" else "信用卡"
    suffix = "（已挂失）" if card.status == "挂失" else ""
    return f"尾号{card.tail} {kind}{suffix}"


def card_buttons(cards: list[Card], intent: str) -> list[dict[str, str]]:
    return [{"title": card_label(c), "payload": f'/{intent}{{"card_tail":"{c.tail}"}}'} for c in cards]


def _compact(value: Any) -> str:
    """Digit groups joined ("6222 0212 …" -> "62220212…"); masked digits (*) count as digits."""
    return re.sub(r"(?<=[\d*])[ -](?=[\d*])", "", str(value or ""))


def four_digits(value: Any) -> str | None:
    """The card's last four digits: of a whole card number when the customer typed one (as typed or as stored,
    masked), else the four digits given."""
    text = _compact(value)
    whole = re.search(r"(?<![\d*])[\d*]{9,15}(\d{4})(?!\d)", text)
    if whole:
        return whole.group(1)
    match = re.search(r"(?<!\d)\d{4}(?!\d)", text)
    return match.group() if match else None


def id_last4_of(value: Any) -> str | None:
    """The ID number's last four characters: of a whole 18-character ID (as typed or masked), else as given."""
    text = _compact(value)
    whole = re.search(r"(?<![\d*Xx])[\d*]{14}(\d{3}[\dXx])(?![\dXx])", text)
    if whole:
        return whole.group(1).upper()
    match = re.search(r"(?<![0-9Xx])[0-9]{3}[0-9Xx](?![0-9Xx])", text)
    return match.group().upper() if match else None


def looks_like_id_answer(text: str) -> bool:
    """An answer to "your ID's last four", rather than another request: short, or naming the ID, and never
    about a card's tail."""
    compact = re.sub(r"\s", "", text)
    if re.search(r"尾号|尾數|尾数|卡号|卡號", compact):
        return False
    return len(compact) <= 12 or "身份证" in compact or re.search(r"[\d*]{17}[\dXx]", compact) is not None


def yes_or_no(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    # "no" words first: 不是 and 不对 contain 是 and 对
    if any(word in text for word in NO_WORDS) or re.search(r"\b(no|n|nope)\b", text):
        return False
    if any(word in text for word in YES_WORDS) or re.search(r"\b(yes|y|ok|sure)\b", text):
        return True
    return None


# ---- account actions (need a verified customer) ---------------------------------------------------

class VerifiedCustomerAction(Action, ABC):
    """Resolves and verifies the customer, then calls `answer`. Unverified: starts `identity_form`."""

    purpose = "办理该业务"
    intent = ""  # its general guidance, `utter_<intent>`, answers customers the bot cannot identify

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def answer(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: str) -> list[EventType]: ...

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        customer_id = customer_id_of(tracker)
        if customer_id is None or get_core_banking().find_customer(customer_id) is None:
            guidance = f"utter_{self.intent}"
            if self.intent and guidance in (domain.get("responses") or {}):
                dispatcher.utter_message(response=guidance)
            dispatcher.utter_message(text=LOGIN_REQUIRED)
            return []
        if not is_verified(tracker, customer_id):
            dispatcher.utter_message(text=f"为保障您的账户安全，{self.purpose}前需要先验证身份。"
                                          "请输入您本人身份证号码的后4位（末位是X请输入X）。")
            return [SlotSet("pending_action", self.name()), ActiveLoop("identity_form"),
                    SlotSet("requested_slot", "id_last4")]
        return self.answer(dispatcher, tracker, customer_id)


class CardAccountAction(VerifiedCustomerAction, ABC):
    """An answer about one card: the `card_tail` given, else the only debit card, else ask which."""

    @abstractmethod
    def answer_card(self, dispatcher: CollectingDispatcher, customer_id: str, card: Card) -> None: ...

    def answer(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: str) -> list[EventType]:
        card = self.choose_card(dispatcher, tracker, customer_id)
        if card is not None:
            self.answer_card(dispatcher, customer_id, card)
        return []

    def choose_card(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: str) -> Card | None:
        cards = get_core_banking().cards(customer_id)
        tail = four_digits(entity_or_slot(tracker, "card_tail"))
        if tail:
            card = next((c for c in cards if c.tail == tail), None)
            if card is None:
                dispatcher.utter_message(text=f"您名下没有尾号{tail}的卡，请选择要查询的卡：",
                                         buttons=card_buttons(cards, self.intent))
            return card
        debit = [c for c in cards if c.kind == "debit"] or cards
        if len(debit) == 1:
            return debit[0]
        dispatcher.utter_message(text="您名下有多张卡，请问要查询哪一张？", buttons=card_buttons(debit, self.intent))
        return None


class ActionCheckBalance(CardAccountAction):
    purpose = "查询余额"
    intent = "check_balance"

    def name(self) -> str:
        return "action_check_balance"

    def answer_card(self, dispatcher: CollectingDispatcher, customer_id: str, card: Card) -> None:
        balance = get_core_banking().balance(customer_id, card.tail)
        if balance is None:
            dispatcher.utter_message(text=f"暂时查不到尾号{card.tail}的卡的余额，请稍后再试。")
        elif balance.kind == "debit":
            dispatcher.utter_message(text=f"您尾号{card.tail}的借记卡可用余额为{yuan(balance.available)}。")
        else:
            dispatcher.utter_message(text=f"您尾号{card.tail}的信用卡可用额度为{yuan(balance.available)}，"
                                          f"信用额度{yuan(balance.ledger)}。")


class ActionRecentTransactions(CardAccountAction):
    purpose = "查询交易明细"
    intent = "query_transactions"
    limit = 5

    def name(self) -> str:
        return "action_recent_transactions"

    def answer_card(self, dispatcher: CollectingDispatcher, customer_id: str, card: Card) -> None:
        transactions = get_core_banking().recent_transactions(customer_id, card.tail, self.limit)
        if not transactions:
            dispatcher.utter_message(text=f"您尾号{card.tail}的卡近期没有交易。")
            return
        lines = [f"{t.when.month}月{t.when.day}日 {t.merchant} {_direction(t.amount)}{yuan(abs(t.amount))}"
                 for t in transactions]
        dispatcher.utter_message(text=f"您尾号{card.tail}的卡最近{len(lines)}笔交易：\n" + "\n".join(lines))


def _direction(amount: Decimal) -> str:
    return "收入" if amount > 0 else "支出"


class ActionCreditCardBill(VerifiedCustomerAction):
    purpose = "查询信用卡账单"
    intent = "credit_card_bill"

    def name(self) -> str:
        return "action_credit_card_bill"

    def answer(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_id: str) -> list[EventType]:
        bill = get_core_banking().credit_card_bill(customer_id)
        if bill is None:
            dispatcher.utter_message(text="您名下暂无信用卡账单。如需申请信用卡，可在手机银行“信用卡”频道办理。")
            return []
        s, d = bill.statement_date, bill.due_date
        dispatcher.utter_message(
            text=f"您尾号{bill.card_tail}的信用卡本期账单：账单日{s.year}年{s.month}月{s.day}日，"
                 f"到期还款日{d.year}年{d.month}月{d.day}日，本期应还金额{yuan(bill.amount_due)}，"
                 f"最低还款额{yuan(bill.minimum_payment)}。",
            buttons=[{"title": "我要还款", "payload": "/credit_card_repayment"},
                     {"title": "办理分期", "payload": "/credit_card_installment"}],
        )
        return []


# ---- public information ---------------------------------------------------------------------------

class ActionTransferLimit(Action):
    def name(self) -> str:
        return "action_transfer_limit"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        said = str(entity_or_slot(tracker, "channel") or "").strip().lower()
        channel = CHANNEL_NAMES.get(said)
        customer_id = customer_id_of(tracker)
        limits = get_core_banking().transfer_limits(customer_id, channel)
        lines = [f"{limit.channel}：单笔{_limit(limit.per_transaction)}，日累计{_limit(limit.per_day)}"
                 for limit in limits]
        whose = "您当前" if customer_id else "本行默认"
        dispatcher.utter_message(text=f"{whose}的转账限额如下：\n" + "\n".join(lines)
                                 + "\n如需调整，可在手机银行“安全中心-限额管理”中修改，或携带身份证到网点办理。")
        return []


def _limit(amount: Decimal | None) -> str:
    return "不限额" if amount is None else yuan(amount)


class ActionFindBranch(Action):
    def name(self) -> str:
        return "action_find_branch"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        bank = get_core_banking()
        cities = bank.cities()
        city = str(entity_or_slot(tracker, "city") or "").strip().removesuffix("市")
        buttons = [{"title": c, "payload": f'/branch_location{{"city":"{c}"}}'} for c in cities]
        if not city:
            dispatcher.utter_message(text="请问您想查询哪个城市的网点？", buttons=buttons)
            return []
        branches = bank.branches(city)
        if not branches:
            dispatcher.utter_message(text=f"抱歉，暂未查到{city}的网点信息。目前可查询的城市有：{'、'.join(cities)}。",
                                     buttons=buttons)
            return []
        said = str(entity_or_slot(tracker, "district") or "").strip()
        district = _match_district(said, {b.district for b in branches})
        note = f"{city}{said}暂无网点，为您列出{city}的全部网点：\n" if said and district is None else ""
        if district:
            branches = bank.branches(city, district)
        lines = [f"{b.name}：{b.address}，营业时间{b.hours}，电话{b.phone}" for b in branches]
        found = f"为您找到{city}{district or ''}的{len(lines)}个网点：\n"
        dispatcher.utter_message(text=note + found + "\n".join(lines))
        return [SlotSet("city", city)]


def _match_district(said: str, districts: set[str]) -> str | None:
    """`浦东` finds 浦东新区, `南山区` finds 南山区."""
    stem = said.removesuffix("区").removesuffix("新")
    return next((d for d in sorted(districts) if stem and d.startswith(stem)), None)


class ActionExchangeRate(Action):
    def name(self) -> str:
        return "action_exchange_rate"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        bank = get_core_banking()
        said = str(entity_or_slot(tracker, "currency") or "").strip()
        code = CURRENCY_NAMES.get(said, said.upper())
        codes = [code] if code and code != "CNY" else bank.currencies()
        rates = [rate for rate in map(bank.exchange_rate, codes) if rate is not None]
        if not rates:
            names = "、".join(f"{r.name}({r.currency})" for r in map(bank.exchange_rate, bank.currencies()) if r)
            dispatcher.utter_message(text=f"抱歉，暂不提供{said}的牌价。可查询的币种有：{names}。")
            return []
        lines = [f"{r.name}({r.currency})：现汇买入价{r.spot_buy}，现汇卖出价{r.spot_sell}" for r in rates]
        dispatcher.utter_message(text="今日外汇牌价（人民币/100外币单位）：\n" + "\n".join(lines)
                                 + "\n牌价随市场实时变动，以实际交易时为准。")
        return []


# ---- identity and card loss forms -----------------------------------------------------------------

class IdLast4Validation:
    """Validates `id_last4` against the customer; the third wrong answer sets `identity_failed`."""

    def validate_id_last4(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain: DomainDict) -> dict[str, Any]:
        if not looks_like_id_answer(str((tracker.latest_message or {}).get("text") or value)):
            # e.g. "帮我挂失尾号1234的借记卡": about something else, so not a failed attempt
            dispatcher.utter_message(text="这一步需要先核实身份：请输入您本人身份证号码的后4位（末位是X请输入X）。"
                                          "如需办理其他业务，可以先回复“取消”。")
            return {"id_last4": None}
        id_last4 = id_last4_of(value)
        if id_last4 is None:
            dispatcher.utter_message(text="请输入您身份证号码的后4位，由4位数字组成，末位也可能是X。")
            return {"id_last4": None}
        customer_id = customer_id_of(tracker)
        if customer_id and is_verified(tracker, customer_id):  # e.g. asked in WeChat, answered in the signed-in app
            dispatcher.utter_message(text="您已登录并通过身份验证，无需再提供身份证号。")
            return {"id_last4": None}
        bank = get_core_banking()
        if customer_id is None:
            # not logged in: the card and the ID together identify the cardholder, as on the phone line
            customer_id = bank.identify_cardholder(str(tracker.get_slot("card_tail") or ""), id_last4)
            matched = customer_id is not None
        else:
            matched = bank.verify_identity(customer_id, id_last4)
        if matched:
            return {"id_last4": id_last4, "customer_id": customer_id, "identity_verified": True, "id_attempts": 0}
        return self._wrong_id(dispatcher, int(tracker.get_slot("id_attempts") or 0) + 1)

    @staticmethod
    def _wrong_id(dispatcher: CollectingDispatcher, attempts: int) -> dict[str, Any]:
        if attempts >= MAX_ID_ATTEMPTS:
            dispatcher.utter_message(text=f"身份验证已连续{MAX_ID_ATTEMPTS}次未通过，为保障您的资金安全，暂时无法在线办理。"
                                          f"请拨打客服热线{HOTLINE}转人工，或携带本人身份证到网点办理。")
            return {"id_last4": None, "id_attempts": attempts, "identity_failed": True}
        left = MAX_ID_ATTEMPTS - attempts
        dispatcher.utter_message(text=f"身份证后4位与预留信息不符，请重新输入（还可尝试{left}次）。")
        return {"id_last4": None, "id_attempts": attempts}


class ValidateIdentityForm(IdLast4Validation, FormValidationAction):
    """`identity_form` (required slot `id_last4`), started by account actions for unverified customers."""

    def name(self) -> str:
        return "validate_identity_form"

    async def required_slots(self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> list[str]:
        return [] if tracker.get_slot("identity_failed") else domain_slots


class ValidateCardLossForm(IdLast4Validation, FormValidationAction):
    """`card_loss_form`: `card_tail`, `id_last4` (skipped when already verified), `confirm_loss`."""

    def name(self) -> str:
        return "validate_card_loss_form"

    async def required_slots(self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> list[str]:
        if tracker.get_slot("identity_failed"):
            return []  # ends the form: requested_slot becomes None
        customer_id = customer_id_of(tracker)
        if customer_id and is_verified(tracker, customer_id) and tracker.get_slot("id_last4") is None:
            return [slot for slot in domain_slots if slot != "id_last4"]
        return domain_slots

    def validate_card_tail(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                           domain: DomainDict) -> dict[str, Any]:
        tail = four_digits(value)
        if tail is None:
            dispatcher.utter_message(text="卡号后4位应为4位数字，请重新输入，例如：6688。")
            return {"card_tail": None}
        customer_id = customer_id_of(tracker)
        cards = get_core_banking().cards(customer_id) if customer_id else []
        if customer_id and tail not in {c.tail for c in cards}:
            tails = "、".join(c.tail for c in cards) or "无"
            dispatcher.utter_message(text=f"您名下没有尾号{tail}的卡（您的卡尾号：{tails}），请核对后重新输入。")
            return {"card_tail": None}
        return {"card_tail": tail}

    def validate_confirm_loss(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                              domain: DomainDict) -> dict[str, Any]:
        answer = yes_or_no(value)
        if answer is None:
            dispatcher.utter_message(text="请回复“确认”为您办理挂失，或回复“取消”放弃办理。")
        return {"confirm_loss": answer}


class ActionSubmitCardLoss(Action):
    """Runs when `card_loss_form` is complete: reports the card lost and clears the form's slots."""

    def name(self) -> str:
        return "action_submit_card_loss"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        clear = [SlotSet(slot, None) for slot in CARD_LOSS_FORM_SLOTS]
        customer_id = customer_id_of(tracker)
        tail = tracker.get_slot("card_tail")
        if tracker.get_slot("identity_failed") or customer_id is None or not tail:
            dispatcher.utter_message(text=LOGIN_REQUIRED + f"紧急情况请拨打客服热线{HOTLINE}办理电话挂失。")
            return clear
        if tracker.get_slot("confirm_loss") is not True:
            dispatcher.utter_message(text="好的，已取消本次挂失办理。如有需要可随时再找我。")
            return clear
        try:
            reference = get_core_banking().report_card_loss(customer_id, tail)
        except KeyError:
            dispatcher.utter_message(text=f"您名下没有尾号{tail}的卡，未能办理挂失。请拨打客服热线{HOTLINE}咨询。")
            return clear
        dispatcher.utter_message(text=f"已为您尾号{tail}的卡办理临时挂失，挂失编号：{reference}。挂失后该卡暂停一切交易，"
                                      "临时挂失有效期5天，请在有效期内携带本人身份证到任一网点办理正式挂失或补卡。")
        return [*clear, SlotSet("loss_reference", reference)]
