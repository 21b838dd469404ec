"""Fuzzing the HTTP API from its own OpenAPI spec (issue 9, item 8): schemathesis sends valid and invalid
requests to every documented route; none may answer 5xx. Once without credentials (routes that need them
answer 401/403, which is fine) and once with valid ones, so the code behind the checks is fuzzed too. Bounded
so the file runs in well under a minute.

schemathesis' lazy `from_fixture` loader fails on pytest 9 (it writes `Function._nodeid`, which pytest 9
no longer has), and a module-level schema would need a trained model at import time; so each operation's
hypothesis strategy is run here directly, and every failing route is reported, not only the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from bot.channels.app import AppCustomer, sign_token
from bot.config import AppChannelConfig, ChannelsConfig, NotifyConfig, SecurityConfig
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.web.app import create_app

EXAMPLES_PER_ROUTE = 12
APP_SECRET = "fuzz-secret-of-the-banks-app-backend-0123"
API_TOKEN = "fuzz-api-token-0123456789"
NOTIFY_KEY = "fuzz-notify-key-0123456789"
PASSWORD = "fuzz password 0123"
SIGNED_OUT = {"/api/agent/logout"}  # would end the session the authenticated run relies on


@dataclass
class Target:
    schema: schemathesis.BaseSchema
    credentials: dict[str, dict[str, str]]  # path prefix -> the headers that authenticate there


@pytest.fixture(scope="module")
def target(minibot_assistant, tmp_path_factory: pytest.TempPathFactory) -> Target:
    data: Path = tmp_path_factory.mktemp("fuzz")
    database = Database(f"sqlite:///{data / 'bot.db'}")
    # every feature that is off until configured is on, so its code is fuzzed rather than a 503
    config = minibot_assistant.config.model_copy(update={
        "channels": ChannelsConfig(app=AppChannelConfig(secret=APP_SECRET)),
        "notify": NotifyConfig(api_keys=[NOTIFY_KEY]), "security": SecurityConfig(api_token=API_TOKEN)})
    app = create_app(config, assistant=minibot_assistant, database=database)
    create_agent(database, "fuzz-admin", "模糊测试", PASSWORD, role="admin")
    login = TestClient(app).post("/api/agent/login", json={"username": "fuzz-admin", "password": PASSWORD})
    session = {"Authorization": f"Bearer {login.json()['token']}"}
    app_token = sign_token(AppCustomer(customer_id="C-FUZZ"), APP_SECRET, lifetime_seconds=3600)
    credentials = {"/conversations/": {"Authorization": f"Bearer {API_TOKEN}"},
                   "/channels/app/": {"Authorization": f"Bearer {app_token}"},
                   "/api/agent/": session, "/api/supervisor/": session, "/api/admin/": session,
                   "/api/v1/notify": {"X-Api-Key": NOTIFY_KEY}}
    return Target(schemathesis.openapi.from_asgi("/openapi.json", app), credentials)


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str] | None) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    try:
        run()
    except Unsatisfiable:  # nothing about this operation can be made invalid (no parameters, free strings)
        if mode is not GenerationMode.NEGATIVE:
            raise


RUNS = [
    pytest.param(GenerationMode.POSITIVE, False, id="positive"),
    pytest.param(GenerationMode.NEGATIVE, False, id="negative"),
    pytest.param(GenerationMode.POSITIVE, True, id="positive-authenticated"),
]


@pytest.mark.parametrize(("mode", "authenticated"), RUNS)
def test_no_route_answers_a_server_error(target: Target, mode: GenerationMode, authenticated: bool) -> None:
    failures: dict[str, str] = {}
    operations = 0
    for result in target.schema.get_all_operations():
        operation = result.ok()
        if authenticated and operation.path in SIGNED_OUT:
            continue
        operations += 1
        headers = next((value for prefix, value in target.credentials.items()
                        if operation.path.startswith(prefix)), None) if authenticated else None
        try:
            fuzz(operation, mode, headers)
        except (Exception, BaseExceptionGroup) as e:  # collected: one broken route must not hide the others
            failures[operation.label] = f"{type(e).__name__}: {e}"[:2000]
    assert operations >= 10, "the spec lost its routes"
    assert not failures, "\n\n".join(f"{label}\n{error}" for label, error in failures.items())
