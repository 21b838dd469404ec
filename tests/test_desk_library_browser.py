"""The desk's library (历史会话, 快捷回复) in one real headless Chromium against a real uvicorn server: an agent
finds an old conversation by a phone number's last four digits and by a keyword, opens it, labels it, finds it
again by the label; manages a personal canned reply and sends it by its code in a live chat. Screenshots at
1280 and 390 px; at 390 px nothing overflows sideways, and axe-core (`make axe`) finds no WCAG 2 AA violation in
either view."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

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
    assert_clean,
    assert_fits,
    axe_violations,
    chromium,
    desk_app,
    desk_page,
    serve_axe,
    served,
)
from browser_support import log_in as submit_login  # noqa: E402
from playwright.sync_api import Browser, Page, expect  # noqa: E402

PHONE = "13812346688"
GREETING = "您好，我是小王，请问有什么可以帮您？"


@pytest.fixture(scope="module")
def base_url(bundled_assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served by uvicorn with its own SQLite database and one agent, and two past conversations that
    went to that agent through the REST webhook and the desk's API (accepted and closed)."""
    app, _ = desk_app(bundled_assistant, tmp_path_factory.mktemp("desk-library"), agents=[
        DeskAgent("wang", "小王", ["综合服务", "借记卡与账户"]),
        DeskAgent("zhao", "赵主管", ["综合服务"], role="supervisor"),
    ])
    with served(app) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            _past_conversation(http, "old-sms", [f"我的手机号{PHONE}收不到验证码", "转人工"])
            _past_conversation(http, "old-branch", ["你们网点几点开门", "转人工"])
        yield base


def _past_conversation(http: httpx.Client, sender: str, messages: list[str]) -> None:
    for text in messages:
        assert http.post("/webhooks/rest/webhook", json={"sender": sender, "message": text}).status_code == 200
    agent = agent_headers(http, "wang")
    [waiting] = http.get("/api/agent/queue", headers=agent).json()["waiting"]
    assert http.post(f"/api/agent/handoffs/{waiting['handoff_id']}/accept", headers=agent).status_code == 200
    assert http.post(f"/api/agent/handoffs/{waiting['handoff_id']}/close", headers=agent,
                     json={"disposition": "已解决"}).status_code == 200
    http.post("/api/agent/logout", headers=agent)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def new_page(browser: Browser, width: int = 1280, height: int = 860) -> Page:
    """A desk page that can load axe-core."""
    page = desk_page(browser, width, height)
    serve_axe(page)
    return page


def log_in(page: Page, base_url: str, username: str = "wang") -> None:
    submit_login(page, base_url, username)
    expect(page.locator("#agent-name")).to_contain_text("小王" if username == "wang" else "主管")


def search(page: Page, **fields: str) -> None:
    page.locator("#lib-form").get_by_role("button", name="清空").click()
    for label, value in fields.items():
        page.locator("#lib-form").get_by_label(label, exact=True).fill(value)
    page.locator("#lib-form").get_by_role("button", name="搜索").click()


