"""Security headers, framing, CORS and the docs switch (issue 9, item 6), on the fixture bot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.config import ServerConfig
from bot.web.app import create_app
from bot.web.widget import STATIC

BANK = "https://www.bank.example"


def make_client(agent, tmp_path: Path, **server: object) -> TestClient:
    config = agent.config.model_copy(update={"server": ServerConfig(**server),
                                             "storage": agent.config.storage.model_copy(
                                                 update={"url": f"sqlite:///{tmp_path / 'bot.db'}"})})
    return TestClient(create_app(config, assistant=agent))


@pytest.fixture(scope="module")
def client(minibot_assistant, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return make_client(minibot_assistant, tmp_path_factory.mktemp("headers"))


@pytest.fixture(scope="module")
def embedded(minibot_assistant, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """Embedded on the bank's site, served over HTTPS, docs off: the production settings."""
    return make_client(minibot_assistant, tmp_path_factory.mktemp("embedded"), allowed_origins=[BANK],
                       behind_tls=True, docs=False)


def csp(response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else "" for d in map(str.strip, policy.split(";"))}


# the pages, an API answer, an API refusal and a 404: every response carries them
EVERY_KIND = ["/", "/widget.js", "/agent", "/agent.js", "/health", "/api/agent/queue", "/no-such-page"]


@pytest.mark.parametrize("path", EVERY_KIND)
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] in ("strict-origin-when-cross-origin", "no-referrer",
                                                   "same-origin", "strict-origin")
    policy = csp(response)
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert "unsafe" not in response.headers["content-security-policy"]
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert "'self'" in policy["connect-src"] and "ws://testserver" in policy["connect-src"]
    assert "strict-transport-security" not in response.headers  # not behind TLS


@pytest.mark.parametrize("path", ["/agent", "/agent.js", "/health", "/api/agent/queue", "/status"])
def test_consoles_and_the_api_may_never_be_framed(embedded: TestClient, path: str) -> None:
    response = embedded.get(path)
    assert csp(response)["frame-ancestors"] == "'none'"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("path", ["/", "/widget.js", "/widget.css"])
def test_the_widget_pages_may_be_framed_by_the_bank_only(client: TestClient, embedded: TestClient,
                                                         path: str) -> None:
    alone = client.get(path)
    assert csp(alone)["frame-ancestors"] == "'self'" and alone.headers["x-frame-options"] == "SAMEORIGIN"
    on_bank_site = embedded.get(path)
    assert csp(on_bank_site)["frame-ancestors"].split() == ["'self'", BANK]
    assert "x-frame-options" not in on_bank_site.headers  # it cannot name the bank's origin: CSP decides


def test_hsts_only_behind_tls(client: TestClient, embedded: TestClient) -> None:
    assert "strict-transport-security" not in client.get("/").headers
    hsts = embedded.get("/").headers["strict-transport-security"]
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 15552000  # at least 180 days


def test_json_answers_are_not_cached(client: TestClient) -> None:
    assert client.get("/health").headers["cache-control"] == "no-store"
    assert client.get("/widget.js").headers["cache-control"] == "no-cache"  # a route's own choice stays


def test_docs_can_be_switched_off(client: TestClient, embedded: TestClient) -> None:
    for path in ("/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/start.js", "/openapi.json"):
        assert client.get(path).status_code == 200, path
        assert embedded.get(path).status_code == 404, path
    assert client.get("/docs/../config.yml").status_code == 404 and client.get("/docs/index.html").status_code == 404


def test_the_docs_page_loads_nothing_from_elsewhere_and_keeps_the_strict_policy(client: TestClient) -> None:
    page = client.get("/docs")
    assert "http" not in re.sub(r'(src|href)="/docs/[\w.-]+"', "", page.text)  # no CDN, no other host
    assert "<script>" not in page.text  # started by a file: no inline script
    policy = csp(page)
    assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"


def test_cors_preflight_only_for_configured_origins(client: TestClient, embedded: TestClient) -> None:
    def preflight(c: TestClient, origin: str):
        return c.options("/webhooks/rest/webhook", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})

    allowed = preflight(embedded, BANK)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == BANK
    assert "access-control-allow-credentials" not in allowed.headers
    assert "x-content-type-options" in allowed.headers
    for c, origin in ((embedded, "https://evil.example"), (client, BANK)):
        refused = preflight(c, origin)
        assert "access-control-allow-origin" not in refused.headers, origin
    simple = embedded.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_the_demo_page_has_no_inline_script_or_style() -> None:
    page = (STATIC / "index.html").read_text("utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", page), "inline event handler"
    assert "<style" not in page and not re.search(r"\sstyle\s*=", page), "inline style"


def test_the_demo_page_files_are_served(client: TestClient) -> None:
    page = client.get("/").text
    for path, kind in (("/demo.js", "text/javascript"), ("/demo.css", "text/css")):
        assert f'"{path}"' in page
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
