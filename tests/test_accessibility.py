"""Accessibility and console errors checked by a real browser (issue 13, item 8): axe-core, installed from npm by
`make axe`, runs its WCAG 2 A/AA rules in headless Chromium against the real server on the demo page with the widget
closed, open (a bot reply with buttons in view), queueing, served by a person and asking for a rating comment; on the
agent console's login, an agent's open chat, its close dialog and a supervisor's view; and on the trainer's
workbench; at 1280x800 and 390x844. Text on a gradient, which axe leaves undecided, is measured against each colour
of the gradient. No page may log a console error, throw or open an alert. A probe page shows the checks can fail."""

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
    ask,
    axe_violations,
    chromium,
    desk_app,
    desk_page,
    log_in,
    open_widget,
    serve_axe,
    served,
)
from playwright.sync_api import Browser, Page, expect  # noqa: E402

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(scope="module")
def base_url(bundled_assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on uvicorn with its own SQLite file, an agent 小王, a supervisor 赵主管 and a trainer 林训练师."""
    app, _ = desk_app(bundled_assistant, tmp_path_factory.mktemp("a11y"), agents=[
        DeskAgent("wang", "小王", ["综合服务", "借记卡与账户"]),
        DeskAgent("zhao", "赵主管", ["综合服务", "信用卡"], role="supervisor"),
        DeskAgent("lin", "林训练师", [], role="trainer"),
    ])
    with served(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture(params=list(SIZES), ids=list(SIZES))
def size(request: pytest.FixtureRequest) -> tuple[str, int, int]:
    width, height = SIZES[request.param]
    return request.param, width, height


def watched_page(browser: Browser, width: int, height: int) -> Page:
    """A fresh page that records console errors besides alerts and page errors, and can load axe-core (whose
    absence fails the test with how to install it)."""
    page = desk_page(browser, width, height)
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(  # type: ignore[attr-defined]
        f"{m.text} ({m.location.get('url')})"))
    serve_axe(page)
    return page


def console_errors(page: Page, what: str) -> list[str]:
    """What the page logged as console errors or threw, and any JS alert it opened."""
    found = page.console_errors + page.errors + page.dialogs  # type: ignore[attr-defined]
    return [f"{what}: {error}" for error in found]


def assert_none(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} problems\n" + "\n".join(problems)


PROBE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>探针</title></head><body><main>
<p style="color: #999">浅灰色文字</p>
<input type="text">
<div style="background: linear-gradient(135deg, #b3122e, #d2334d); color: #fff">
  <p style="font-size: 12px; opacity: 0.9">渐变上的浅色小字</p></div>
<div id="host"></div>
<script>
  document.getElementById("host").attachShadow({mode: "open"}).innerHTML = '<p style="color: #aaa">影子里的浅色字</p>';
  console.error("探针的控制台错误");
</script></main></body></html>"""


def test_the_checks_find_what_they_are_for(browser: Browser, base_url: str) -> None:
    """A page with a low-contrast text (also inside a shadow root), an unlabelled input, small pale text on a
    gradient and a console error: each is found, so a clean page above means something."""
    page = watched_page(browser, 1280, 800)
    page.route(f"{base_url}/__probe__", lambda route: route.fulfill(content_type="text/html", body=PROBE))
    page.goto(f"{base_url}/__probe__")
    found = axe_violations(page, "probe")
    assert page.evaluate("axe.version").startswith("4."), "axe-core 4 is what `make axe` installs"
    for rule, target in (("color-contrast", "'main > p'"), ("color-contrast", "'#host'"), ("label", "'input'"),
                         ("color-contrast-gradient", "> p'")):
        assert [v for v in found if v.startswith(f"probe: {rule} (") and target in v], (rule, target, found)
    assert [e for e in console_errors(page, "probe") if "探针的控制台错误" in e], page.console_errors  # type: ignore
    page.context.close()


def test_the_demo_page_and_the_widget(browser: Browser, base_url: str, size: tuple[str, int, int]) -> None:
    name, width, height = size
    customer = watched_page(browser, width, height)
    customer.goto(base_url)
    expect(customer.get_by_role("button", name="打开在线客服")).to_be_visible()
    problems = axe_violations(customer, f"/ with the widget closed ({name})")

    open_widget(customer)
    ask(customer, "asdf qwer zxcv")
    ask(customer, "qwerty uiop")
    offer = customer.locator(".msg.bot").last.locator(".quick button:enabled", has_text="转人工")
    expect(offer).to_be_in_viewport()
    problems += axe_violations(customer, f"/ with the widget open, a reply with buttons in view ({name})")
    customer.screenshot(path=SHOTS / f"a11y-widget-{name}.png")

    offer.click()
    expect(customer.locator(".status")).to_contain_text(re.compile("您是下一位|前面还有"))
    problems += axe_violations(customer, f"/ with the widget queueing for a person ({name})")
    customer.screenshot(path=SHOTS / f"a11y-widget-queue-{name}.png")
    assert_none(problems + console_errors(customer, f"/ ({name})"))
    customer.context.close()


def test_the_agent_console_and_the_widget_with_a_person(browser: Browser, base_url: str,
                                                        size: tuple[str, int, int]) -> None:
    name, width, height = size
    marker = f"我在{'电脑' if name == 'desktop' else '手机'}上等人工客服"  # finds this customer's card in the queue
    customer = watched_page(browser, width, height)
    customer.goto(base_url)
    open_widget(customer)
    ask(customer, "转人工")
    expect(customer.locator(".status")).to_contain_text(re.compile("您是下一位|前面还有"))
    ask(customer, marker)

    agent = watched_page(browser, width, height)
    agent.goto(f"{base_url}/agent")
    expect(agent.get_by_role("button", name="登录")).to_be_visible()
    problems = axe_violations(agent, f"/agent login ({name})")
    agent.screenshot(path=SHOTS / f"a11y-agent-login-{name}.png")

    log_in(agent, base_url, "wang")
    expect(agent.locator("#live-status")).to_have_text("实时连接")
    agent.locator("#waiting-list .qcard", has_text=marker).get_by_role("button", name=re.compile("^接入")).click()
    expect(agent.get_by_role("log", name="会话记录").locator(".entry.user .bubble").last).to_have_text(marker)
    expect(agent.locator("#ctx-reason")).not_to_be_empty()
    problems += axe_violations(agent, f"/agent, an agent with a chat open ({name})")
    agent.screenshot(path=SHOTS / f"a11y-agent-chat-{name}.png", full_page=True)

    expect(customer.locator(".status")).to_contain_text("小王")
    problems += axe_violations(customer, f"/ with the widget served by a person ({name})")

    supervisor = watched_page(browser, width, height)
    log_in(supervisor, base_url, "zhao")
    expect(supervisor.locator("#agent-name")).to_contain_text("赵主管")
    supervisor.get_by_role("button", name="主管视图").click()
    live = supervisor.locator("#sup-live tbody tr").first
    expect(live).to_be_visible()
    live.locator("td").first.click()  # watch the live chat, read-only
    expect(supervisor.get_by_role("log", name="只读会话记录").locator(".entry").first).to_be_visible()
    problems += axe_violations(supervisor, f"/agent, a supervisor's view ({name})")
    supervisor.screenshot(path=SHOTS / f"a11y-agent-supervisor-{name}.png", full_page=True)

    # the agent closes the chat; the customer rates it and gets the comment box
    agent.get_by_role("button", name="结束会话").click()
    expect(agent.get_by_role("dialog", name="结束会话")).to_be_visible()
    problems += axe_violations(agent, f"/agent, the close dialog ({name})")
    agent.get_by_role("button", name="确认结束").click()
    expect(agent.get_by_role("dialog", name="结束会话")).to_be_hidden()
    scores = customer.get_by_role("group", name="评分").last.get_by_role("button")
    expect(scores.first).to_be_visible()
    scores.first.click()
    expect(customer.get_by_role("form", name="补充评价")).to_be_visible()
    problems += axe_violations(customer, f"/ with the widget asking for a rating comment ({name})")
    customer.screenshot(path=SHOTS / f"a11y-widget-rating-{name}.png")

    for page, who in ((customer, "/"), (agent, "/agent (agent)"), (supervisor, "/agent (supervisor)")):
        problems += console_errors(page, f"{who} ({name})")
        page.context.close()
    assert_none(problems)


def test_the_trainer_workbench(browser: Browser, base_url: str, size: tuple[str, int, int]) -> None:
    name, width, height = size
    trainer = watched_page(browser, width, height)
    trainer.goto(f"{base_url}/trainer")
    expect(trainer.get_by_role("button", name="登录")).to_be_visible()
    problems = axe_violations(trainer, f"/trainer login ({name})")

    log_in(trainer, base_url, "lin", where="/trainer")
    expect(trainer.locator("#me-name")).to_have_text("林训练师（训练师）")
    expect(trainer.locator("#inbox-summary")).to_contain_text(re.compile(r"共 \d+ 组"))
    problems += axe_violations(trainer, f"/trainer review inbox ({name})")
    trainer.screenshot(path=SHOTS / f"a11y-trainer-{name}.png", full_page=True)
    assert_none(problems + console_errors(trainer, f"/trainer ({name})"))
