"""The context package an agent sees on accepting a chat: who, where, what the bot understood, why it handed
over, a short summary, earlier conversations and suggested answers.

What it reads is stored masked already (`bot.storage.privacy`); it masks again with the same module as it
reads, so rows stored before masking was introduced show masked too, and `scrub`s what it returns, so rows
stored before input was checked (a lone surrogate in a button title) cannot break it. No role sees more:
nothing unmasked is stored to show."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from bot.handoff.routing import NOT_TOPICS
from bot.security.json_guard import scrub
from bot.security.masking import mask_text
from bot.storage.database import Database
from bot.storage.models import ChannelIdentity, Conversation, Customer, Event, Handoff, utcnow

CHANNEL_NAMES = {"web": "网页", "app": "手机银行App", "wechat": "微信", "wecom": "微信客服", "rest": "接口"}
EARLIER_LINES = 12  # lines of each earlier conversation shown to the agent
QUOTED_WORDS = 20  # characters of the customer's own words that stand for a topic without a title

# What agents read instead of intent names: the bundled bot's intents (an intent not listed here is shown by the
# customer's own words, never by its name)
INTENT_TITLES = {
    "check_balance": "查询余额", "query_transactions": "查询交易明细", "open_account": "开户", "close_account": "销户",
    "change_phone_number": "修改预留手机号", "account_frozen": "账户被冻结", "sms_notification": "短信通知",
    "deposit_certificate": "开存款证明", "report_card_loss": "挂失银行卡", "cancel_card_loss": "银行卡解挂",
    "atm_card_retained": "ATM吞卡", "card_activation": "激活新卡", "card_replacement": "换卡补卡",
    "credit_card_bill": "信用卡账单", "credit_card_repayment": "信用卡还款", "credit_card_overdue": "信用卡逾期",
    "credit_card_installment": "信用卡分期", "credit_card_limit": "信用卡额度", "credit_card_apply": "申办信用卡",
    "credit_card_points": "信用卡积分", "wechat_banking_bind": "微信绑定银行卡",
    "mobile_banking_login_problem": "手机银行无法登录", "mobile_banking_register": "开通手机银行",
    "reset_password": "修改密码", "forgot_password": "忘记密码", "account_locked": "密码错误被锁",
    "ukey_service": "U盾", "exchange_rate": "汇率查询", "foreign_currency_exchange": "外币兑换",
    "cross_border_remittance": "境外汇款", "deposit_rates": "存款利率", "time_deposit": "定期存款",
    "wealth_products": "理财产品", "loan_apply": "申请贷款", "mortgage": "房贷", "loan_repayment": "贷款还款",
    "branch_hours": "网点营业时间", "branch_location": "网点查询", "book_appointment": "网点预约",
    "fee_inquiry": "费用咨询", "suspected_fraud": "疑似盗刷", "disputed_transaction": "交易争议",
    "complaint": "投诉", "transfer_howto": "转账操作", "transfer_limit": "转账限额", "transfer_failed": "转账失败",
    "transfer_reversal": "转错账", "request_human": "转人工", "greet": "问候", "thanks": "致谢", "goodbye": "告别",
    "affirm": "确认", "deny": "否认", "chitchat": "闲聊", "bot_identity": "询问是否机器人",
    "out_of_scope": "业务范围外的问题", "nlu_fallback": "未能理解的问题",
}
FORM_TITLES = {"card_loss_form": "挂失银行卡", "identity_form": "身份核验"}
SLOT_LABELS = {
    "customer_id": "客户号", "identity_verified": "身份已核验", "identity_failed": "身份核验未通过",
    "id_attempts": "身份核验次数", "id_last4": "身份证后四位", "card_tail": "卡号后四位", "confirm_loss": "确认挂失",
    "loss_reference": "挂失编号", "pending_action": "待办业务", "city": "城市", "district": "区县", "currency": "币种",
    "card_type": "卡种", "handoff_requested": "转人工原因",
}
HIDDEN_SLOTS = {"requested_slot"}
WITHHELD_SLOTS = {"id_last4"}  # shown as provided, never its value: it is what identity checks ask for
KIND_NAMES = {"request": "客户要求转人工", "sensitive": "敏感业务", "anger": "客户情绪激动或投诉",
              "form_failed": "业务办理多次验证失败", "vip": "重要客户，智能客服未能理解",
              "fallback": "智能客服未能理解"}
# snake_case: an intent, slot or form name
_RAW_NAME = re.compile(r"(?<![A-Za-z0-9_])[a-z]+(?:_[a-z0-9]+)+(?![A-Za-z0-9_])")

Suggest = Callable[[str], list[dict[str, Any]]]


def _hide(value: Any) -> str:
    return mask_text(str(value))


def topic_title(intent: str, words: str | None = None) -> str:
    """What an intent is about, in Chinese: its title, else the customer's own words (quoted), else a plain
    "其他业务" - never the intent's name."""
    if intent in INTENT_TITLES:
        return INTENT_TITLES[intent]
    if words and words.strip():
        said = words.strip()
        return f"“{said[:QUOTED_WORDS]}{'…' if len(said) > QUOTED_WORDS else ''}”"
    return "其他业务"


