"""What the Chromium tests share: the app served by uvicorn on a free port, one headless Chromium, pages that
record JS alerts and errors, and the widget steps a customer takes. Test modules skip themselves first when
Chromium is missing (`CHROMIUM`), then import this."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path("/tmp")
TIMEOUT_MS = 20_000


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
