"""Form state does not outlive the form, and what a customer plainly means is understood: a cancelled form's
counters start again, a person taking over ends the form, "好的" after the offer of a person is a yes, and a
request typed during the ID step is not a wrong ID. Messages written for these tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_agent_api import NOON, PASSWORD, login

from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.web.app import create_app


@pytest.fixture
def client(bundled_assistant, tmp_path: Path) -> TestClient:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    app = create_app(bundled_assistant.config, assistant=bundled_assistant, database=database)
    app.state.desk.clock = lambda: NOON
    create_agent(database, "wang", "小王", PASSWORD, groups=["借记卡与账户", "综合服务"])
    return TestClient(app)


def says(client: TestClient, sender: str):
    def say(text: str) -> str:
        response = client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text})
        assert response.status_code == 200, response.text
        return " ".join(r["text"] for r in response.json())
    return say


def test_a_cancelled_card_loss_starts_again_with_all_its_attempts(client: TestClient) -> None:
    say = says(client, "cancel-again")
    say("我的卡丢了")
    say("尾号6688")
    assert "还可尝试2次" in say("1111")
    assert "还可尝试1次" in say("2222")
    assert "取消" in say("算了")
    say("我要挂失银行卡")
    say("尾号6688")
    reply = say("3333")
    assert "还可尝试2次" in reply and "连续3次" not in reply


def test_a_request_during_the_id_step_is_not_a_wrong_id(client: TestClient) -> None:
    say = says(client, "id-step")
    say("我的卡丢了")
    say("尾号6688")
    reply = say("帮我挂失尾号1234的借记卡")
    assert "不符" not in reply and "还可尝试" not in reply
    assert "身份证" in reply
    assert "还可尝试2次" in say("9999")  # the first real wrong answer is the first attempt


def test_yes_to_the_offer_of_a_person_hands_over(client: TestClient) -> None:
    say = says(client, "offer-yes")
    say("asdfgh qwe")
    offer = say("zxcvb nmm")
    assert "转接人工" in offer
    assert "人工客服" in say("好的")
    store = client.app.state.conversations.store
    assert store.find_conversation_of("rest", "offer-yes").status == "queued"


@pytest.mark.parametrize("yes", ["嗯", "可以", "是的"])
def test_other_plain_yeses_hand_over_too(client: TestClient, yes: str) -> None:
    say = says(client, f"offer-{yes}")
    say("asdfgh qwe")
    assert "转接人工" in say("zxcvb nmm")
    say(yes)
    assert client.app.state.conversations.store.find_conversation_of("rest", f"offer-{yes}").status == "queued"


def test_a_yes_without_an_offer_is_no_hand_over(client: TestClient) -> None:
    say = says(client, "plain-yes")
    say("你好")
    say("好的")
    assert client.app.state.conversations.store.find_conversation_of("rest", "plain-yes").status == "bot"


def test_after_a_person_closes_the_chat_the_form_does_not_come_back(client: TestClient) -> None:
    say = says(client, "closed-form")
    say("我的卡丢了")
    say("尾号6688")
    say("转人工")
    agent = login(client, "wang")
    waiting = client.get("/api/agent/queue", headers=agent).json()["waiting"]
    handoff_id = waiting[0]["handoff_id"]
    assert client.post(f"/api/agent/handoffs/{handoff_id}/accept", headers=agent).status_code == 200
    assert client.post(f"/api/agent/handoffs/{handoff_id}/close", headers=agent,
                       json={"disposition": "已解决"}).status_code == 200
    say("5")  # the rating
    reply = say("谢谢")
    assert "继续" not in reply and "身份证" not in reply and "尾号" not in reply


@pytest.mark.parametrize("message", ["帮忙开通，谢谢"])
def test_thanks_attached_to_a_request_does_not_replace_it(client: TestClient, bundled_assistant, message: str) -> None:
    assert bundled_assistant.parse(message)["intent"]["name"] == "thanks"  # what the classifier alone makes of it
    response = client.post("/webhooks/rest/webhook", json={"sender": "courtesy", "message": message}).json()
    reply = " ".join(r["text"] for r in response)
    assert "不用谢" not in reply and "不客气" not in reply and "客气" not in reply
    assert bundled_assistant.parse("帮忙开通")["intent"]["name"] != "thanks"


def test_plain_thanks_is_still_thanks(client: TestClient) -> None:
    reply = says(client, "just-thanks")("谢谢你")
    assert "尾号" not in reply and reply


@pytest.mark.parametrize(("message", "product"), [("我的微粒贷怎么还款", "微粒贷"), ("借呗额度为什么降了", "借呗"),
                                                  ("花呗能分期吗", "花呗"), ("京东白条逾期会上征信吗", "京东白条")])
def test_another_institutions_product_is_said_to_be_out_of_scope(client: TestClient, message: str,
                                                                 product: str) -> None:
    reply = says(client, f"oos-{product}")(message)
    assert f"“{product}”不是示例银行的产品" in reply


@pytest.mark.parametrize("message", ["帮我订一张明天去上海的高铁票", "今天双色球开奖号码多少"])
def test_a_matter_no_bank_handles_is_said_to_be_out_of_scope(client: TestClient, message: str) -> None:
    assert "不在示例银行的服务范围内" in says(client, f"oos-{message}")(message)


def test_our_own_loans_are_still_answered(client: TestClient) -> None:
    reply = says(client, "own-loan")("个人消费贷款怎么申请")
    assert "不是示例银行" not in reply and "服务范围" not in reply


def test_an_elliptical_follow_up_keeps_the_topic(client: TestClient) -> None:
    say = says(client, "ellipsis")
    say("我想办张信用卡")
    conditions = say("要什么条件")
    assert "信用卡" in conditions or "主卡" in conditions  # the credit card's conditions, not a loan's
    approval = say("那多久能批下来")
    assert "信用卡" in approval and "贷款" not in approval


def test_several_questions_in_one_message_get_an_answer_each(client: TestClient) -> None:
    reply = says(client, "two-questions")("信用卡账单怎么查？还有手机银行转账限额是多少")
    assert "账单" in reply and "限额" in reply


def test_one_question_in_two_sentences_is_one_question(client: TestClient) -> None:
    reply = says(client, "one-question")("我的卡丢了。怎么办？")
    assert "尾号" in reply  # the card-loss form starts, once


def test_a_goodbye_is_a_goodbye_not_a_menu(client: TestClient, bundled_assistant) -> None:
    assert 0.6 <= bundled_assistant.parse("拜拜啦")["intent"]["confidence"] < 0.9  # below the bar for bank answers
    response = client.post("/webhooks/rest/webhook", json={"sender": "bye", "message": "拜拜啦"}).json()
    assert "再见" in " ".join(r["text"] for r in response) and not any(r.get("buttons") for r in response)


def test_a_question_that_depends_on_the_product_asks_which_one(client: TestClient) -> None:
    response = client.post("/webhooks/rest/webhook", json={"sender": "which", "message": "额度什么时候能提高"}).json()
    assert response[0]["text"] == "请问您问的是信用卡还是贷款？"
    assert [b["title"] for b in response[0]["buttons"]] == ["信用卡", "贷款"]
    named = client.post("/webhooks/rest/webhook",
                        json={"sender": "named", "message": "信用卡额度什么时候能提高"}).json()
    shown = " ".join([named[0]["text"], *(b["title"] for b in named[0].get("buttons", []))])
    assert "信用卡还是贷款" not in shown and "信用卡" in shown and "额度" in shown  # answered or offered, not asked


@pytest.mark.parametrize("message", ["我想了解一下你们银行针对小微企业主的供应链金融服务具体是怎么合作的",
                                     "你们那个大堂经理给我推荐的产品和说的完全不一样我要个说法"])
def test_a_long_clear_request_that_matches_nothing_is_offered_a_person_at_once(client: TestClient,
                                                                              message: str) -> None:
    reply = says(client, f"long-{message[:6]}")(message)
    assert "转接人工客服" in reply and "换个说法" not in reply


def test_a_weak_intent_does_not_answer_and_the_right_entry_is_offered(client: TestClient, bundled_assistant) -> None:
    message = "我需要结清证明到那里打印"
    parse = bundled_assistant.parse(message)
    assert parse["intent"]["name"] == "deposit_certificate" and parse["intent"]["confidence"] < 0.9
    response = client.post("/webhooks/rest/webhook", json={"sender": "weak", "message": message}).json()
    titles = [b["title"] for b in response[0]["buttons"]]
    assert response[0]["text"] == "您是不是想问：" and any("结清证明" in t for t in titles)
    assert titles[-1] == "都不是，转人工"  # every menu has a way out


@pytest.mark.parametrize("message", ["转账的问题", "手机银行那个怎么弄", "存款那个能不能弄一下"])
def test_an_uncertain_message_gets_a_menu_with_a_way_out_not_an_answer(client: TestClient, bundled_assistant,
                                                                       message: str) -> None:
    assert bundled_assistant.parse(message)["intent"]["confidence"] < 0.9
    response = client.post("/webhooks/rest/webhook", json={"sender": f"menu-{message}", "message": message}).json()
    assert response[0]["text"] == "您是不是想问：" and response[0]["buttons"][-1]["title"] == "都不是，转人工"