def _readable(text: str) -> str:
    """Text for agents with any intent, form or slot name in it said in Chinese."""
    def name(match: re.Match[str]) -> str:
        raw = match.group(0)
        return INTENT_TITLES.get(raw) or FORM_TITLES.get(raw) or SLOT_LABELS.get(raw) or raw
    return _RAW_NAME.sub(name, text)


def reason_text(kind: str, detail: str | None) -> str:
    """The hand-over's reason said once: "敏感业务（疑似盗刷）", also for rows stored with an older wording
    ("敏感业务：suspected_fraud", or the kind's name repeated)."""
    label = KIND_NAMES.get(kind, kind)
    said = _readable(detail or "").strip()
    while label and said.startswith(label) and said[len(label):len(label) + 1] in ("：", ":"):
        said = said[len(label) + 1:].strip()  # "敏感业务：敏感业务：x" -> "x"
    if not said or said == label:
        return label
    if said.startswith(label):  # already says its kind: "敏感业务（疑似盗刷）", "客户要求转人工"
        return said
    if kind != "sensitive":
        return said
    return f"{label}：{said}" if "（" in said else f"{label}（{said}）"


def _slot_value(name: str, value: Any) -> str:
    if name in WITHHELD_SLOTS:
        return "已提供"
    if isinstance(value, bool):
        return "是" if value else "否"
    return _readable(_hide(value))


def readable_slots(slots: dict[str, Any]) -> dict[str, str]:
    """Slots as an agent reads them: Chinese labels, masked values, internal bookkeeping left out."""
    return {SLOT_LABELS.get(k, k): _slot_value(k, v) for k, v in slots.items()
            if v is not None and k not in HIDDEN_SLOTS}


def topic_turns(events: list[Event]) -> list[tuple[str, str]]:
    """(intent, masked text) of the customer's own questions, in order: not answers to a form's questions, not
    greetings, yes/no, requests for a person or messages the bot did not understand."""
    turns, loop = [], None
    for event in events:
        data = event.data or {}
        if event.type == "active_loop":
            loop = data.get("name")
        elif event.type == "session_started":
            loop = None
        elif event.type == "user" and not loop:
            intent = ((data.get("parse_data") or {}).get("intent") or {}).get("name")
            if intent and intent not in NOT_TOPICS:
                shown = (data.get("metadata") or {}).get("button_title") or data.get("text", "")
                turns.append((intent, _hide(shown)))
    return turns


def summary_of(handoff: Handoff, now: dt.datetime | None = None) -> dict[str, Any]:
    created = handoff.created_at if handoff.created_at.tzinfo else handoff.created_at.replace(tzinfo=dt.UTC)
    return {"handoff_id": handoff.id, "conversation_id": handoff.conversation_id, "group": handoff.group,
            "priority": handoff.priority, "reason": handoff.reason, "detail": scrub(_hide(handoff.detail or "")),
            "status": handoff.status, "agent_id": handoff.agent_id,
            "waiting_seconds": int(((now or utcnow()) - created).total_seconds())}


