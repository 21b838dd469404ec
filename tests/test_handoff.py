"""Handing conversations to people: triggers, routing, the queue, agents, the rating afterwards; on SQLite and
the real PostgreSQL server, including two agents accepting the same chat at the same moment."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest

from bot.config import HandoffConfig, SkillGroupConfig
from bot.dialogue.service import ConversationService, Inbound
from bot.handoff.agents import AccountError, authenticate, create_agent
from bot.handoff.desk import AgentDesk, DeskError
from bot.handoff.handover import Handover, parse_rating
from bot.handoff.routing import is_open, next_opening, priority, skill_group
from bot.handoff.triggers import TurnFacts, detect_escalation
from bot.storage import ConversationStore, Database

SHANGHAI = ZoneInfo("Asia/Shanghai")
WORKDAY_NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=SHANGHAI)  # a Monday
SATURDAY_NIGHT = dt.datetime(2026, 11, 28, 23, 30, tzinfo=SHANGHAI)

CONFIG = HandoffConfig(
    groups=[SkillGroupConfig(name="信用卡", intents=["credit_card_bill"], categories=["信用卡"], hours="08:00-22:00"),
            SkillGroupConfig(name="贷款", intents=["loan_apply"], hours="09:00-17:30", days=[0, 1, 2, 3, 4]),
            SkillGroupConfig(name="综合服务", hours="00:00-24:00")],
    default_group="综合服务", canned={"/hi": "您好，我是人工客服小王。"})


def parse(intent: str, confidence: float = 0.9) -> dict:
    return {"intent": {"name": intent, "confidence": confidence}}


@pytest.mark.parametrize(("text", "intent", "slots", "fallbacks", "tier", "kind"), [
    ("转人工", "nlu_fallback", {}, 0, None, "request"),
    ("I want a human agent", "nlu_fallback", {}, 0, None, "request"),
    ("我要找客服", "request_human", {}, 0, None, "request"),
    ("你们再不处理我就去曝光", "chitchat", {}, 0, None, "anger"),
    ("有人冒充客服骗我转账", "suspected_fraud", {}, 0, None, "sensitive"),
    ("我的卡被盗刷了", "report_card_loss", {}, 0, None, "sensitive"),
    ("好的", "affirm", {"identity_failed": True}, 0, None, "form_failed"),
    ("asdf", "nlu_fallback", {}, 3, None, "fallback"),
    ("asdf", "nlu_fallback", {}, 1, "白金卡", "vip"),
    ("asdf", "nlu_fallback", {}, 2, None, None),
    ("信用卡账单什么时候出", "credit_card_bill", {}, 0, "白金卡", None),
])
def test_escalation_triggers(text, intent, slots, fallbacks, tier, kind) -> None:
    found = detect_escalation(CONFIG, TurnFacts(text, parse(intent), slots, fallbacks, tier))
    assert (found.kind if found else None) == kind


def test_pressing_zero_twice_asks_for_a_person() -> None:
    assert detect_escalation(CONFIG, TurnFacts("0", parse("nlu_fallback"), previous_text="0")).kind == "request"
    assert detect_escalation(CONFIG, TurnFacts("0", parse("nlu_fallback"), previous_text="你好")) is None


def test_routing_by_intent_then_category_then_default_and_priority() -> None:
    assert skill_group(CONFIG, ["greet", "credit_card_bill"], []).name == "信用卡"
    assert skill_group(CONFIG, ["greet"], ["信用卡"]).name == "信用卡"
    assert skill_group(CONFIG, ["greet"], ["外汇"]).name == "综合服务"
    assert priority(CONFIG, "sensitive", None) < priority(CONFIG, "request", None) < priority(CONFIG, "fallback", None)
    assert priority(CONFIG, "request", "白金卡") < priority(CONFIG, "request", None)


def test_working_hours_in_the_groups_time_zone() -> None:
    loans = CONFIG.groups[1]
    assert is_open(loans, WORKDAY_NOON)
    assert is_open(loans, WORKDAY_NOON.astimezone(dt.UTC))  # 04:00 UTC is noon in Shanghai
    assert not is_open(loans, SATURDAY_NIGHT)
    assert next_opening(loans, SATURDAY_NIGHT) == dt.datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI)
    assert is_open(CONFIG.groups[2], SATURDAY_NIGHT)  # 00:00-24:00


@pytest.mark.parametrize(("text", "rating"), [("5", 5), ("4分", 4), ("3 还行吧", 3), ("非常满意", 5), ("不满意", 2),
                                              ("信用卡账单", None), ("12345", None)])
def test_ratings(text: str, rating: int | None) -> None:
    assert parse_rating(text) == rating


@pytest.fixture
def desk_and_service(database_url: str, minibot_assistant):
    database = Database(database_url)
    desk = AgentDesk(database, CONFIG, clock=lambda: WORKDAY_NOON)
    service = ConversationService(minibot_assistant, ConversationStore(database), handoff=Handover(desk, CONFIG))
    return desk, service


def say(service: ConversationService, text: str, sender: str = "cust-1") -> str:
    return "\n".join(r["text"] for r in service.handle(Inbound("web", sender, text, None)).replies)


def test_the_whole_hand_over(desk_and_service) -> None:
    desk, service = desk_and_service
    agent = create_agent(desk.database, "wang", "小王", "correct horse battery", groups=["综合服务"])
    assert authenticate(desk.database, "wang", "correct horse battery").id == agent.id
    assert authenticate(desk.database, "wang", "wrong password!") is None

    queued = say(service, "转人工")
    assert "您是下一位" in queued and "预计等待约4分钟" in queued
    assert "前面还有" not in say(service, "还要等多久")  # while waiting the bot only says where they stand
    handoff = desk.open_handoff(service.store.find_conversation("cust-1").id)
    assert handoff.status == "waiting" and handoff.reason == "request" and handoff.group == "综合服务"

    desk.set_presence(agent.id, "online")  # going online takes the waiting chat
    assert desk.ticket(handoff.id).status == "assigned"
    desk.agent_message(handoff.id, agent.id, "/hi")
    assert say(service, "我的卡丢了") == ""  # a person has the chat: the bot stays quiet
    desk.note(handoff.id, agent.id, "客户卡片丢失，已指导挂失")
    desk.close(handoff.id, agent.id, "已解决")
    assert "感谢您的评价" in say(service, "5 服务很好")
    assert "挂失" in say(service, "我的卡丢了")  # the bot has the conversation back

    conversation = service.store.find_conversation("cust-1")
    events = service.store.events(conversation.id)
    handoffs = [e["status"] for e in events if e["event"] == "handoff"]
    assert handoffs == ["waiting", "assigned", "closed"]
    assert any(e["event"] == "bot" and e["text"] == "您好，我是人工客服小王。" and e["data"]["source"] == "agent"
               for e in events)
    assert any(e["event"] == "agent_note" for e in events)
    assert any(e["event"] == "satisfaction" and e["rating"] == 5 and e["comment"] == "服务很好" for e in events)
    with pytest.raises(DeskError):
        desk.agent_message(handoff.id, agent.id, "还在吗")  # closed: no longer the agent's chat


def test_queue_order_and_least_loaded_assignment(desk_and_service) -> None:
    desk, service = desk_and_service
    say(service, "转人工", "first")
    say(service, "你们太差劲了，我要投诉", "angry")  # anger goes ahead of a plain request
    say(service, "人工客服", "third")
    tickets = {s: desk.ticket(desk.open_handoff(service.store.find_conversation(s).id).id).position
               for s in ("first", "angry", "third")}
    assert tickets == {"angry": 1, "first": 2, "third": 3}
    busy = create_agent(desk.database, "li", "小李", "correct horse battery", groups=["综合服务"], max_chats=1)
    free = create_agent(desk.database, "zhao", "小赵", "correct horse battery", groups=["综合服务"], max_chats=2)
    desk.set_presence(busy.id, "online")
    desk.set_presence(free.id, "online")
    owners = {s: desk.open_handoff(service.store.find_conversation(s).id).agent_id for s in ("first", "angry", "third")}
    assert owners == {"angry": busy.id, "first": free.id, "third": free.id}


def test_two_agents_accepting_at_once_exactly_one_wins(desk_and_service) -> None:
    desk, service = desk_and_service
    agents = [create_agent(desk.database, f"a{i}", f"坐席{i}", "correct horse battery", groups=["综合服务"])
              for i in range(4)]
    say(service, "转人工", "contested")
    handoff_id = desk.open_handoff(service.store.find_conversation("contested").id).id
    barrier, wins, losses = threading.Barrier(len(agents)), [], []

    def accept(agent_id: int) -> None:
        barrier.wait()
        try:
            desk.accept(handoff_id, agent_id)
            wins.append(agent_id)
        except DeskError:
            losses.append(agent_id)

    threads = [threading.Thread(target=accept, args=(a.id,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(wins) == 1 and len(losses) == len(agents) - 1
    assert desk.open_handoff(service.store.find_conversation("contested").id).agent_id == wins[0]


def test_outside_working_hours_the_customer_leaves_a_message(database_url: str, minibot_assistant) -> None:
    database = Database(database_url)
    desk = AgentDesk(database, CONFIG, clock=lambda: SATURDAY_NIGHT)
    loans = HandoffConfig(**{**CONFIG.model_dump(), "default_group": "贷款"})
    service = ConversationService(minibot_assistant, ConversationStore(database), handoff=Handover(desk, loans))
    desk.config = loans
    reply = say(service, "转人工", "night")
    assert "09:00-17:30" in reply and "11月30日 09:00" in reply and "留言" in reply
    assert say(service, "你好") != ""  # the bot keeps answering meanwhile


def test_a_customer_who_leaves_is_taken_off_the_queue(desk_and_service) -> None:
    desk, service = desk_and_service
    say(service, "转人工", "leaver")
    conversation_id = service.store.find_conversation("leaver").id
    desk.customer_left(conversation_id)
    assert desk.open_handoff(conversation_id) is None
    assert say(service, "你好", "leaver") != ""


def test_accounts_refuse_weak_passwords_and_duplicates(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    with pytest.raises(AccountError, match="at least 10"):
        create_agent(database, "x", "X", "short")
    create_agent(database, "x", "X", "long enough password")
    with pytest.raises(AccountError, match="already exists"):
        create_agent(database, "x", "X", "long enough password")
