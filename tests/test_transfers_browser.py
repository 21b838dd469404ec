"""Transfers and undelivered replies in the agent console, in one real headless Chromium (issue 13): an agent
transfers a customer to a named colleague, who sees the note on the card and in the chat; the customer leaves,
the colleague's reply is marked 未送达 (also after a reload), 重试 delivers it once the customer is back; at 1280
and 390 px. Real server (uvicorn), the bundled bank bot, a temporary SQLite database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install -y chromium fonts-wqy-microhei)",
                allow_module_level=True)

from browser_support import (  # noqa: E402
    SHOTS,
    DeskAgent,
    agent_headers,
    ask,
    assert_clean,
    assert_fits,
    chromium,
    desk_app,
    desk_page,
    log_in,
    open_widget,
    send_reply,
    served,
)
from playwright.sync_api import Browser, Page, expect  # noqa: E402

NOTE = "客户要挂失借记卡，已核对卡号后四位"


@pytest.fixture(scope="module")
def base_url(bundled_assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app, _ = desk_app(bundled_assistant, tmp_path_factory.mktemp("transfers"), agents=[
        DeskAgent("wang", "小王", ["综合服务", "借记卡与账户"], employee_no="1024"),
        DeskAgent("li", "小李", ["综合服务", "借记卡与账户"], employee_no="1025"),
        DeskAgent("zhao", "赵主管", ["综合服务"], role="supervisor"),
    ])
    with served(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def log_in_online(page: Page, base_url: str, username: str) -> None:
    log_in(page, base_url, username)
    expect(page.locator("#live-status")).to_have_text("实时连接")
    page.get_by_role("button", name="在线", exact=True).click()
    expect(page.get_by_role("button", name="在线", exact=True)).to_have_attribute("aria-pressed", "true")


def test_transfer_to_a_named_colleague_and_an_undelivered_reply_retried(browser: Browser, base_url: str) -> None:
    wang = desk_page(browser)
    log_in_online(wang, base_url, "wang")
    expect(wang.locator("#agent-name")).to_have_text("小王（工号1024 · 坐席）")

    customer = desk_page(browser, 420, 760)
    customer.goto(base_url)
    open_widget(customer)
    ask(customer, "转人工")
    expect(wang.locator("#mine-list .qcard")).to_have_count(1)  # given to 小王, the only one online
    expect(wang.get_by_role("log", name="会话记录").locator(".entry.system").last).to_contain_text("小王已接入")

    li = desk_page(browser)
    log_in_online(li, base_url, "li")
    expect(li.locator("#mine-list .qcard")).to_have_count(0)

    # 小王 transfers to 小李 by name; the dialog shows who is online and their load
    wang.get_by_role("button", name="转接", exact=True).click()
    dialog = wang.get_by_role("dialog", name="转接会话")
    expect(dialog).to_be_visible()
    target = dialog.get_by_label("转接给")
    colleague = target.locator("option", has_text="小李")
    expect(colleague).to_have_text("小李（工号1025） · 接待中 0/3")
    expect(target.locator("option", has_text="小王")).to_have_count(0)  # not oneself
    target.select_option(colleague.get_attribute("value"))
    dialog.get_by_label(re.compile("^转接备注")).fill(NOTE)
    wang.screenshot(path=SHOTS / "transfer-dialog-1280.png")
    dialog.get_by_role("button", name="确认转接").click()
    expect(dialog).to_be_hidden()
    expect(wang.get_by_role("alert")).to_contain_text("已转接给小李")
    expect(wang.locator("#mine-list .qcard")).to_have_count(0)

    # 小李 has it, with where it came from on the card and in the chat
    card = li.locator("#mine-list .qcard")
    expect(card).to_have_count(1)
    expect(card.locator(".transfer-note")).to_have_text(f"转接自 小王：{NOTE}")
    expect(li.locator("#chat-transfer")).to_have_text(f"转接自 小王：{NOTE}")
    expect(li.locator("#ctx-transfer")).to_have_text(f"转接自 小王：{NOTE}")
    # the customer is told who has them now, in the transcript and the status line (the note stays internal)
    expect(customer.get_by_text("已为您转由客服小李（工号1025）继续服务")).to_be_visible()
    expect(customer.locator("#bbw-status")).to_contain_text("客服小李（工号1025）为您服务")
    expect(customer.get_by_text(NOTE)).to_have_count(0)
    customer.screenshot(path=SHOTS / "transfer-customer-told.png")
    send_reply(li, "您好，我是小李，接着为您办理")
    expect(customer.locator(".msg.bot .bubble .text", has_text="我是小李")).to_have_count(1)

    # the customer leaves: the next reply cannot reach them and says so, also after a reload
    customer_context = customer.context
    customer.close()
    send_reply(li, "请问您还在吗？")
    transcript = li.get_by_role("log", name="会话记录")
    undelivered = transcript.locator(".entry.agent", has_text="请问您还在吗？")
    expect(undelivered.locator(".delivery .why")).to_have_text(re.compile(r"^未送达（.+）$"))
    expect(li.get_by_role("alert")).to_contain_text("未能送达")
    li.reload()
    undelivered = li.get_by_role("log", name="会话记录").locator(".entry.agent", has_text="请问您还在吗？")
    expect(undelivered.locator(".delivery .why")).to_have_text(re.compile(r"^未送达（.+）$"))
    expect(undelivered.get_by_role("button", name="重试发送这条消息")).to_be_visible()
    expect(undelivered.get_by_role("button", name="转回电工单")).to_be_visible()
    delivered = li.get_by_role("log", name="会话记录").locator(".entry.agent", has_text="接着为您办理")
    expect(delivered.locator(".delivery")).to_have_count(0)
    li.screenshot(path=SHOTS / "transfer-received-undelivered-1280.png")

    # at phone width the desk still fits, the note and the 未送达 mark in view
    li.set_viewport_size({"width": 390, "height": 844})
    assert_fits(li, 390)
    expect(li.locator("#chat-transfer")).to_be_visible()
    undelivered.scroll_into_view_if_needed()
    expect(undelivered.get_by_role("button", name="重试发送这条消息")).to_be_in_viewport()
    li.screenshot(path=SHOTS / "transfer-received-undelivered-390.png")
    li.set_viewport_size({"width": 1280, "height": 860})

    # the customer is back (same browser: same visitor) and reads it in their history; 重试 records that
    # instead of sending it a second time
    back = customer_context.new_page()
    errors: list[str] = []
    back.on("pageerror", lambda e: errors.append(str(e)))
    back.goto(base_url)
    open_widget(back)
    expect(back.locator(".msg.bot .bubble .text", has_text="请问您还在吗？")).to_have_count(1)
    undelivered.get_by_role("button", name="重试发送这条消息").click()
    expect(li.get_by_role("alert")).to_contain_text("已在聊天记录中收到")
    retried = li.get_by_role("log", name="会话记录").locator(".entry.agent", has_text="请问您还在吗？")
    expect(retried.locator(".delivery")).to_have_text("重试后已送达")
    expect(retried.get_by_role("button", name="重试发送这条消息")).to_have_count(0)
    send_reply(li, "看到您回来了，我们继续办理挂失")
    expect(back.locator(".msg.bot .bubble .text", has_text="我们继续办理挂失")).to_have_count(1)
    expect(back.locator(".msg.bot .bubble .text", has_text="请问您还在吗？")).to_have_count(1)  # not twice
    back.screenshot(path=SHOTS / "transfer-customer-back.png")
    for page in (wang, li):
        assert_clean(page)
    assert errors == []


def test_a_callback_ticket_and_a_rating_comment_in_the_agents_and_the_supervisors_views(
        browser: Browser, base_url: str) -> None:
    """A REST customer's reply cannot be delivered: 转回电工单; the chat is closed and rated with a comment. The
    agent reads the rating on their closed chat, the supervisor the ticket and the rating."""
    import httpx

    def session(username: str, presence: str) -> dict[str, str]:
        with httpx.Client(base_url=base_url) as http:
            headers = agent_headers(http, username)
            http.post("/api/agent/presence", json={"presence": presence}, headers=headers)
        return headers

    session("li", "away")
    wang_api = session("wang", "online")
    httpx.post(f"{base_url}/webhooks/rest/webhook", json={"sender": "rest-callback", "message": "转人工"})
    handoff_id = httpx.get(f"{base_url}/api/agent/queue", headers=wang_api).json()["mine"][-1]["handoff_id"]

    wang = desk_page(browser)
    log_in_online(wang, base_url, "wang")
    card = wang.locator("#mine-list .qcard", has_text="客户要求转人工").last
    card.click()
    expect(wang.locator("#chat-sub")).to_contain_text(f"会话 #{handoff_id}")
    expect(wang.locator("#chat-sub")).to_contain_text("接口")  # the channel's name from the server
    send_reply(wang, "我们会尽快给您回电")
    line = wang.get_by_role("log", name="会话记录").locator(".entry.agent", has_text="尽快给您回电")
    expect(line.locator(".delivery .why")).to_contain_text("未送达")
    line.get_by_role("button", name="转回电工单").click()
    expect(line.locator(".delivery")).to_contain_text(re.compile(r"已转回电工单 #\d+"))
    expect(wang.get_by_role("log", name="会话记录").locator(".entry.note").last).to_contain_text("已转回电工单")
    wang.get_by_role("button", name="结束会话").click()
    wang.get_by_role("button", name="确认结束").click()
    httpx.post(f"{base_url}/webhooks/rest/webhook", json={"sender": "rest-callback", "message": "4 回复很及时"})

    # the agent's closed chat, read-only, with the customer's rating and comment
    closed = wang.locator("#closed-list .qcard", has_text="回复很及时")
    wang.reload()
    expect(closed).to_have_count(1)
    expect(closed.locator(".rating-line")).to_have_text("客户评价 ★★★★☆ 4分")
    closed.click()
    expect(wang.locator("#chat-ended")).to_have_text("会话已结束（已解决） · 客户评价 ★★★★☆ 4分 · “回复很及时”")
    expect(wang.locator("#composer")).to_be_hidden()
    expect(wang.get_by_role("button", name="转接", exact=True)).to_be_hidden()
    wang.screenshot(path=SHOTS / "closed-chat-rating-1280.png")

    supervisor = desk_page(browser)
    log_in(supervisor, base_url, "zhao")
    supervisor.get_by_role("button", name="主管视图").click()
    ticket = supervisor.locator("#sup-callbacks tbody tr")
    expect(ticket).to_have_count(1)
    expect(ticket).to_contain_text("回电：坐席回复未送达")
    expect(ticket).to_contain_text("接口")
    rated = supervisor.locator("#sup-rated tbody tr", has_text="回复很及时")
    expect(rated).to_contain_text("小王")
    expect(rated.locator("td.stars")).to_have_text("★★★★☆ 4分")
    supervisor.locator("#sup-callbacks").scroll_into_view_if_needed()
    supervisor.screenshot(path=SHOTS / "supervisor-callbacks-ratings-1280.png", full_page=True)
    supervisor.set_viewport_size({"width": 390, "height": 844})
    assert_fits(supervisor, 390)
    supervisor.screenshot(path=SHOTS / "supervisor-callbacks-ratings-390.png", full_page=True)
    for page in (wang, supervisor):
        assert_clean(page)
