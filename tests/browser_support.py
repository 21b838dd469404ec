"""What the Chromium tests share: the bundled bot's app with its own SQLite file, the desk's clock at a weekday noon
and its agents; the app served by uvicorn on a free port, one headless Chromium, pages that record JS alerts and
errors; the widget steps a customer takes, the desk's login and reply box; axe-core served on the page's own origin
and run with the WCAG 2 A/AA rules. Test modules skip themselves first when Chromium is missing (`CHROMIUM`), then
import this."""

from __future__ import annotations

import functools
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path("/tmp")
TIMEOUT_MS = 20_000
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
SHANGHAI = "Asia/Shanghai"
NOON_IN_SHANGHAI = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo(SHANGHAI))  # a Monday: groups are open


# --- the app -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeskAgent:
    """An account to create at the desk, with PASSWORD; groups None: every group in config.yml."""

    username: str
    name: str
    groups: Sequence[str] | None = None
    role: str = "agent"
    employee_no: str | None = None  # 工号


def bundled_app(bundled_assistant: Any, directory: Path, environ: Mapping[str, str] | None = None) -> Any:
    """The app for config.yml with the bundled bot's trained model and its own SQLite file in `directory`;
    `environ` adds to (or overrides) the configuration's environment."""
    from bot.assistant import Assistant
    from bot.config import load_config
    from bot.web.app import create_app

    config = load_config(ROOT / "config.yml", environ={
        "BOT__MODELS_DIR": str(bundled_assistant.config.path(bundled_assistant.config.models_dir)),
        "DATABASE_URL": f"sqlite:///{directory / 'bot.db'}",
        **(environ or {}),
    })
    return create_app(config, Assistant(bundled_assistant.model, config))


def desk_app(bundled_assistant: Any, directory: Path, agents: Sequence[DeskAgent],
             environ: Mapping[str, str] | None = None) -> tuple[Any, Any]:
    """(app, database): `bundled_app` whose desk's clock says NOON_IN_SHANGHAI (every group open), with `agents`."""
    from bot.handoff.agents import create_agent
    from bot.handoff.desk import set_employee_no

    app = bundled_app(bundled_assistant, directory, environ)
    app.state.desk.clock = lambda: NOON_IN_SHANGHAI
    database, groups = app.state.database, [group.name for group in app.state.config.handoff.groups]
    for agent in agents:
        create_agent(database, agent.username, agent.name, PASSWORD, role=agent.role,
                     groups=groups if agent.groups is None else list(agent.groups))
        if agent.employee_no is not None:
            set_employee_no(database, agent.username, agent.employee_no)
    return app, database


@contextmanager
def served(app: Any, log_level: str = "warning", access_log: bool = True) -> Iterator[str]:
    """The app served by uvicorn in a thread on a free port; its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level,
                                           access_log=access_log))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


def new_page(browser: Browser, width: int = 1280, height: int = 860, **context: Any) -> Page:
    """A fresh browser context (its own storage) whose page records JS alerts and page errors."""
    page = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN", **context).new_page()
    page.context.set_default_timeout(TIMEOUT_MS)
    page.dialogs = []  # type: ignore[attr-defined]
    page.errors = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    return page


def desk_page(browser: Browser, width: int = 1280, height: int = 860) -> Page:
    """`new_page` in the desk's time zone, where NOON_IN_SHANGHAI is noon."""
    return new_page(browser, width, height, timezone_id=SHANGHAI)


def assert_fits(page: Page, width: int) -> None:
    """Nothing on the page overflows sideways at a viewport `width` px wide."""
    scrolled = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    assert scrolled <= width, f"the page is {scrolled} px wide at a {width} px viewport"


def assert_clean(page: Page) -> None:
    assert page.dialogs == [], f"a dialog was opened: {page.dialogs}"  # type: ignore[attr-defined]
    assert page.errors == [], f"JavaScript errors: {page.errors}"  # type: ignore[attr-defined]


# --- the customer's widget -----------------------------------------------------------------------------------

