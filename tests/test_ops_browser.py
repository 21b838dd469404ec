"""The operations dashboard (/ops) in a real headless Chromium, against the real server (uvicorn), the bundled bank
bot and a temporary SQLite database seeded through the real conversation service and desk: a conversation the bot
answered alone, one handed to the agent 小王 who greets with a forbidden phrase, closes and gets a 5, and one still
waiting past the (test-sized) alert threshold. A supervisor at /agent gets the service-level alert as a banner;
a manager at /ops sees the KPI cards' numbers, the charts drawn by the vendored Chart.js, the conversations behind
a card and a table cell, downloads the CSV, and confirms the quality hit in 质检; an agent is refused. axe-core
WCAG 2 A/AA and the console at 1280 and 390 px; screenshots in /tmp (ops-desktop.png, ops-phone.png,
ops-quality.png, ops-agent-alert.png)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install -y chromium fonts-wqy-microhei)",
                allow_module_level=True)

from browser_support import (  # noqa: E402
    SHOTS,
    DeskAgent,
    assert_clean,
    assert_fits,
    axe_violations,
    chromium,
    desk_app,
    desk_page,
    log_in,
    serve_axe,
)
from browser_support import served as serving  # noqa: E402
from playwright.sync_api import Browser, Page, expect  # noqa: E402

from bot.dialogue.service import Inbound  # noqa: E402

FORBIDDEN = "这个你自己看说明书吧"  # "你自己看" is in ops.quality.forbidden_words
ALERTS = {"BOT__OPS__ALERTS__OLDEST_WAIT_SECONDS": "1", "BOT__OPS__ALERTS__CHECK_SECONDS": "1"}


@dataclass(frozen=True)
class Seeded:
    base: str
    app: Any
    contained: str  # conversation ids
    handed_over: str


def say(app: Any, sender: str, text: str) -> str:
    """A customer's web message through the real conversation service; the conversation's id. In a thread of its
    own: the service runs the dialogue on an event loop, and Playwright's sync API holds this thread's."""
    service = app.state.conversations
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(service.handle, Inbound("web", sender, text, None)).result()
    return str(service.store.find_conversation(sender).id)


def agent_id(app: Any, username: str) -> int:
    from bot.storage.models import AgentAccount

    with app.state.database.session() as session:
        return next(a.id for a in session.query(AgentAccount).filter_by(username=username))


@pytest.fixture(scope="module")
def seeded(bundled_assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """Two finished conversations (contained; handed over, closed and rated 5 with a forbidden phrase) and the
    app served; the third customer, who waits, comes in the tests."""
    app, _ = desk_app(bundled_assistant, tmp_path_factory.mktemp("ops-browser"), environ=ALERTS, agents=[
        DeskAgent("wang", "小王", employee_no="1024"), DeskAgent("boss", "王经理", role="manager"),
        DeskAgent("lead", "李主管", groups=[], role="supervisor")])  # in no group: takes no chat
    desk, wang = app.state.desk, agent_id(app, "wang")
    contained = say(app, "cust-bot", "信用卡年费是多少")
    handed_over = say(app, "cust-human", "转人工")
    handoff = desk.open_handoff(handed_over)
    desk.set_presence(wang, "online")  # going online takes the waiting chat
    assert desk.ticket(handoff.id).status == "assigned"
    desk.agent_message(handoff.id, wang, f"您好，我是客服小王。{FORBIDDEN}")
    desk.agent_message(handoff.id, wang, "感谢您的耐心，再见")
    desk.close(handoff.id, wang, "已解决")
    say(app, "cust-human", "5")
    desk.set_presence(wang, "offline")  # the next customer waits
    with serving(app) as base:
        yield Seeded(base, app, contained, handed_over)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def open_ops(browser: Browser, base: str, width: int, height: int) -> tuple[Page, list[str]]:
    page = desk_page(browser, width, height)
    errors = console_errors(page)
    serve_axe(page)
    log_in(page, base, "boss", where="/ops")
    expect(page.locator("#ops-view")).to_be_visible()
    expect(page.locator(".kpi")).to_have_count(11)
    return page, errors


def kpi(page: Page, name: str) -> Any:
    return page.locator(f'[data-kpi="{name}"] .kpi-value')


def chart_drawn(page: Page, canvas: str) -> dict[str, Any]:
    """The Chart.js instance on the canvas: its first dataset's values and how many pixels are painted."""
    return page.evaluate("""(id) => {
      const canvas = document.getElementById(id);
      const chart = Chart.getChart(canvas);
      const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let painted = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted += 1;
      return {values: chart ? chart.data.datasets[0].data : null, painted, labels: chart ? chart.data.labels : null};
    }""", canvas)


def drill_ids(page: Page) -> list[str]:
    return page.locator("#drill-table tbody tr td:first-child").evaluate_all("cells => cells.map(c => c.title)")


