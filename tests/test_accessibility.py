"""Accessibility and console errors checked by a real browser (issue 13, item 8): axe-core, installed from npm by
`make axe`, runs its WCAG 2 A/AA rules in headless Chromium against the real server on the demo page with the widget
closed, open (a bot reply with buttons in view), queueing, served by a person and asking for a rating comment; on the
agent console's login, an agent's open chat, its close dialog and a supervisor's view; and on the trainer's
workbench; at 1280x800 and 390x844. Text on a gradient, which axe leaves undecided, is measured against each colour
of the gradient. No page may log a console error, throw or open an alert. A probe page shows the checks can fail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install -y chromium fonts-wqy-microhei)",
                allow_module_level=True)

from browser_support import SHOTS, ask, chromium, new_page, open_widget, served  # noqa: E402
from playwright.sync_api import Browser, Page, Route, expect  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / ".bot" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
AXE_PATH = "/__axe__/axe.min.js"  # where the test serves it: same origin, so the pages' real CSP allows it
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
# axe.run, then what axe leaves undecided: text on a gradient ("incomplete", bgGradient) is measured against
# every colour stop of the gradient under it, the text's colour blended by the opacity between the two.
# preload false: axe's CSS preload adds <style> elements, which the pages' CSP rightly refuses (a console error).
AUDIT = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, preload: false, elementRef: true,
                                          resultTypes: ['violations', 'incomplete']});
  const rgba = (text) => text.match(/[\\d.]+/g).map(Number);
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const up = (n) => n.parentElement || n.getRootNode().host;
  const gradientFailures = [];
  for (const rule of result.incomplete.filter((r) => r.id === 'color-contrast')) {
    for (const node of rule.nodes) {
      const data = (node.any[0] || {}).data || {};
      if (data.messageKey !== 'bgGradient') continue;
      let host = node.element, alpha = 1;
      for (; host && !getComputedStyle(host).backgroundImage.includes('gradient'); host = up(host)) {
        alpha *= Number(getComputedStyle(host).opacity);
      }
      const [r, g, b, a = 1] = rgba(getComputedStyle(node.element).color);
      const ratios = getComputedStyle(host).backgroundImage.match(/rgba?\\([^)]+\\)/g).map((stop) => {
        const under = rgba(stop).slice(0, 3), k = a * alpha;
        const [x, y] = [luminance([r, g, b].map((c, i) => c * k + under[i] * (1 - k))), luminance(under)];
        return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
      });
      const worst = Math.min(...ratios);
      if (worst < parseFloat(data.expectedContrastRatio)) {
        gradientFailures.push({target: node.target, summary: `contrast ${worst.toFixed(2)} on its gradient, ` +
                                                             `below ${data.expectedContrastRatio}`});
      }
    }
  }
  const violations = result.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(
    (n) => ({target: n.target, summary: n.failureSummary.split('\\n').pop().trim()}))}));
  if (gradientFailures.length) {
    violations.push({id: 'color-contrast-gradient', impact: 'serious', help: 'Text on a gradient must have ' +
                     'sufficient contrast against every colour of it', nodes: gradientFailures});
  }
  return {ran: result.passes.length + result.incomplete.length > 0, violations};
}"""
PASSWORD = "correct horse battery"
NOON_IN_SHANGHAI = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday: groups are open


