"""The web chat widget in a real headless Chromium, against the real server (uvicorn) and the bundled bank bot."""

from __future__ import annotations

import json
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
    TIMEOUT_MS,
    ask,
    assert_clean,
    bubble_texts,
    bundled_app,
    chromium,
    new_page,
    open_widget,
    replies_after,
    served,
)
from playwright.sync_api import Browser, Page, expect  # noqa: E402

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>"


@pytest.fixture(scope="module")
def base_url(bundled_assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served by uvicorn on a free port, with its own SQLite database in a temporary directory."""
    from bot.web.widget import widget_router

    app = bundled_app(bundled_assistant, tmp_path_factory.mktemp("widget"))
    if not any(getattr(route, "path", None) == "/widget.js" for route in app.routes):
        app.include_router(widget_router())
    with served(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh visitor (new storage) on a desktop-sized window; fails the test on any JS alert or page error."""
    page = new_page(browser)
    yield page
    assert_clean(page)
    page.context.close()


def test_demo_page_and_files_are_served(page: Page, base_url: str) -> None:
    response = page.request.get(f"{base_url}/widget.js")
    assert response.ok and response.headers["content-type"].startswith("text/javascript")
    response = page.request.get(f"{base_url}/widget.css")
    assert response.ok and response.headers["content-type"].startswith("text/css")
    page.goto(base_url)
    expect(page).to_have_title(re.compile("示例银行"))
    for topic in ("挂失", "吞卡", "余额查询", "转账限额", "信用卡账单", "网点营业时间", "400-820-8888"):
        expect(page.locator("main")).to_contain_text(topic)
    launcher = page.get_by_role("button", name="打开在线客服")
    expect(launcher).to_be_visible()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    page.screenshot(path=SHOTS / "widget-page.png")


def test_conversation_history_quick_reply_and_no_html(page: Page, base_url: str) -> None:
    page.goto(base_url)
    open_widget(page)
    log = page.get_by_role("log", name="聊天记录")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(page.get_by_label("输入您的问题")).to_be_focused()
    expect(page.get_by_label("输入您的问题")).to_have_attribute("placeholder", "请输入您的问题…")
    expect(page.locator(".msg.bot")).to_have_count(1)  # the welcome message of a new visitor
    visitor = page.evaluate("localStorage.getItem('bankbot.visitor_credential')")
    assert re.fullmatch(r"v1\.v-[\w-]+\.[\w-]+", visitor)  # issued and signed by the server

    loss = ask(page, "ATM吞了我的卡怎么办")
    assert loss and "吞卡" in " ".join(loss)
    bill = ask(page, "我的卡丢了")
    assert bill and "卡号后四位" in " ".join(bill)
    for stamp in page.locator(".msg .meta time").all_inner_texts():
        assert re.fullmatch(r"\d\d:\d\d", stamp)
    page.screenshot(path=SHOTS / "widget-desktop.png")

    # a reload shows the conversation so far, for the same visitor, without the welcome message
    page.reload()
    open_widget(page)
    assert page.evaluate("localStorage.getItem('bankbot.visitor_credential')") == visitor
    expect(page.locator(".msg.user")).to_have_count(2)
    assert bubble_texts(page, "user") == ["ATM吞了我的卡怎么办", "我的卡丢了"]
    assert bubble_texts(page, "bot") == [*loss, *bill]

    # the card-loss form continues after the reload and ends with quick replies to confirm
    assert "身份证" in " ".join(ask(page, "6688"))
    assert "确认" in " ".join(ask(page, "3456"))

    # a quick reply sends its payload and shows its title as the customer's message
    quick = page.locator(".msg.bot").last.locator(".quick button:enabled")
    expect(quick.first).to_be_visible()
    title = quick.first.inner_text()
    bots_before = page.locator(".msg.bot").count()
    quick.first.click()
    answer = replies_after(page, 5, bots_before)
    assert answer, "the quick reply got no answer"
    assert title == "确认挂失" and "挂失编号" in " ".join(answer)
    assert bubble_texts(page, "user")[-1] == title
    latest = page.locator(".msg.bot").last.locator(".quick button").count()
    expect(page.locator(".quick button:enabled")).to_have_count(latest)  # older quick replies are retired

    # markup typed by the customer is shown as text, never run or rendered
    ask(page, XSS)
    assert bubble_texts(page, "user")[-1] == XSS
    expect(page.locator("#bankbot-widget img")).to_have_count(0)
    expect(page.locator("#bankbot-widget .log script")).to_have_count(0)
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    page.screenshot(path=SHOTS / "widget-escaped.png")

    # and again after a reload, from the stored history; the quick reply still shows its title
    page.reload()
    open_widget(page)
    assert bubble_texts(page, "user") == ["ATM吞了我的卡怎么办", "我的卡丢了", "6688", "3456", title, XSS]
    expect(page.locator("#bankbot-widget img")).to_have_count(0)

    # Esc closes the panel and gives the focus back to the launcher
    page.get_by_label("输入您的问题").press("Escape")
    expect(page.locator(".panel")).to_be_hidden()
    expect(page.get_by_role("button", name="打开在线客服")).to_be_focused()


def test_bot_links_are_clickable_and_bot_markup_is_text(page: Page, base_url: str) -> None:
    """Bot text (here from a mocked server) gets links for http(s) URLs only; any markup in it stays text."""
    history = [
        {"role": "user", "text": "官网地址", "buttons": None, "timestamp": "2025-01-02T01:05:00+00:00",
         "message_id": "m1"},
        {"role": "bot", "text": "详情请见 https://bank.example/help?card=1。也可访问[官网](https://bank.example/)",
         "buttons": None, "timestamp": "2025-01-02T01:05:01+00:00", "message_id": None},
        {"role": "bot", "text": "<img src=x onerror=alert(3)> [点我](javascript:alert(4)) **重要**",
         "buttons": [{"title": "<b>按钮</b>", "payload": "/greet"}], "timestamp": "2025-01-02T01:05:02+00:00",
         "message_id": None},
    ]

    def server(ws) -> None:  # type: ignore[no-untyped-def]
        def answer(message: str | bytes) -> None:
            kind = json.loads(message)["type"]
            if kind == "hello":
                ws.send(json.dumps({"type": "welcome", "visitor": "v1.mocked-visitor.signature"}))
            elif kind == "history":
                ws.send(json.dumps({"type": "history", "messages": history}))
        ws.on_message(answer)

    page.route_web_socket(re.compile(r".*/ws/chat.*"), server)
    page.goto(base_url)
    open_widget(page)
    links = page.locator(".msg.bot a")
    expect(links).to_have_count(2)
    assert [links.nth(i).get_attribute("href") for i in range(2)] == ["https://bank.example/help?card=1",
                                                                       "https://bank.example/"]
    assert links.nth(1).inner_text() == "官网"
    assert links.nth(0).get_attribute("target") == "_blank"
    assert "noopener" in (links.nth(0).get_attribute("rel") or "")
    assert bubble_texts(page, "bot")[1] == "<img src=x onerror=alert(3)> [点我](javascript:alert(4)) 重要"
    expect(page.locator(".msg.bot strong")).to_have_text("重要")
    expect(page.locator(".quick button")).to_have_text("<b>按钮</b>")
    expect(page.locator("#bankbot-widget img")).to_have_count(0)
    expect(page.locator("#bankbot-widget b")).to_have_count(0)
    page.wait_for_timeout(300)


def test_message_sent_while_disconnected_is_queued_and_sent_once(page: Page, base_url: str) -> None:
    """The socket drops; the customer keeps typing; on reconnect the message goes out with the same id."""
    state = {"refuse": False, "sockets": []}

    def route(ws) -> None:  # type: ignore[no-untyped-def]
        if state["refuse"]:
            ws.close()
            return
        state["sockets"].append(ws)
        ws.connect_to_server()

    page.route_web_socket(re.compile(r".*/ws/chat.*"), route)
    page.goto(base_url)
    open_widget(page)
    ask(page, "你好")

    state["refuse"] = True
    state["sockets"][-1].close()
    expect(page.locator(".status")).to_have_text("已断开，正在重连…")
    page.get_by_label("输入您的问题").fill("转账限额是多少")
    page.get_by_label("输入您的问题").press("Enter")
    expect(page.locator(".msg.user.pending")).to_have_count(1)
    expect(page.locator(".msg.user.pending .state")).to_have_text("发送中…")
    queued = page.evaluate("JSON.parse(localStorage.getItem('bankbot.pending'))")
    assert [q["text"] for q in queued] == ["转账限额是多少"]

    state["refuse"] = False
    replies_after(page, 2, 0)  # the reconnect replays the history, so the log is rebuilt
    assert "限额" in bubble_texts(page, "bot")[-1]
    assert page.evaluate("JSON.parse(localStorage.getItem('bankbot.pending'))") == []
    page.reload()
    open_widget(page)
    assert bubble_texts(page, "user") == ["你好", "转账限额是多少"]


def test_mobile_layout_is_full_screen(browser: Browser, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(base_url)
    page.screenshot(path=SHOTS / "widget-mobile-page.png")
    open_widget(page)
    ask(page, "网点营业时间是几点")
    box = page.locator(".panel").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 390, "height": 844}
    expect(page.locator(".launcher")).to_be_hidden()
    send = page.get_by_role("button", name="发送消息").bounding_box()
    assert send and send["y"] + send["height"] <= 844 and send["height"] >= 40
    page.screenshot(path=SHOTS / "widget-mobile.png")
    page.get_by_role("button", name="关闭客服窗口").click()
    expect(page.locator(".panel")).to_be_hidden()
    expect(page.locator(".launcher")).to_be_visible()
    context.close()
