"""The HTTP API with Rasa's endpoints, on the trained fixture bot."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from bot.web.app import create_app


@pytest.fixture(scope="module")
def client(minibot_agent) -> TestClient:
    return TestClient(create_app(minibot_agent.config, agent=minibot_agent))


def test_health_ready_status(client: TestClient, minibot_agent) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["model"] == minibot_agent.version
    status = client.get("/status").json()
    assert status["intents"] == 4 and status["knowledge_entries"] == 4


def test_rest_webhook_answers_like_rasa(client: TestClient) -> None:
    response = client.post("/webhooks/rest/webhook", json={"sender": "c1", "message": "你好"})
    assert response.status_code == 200
    assert response.json() == [{"recipient_id": "c1", "text": "您好，我是小智，请问有什么可以帮您？"}]


def test_model_parse(client: TestClient) -> None:
    body = client.post("/model/parse", json={"text": "我要掛失"}).json()
    assert body["intent"]["name"] == "report_card_loss"
    assert {"text", "intent", "intent_ranking", "entities", "retrieval"} <= body.keys()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"sender": "c1", "message": "   "}, "message is empty"),
        ({"sender": "c1"}, "Field required"),
        ({"sender": "", "message": "你好"}, "at least 1 character"),
        ({"sender": "c1", "message": "好" * 5000}, "at most 2000 characters"),
    ],
)
def test_bad_input_gets_a_clear_422(client: TestClient, payload: dict, expected: str) -> None:
    response = client.post("/webhooks/rest/webhook", json=payload)
    assert response.status_code == 422
    assert expected in response.text


def test_malformed_json_is_refused(client: TestClient) -> None:
    response = client.post("/webhooks/rest/webhook", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