def open_widget(page: Page) -> None:
    if page.locator(".panel").is_hidden():
        page.get_by_role("button", name="打开在线客服").click()
    expect(page.locator(".panel")).to_be_visible()
    expect(page.locator(".status")).to_have_text(re.compile("在线"))


def ask(page: Page, text: str) -> list[str]:
    """Type a question, press Enter, wait for its acknowledgement; the bot's new messages."""
    bots_before = page.locator(".msg.bot").count()
    users_before = page.locator(".msg.user").count()
    page.get_by_label("输入您的问题").fill(text)
    page.get_by_label("输入您的问题").press("Enter")
    return replies_after(page, users_before + 1, bots_before)


def replies_after(page: Page, users: int, bots_before: int) -> list[str]:
    """Once `users` customer messages are all acknowledged, the bot messages after the first `bots_before`."""
    expect(page.locator(".msg.user")).to_have_count(users)
    expect(page.locator(".msg.user.pending")).to_have_count(0)
    expect(page.locator(".typing")).to_be_hidden()
    return bubble_texts(page, "bot")[bots_before:]


def bubble_texts(page: Page, role: str) -> list[str]:
    return page.locator(f".msg.{role} .bubble .text").all_text_contents()


# --- the agent desk ------------------------------------------------------------------------------------------

def log_in(page: Page, base_url: str, username: str, password: str = PASSWORD, where: str = "/agent") -> None:
    """Fill in and submit the login form of /agent (or of `where`, e.g. /trainer)."""
    page.goto(f"{base_url}{where}")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def send_reply(page: Page, text: str) -> None:
    """Type into the desk's reply box and press Enter; waits until the box is empty again (sent)."""
    box = page.locator("#reply")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def agent_headers(http: httpx.Client, username: str) -> dict[str, str]:
    """The Authorization header of a new desk session of `username` (password PASSWORD)."""
    login = http.post("/api/agent/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


# --- axe-core ------------------------------------------------------------------------------------------------

AXE = ROOT / ".bot" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
AXE_PATH = "/__axe__/axe.min.js"  # where the tests serve it: same origin, so the pages' real CSP allows it
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# axe.run on the element `within` selects (the whole document without one), then what axe leaves undecided: text
# on a gradient ("incomplete", bgGradient) is measured against every colour stop of the gradient under it, the
# text's colour blended by the opacity between the two.
# preload false: axe's CSS preload adds <style> elements, which the pages' CSP rightly refuses (a console error).
AXE_AUDIT = """async ([within, tags]) => {
  const result = await axe.run(within ? document.querySelector(within) : document, {
    runOnly: {type: 'tag', values: tags}, preload: false, elementRef: true, resultTypes: ['violations', 'incomplete']});
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


@functools.cache
def axe_source() -> bytes:
    assert AXE.is_file(), f"axe-core is missing at {AXE}: run `make axe` (part of `make test`)"
    return AXE.read_bytes()


def serve_axe(page: Page) -> None:
    """The page's context answers AXE_PATH on any origin with axe-core. The pages forbid inline scripts
    (script-src 'self'), so axe is served from the page's own origin by the browser itself rather than injected
    inline; the CSP stays real and its violations show as console errors."""
    source = axe_source()
    page.context.route(re.compile(re.escape(AXE_PATH) + "$"),
                       lambda route: route.fulfill(status=200, content_type="text/javascript", body=source))


def axe_violations(page: Page, what: str, within: str | None = None) -> list[str]:
    """axe-core's WCAG 2 A/AA violations on the page as it is now (open shadow roots included), in the element
    `within` selects or the whole document, one line each with the rule's id and impact, then the failing
    elements; and text on a gradient below its contrast. The page must have had `serve_axe`."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_PATH)
    result: dict[str, Any] = page.evaluate(AXE_AUDIT, [within, WCAG_AA])
    assert result["ran"], f"{what}: axe ran no rule"
    return [f"{what}: {v['id']} ({v['impact']}) {v['help']}\n" + "\n".join(
        f"    {node['target']}: {node['summary']}" for node in v["nodes"]) for v in result["violations"]]