@pytest.fixture(scope="module")
def base_url(bundled_assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on uvicorn with its own SQLite file, an agent 小王, a supervisor 赵主管 and a trainer 林训练师."""
    from bot.assistant import Assistant
    from bot.config import load_config
    from bot.handoff.agents import create_agent
    from bot.storage import Database
    from bot.web.app import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('a11y') / 'bot.db'}"
    config = load_config(ROOT / "config.yml", environ={
        "BOT__MODELS_DIR": str(bundled_assistant.config.path(bundled_assistant.config.models_dir)),
        "DATABASE_URL": url,
    })
    app = create_app(config, Assistant(bundled_assistant.model, config))
    app.state.desk.clock = lambda: NOON_IN_SHANGHAI
    database = Database(url, root=config.root)
    create_agent(database, "wang", "小王", PASSWORD, groups=["综合服务", "借记卡与账户"])
    create_agent(database, "zhao", "赵主管", PASSWORD, role="supervisor", groups=["综合服务", "信用卡"])
    create_agent(database, "lin", "林训练师", PASSWORD, role="trainer", groups=[])
    with served(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def axe_source() -> bytes:
    assert AXE.is_file(), f"axe-core is missing at {AXE}: run `make axe` (part of `make test`)"
    return AXE.read_bytes()


@pytest.fixture(params=list(SIZES), ids=list(SIZES))
def size(request: pytest.FixtureRequest) -> tuple[str, int, int]:
    width, height = SIZES[request.param]
    return request.param, width, height


def watched_page(browser: Browser, axe_source: bytes, width: int, height: int) -> Page:
    """A fresh page that records console errors besides alerts and page errors, and can load axe-core.

    The pages forbid inline scripts (script-src 'self'), so axe is served from the page's own origin by the
    browser itself rather than injected inline; the CSP stays real and its violations show as console errors."""
    page = new_page(browser, width, height, timezone_id="Asia/Shanghai")
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(  # type: ignore[attr-defined]
        f"{m.text} ({m.location.get('url')})"))
    page.context.route(re.compile(re.escape(AXE_PATH) + "$"), lambda route: _serve_axe(route, axe_source))
    return page


def _serve_axe(route: Route, axe_source: bytes) -> None:
    route.fulfill(status=200, content_type="text/javascript", body=axe_source)


def violations(page: Page, what: str) -> list[str]:
    """axe-core's WCAG 2 A/AA violations on the page as it is now (open shadow roots included), one line each
    with the rule's id and impact, then the failing elements; and text on a gradient below its contrast."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_PATH)
    result: dict[str, Any] = page.evaluate(AUDIT, WCAG_AA)
    assert result["ran"], f"{what}: axe ran no rule"
    return [f"{what}: {v['id']} ({v['impact']}) {v['help']}\n" + "\n".join(
        f"    {node['target']}: {node['summary']}" for node in v["nodes"]) for v in result["violations"]]


def console_errors(page: Page, what: str) -> list[str]:
    """What the page logged as console errors or threw, and any JS alert it opened."""
    found = page.console_errors + page.errors + page.dialogs  # type: ignore[attr-defined]
    return [f"{what}: {error}" for error in found]


def assert_none(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} problems\n" + "\n".join(problems)


def log_in(page: Page, base_url: str, username: str, where: str = "/agent") -> None:
    page.goto(f"{base_url}{where}")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()


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


def test_the_checks_find_what_they_are_for(browser: Browser, base_url: str, axe_source: bytes) -> None:
    """A page with a low-contrast text (also inside a shadow root), an unlabelled input, small pale text on a
    gradient and a console error: each is found, so a clean page above means something."""
    page = watched_page(browser, axe_source, 1280, 800)
    page.route(f"{base_url}/__probe__", lambda route: route.fulfill(content_type="text/html", body=PROBE))
    page.goto(f"{base_url}/__probe__")
    found = violations(page, "probe")
    assert page.evaluate("axe.version").startswith("4."), "axe-core 4 is what `make axe` installs"
    for rule, target in (("color-contrast", "'main > p'"), ("color-contrast", "'#host'"), ("label", "'input'"),
                         ("color-contrast-gradient", "> p'")):
        assert [v for v in found if v.startswith(f"probe: {rule} (") and target in v], (rule, target, found)
    assert [e for e in console_errors(page, "probe") if "探针的控制台错误" in e], page.console_errors  # type: ignore
    page.context.close()


def test_the_demo_page_and_the_widget(browser: Browser, base_url: str, axe_source: bytes,
                                      size: tuple[str, int, int]) -> None:
    name, width, height = size
    customer = watched_page(browser, axe_source, width, height)
    customer.goto(base_url)
    expect(customer.get_by_role("button", name="打开在线客服")).to_be_visible()
    problems = violations(customer, f"/ with the widget closed ({name})")

    open_widget(customer)
    ask(customer, "asdf qwer zxcv")
    ask(customer, "qwerty uiop")
    offer = customer.locator(".msg.bot").last.locator(".quick button:enabled", has_text="转人工")
    expect(offer).to_be_in_viewport()
    problems += violations(customer, f"/ with the widget open, a reply with buttons in view ({name})")
    customer.screenshot(path=SHOTS / f"a11y-widget-{name}.png")

    offer.click()
    expect(customer.locator(".status")).to_contain_text(re.compile("您是下一位|前面还有"))
    problems += violations(customer, f"/ with the widget queueing for a person ({name})")
    customer.screenshot(path=SHOTS / f"a11y-widget-queue-{name}.png")
    assert_none(problems + console_errors(customer, f"/ ({name})"))
    customer.context.close()


def test_the_agent_console_and_the_widget_with_a_person(browser: Browser, base_url: str, axe_source: bytes,
                                                        size: tuple[str, int, int]) -> None:
    name, width, height = size
    marker = f"我在{'电脑' if name == 'desktop' else '手机'}上等人工客服"  # finds this customer's card in the queue
    customer = watched_page(browser, axe_source, width, height)
    customer.goto(base_url)
    open_widget(customer)
    ask(customer, "转人工")
    expect(customer.locator(".status")).to_contain_text(re.compile("您是下一位|前面还有"))
    ask(customer, marker)

    agent = watched_page(browser, axe_source, width, height)
    agent.goto(f"{base_url}/agent")
    expect(agent.get_by_role("button", name="登录")).to_be_visible()
    problems = violations(agent, f"/agent login ({name})")
    agent.screenshot(path=SHOTS / f"a11y-agent-login-{name}.png")

    log_in(agent, base_url, "wang")
    expect(agent.locator("#live-status")).to_have_text("实时连接")
    agent.locator("#waiting-list .qcard", has_text=marker).get_by_role("button", name=re.compile("^接入")).click()
    expect(agent.get_by_role("log", name="会话记录").locator(".entry.user .bubble").last).to_have_text(marker)
    expect(agent.locator("#ctx-reason")).not_to_be_empty()
    problems += violations(agent, f"/agent, an agent with a chat open ({name})")
    agent.screenshot(path=SHOTS / f"a11y-agent-chat-{name}.png", full_page=True)

    expect(customer.locator(".status")).to_contain_text("小王")
    problems += violations(customer, f"/ with the widget served by a person ({name})")

    supervisor = watched_page(browser, axe_source, width, height)
    log_in(supervisor, base_url, "zhao")
    expect(supervisor.locator("#agent-name")).to_contain_text("赵主管")
    supervisor.get_by_role("button", name="主管视图").click()
    live = supervisor.locator("#sup-live tbody tr").first
    expect(live).to_be_visible()
    live.locator("td").first.click()  # watch the live chat, read-only
    expect(supervisor.get_by_role("log", name="只读会话记录").locator(".entry").first).to_be_visible()
    problems += violations(supervisor, f"/agent, a supervisor's view ({name})")
    supervisor.screenshot(path=SHOTS / f"a11y-agent-supervisor-{name}.png", full_page=True)

    # the agent closes the chat; the customer rates it and gets the comment box
    agent.get_by_role("button", name="结束会话").click()
    expect(agent.get_by_role("dialog", name="结束会话")).to_be_visible()
    problems += violations(agent, f"/agent, the close dialog ({name})")
    agent.get_by_role("button", name="确认结束").click()
    expect(agent.get_by_role("dialog", name="结束会话")).to_be_hidden()
    scores = customer.get_by_role("group", name="评分").last.get_by_role("button")
    expect(scores.first).to_be_visible()
    scores.first.click()
    expect(customer.get_by_role("form", name="补充评价")).to_be_visible()
    problems += violations(customer, f"/ with the widget asking for a rating comment ({name})")
    customer.screenshot(path=SHOTS / f"a11y-widget-rating-{name}.png")

    for page, who in ((customer, "/"), (agent, "/agent (agent)"), (supervisor, "/agent (supervisor)")):
        problems += console_errors(page, f"{who} ({name})")
        page.context.close()
    assert_none(problems)


def test_the_trainer_workbench(browser: Browser, base_url: str, axe_source: bytes, size: tuple[str, int, int]) -> None:
    name, width, height = size
    trainer = watched_page(browser, axe_source, width, height)
    trainer.goto(f"{base_url}/trainer")
    expect(trainer.get_by_role("button", name="登录")).to_be_visible()
    problems = violations(trainer, f"/trainer login ({name})")

    log_in(trainer, base_url, "lin", "/trainer")
    expect(trainer.locator("#me-name")).to_have_text("林训练师（训练师）")
    expect(trainer.locator("#inbox-summary")).to_contain_text(re.compile(r"共 \d+ 组"))
    problems += violations(trainer, f"/trainer review inbox ({name})")
    trainer.screenshot(path=SHOTS / f"a11y-trainer-{name}.png", full_page=True)
    assert_none(problems + console_errors(trainer, f"/trainer ({name})"))
