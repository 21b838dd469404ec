"""The helpers the desk (/agent) and the trainer's workbench (/trainer) share, bot/web/static/console.js: served at
/console.js to anyone, loaded before each page's own script, and in a real headless Chromium against a real
uvicorn server: the API client's errors (a 401 outside the login, the login's own 401, a 422, an unreachable
server), the times, and each console keeping its own session under its own storage keys."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.web.agent_api import CONSOLE_FILES, STATIC
from bot.web.app import create_app
from bot.web.trainer_api import PAGE_FILES

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "console-pass-0001"
LIBRARY_FILES = {"/agent-library.js": "agent-library.js", "/agent-library.css": "agent-library.css"}
KINDS = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# BankConsole's API client against the real server; each outcome as {status, message, text} or {ok}
API_ERRORS = """async () => {
  const C = window.BankConsole;
  const calls = [];
  const onUnauthorized = () => { calls.push(1); return "请重新登录"; };
  const api = C.apiClient({ token: () => "no-such-session", onUnauthorized });
  const outcome = async (call) => {
    try { return { ok: await call }; }
    catch (e) { return { status: e.status, message: e.message, text: C.errorText(e), api: e instanceof C.ApiError }; }
  };
  return {
    queue: await outcome(api("GET", "/api/agent/queue")),
    login: await outcome(api("POST", "/api/agent/login", { username: "nobody", password: "wrong-password-1" })),
    invalid: await outcome(api("POST", "/api/agent/login", { username: "", password: "" })),
    unreachable: await outcome(api("GET", "http://127.0.0.1:9/api/agent/queue")),
    unauthorizedCalls: calls.length,
    plain: C.errorText(new TypeError("x")),
  };
}"""
TIMES = """() => {
  const C = window.BankConsole;
  return [C.formatTime("2026-01-02 03:04:05", "dateTime"), C.formatTime("2026-01-02T03:04:05Z", "clock"),
          C.formatTime("2026-01-02T03:04:05+08:00", "dayClock"), C.formatTime("不是时间", "dayClock", "-"),
          C.parseTime("")];
}"""
STORAGE = "() => Object.fromEntries(Object.keys(sessionStorage).map((k) => [k, sessionStorage.getItem(k)]))"


class Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            found = dict(attrs)
            self.scripts.append((found.get("src") or "", "defer" in found))


def scripts_of(page: str) -> list[tuple[str, bool]]:
    parser = Scripts()
    parser.feed((STATIC / page).read_text("utf-8"))
    return parser.scripts


@pytest.fixture(scope="module")
def app(minibot_assistant, tmp_path_factory: pytest.TempPathFactory):
    database = Database(f"sqlite:///{Path(tmp_path_factory.mktemp('console')) / 'bot.db'}")
    create_agent(database, "wang", "小王", PASSWORD, role="agent", groups=["综合服务"])
    create_agent(database, "lin", "小林", PASSWORD, role="trainer", groups=["综合服务"])
    return create_app(minibot_assistant.config, assistant=minibot_assistant, database=database)


def test_the_consoles_files_are_served_from_their_allow_lists_only(app) -> None:
    client = TestClient(app)
    files = {**CONSOLE_FILES, **LIBRARY_FILES, **PAGE_FILES}
    assert files["/console.js"] == "console.js"
    for path, file in files.items():
        response = client.get(path)  # no credentials: the pages hold no data
        assert response.status_code == 200, path
        assert response.headers["content-type"] == f"{KINDS[Path(file).suffix]}; charset=utf-8", path
        assert response.content == (STATIC / file).read_bytes(), path
    for path in ("/static/console.js", "/console.css.map", "/agent_api.py", "/trainer.html"):
        assert client.get(path).status_code == 404, path


def test_each_console_loads_the_shared_helpers_before_its_own_scripts() -> None:
    assert scripts_of("agent.html") == [("/console.js", True), ("/agent.js", True), ("/agent-library.js", True)]
    assert scripts_of("trainer.html") == [("/console.js", True), ("/trainer.js", True)]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_the_helpers_and_the_two_sessions_in_a_real_browser(app) -> None:
    from browser_support import SHOTS, assert_clean, chromium, new_page, served
    from playwright.sync_api import expect

    with served(app) as base_url, chromium() as browser:
        page = new_page(browser, timezone_id="Asia/Shanghai")
        page.goto(f"{base_url}/trainer")
        expect(page.locator("#login-view")).to_be_visible()

        errors = page.evaluate(API_ERRORS)
        assert errors["queue"]["status"] == 401 and errors["queue"]["message"] == "请重新登录"
        assert errors["unauthorizedCalls"] == 1  # the login's own 401 (a wrong password) is not a lost session
        assert errors["login"]["status"] == 401 and errors["login"]["message"] not in ("", "请重新登录")
        assert errors["invalid"]["status"] == 422 and errors["invalid"]["api"]
        assert errors["invalid"]["message"] and "Value error" not in errors["invalid"]["message"]
        assert errors["unreachable"] == {"status": 0, "message": "网络异常，请稍后重试。",
                                         "text": "网络异常，请稍后重试。", "api": True}
        assert errors["plain"] == "网络异常，请稍后重试。"
        assert page.evaluate(TIMES) == ["2026/01/02 11:04", "11:04:05", "01/02 03:04", "-", None]

        # the desk's login is kept under the desk's keys ...
        page.goto(f"{base_url}/agent")
        log_in(page, "wang", "#console-view")
        desk = page.evaluate(STORAGE)
        assert set(desk) == {"bankbot.agent.token", "bankbot.agent.me"}
        assert '"username":"wang"' in desk["bankbot.agent.me"]
        # ... so the workbench in the same tab still asks for its own, and refuses a desk agent's account
        page.goto(f"{base_url}/trainer")
        expect(page.locator("#login-view")).to_be_visible()
        page.locator("#login-username").fill("wang")
        page.locator("#login-password").fill("wrong-password-1")
        page.locator("#login-form button[type=submit]").click()
        expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
        page.locator("#login-password").fill(PASSWORD)
        page.locator("#login-form button[type=submit]").click()
        expect(page.locator("#login-error")).to_have_text("该账号没有训练工作台的权限（需要训练师或管理员账号）。")
        page.screenshot(path=str(SHOTS / "console-js-trainer-refused.png"))
        assert page.evaluate(STORAGE) == desk
        log_in(page, "lin", "#bench-view")
        both = page.evaluate(STORAGE)
        assert both["bankbot.agent.token"] == desk["bankbot.agent.token"]
        assert re.fullmatch(r"\S{20,}", both["bankbot.trainer.token"]) and both["bankbot.trainer.token"] != desk[
            "bankbot.agent.token"]
        page.locator("#logout").click()
        expect(page.locator("#login-view")).to_be_visible()
        assert page.evaluate(STORAGE) == desk  # the workbench's logout leaves the desk's session alone
        assert_clean(page)


def log_in(page, username: str, view: str) -> None:
    from playwright.sync_api import expect

    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-form button[type=submit]").click()
    expect(page.locator(view)).to_be_visible()