def conversation_topics(database: Database, conversation_id: str) -> list[str]:
    """The intents of the customer's own questions so far (see `topic_turns`), for routing the conversation by
    its main topic (`bot.handoff.routing.conversation_group`)."""
    with database.session() as session:
        events = session.scalars(select(Event).where(Event.conversation_id == conversation_id)
                                 .order_by(Event.seq)).all()
        return [intent for intent, _ in topic_turns(list(events))]


def build_context(database: Database, handoff_id: int, role: str, suggest: Suggest | None = None) -> dict[str, Any]:
    """The package for hand-over `handoff_id` (`KeyError` when there is none). `role` (agent, supervisor,
    admin) is kept for callers; every role gets the same masked package."""
    return scrub(_package(database, handoff_id, suggest))


def _package(database: Database, handoff_id: int, suggest: Suggest | None) -> dict[str, Any]:
    with database.session() as session:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            raise KeyError(handoff_id)
        conversation = session.get(Conversation, handoff.conversation_id)
        assert conversation is not None
        identity = session.get(ChannelIdentity, conversation.identity_id)
        customer = session.get(Customer, conversation.customer_id) if conversation.customer_id else None
        events = session.scalars(select(Event).where(Event.conversation_id == conversation.id)
                                 .order_by(Event.seq)).all()
        linked = session.scalars(select(ChannelIdentity).where(ChannelIdentity.customer_id == customer.id)).all() \
            if customer else [identity]
        earlier = session.scalars(select(Conversation).where(Conversation.customer_id == customer.id,
                                                             Conversation.id != conversation.id)
                                  .order_by(Conversation.started_at.desc()).limit(5)).all() if customer else []
        earlier_summaries = [_earlier(session, c) for c in earlier]
        dialogue = (conversation.state or {}).get("dialogue") or {}
        task = dialogue.get("handed_over_task") or {}  # the form the customer was in when the person took over
        raw_slots = {**(dialogue.get("slots") or {}), **(task.get("slots") or {})}
        checked_id = raw_slots.get("customer_id") if raw_slots.get("identity_verified") else None
        verified_customer = session.get(Customer, str(checked_id)) if customer is None and checked_id else None
    transcript = [item for e in events if (item := _transcript_item(e)) is not None]
    slots = readable_slots(raw_slots)
    topics = topic_turns(list(events))
    # what the customer's matter is about, in their own (masked) words: the latest question on the main topic
    topic_question = scrub(topics[-1][1]) if topics else ""
    form = dialogue.get("active_loop") or task.get("form")
    who = _who(customer, verified_customer, raw_slots)
    reason = _hide(reason_text(handoff.reason, handoff.detail))
    return {
        "handoff": summary_of(handoff),
        "customer": who,
        "linked_channels": [_channel_line(i, identity) for i in linked if i is not None],
        "channel": conversation.channel,
        "reason": reason,
        "summary": _summary(conversation.channel, who, topics, reason, slots),
        "slots": slots,
        "active_form": form,
        "active_form_title": FORM_TITLES.get(form, "业务办理") if form else None,
        "transcript": transcript,
        "earlier_conversations": earlier_summaries,
        "suggestions": (suggest(topic_question) if suggest and topic_question else []),
    }


def _who(customer: Customer | None, verified_customer: Customer | None,
         slots: dict[str, Any]) -> dict[str, Any] | None:
    """The customer, as far as the facts go: the one the conversation is linked to, else the one whose identity
    the bot checked in this conversation (a form's identity check sets `customer_id` and `identity_verified`)."""
    checked = bool(slots.get("identity_verified"))
    if customer is not None:
        return {"id": customer.id, "name": customer.name, "tier": customer.tier,
                "verified": bool(customer.verified or (checked and slots.get("customer_id") == customer.id)),
                "source": "linked"}
    if verified_customer is not None:
        return {"id": verified_customer.id, "name": verified_customer.name, "tier": verified_customer.tier,
                "verified": True, "source": "identity_check"}
    if checked and slots.get("customer_id"):
        return {"id": str(slots["customer_id"]), "name": None, "tier": None, "verified": True,
                "source": "identity_check"}
    return None


