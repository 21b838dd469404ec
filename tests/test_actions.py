"""The bundled custom actions, run in-process and on a real rasa_sdk action server."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rasa_sdk.events import ActionExecuted, SlotSet, UserUttered
from rasa_sdk.interfaces import ActionExecutionRejection

from actions.actions import yuan
from actions.core_banking import get_core_banking
from bot.dialogue.actions import (
    ActionError,
    ActionRejected,
    ActionResult,
    InProcessActionRunner,
    RemoteActionRunner,
    domain_payload,
    tracker_payload,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"GS\d{8}\d{6}")
CARD_LOSS_SLOTS = ["card_tail", "id_last4", "confirm_loss"]
DOMAIN = domain_payload(
    intents=["check_balance", "query_transactions", "report_card_loss", "branch_location", "exchange_rate",
             "credit_card_bill", "transfer_limit", "affirm", "deny"],
    entities=["card_tail", "city", "district", "currency", "channel"],
    slots=["customer_id", "identity_verified", "identity_failed", "id_attempts", "pending_action", "card_tail",
           "id_last4", "confirm_loss", "loss_reference", "city", "district", "currency", "channel", "requested_slot"],
    responses={"utter_ask_card_tail": [{"text": "请问您要挂失的卡号后4位是？"}]},
    actions=["action_check_balance", "action_recent_transactions", "action_transfer_limit", "action_find_branch",
             "action_exchange_rate", "action_credit_card_bill", "validate_card_loss_form", "validate_identity_form",
             "action_submit_card_loss"],
    forms={"card_loss_form": CARD_LOSS_SLOTS, "identity_form": ["id_last4"]},
)


def tracker(
    text: str,
    intent: str,
    entities: dict[str, str] | None = None,
    slots: dict[str, Any] | None = None,
    customer: str | None = None,
    verified: bool = False,
    candidates: dict[str, Any] | None = None,
    active_loop: str | None = None,
) -> dict[str, Any]:
    """One user turn. `candidates`: slots a form extracted this turn (Rasa appends them after the user event)."""
    metadata = {"customer_id": customer, "verified": verified} if customer else {}
    parse_data = {
        "text": text,
        "intent": {"name": intent, "confidence": 0.95},
        "entities": [{"entity": k, "value": v, "start": 0, "end": 0} for k, v in (entities or {}).items()],
        "metadata": metadata,
    }
    user = {**UserUttered(text, parse_data, timestamp=1700000001.0, input_channel="app"), "metadata": metadata}
    events = [ActionExecuted("action_listen", timestamp=1700000000.0), user]
    events += [SlotSet(name, value, timestamp=1700000002.0) for name, value in (candidates or {}).items()]
    all_slots = {**(slots or {}), **(candidates or {})}
    return tracker_payload("user-1", all_slots, parse_data, events, active_loop=active_loop,
                           latest_action_name="action_listen")


def form_turn(text: str, slots: dict[str, Any], candidate: dict[str, Any], customer: str | None = "C0003",
              verified: bool = False) -> dict[str, Any]:
    requested = next(iter(candidate))
    return tracker(text, "inform", customer=customer, verified=verified, candidates=candidate,
                   slots={"requested_slot": requested, **slots}, active_loop="card_loss_form")


def run(runner: Any, action: str, state: dict[str, Any]) -> ActionResult:
    return asyncio.run(runner.run(action, state, DOMAIN))


def texts(result: ActionResult) -> str:
    return "\n".join(r["text"] or "" for r in result.responses)


def slots_set(result: ActionResult) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in result.events if e["event"] == "slot"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_demo_customer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOT_DEMO_CUSTOMER", raising=False)


@pytest.fixture(scope="module")
def local() -> InProcessActionRunner:
    return InProcessActionRunner("actions")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_DEMO_CUSTOMER", "BOT_CORE_BANKING")}
    log = (tmp_path_factory.mktemp("action_server") / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)],
                              cwd=ROOT, env={**env, "SANIC_HOST": "127.0.0.1"}, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"action server did not start; see {log.name}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)  # the session holds sanic's worker process too
            server.wait()
        log.close()


# ---- account actions ------------------------------------------------------------------------------

def test_balance_needs_identity_verification(local: InProcessActionRunner) -> None:
    result = run(local, "action_check_balance", tracker("查一下余额", "check_balance", customer="C0001"))
    assert "身份证号码的后4位" in texts(result)
    assert {"event": "active_loop", "name": "identity_form", "timestamp": None} in result.events
    assert slots_set(result) == {"pending_action": "action_check_balance", "requested_slot": "id_last4"}


def test_balance_of_the_only_debit_card(local: InProcessActionRunner) -> None:
    result = run(local, "action_check_balance", tracker("余额多少", "check_balance", customer="C0001", verified=True))
    balance = get_core_banking().balance("C0001", "6688")
    assert texts(result) == f"您尾号6688的借记卡可用余额为{yuan(balance.available)}。"
    assert result.events == []


def test_balance_of_the_card_named_by_the_entity(local: InProcessActionRunner) -> None:
    state = tracker("尾号3721的卡还有多少", "check_balance", {"card_tail": "3721"}, customer="C0001", verified=True)
    result = run(local, "action_check_balance", state)
    assert "尾号3721的信用卡可用额度为" in texts(result)


def test_balance_with_several_cards_asks_which_with_buttons(local: InProcessActionRunner) -> None:
    result = run(local, "action_check_balance", tracker("余额", "check_balance", customer="C0002", verified=True))
    assert "哪一张" in texts(result)
    buttons = result.responses[0]["buttons"]
    assert [b["payload"] for b in buttons] == ['/check_balance{"card_tail":"1234"}',
                                              '/check_balance{"card_tail":"5566"}']


def test_verified_slot_and_demo_customer(local: InProcessActionRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tracker("余额", "check_balance", slots={"identity_verified": True})
    assert "请先登录" in texts(run(local, "action_check_balance", state))
    monkeypatch.setenv("BOT_DEMO_CUSTOMER", "1")
    assert "尾号6688的借记卡可用余额" in texts(run(local, "action_check_balance", state))


def test_recent_transactions(local: InProcessActionRunner) -> None:
    state = tracker("最近的交易", "query_transactions", {"card_tail": "8899"}, customer="C0003", verified=True)
    result = run(local, "action_recent_transactions", state)
    lines = texts(result).splitlines()
    latest = get_core_banking().recent_transactions("C0003", "8899", 5)
    assert lines[0] == "您尾号8899的卡最近5笔交易："
    assert len(lines) == 6 and latest[0].merchant in lines[1] and "收入" in lines[1]


def test_credit_card_bill(local: InProcessActionRunner) -> None:
    result = run(local, "action_credit_card_bill", tracker("这个月账单", "credit_card_bill", customer="C0001",
                                                           verified=True))
    bill = get_core_banking().credit_card_bill("C0001")
    text = texts(result)
    assert "尾号3721" in text and f"本期应还金额{yuan(bill.amount_due)}" in text
    assert f"最低还款额{yuan(bill.minimum_payment)}" in text and "账单日" in text and "到期还款日" in text
    unverified = run(local, "action_credit_card_bill", tracker("账单", "credit_card_bill", customer="C0001"))
    assert "身份证" in texts(unverified)


# ---- public information ---------------------------------------------------------------------------

def test_transfer_limit_for_a_channel(local: InProcessActionRunner) -> None:
    result = run(local, "action_transfer_limit", tracker("手机银行转账限额", "transfer_limit", {"channel": "手机银行"},
                                                         customer="C0003"))
    assert texts(result).splitlines()[1] == "手机银行：单笔1,000,000.00元，日累计2,000,000.00元"
    standard = run(local, "action_transfer_limit", tracker("转账限额多少", "transfer_limit"))
    assert "本行默认" in texts(standard) and "柜台：单笔不限额" in texts(standard)


def test_find_branch_by_city_and_district(local: InProcessActionRunner) -> None:
    result = run(local, "action_find_branch", tracker("上海浦东的网点", "branch_location",
                                                      {"city": "上海市", "district": "浦东"}))
    text = texts(result)
    assert text.startswith("为您找到上海浦东新区的2个网点") and "陆家嘴" in text and "营业时间" in text
    assert slots_set(result) == {"city": "上海"}
    whole_city = texts(run(local, "action_find_branch", tracker("北京网点", "branch_location", {"city": "北京"})))
    assert "北京的4个网点" in whole_city


def test_unknown_city_lists_the_cities(local: InProcessActionRunner) -> None:
    result = run(local, "action_find_branch", tracker("杭州有网点吗", "branch_location", {"city": "杭州"}))
    assert texts(result) == "抱歉，暂未查到杭州的网点信息。目前可查询的城市有：上海、北京、广州、深圳。"
    assert [b["title"] for b in result.responses[0]["buttons"]] == ["上海", "北京", "广州", "深圳"]


def test_exchange_rate(local: InProcessActionRunner) -> None:
    result = run(local, "action_exchange_rate", tracker("美元汇率", "exchange_rate", {"currency": "USD"}))
    rate = get_core_banking().exchange_rate("USD")
    assert f"美元(USD)：现汇买入价{rate.spot_buy}，现汇卖出价{rate.spot_sell}" in texts(result)
    everything = texts(run(local, "action_exchange_rate", tracker("汇率", "exchange_rate")))
    assert all(code in everything for code in ("USD", "EUR", "JPY", "HKD", "GBP"))
    unknown = texts(run(local, "action_exchange_rate", tracker("韩元汇率", "exchange_rate", {"currency": "KRW"})))
    assert "暂不提供KRW" in unknown and "英镑(GBP)" in unknown


# ---- card loss form -------------------------------------------------------------------------------

def test_card_tail_validation(local: InProcessActionRunner) -> None:
    bad = run(local, "validate_card_loss_form", form_turn("12a", {}, {"card_tail": "12a"}))
    assert slots_set(bad) == {"card_tail": None} and "4位数字" in texts(bad)
    not_hers = run(local, "validate_card_loss_form", form_turn("9999", {}, {"card_tail": "9999"}))
    assert slots_set(not_hers) == {"card_tail": None}
    assert "没有尾号9999的卡" in texts(not_hers) and "8899" in texts(not_hers)
    good = run(local, "validate_card_loss_form", form_turn("尾号8899", {}, {"card_tail": "尾号8899"}))
    assert slots_set(good) == {"card_tail": "8899"} and good.responses == []


def test_three_wrong_ids_fail_identity(local: InProcessActionRunner) -> None:
    slots: dict[str, Any] = {"card_tail": "8899"}
    for attempt in (1, 2):
        result = run(local, "validate_card_loss_form", form_turn("1234", slots, {"id_last4": "1234"}))
        assert slots_set(result) == {"id_last4": None, "id_attempts": attempt}
        assert f"还可尝试{3 - attempt}次" in texts(result)
        slots["id_attempts"] = attempt
    result = run(local, "validate_card_loss_form", form_turn("1234", slots, {"id_last4": "1234"}))
    assert slots_set(result) == {"id_last4": None, "id_attempts": 3, "identity_failed": True, "requested_slot": None}
    assert "连续3次" in texts(result)


def test_right_id_and_confirmation(local: InProcessActionRunner) -> None:
    right = run(local, "validate_card_loss_form", form_turn("402x", {"card_tail": "8899"}, {"id_last4": "402x"}))
    assert slots_set(right) == {"id_last4": "402X", "customer_id": "C0003", "identity_verified": True,
                                "id_attempts": 0}
    done = {"card_tail": "8899", "id_last4": "402X"}
    for said, meaning in (("确认", True), ("是的", True), ("yes", True), ("不是", False), ("取消吧", False)):
        result = run(local, "validate_card_loss_form", form_turn(said, done, {"confirm_loss": said}))
        assert slots_set(result) == {"confirm_loss": meaning}, said
    unclear = run(local, "validate_card_loss_form", form_turn("嗯哼什么", done, {"confirm_loss": "啥"}))
    assert slots_set(unclear) == {"confirm_loss": None} and "确认" in texts(unclear)


def test_verified_customer_skips_the_id_question(local: InProcessActionRunner) -> None:
    result = run(local, "validate_card_loss_form", form_turn("8899", {}, {"card_tail": "8899"}, verified=True))
    assert slots_set(result) == {"card_tail": "8899", "requested_slot": "confirm_loss"}


def test_customer_not_logged_in_is_identified_by_card_and_id(local: InProcessActionRunner) -> None:
    tail = run(local, "validate_card_loss_form", form_turn("5566", {}, {"card_tail": "5566"}, customer=None))
    assert slots_set(tail) == {"card_tail": "5566"}
    ident = run(local, "validate_card_loss_form", form_turn("5721", {"card_tail": "5566"}, {"id_last4": "5721"},
                                                              customer=None))
    assert slots_set(ident)["customer_id"] == "C0002"


def test_submit_reports_the_loss_once(local: InProcessActionRunner) -> None:
    slots = {"card_tail": "4321", "id_last4": "402X", "confirm_loss": True}
    state = tracker("确认", "affirm", customer="C0003", slots=slots)
    first = run(local, "action_submit_card_loss", state)
    reference = REFERENCE.search(texts(first)).group()
    assert slots_set(first) == {"card_tail": None, "id_last4": None, "confirm_loss": None, "id_attempts": None,
                                "loss_reference": reference}
    second = run(local, "action_submit_card_loss", state)
    assert slots_set(second)["loss_reference"] == reference
    assert {c.tail: c.status for c in get_core_banking().cards("C0003")}["4321"] == "挂失"
    declined = run(local, "action_submit_card_loss", tracker("不了", "deny", customer="C0003",
                                                             slots={**slots, "confirm_loss": False}))
    assert "已取消" in texts(declined) and "loss_reference" not in slots_set(declined)


# ---- runners --------------------------------------------------------------------------------------

SAME_EVERYWHERE = {
    "balance unverified": ("action_check_balance", tracker("余额", "check_balance", customer="C0001")),
    "balance verified": ("action_check_balance", tracker("余额", "check_balance", customer="C0001", verified=True)),
    "several cards": ("action_check_balance", tracker("余额", "check_balance", customer="C0002", verified=True)),
    "transactions": ("action_recent_transactions", tracker("明细", "query_transactions", {"card_tail": "6688"},
                                                           customer="C0001", verified=True)),
    "branch": ("action_find_branch", tracker("深圳南山区网点", "branch_location",
                                             {"city": "深圳", "district": "南山区"})),
    "unknown city": ("action_find_branch", tracker("杭州网点", "branch_location", {"city": "杭州"})),
    "exchange rate": ("action_exchange_rate", tracker("欧元汇率", "exchange_rate", {"currency": "EUR"})),
    "bill": ("action_credit_card_bill", tracker("账单", "credit_card_bill", customer="C0003", verified=True)),
    "limits": ("action_transfer_limit", tracker("限额", "transfer_limit", customer="C0002")),
    "bad tail": ("validate_card_loss_form", form_turn("12", {}, {"card_tail": "12"})),
    "wrong id": ("validate_card_loss_form", form_turn("0000", {"card_tail": "8899"}, {"id_last4": "0000"})),
    "third wrong id": ("validate_card_loss_form", form_turn("0000", {"card_tail": "8899", "id_attempts": 2},
                                                           {"id_last4": "0000"})),
    "confirm": ("validate_card_loss_form", form_turn("好的", {"card_tail": "8899", "id_last4": "402X"},
                                                     {"confirm_loss": "好的"})),
}


@pytest.mark.parametrize("case", list(SAME_EVERYWHERE))
def test_remote_and_in_process_agree(case: str, local: InProcessActionRunner, server_url: str) -> None:
    action, state = SAME_EVERYWHERE[case]
    remote = run(RemoteActionRunner(server_url, timeout=10), action, state)
    assert remote == run(local, action, state)
    assert remote.responses or remote.events, case


def test_remote_submit_gives_the_same_reference_twice(local: InProcessActionRunner, server_url: str) -> None:
    state = tracker("确认", "affirm", customer="C0001", slots={"card_tail": "3721", "confirm_loss": True})
    remote = RemoteActionRunner(server_url)
    first, second = run(remote, "action_submit_card_loss", state), run(remote, "action_submit_card_loss", state)
    assert texts(first) == texts(second) and REFERENCE.search(texts(first))
    in_process = run(local, "action_submit_card_loss", state)
    # the two processes hold separate demo banks, so only the reference number may differ
    assert REFERENCE.sub("#", texts(in_process)) == REFERENCE.sub("#", texts(first))


def test_unknown_action_is_an_error_in_both_runners(local: InProcessActionRunner, server_url: str) -> None:
    state = tracker("你好", "greet")
    for runner in (local, RemoteActionRunner(server_url)):
        with pytest.raises(ActionError, match="action_does_not_exist"):
            run(runner, "action_does_not_exist", state)


def test_rejection_is_action_rejected() -> None:
    runner = InProcessActionRunner("actions")

    def reject(dispatcher: Any, tracker: Any, domain: Any) -> list[dict[str, Any]]:
        raise ActionExecutionRejection("validate_card_loss_form", "没有可以校验的槽位")

    runner.executor.register_function("validate_card_loss_form", reject)
    with pytest.raises(ActionRejected) as rejected:
        run(runner, "validate_card_loss_form", tracker("随便", "chitchat"))
    assert rejected.value.action_name == "validate_card_loss_form"


def test_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/webhook"
    with pytest.raises(ActionError, match=re.escape(url)):
        run(RemoteActionRunner(url, timeout=2), "action_check_balance", tracker("余额", "check_balance"))


def test_tracker_and_domain_payload_shapes() -> None:
    state = tracker("余额", "check_balance", customer="C0001", active_loop="card_loss_form")
    assert set(state) == {"sender_id", "slots", "latest_message", "latest_event_time", "followup_action", "paused",
                          "events", "latest_input_channel", "active_loop", "latest_action", "latest_action_name"}
    assert state["latest_input_channel"] == "app" and state["latest_event_time"] == 1700000001.0
    assert state["active_loop"]["name"] == "card_loss_form"
    assert DOMAIN["forms"]["card_loss_form"]["required_slots"] == CARD_LOSS_SLOTS


@pytest.mark.parametrize(("said", "tail"), [("6688", "6688"), ("尾号是6688", "6688"), ("6222021234567886688", "6688"),
                                            ("6222 0212 3456 7886 688", "6688"), ("***************6688", "6688"),
                                            ("12345", None)])
def test_the_card_tail_of_what_the_customer_typed(said: str, tail: str | None) -> None:
    from actions.actions import four_digits

    assert four_digits(said) == tail


@pytest.mark.parametrize(("said", "last4"), [("3456", "3456"), ("后四位002x", "002X"), ("310104198507023456", "3456"),
                                             ("**************402X", "402X"), ("11010819780906402x", "402X")])
def test_the_id_last_four_of_what_the_customer_typed(said: str, last4: str) -> None:
    from actions.actions import id_last4_of

    assert id_last4_of(said) == last4


def test_a_customer_who_types_whole_numbers_reports_the_loss_and_nothing_is_kept_in_clear(bundled_assistant,
                                                                                          tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from bot.storage import Database
    from bot.storage.models import Base
    from bot.web.app import create_app

    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    client = TestClient(create_app(bundled_assistant.config, assistant=bundled_assistant, database=database))

    def say(text: str) -> str:
        response = client.post("/webhooks/rest/webhook", json={"sender": "whole-numbers", "message": text})
        return " ".join(r["text"] for r in response.json())

    say("我的卡丢了")
    assert "身份证" in say("卡号6222021234567886688")
    assert "确认" in say("310104198507023456")
    with database.session() as session:
        stored = "\n".join(str(tuple(row)) for table in Base.metadata.sorted_tables
                           for row in session.execute(select(table)))
    assert "6222021234567886688" not in stored and "310104198507023456" not in stored
    assert "***************6688" in stored