def test_a_supervisor_gets_the_alert_and_a_manager_reads_the_dashboard(seeded: Seeded, browser: Browser) -> None:
    desk = desk_page(browser)
    serve_axe(desk)
    log_in(desk, seeded.base, "lead")
    expect(desk.locator("#live-status")).to_have_attribute("data-state", "live")
    desk.locator(".presence").get_by_role("button", name="在线").click()  # alerts go to supervisors online
    expect(desk.locator(".presence").get_by_role("button", name="在线")).to_have_attribute("aria-pressed", "true")
    say(seeded.app, "cust-waiting", "转人工")  # nobody online: waits past the 1 s threshold
    banner = desk.locator(".ops-alert")
    expect(banner).to_have_count(1)
    expect(banner).to_contain_text("排队超时告警")
    expect(banner.get_by_role("link", name="查看运营看板")).to_have_attribute("href", "/ops")
    assert axe_violations(desk, "/agent alert banner", within="#ops-alerts") == []
    desk.screenshot(path=str(SHOTS / "ops-agent-alert.png"))
    assert_clean(desk)

    page, errors = open_ops(browser, seeded.base, 1280, 900)
    expect(kpi(page, "conversations")).to_have_text("3")
    expect(kpi(page, "escalation")).to_have_text("66.7%")  # 2 of 3 conversations handed over
    expect(kpi(page, "csat")).to_have_text("100.0%")  # one rating, a 5
    expect(page.locator("#live-waiting")).to_have_text("1 人")
    expect(page.locator("#alerts .alert")).to_contain_text(["排队超时告警"])

    by_day = chart_drawn(page, "chart-day")
    assert sum(v or 0 for v in by_day["values"]) == 3 and by_day["painted"] > 1000, by_day
    by_reason = chart_drawn(page, "chart-reason")
    assert by_reason["labels"] == ["客户要求"] and by_reason["values"] == [2], by_reason

    page.locator('[data-kpi="escalation"] .kpi-open').click()  # the conversations behind 转人工率
    expect(page.locator("#drill-table tbody tr")).to_have_count(2)
    assert seeded.handed_over in drill_ids(page) and seeded.contained not in drill_ids(page)
    expect(page.locator("#drill-summary")).to_contain_text("转人工的会话：共 2 个")

    page.get_by_role("button", name="坐席", exact=True).click()
    row = page.locator("#breakdown tbody tr", has_text="小王")
    expect(row).to_have_count(1)
    row.locator("button").first.click()  # 小王's chats
    expect(page.locator("#drill-table tbody tr")).to_have_count(1)
    assert drill_ids(page) == [seeded.handed_over]
    expect(page.locator("#drill-table tbody tr")).to_contain_text("客户要求")

    with page.expect_download() as download:
        page.get_by_role("button", name="导出CSV").click()
    assert download.value.suggested_filename.endswith(".csv")
    csv = Path(download.value.path()).read_bytes()
    assert csv.startswith(b"\xef\xbb\xbf") and "小王" in csv.decode("utf-8-sig"), csv[:200]

    assert axe_violations(page, "/ops at 1280 px") == []
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / "ops-desktop.png"), full_page=True)

    page.get_by_role("button", name="质检").click()
    hit = page.locator("#hits tbody tr", has_text="你自己看")
    expect(hit).to_have_count(1)
    expect(hit).to_contain_text("小王")
    assert axe_violations(page, "/ops 质检") == []
    page.screenshot(path=str(SHOTS / "ops-quality.png"), full_page=True)
    hit.get_by_role("button", name="确认").click()
    expect(page.locator("#toast")).to_have_text("已确认该命中。")
    expect(hit).to_have_count(0)
    rule = page.locator("#rules tbody tr", has_text=re.compile("禁用|不文明|forbidden"))
    expect(rule.locator("td").last).to_have_text("100.0%")  # 1 confirmed of 1 reviewed
    page.locator("#hits-status").select_option("confirmed")
    expect(page.locator("#hits tbody tr", has_text="你自己看")).to_contain_text("王经理")
    assert_clean(page)
    assert errors == []


def test_the_dashboard_on_a_phone(seeded: Seeded, browser: Browser) -> None:
    page, errors = open_ops(browser, seeded.base, 390, 844)
    expect(kpi(page, "conversations")).not_to_have_text("—")
    assert chart_drawn(page, "chart-hour")["painted"] > 500
    page.locator('[data-kpi="csat"] .kpi-open').click()  # the rated conversation
    expect(page.locator("#drill-table tbody tr")).to_have_count(1)
    assert drill_ids(page) == [seeded.handed_over]
    expect(page.locator("#drill-table tbody tr")).to_contain_text("5分")
    assert_fits(page, 390)
    assert axe_violations(page, "/ops at 390 px") == []
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / "ops-phone.png"), full_page=True)
    page.get_by_role("button", name="质检").click()
    expect(page.locator("#rules tbody tr").first).to_be_visible()
    assert_fits(page, 390)
    assert axe_violations(page, "/ops 质检 at 390 px") == []
    assert_clean(page)
    assert errors == []


def test_an_agent_is_refused(seeded: Seeded, browser: Browser) -> None:
    page = desk_page(browser, 390, 844)
    serve_axe(page)
    log_in(page, seeded.base, "wang", where="/ops")
    expect(page.locator("#login-error")).to_have_text("该账号没有运营看板的权限（需要主管、经理或管理员账号）。")
    expect(page.locator("#ops-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('bankbot.ops.token')") is None
    assert axe_violations(page, "/ops login refused") == []
    assert_clean(page)


def test_the_chart_library_is_served_from_the_package_with_its_licence(seeded: Seeded) -> None:
    served = httpx.get(f"{seeded.base}/vendor/chart.umd.min.js")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/javascript")
    assert served.text.startswith("/*!\n * Chart.js v4.")
    vendor = Path(__file__).resolve().parents[1] / "bot" / "web" / "static" / "vendor"
    assert "MIT License" in (vendor / "chart.js.LICENSE.md").read_text()
    page = httpx.get(f"{seeded.base}/ops").text
    assert re.findall(r'<script src="([^"]+)"', page) == ["/console.js", "/vendor/chart.umd.min.js", "/ops.js"]