def _channel_line(linked: ChannelIdentity, current: ChannelIdentity | None) -> dict[str, Any]:
    """A channel identity as agents see it: the channel's name, never the visitor id or credential behind it."""
    name = CHANNEL_NAMES.get(linked.channel, "其他渠道")
    here = current is not None and linked.id == current.id
    return {"channel": linked.channel, "name": name, "current": here, "id": "本次会话" if here else "已关联"}


def _earlier(session: Any, conversation: Conversation) -> dict[str, Any]:
    """Another conversation of the same customer (any linked channel): its topics and its last lines."""
    events = session.scalars(select(Event).where(Event.conversation_id == conversation.id,
                                                 Event.type.in_(("user", "bot", "active_loop", "session_started")))
                             .order_by(Event.seq)).all()
    lines = [item for e in events if (item := _transcript_item(e)) is not None]
    return {"conversation_id": conversation.id, "channel": conversation.channel,
            "started_at": conversation.started_at.isoformat(), "summary": _topics(topic_turns(list(events))),
            "transcript": lines[-EARLIER_LINES:]}


def _transcript_item(event: Event) -> dict[str, Any] | None:
    stamp = event.timestamp if event.timestamp.tzinfo else event.timestamp.replace(tzinfo=dt.UTC)
    data, when = event.data or {}, stamp.isoformat()
    if event.type == "user":
        parse = data.get("parse_data") or {}
        intent = parse.get("intent")
        entities = [{"entity": e["entity"], "value": _hide(str(e["value"]))} for e in parse.get("entities") or []]
        shown = (data.get("metadata") or {}).get("button_title") or data.get("text", "")  # a button: its title
        return {"role": "user", "text": _hide(shown), "timestamp": when, "intent": intent, "entities": entities}
    if event.type == "bot":
        extra = data.get("data") or {}
        role = "agent" if extra.get("source") == "agent" else "bot"
        return {"role": role, "text": _hide(data.get("text", "")), "timestamp": when, "intent": None, "entities": [],
                "author": extra.get("agent") if role == "agent" else None}
    if event.type == "agent_note":
        return {"role": "note", "text": _hide(data.get("text", "")), "timestamp": when, "intent": None, "entities": []}
    if event.type == "handoff":
        text = {"waiting": f"转人工排队（{data.get('detail') or data.get('reason')}）", "assigned":
                f"{data.get('agent') or '坐席'}已接入", "closed": f"会话结束：{data.get('disposition')}",
                "transferred": f"转接至{data.get('group')}：{data.get('note') or ''}",
                "ticket": "非工作时间，已留言待回电", "abandoned": "客户已离开",
                "cancelled": "客户取消转人工"}.get(data.get("status"), "")
        return {"role": "system", "text": _hide(text), "timestamp": when, "intent": None, "entities": []}
    return None


def _topics(turns: list[tuple[str, str]]) -> str:
    titles: list[str] = []
    for intent, words in turns:
        title = topic_title(intent, words)
        if title not in titles:
            titles.append(title)
    return "、".join(titles[:5]) or "未说明具体业务"


def _summary(channel: str, who: dict[str, Any] | None, turns: list[tuple[str, str]], reason: str,
             slots: dict[str, str]) -> str:
    if who is None:
        person = "未登录客户"
    else:
        name = who.get("name") or f"客户{who['id']}"
        details = [d for d in (who.get("tier"), "已核验身份" if who.get("verified") else "未核验身份") if d]
        person = f"{name}（{'，'.join(details)}）"
    filled = "，已提供：" + "、".join(f"{k}：{v}" for k, v in slots.items()) if slots else ""
    return (f"{person}通过{CHANNEL_NAMES.get(channel, '其他渠道')}咨询：{_topics(turns)}{filled}。"
            f"转人工原因：{reason}。")
