"""The agent console (/agent) end to end in one real headless Chromium: a customer in the web widget is handed
over to a person, an agent takes the chat in the console, a supervisor watches it, the agent closes it and the
bot takes the customer back. Real server (uvicorn), the bundled bank bot, a temporary SQLite database."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install -y chromium fonts-wqy-microhei)",
                allow_module_level=True)

from browser_support import (  # noqa: E402
    PASSWORD,
    SHOTS,
    DeskAgent,
    ask,
    assert_clean,
    assert_fits,
    bubble_texts,
    chromium,
    desk_app,
    desk_page,
    log_in,
    open_widget,
    send_reply,
    served,
)
from playwright.sync_api import Browser, expect  # noqa: E402

APP_SECRET = "test-secret-of-the-banks-app-backend-0123456789"
XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>"
CARD = "6222021234567890128"  # passes the Luhn check: a real card number's shape


@pytest.fixture(scope="module")
def base_url(bundled_assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served by uvicorn on a free port with its own SQLite database, an agent and a supervisor."""
    app, _ = desk_app(bundled_assistant, tmp_path_factory.mktemp("agent-console"), agents=[
        DeskAgent("wang", "小王", ["综合服务", "借记卡与账户"]),
        DeskAgent("zhao", "赵主管", ["综合服务", "信用卡"], role="supervisor"),
    ], environ={"BOT__CHANNELS__APP__SECRET": APP_SECRET})
    with served(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def test_customer_is_handed_to_an_agent_and_back_to_the_bot(browser: Browser, base_url: str) -> None:
    started = time.monotonic()
    for asset, kind in (("agent.js", "text/javascript"), ("agent.css", "text/css"), ("agent", "text/html")):
        response = browser.new_context().request.get(f"{base_url}/{asset}")
        assert response.ok and response.headers["content-type"].startswith(kind), asset

    # the customer: two messages the bot cannot understand, then the offer of a person
    customer = desk_page(browser)
    customer.goto(base_url)
    open_widget(customer)
    ask(customer, "asdf qwer zxcv")
    ask(customer, "qwerty uiop")
    offer = customer.locator(".msg.bot").last.locator(".quick button:enabled", has_text="转人工")
    expect(offer).to_be_visible()
    offer.click()
    expect(customer.locator(".msg.bot").last).to_contain_text(re.compile("您是下一位|前面还有"))
    expect(customer.locator(".status")).to_contain_text("您是下一位")  # the place stays in view while waiting
    ask(customer, f"我的卡号是{CARD}")  # while waiting: the queue card shows it masked
    customer.screenshot(path=SHOTS / "agent-console-customer-waiting.png")

    # the agent: a wrong password first, then the console
    agent = desk_page(browser, 1440, 900)
    log_in(agent, base_url, "wang", "not the password")
    expect(agent.get_by_role("alert")).to_have_text("用户名或密码错误")
    agent.screenshot(path=SHOTS / "agent-console-login.png")
    agent.get_by_label("密码").fill(PASSWORD)
    agent.get_by_role("button", name="登录").click()
    expect(agent.locator("#agent-name")).to_contain_text("小王")
    expect(agent.locator("#live-status")).to_have_text("实时连接")
    expect(agent.get_by_role("button", name="主管视图")).to_be_hidden()

    # 小休 (away) gets no chats by itself; the waiting customer is in 排队中 and the agent takes them by hand
    agent.get_by_role("button", name="小休").click()
    expect(agent.get_by_role("button", name="小休")).to_have_attribute("aria-pressed", "true")
    waiting = agent.locator("#waiting-list .qcard")
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text("综合服务")
    expect(waiting).to_contain_text("客户要求转人工")
    expect(waiting).to_contain_text("访客")
    expect(waiting.locator(".wait")).to_contain_text("等待")
    expect(waiting.locator(".last")).to_contain_text(CARD[-4:])
    expect(waiting).not_to_contain_text(CARD[:6])  # no more digits than the masked form
    waiting.get_by_role("button", name=re.compile("^接入")).click()
    expect(agent.locator("#mine-list .qcard")).to_have_count(1)
    expect(agent.locator("#waiting-list .qcard")).to_have_count(0)
    expect(customer.locator(".status")).to_have_text(re.compile("在线"))  # out of the queue
    agent.get_by_role("button", name="在线", exact=True).click()
    expect(agent.get_by_role("button", name="在线", exact=True)).to_have_attribute("aria-pressed", "true")

    # the whole context: transcript with the bot's understanding, the reason, the slots, suggestions
    transcript = agent.get_by_role("log", name="会话记录")
    users = transcript.locator(".entry.user .bubble")
    expect(users.first).to_have_text("asdf qwer zxcv")
    expect(users.nth(1)).to_have_text("qwerty uiop")
    expect(transcript.locator(".entry.user .nlu .intent").first).to_have_text(re.compile(r"意图 nlu_fallback \d\.\d\d"))
    expect(transcript.locator(".entry.bot").first).to_contain_text("没太理解")
    expect(transcript.locator(".entry.system").last).to_contain_text("小王已接入")
    expect(agent.locator("#ctx-reason")).to_have_text(re.compile("客户要求转人工|连续.*次未能理解"))
    expect(agent.locator("#ctx-summary")).to_contain_text("转人工原因")
    expect(agent.locator("#ctx-channel")).to_have_text("网页")
    expect(agent.get_by_role("heading", name="已收集信息")).to_be_visible()
    expect(agent.locator("#ctx-form")).to_have_text("无")

    # knowledge search; 插入 puts the answer into the reply box
    agent.get_by_label("搜索知识库").fill("补卡要多少钱")
    agent.get_by_role("button", name="搜索", exact=True).click()
    expect(agent.locator("#kb-list .kb-item").first).to_be_visible()
    agent.locator("#kb-list .kb-item").first.get_by_role("button", name=re.compile("^插入答案")).click()
    assert agent.locator("#reply").input_value().strip()
    agent.locator("#reply").fill("")

    # an internal note (markup stays text) is never sent to the customer
    agent.get_by_label("内部备注").check()
    expect(agent.get_by_role("button", name="添加备注")).to_be_visible()
    send_reply(agent, XSS)
    expect(transcript.locator(".entry.note .bubble")).to_have_text(XSS)
    expect(agent.locator("img")).to_have_count(0)
    agent.get_by_label("内部备注").uncheck()

    # the agent's replies reach the customer live; /wait is a canned short code expanded by the server
    send_reply(agent, "您好，我是人工客服小王")
    expect(transcript.locator(".entry.agent .bubble").last).to_have_text("您好，我是人工客服小王")
    expect(customer.locator(".msg.bot .bubble .text").last).to_have_text("您好，我是人工客服小王")
    send_reply(agent, "/wait")
    expect(transcript.locator(".entry.agent .bubble").last).to_have_text(re.compile("正在为您查询"))
    expect(customer.locator(".msg.bot .bubble .text").last).to_have_text(re.compile("正在为您查询"))
    assert XSS not in " ".join(bubble_texts(customer, "bot"))

    # the customer writes: the message appears in the agent's open chat over the socket
    ask(customer, "好的，我想问一下补卡的事")
    expect(users.last).to_have_text("好的，我想问一下补卡的事")
    customer.screenshot(path=SHOTS / "agent-console-customer.png")
    agent.screenshot(path=SHOTS / "agent-console.png")

    # a supervisor watches: queues per group, agents' presence and load, the live chat read-only
    # (their console's socket is refused: it falls back to polling every 5 s and keeps retrying)
    supervisor = desk_page(browser, 1440, 900)
    refused: list[str] = []
    supervisor.route_web_socket(re.compile(r".*/api/agent/ws.*"), lambda ws: (refused.append(ws.url), ws.close()))
    log_in(supervisor, base_url, "zhao")
    expect(supervisor.locator("#live-status")).to_have_text("连接中断，每5秒刷新")
    supervisor.get_by_role("button", name="主管视图").click()
    group_row = supervisor.locator("#sup-groups tbody tr", has_text="综合服务")
    expect(group_row.locator("td").nth(1)).to_have_text("0")
    agent_row = supervisor.locator("#sup-agents tbody tr", has_text="小王")
    expect(agent_row).to_contain_text("在线")
    expect(agent_row).to_contain_text("1 / 3")
    live = supervisor.locator("#sup-live tbody tr")
    expect(live).to_have_count(1)
    expect(live).to_contain_text("小王")
    expect(live.get_by_role("button", name="重新分配")).to_be_visible()
    live.locator("td").first.click()
    watched = supervisor.get_by_role("log", name="只读会话记录")
    expect(watched.locator(".entry.agent").first).to_have_text(re.compile("您好，我是人工客服小王"))
    expect(watched.locator(".entry.user", has_text=CARD[-4:])).to_have_count(1)
    expect(watched).not_to_contain_text(CARD[:6])  # masked for supervisors too
    expect(supervisor.locator("#reply")).to_be_hidden()
    supervisor.screenshot(path=SHOTS / "agent-console-supervisor.png")
    assert refused and "token" not in refused[0]  # the session token goes in the first frame, not the URL

    # the agent closes the chat as 已解决; the bot asks the customer for a rating
    agent.get_by_role("button", name="结束会话").click()
    expect(agent.get_by_role("dialog", name="结束会话")).to_be_visible()
    agent.get_by_label("已解决").check()
    agent.screenshot(path=SHOTS / "agent-console-close.png")
    agent.get_by_role("button", name="确认结束").click()
    expect(agent.get_by_role("dialog", name="结束会话")).to_be_hidden()
    expect(agent.locator("#mine-list .qcard")).to_have_count(0)
    expect(agent.locator("#chat-placeholder")).to_be_visible()
    expect(customer.locator(".msg.bot .bubble .text").last).to_contain_text("请为本次服务打分")
    assert "感谢您的评价" in " ".join(ask(customer, "5"))

    # and the bot answers again
    answer = " ".join(ask(customer, "补卡要多少钱"))
    assert answer and "人工" not in answer[:12] and "没太理解" not in answer, answer
    customer.screenshot(path=SHOTS / "agent-console-customer-after.png")

    for page in (customer, agent, supervisor):
        assert_clean(page)
    print(f"agent console flow took {time.monotonic() - started:.1f}s")


def test_the_agent_sees_what_a_linked_customer_said_in_the_app(browser: Browser, base_url: str) -> None:
    """A customer signed in on the bank's site asks for a person; the agent reads their app conversation."""
    import httpx

    from bot.channels.app import AppCustomer, sign_token

    li = AppCustomer(customer_id="C2002", name="李娜", tier="白金卡")
    token = sign_token(li, APP_SECRET)
    said = httpx.post(f"{base_url}/channels/app/messages", json={"message": "周末网点营业吗", "message_id": "l1"},
                      headers={"Authorization": f"Bearer {token}"})
    assert said.status_code == 200, said.text

    customer = desk_page(browser)  # the bank's signed-in page embeds the widget with the customer's token
    page_html = (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>网上银行</title><body>'
                 f'<script src="/widget.js" data-server="/" data-token="{token}"></script></body></html>')
    customer.goto(f"{base_url}/health")  # a page of the bot's own origin, then the bank's markup in it
    customer.set_content(page_html)
    open_widget(customer)
    ask(customer, "转人工")  # 小王 may still be online from the test before: then the chat is assigned at once
    expect(customer.locator(".msg.bot").last).to_contain_text(re.compile("您是下一位|前面还有|已为您接通"))

    agent = desk_page(browser, 1440, 900)
    log_in(agent, base_url, "wang")
    card = agent.locator("#waiting-list .qcard, #mine-list .qcard", has_text="李娜")
    expect(card).to_have_count(1)
    accept = card.get_by_role("button", name=re.compile("^接入"))
    (accept if accept.count() else card).click()
    expect(agent.locator("#ctx-linked")).to_contain_text("手机银行App")
    expect(agent.locator("#ctx-linked")).to_contain_text("网页")
    earlier = agent.locator("#ctx-earlier details")
    expect(earlier).to_have_count(1)
    expect(earlier.locator("summary")).to_contain_text("手机银行App")
    earlier.locator("summary").click()
    expect(earlier.locator(".earlier-line.user")).to_have_text(["客户：周末网点营业吗"])
    agent.screenshot(path=SHOTS / "agent-console-linked.png")
    for page in (customer, agent):
        assert_clean(page)


# --- phone width (issue 13) ----------------------------------------------------------------------------------

UNCOVERED = """el => {
    const r = el.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return r.width > 0 && r.right <= window.innerWidth && (hit === el || el.contains(hit));
}"""
ONE_LINE = "el => el.getClientRects().length === 1 && el.getBoundingClientRect().height < 2 * parseFloat(getComputedStyle(el).lineHeight) && el.scrollWidth <= el.clientWidth + 1"  # noqa: E501


def test_the_console_fits_a_phone_and_the_desktop_layout_stays(browser: Browser, base_url: str) -> None:
    """At 390 px nothing overflows sideways, the tab labels stay on one line and 退出 is not covered; at 1280 px
    the three columns and the one-row top bar are as before."""
    phone = desk_page(browser, 390, 844)
    log_in(phone, base_url, "zhao")  # a supervisor: both tabs in the bar
    expect(phone.locator("#agent-name")).to_contain_text("赵主管")
    tabs = phone.locator(".tabs .tab:visible")
    expect(tabs.filter(has_text=re.compile("^(我的工作台|主管视图)$"))).to_have_count(2)  # and any other views

    assert_fits(phone, 390)
    for tab in tabs.all():
        assert tab.evaluate(ONE_LINE), f"{tab.inner_text()!r} wraps"
    for name in ("在线", "小休", "离线"):
        assert phone.get_by_role("button", name=name, exact=True).evaluate(UNCOVERED), name
    logout = phone.get_by_role("button", name="退出")
    assert logout.evaluate(UNCOVERED), "退出 is covered or off screen"

    # the queues and the chat are both there, one under the other, within the width
    for panel in (phone.get_by_role("complementary", name="会话列表"), phone.get_by_role("region", name="当前会话")):
        panel.scroll_into_view_if_needed()
        expect(panel).to_be_in_viewport()
        box = panel.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    expect(phone.get_by_role("heading", name=re.compile("^排队中"))).to_be_visible()
    expect(phone.get_by_text("请从左侧选择会话")).to_be_visible()
    phone.evaluate("window.scrollTo(0, 0)")
    phone.screenshot(path=SHOTS / "agent-console-390.png")

    # the supervisor view fits too (its tables scroll inside their cards)
    phone.get_by_role("button", name="主管视图").click()
    expect(phone.get_by_role("heading", name="坐席状态")).to_be_visible()
    assert_fits(phone, 390)
    phone.screenshot(path=SHOTS / "agent-console-390-supervisor.png", full_page=True)
    phone.get_by_role("button", name="我的工作台").click()

    logout.click()  # an ordinary click: Playwright refuses when another element would receive it
    expect(phone.get_by_role("button", name="登录")).to_be_visible()
    assert_fits(phone, 390)

    desktop = desk_page(browser, 1280, 860)
    log_in(desktop, base_url, "zhao")
    expect(desktop.locator("#agent-name")).to_contain_text("赵主管")
    columns = desktop.locator("#desk-view").evaluate("el => getComputedStyle(el).gridTemplateColumns").split()
    assert len(columns) == 3 and columns[0] == "300px" and columns[2] == "340px", columns
    assert desktop.locator(".topbar").evaluate("el => el.getBoundingClientRect().height") == 54
    assert desktop.evaluate("document.documentElement.scrollWidth") <= 1280
    desktop.screenshot(path=SHOTS / "agent-console-1280.png")
    for page in (phone, desktop):
        assert_clean(page)