def test_an_agent_finds_labels_and_finds_again_an_old_conversation(browser: Browser, base_url: str) -> None:
    for asset, kind in (("agent-library.js", "text/javascript"), ("agent-library.css", "text/css")):
        response = browser.new_context().request.get(f"{base_url}/{asset}")
        assert response.ok and response.headers["content-type"].startswith(kind), asset
    page = new_page(browser)
    log_in(page, base_url)
    page.get_by_role("button", name="历史会话").click()
    expect(page.get_by_role("button", name="历史会话")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#desk-view")).to_be_hidden()
    results = page.get_by_role("list", name="搜索结果").locator(".lib-result")
    expect(results).to_have_count(2)  # both of 小王's past chats, before any filter
    expect(page.locator("#lib-count")).to_have_text("共 2 条会话")

    search(page, 手机或卡号后四位="6688")
    expect(page.locator("#lib-count")).to_have_text("找到 1 条会话")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("我的手机号138****6688收不到验证码")
    expect(results.first).to_contain_text("小王")
    expect(results.first).not_to_contain_text(PHONE)

    search(page, 手机或卡号后四位="123")  # not four digits: said at once, nothing sent
    expect(page.get_by_role("alert").filter(has_text="后四位")).to_be_visible()
    search(page, 关键词="几点开门")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("你们网点几点开门")
    search(page, 关键词="验证码")
    expect(results).to_have_count(1)

    results.first.click()
    expect(results.first).to_have_attribute("aria-current", "true")
    transcript = page.get_by_role("list", name="历史会话记录")
    expect(transcript.locator(".entry.user").first).to_have_text(re.compile("138\\*\\*\\*\\*6688收不到验证码"))
    expect(transcript.locator(".entry.system").filter(has_text="小王已接入")).to_have_count(1)
    expect(page.locator("#lib-handoffs")).to_contain_text("处理结果：已解决")
    expect(page.locator("#lib-detail-title")).to_contain_text("接口")

    labels = page.get_by_role("list", name="会话标签")
    page.get_by_role("button", name="添加标签 需跟进").click()
    expect(labels.locator(".chip")).to_have_text(["需跟进×"])
    new_label = page.get_by_role("combobox", name="添加标签", exact=True)
    new_label.fill("验证码问题")
    page.locator("#lib-labels").get_by_role("button", name="添加", exact=True).click()
    expect(labels.locator(".chip")).to_have_text(["需跟进×", "验证码问题×"])
    expect(results.first.locator(".chip")).to_have_text(["需跟进", "验证码问题"])
    new_label.fill("一二三四五六七八九十一二三四五六七")  # 17 characters: the box keeps 16
    page.locator("#lib-labels").get_by_role("button", name="添加", exact=True).click()
    expect(labels.locator(".chip")).to_have_count(3)
    page.get_by_role("button", name="移除标签 一二三四五六七八九十一二三四五六").click()
    expect(labels.locator(".chip")).to_have_count(2)

    search(page, 标签="需跟进")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("138****6688")
    expect(results.first.locator(".chip")).to_have_text(["需跟进", "验证码问题"])
    search(page, 标签="投诉")
    expect(page.locator("#lib-count")).to_have_text("没有符合条件的会话")
    search(page, 标签="验证码问题")
    expect(results).to_have_count(1)
    assert_fits(page, 1280)
    assert axe_violations(page, "历史会话 at 1280 px", "#library-view") == []
    page.screenshot(path=SHOTS / "desk-library-1280.png")

    page.set_viewport_size({"width": 390, "height": 844})
    results.first.click()
    expect(page.get_by_role("list", name="历史会话记录")).to_be_visible()
    assert_fits(page, 390)
    assert axe_violations(page, "历史会话 at 390 px", "#library-view") == []
    page.screenshot(path=SHOTS / "desk-library-390.png", full_page=True)

    page.get_by_role("button", name="我的工作台").click()  # agent.js's own tab takes the library away
    expect(page.locator("#library-view")).to_be_hidden()
    expect(page.locator("#desk-view")).to_be_visible()
    expect(page.get_by_role("button", name="历史会话")).to_have_attribute("aria-pressed", "false")
    assert_clean(page)


def test_an_agent_manages_a_personal_canned_reply_and_sends_it_by_code(browser: Browser, base_url: str) -> None:
    page = new_page(browser)
    log_in(page, base_url)
    page.get_by_role("button", name="快捷回复").click()
    form = page.locator("#canned-form")
    replies = page.locator("#canned-list .canned-item")
    expect(replies.filter(has_text="/hi")).to_contain_text("系统默认")
    expect(replies.filter(has_text="/hi")).to_contain_text("只读")
    expect(page.get_by_label("范围")).to_have_text("个人")  # an agent creates personal replies only

    page.get_by_label("快捷码").fill("hello")
    form.get_by_label("回复内容").fill("x")
    page.get_by_role("button", name="保存").click()
    expect(page.locator("#canned-error")).to_contain_text("以 / 开头")
    page.get_by_label("快捷码").fill("/hello")
    form.get_by_label("回复内容").fill("您好，请问有什么可以帮您？")
    page.get_by_role("button", name="保存").click()
    mine = replies.filter(has_text="/hello")
    expect(mine).to_contain_text("个人")
    page.get_by_role("button", name="编辑 /hello").click()
    expect(page.get_by_role("heading", name="编辑快捷回复 /hello")).to_be_visible()
    form.get_by_label("回复内容").fill(GREETING)
    page.get_by_role("button", name="保存").click()
    expect(mine).to_contain_text(GREETING)
    expect(page.get_by_role("heading", name="新增快捷回复")).to_be_visible()
    page.get_by_label("快捷码").fill("/hello")
    form.get_by_label("回复内容").fill("again")
    page.get_by_role("button", name="保存").click()
    expect(page.locator("#canned-error")).to_contain_text("已有快捷码 /hello")
    page.get_by_label("快捷码").fill("/temp")
    page.get_by_role("button", name="保存").click()
    page.get_by_role("button", name="删除 /temp").click()
    page.get_by_role("button", name="删除 /temp").click()  # the second click confirms
    expect(replies.filter(has_text="/temp")).to_have_count(0)
    assert_fits(page, 1280)
    assert axe_violations(page, "快捷回复 at 1280 px", "#canned-view") == []
    page.screenshot(path=SHOTS / "desk-library-canned-1280.png")

    with httpx.Client(base_url=base_url, timeout=30) as http:  # a customer asks for a person now
        http.post("/webhooks/rest/webhook", json={"sender": "live-1", "message": "转人工"})
    page.get_by_role("button", name="我的工作台").click()
    page.locator("#waiting-list .qcard").get_by_role("button", name=re.compile("^接入")).click()
    reply = page.locator("#composer").get_by_label("回复内容")
    reply.fill("/hello")
    reply.press("Enter")
    expect(page.get_by_role("log", name="会话记录").locator(".entry.agent").last).to_contain_text(GREETING)

    # the chat view can show and change the open conversation's labels with the library's function
    with httpx.Client(base_url=base_url, timeout=30) as http:
        [chat] = http.get("/api/agent/queue", headers=agent_headers(http, "wang")).json()["mine"]
    page.evaluate("""(id) => {
      const box = document.createElement('div');
      box.id = 'chat-labels';
      document.querySelector('#chat-pane .chat-head').after(box);
      return AgentLibrary.labelEditor(id, box);
    }""", chat["conversation_id"])
    page.locator("#chat-labels").get_by_role("button", name="添加标签 投诉").click()
    expect(page.locator("#chat-labels").get_by_role("list", name="会话标签")).to_contain_text("投诉")

    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("button", name="快捷回复").click()
    expect(mine).to_be_visible()
    assert_fits(page, 390)
    assert axe_violations(page, "快捷回复 at 390 px", "#canned-view") == []
    page.screenshot(path=SHOTS / "desk-library-canned-390.png", full_page=True)
    assert_clean(page)


def test_the_library_tabs_fit_a_phone_next_to_the_supervisors(browser: Browser, base_url: str) -> None:
    page = new_page(browser, 390, 844)
    log_in(page, base_url, "zhao")
    tabs = page.locator(".tabs .tab:visible")
    expect(tabs).to_have_text(["我的工作台", "主管视图", "历史会话", "快捷回复"])
    for tab in tabs.all():
        box = tab.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (tab.inner_text(), box)
    page.get_by_role("button", name="主管视图").click()
    page.get_by_role("button", name="历史会话").click()
    expect(page.locator("#supervisor-view")).to_be_hidden()
    with httpx.Client(base_url=base_url, timeout=30) as http:  # supervisors see every conversation
        every = http.get("/api/agent/conversations", headers=agent_headers(http, "zhao")).json()["total"]
    assert every >= 2
    expect(page.get_by_role("list", name="搜索结果").locator(".lib-result")).to_have_count(every)
    page.get_by_role("button", name="主管视图").click()
    expect(page.locator("#library-view")).to_be_hidden()
    expect(page.get_by_role("button", name="历史会话")).to_have_attribute("aria-pressed", "false")
    assert_fits(page, 390)
    assert_clean(page)
