"""The customer's side of a hand-over in a real headless Chromium, against the real server (uvicorn), the
bundled bank bot and a temporary SQLite database; the agent works through the desk's HTTP API with their
session token. The customer waits (place in the status line, 取消排队, a reload keeps the place), cancels, asks
again, sees 客服小王（工号1024） join and write in bubbles of their own, keeps that after a reload, sees the agent
leave, rates with a comment and downloads the transcript. Screenshots at 1280x800 and 390x844."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install -y chromium fonts-wqy-microhei)",
                allow_module_level=True)

import httpx  # noqa: E402
from browser_support import (  # noqa: E402
    SHOTS,
    DeskAgent,
    agent_headers,
    ask,
    assert_clean,
    bubble_texts,
    chromium,
    desk_app,
    desk_page,
    open_widget,
    served,
)
from playwright.sync_api import Browser, Page, expect  # noqa: E402

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SERVED_BY = "客服小王（工号1024）为您服务"
GOODBYE = "客服小王已结束本次服务，智能客服继续为您服务"
GREETING = "您好，我是客服小王，请问有什么可以帮您？"
COMMENT = "小王解答很耐心，谢谢"


@pytest.fixture(scope="module")
def server(bundled_assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """(base URL, database): the app served by uvicorn with its own SQLite database and the agent 小王 (1024)."""
    app, database = desk_app(bundled_assistant, tmp_path_factory.mktemp("widget-handoff"),
                             agents=[DeskAgent("wang", "小王", employee_no="1024")])  # in every group
    with served(app) as base:
        yield base, database


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


class Desk:
    """The agent 小王 at the desk, through its HTTP API (never online: chats wait until accepted by hand)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=20)
        self.http.headers.update(agent_headers(self.http, "wang"))

    def accept_the_waiting_chat(self) -> int:
        waiting = self.http.get("/api/agent/queue").json()["waiting"]
        assert len(waiting) == 1, waiting
        handoff_id = waiting[0]["handoff_id"]
        accepted = self.http.post(f"/api/agent/handoffs/{handoff_id}/accept")
        assert accepted.status_code == 200, accepted.text
        return handoff_id

    def say(self, handoff_id: int, text: str) -> None:
        sent = self.http.post(f"/api/agent/handoffs/{handoff_id}/messages", json={"text": text})
        assert sent.status_code == 200 and sent.json()["delivered"], sent.text

    def close(self, handoff_id: int) -> None:
        closed = self.http.post(f"/api/agent/handoffs/{handoff_id}/close", json={"disposition": "已解决"})
        assert closed.status_code == 200, closed.text


def reload(page: Page) -> None:
    """A reload: the widget opens again by itself (it was open) and loads its history."""
    page.reload()
    expect(page.locator(".panel")).to_be_visible()
    expect(page.locator(".status")).not_to_have_text(re.compile("连接中|重连"))


def shoot(page: Page, name: str) -> None:
    page.screenshot(path=SHOTS / f"widget-handoff-{name}-1280.png")
    page.set_viewport_size(PHONE)
    page.screenshot(path=SHOTS / f"widget-handoff-{name}-390.png")
    page.set_viewport_size(DESKTOP)


def test_the_customer_sees_who_is_speaking(browser: Browser, server: tuple[str, Any]) -> None:
    from bot.storage.models import Handoff

    base_url, database = server
    customer = desk_page(browser, **DESKTOP)
    customer.goto(base_url)
    open_widget(customer)
    status, cancel = customer.locator(".status"), customer.get_by_role("button", name="取消排队")
    expect(status).to_contain_text("智能客服为您服务")
    expect(cancel).to_be_hidden()

    # waiting: the place in the status line and a way out, both still there after a reload
    assert "您是下一位" in " ".join(ask(customer, "转人工"))
    expect(status).to_have_text(re.compile("^排队中：您是下一位"))
    expect(cancel).to_be_visible()
    shoot(customer, "waiting")
    reload(customer)
    expect(status).to_have_text(re.compile("^排队中：您是下一位"))
    expect(cancel).to_be_visible()

    # leaving the queue: the bot says so and has the chat again
    users = customer.locator(".msg.user").count()
    cancel.click()
    expect(customer.locator(".msg.user")).to_have_count(users + 1)
    expect(customer.locator(".msg.bot .bubble .text").last).to_have_text(re.compile("已为您取消转人工"))
    expect(status).to_have_text("在线 · 智能客服为您服务")
    expect(cancel).to_be_hidden()

    # asks again; 小王 accepts: the notice, the status line, 小王's bubbles in a style of their own
    ask(customer, "转人工")
    expect(cancel).to_be_visible()
    desk = Desk(base_url)
    handoff_id = desk.accept_the_waiting_chat()
    expect(status).to_contain_text(SERVED_BY)
    expect(customer.locator(".sysline").last).to_have_text(SERVED_BY)
    expect(cancel).to_be_hidden()
    desk.say(handoff_id, GREETING)
    agent_row = customer.locator(".msg.bot.agent").last
    expect(agent_row.locator(".bubble .text")).to_have_text(GREETING)
    expect(agent_row.locator(".sender")).to_contain_text("客服小王")
    bot_row = customer.locator(".msg.bot:not(.agent)").last
    look = "el => { const s = getComputedStyle(el); return [s.backgroundColor, s.borderTopColor]; }"
    assert agent_row.locator(".bubble").evaluate(look) != bot_row.locator(".bubble").evaluate(look)
    shoot(customer, "agent")

    # a reload keeps who is speaking
    reload(customer)
    expect(status).to_contain_text(SERVED_BY)
    expect(customer.locator(".msg.bot.agent .sender").last).to_contain_text("客服小王")
    expect(customer.locator(".msg.bot.agent .bubble .text").last).to_have_text(GREETING)
    expect(customer.locator(".sysline", has_text=SERVED_BY)).to_have_count(1)

    # 小王 closes: the goodbye, the bot is back, the rating prompt with its comment box
    desk.close(handoff_id)
    expect(customer.locator(".sysline").last).to_have_text(GOODBYE)
    expect(status).to_have_text("在线 · 智能客服为您服务")
    prompt = customer.locator(".msg.bot").last
    expect(prompt.locator(".bubble .text")).to_contain_text("请为本次服务打分")
    assert customer.locator(".log > *").evaluate_all(  # the goodbye comes before the rating request
        "rows => rows.slice(-2).map(r => r.className)") == ["sysline", "msg bot"]
    prompt.get_by_role("button", name="4分").click()
    box = customer.get_by_label("补充您的意见（选填）")
    expect(box).to_be_visible()
    expect(box).to_have_attribute("maxlength", "200")
    box.fill(COMMENT)
    shoot(customer, "rating")
    customer.get_by_role("button", name="提交").click()
    expect(customer.locator(".msg.user .bubble .text").last).to_have_text(f"4分 {COMMENT}")
    expect(customer.locator(".msg.bot .bubble .text").last).to_have_text(re.compile("感谢您的评价"))
    with database.session() as session:
        rated = session.get(Handoff, handoff_id)
        assert (rated.rating, rated.comment) == (4, COMMENT)

    # the transcript, as the customer saw it
    with customer.expect_download() as download_info:
        customer.get_by_role("button", name="下载聊天记录").click()
    download = download_info.value
    assert re.fullmatch(r"聊天记录-\d{8}\.txt", download.suggested_filename), download.suggested_filename
    text = Path(download.path()).read_text(encoding="utf-8")
    said = [line.split(" ", 2)[2] for line in text.splitlines()[2:] if not line.startswith("    ")]
    assert said.count("我：转人工") == 2 and "我：取消转人工" in said
    assert f"提示：{SERVED_BY}" in said and f"客服小王：{GREETING}" in said and f"提示：{GOODBYE}" in said
    assert said.index(f"提示：{SERVED_BY}") < said.index(f"客服小王：{GREETING}") < said.index(f"提示：{GOODBYE}")
    assert said[-2] == f"我：4分 {COMMENT}" and said[-1].startswith("智能客服：感谢您的评价")
    assert len(bubble_texts(customer, "bot")) >= 5
    assert_clean(customer)
