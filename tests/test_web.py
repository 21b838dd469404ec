"""The HTTP API with Rasa's endpoints, on the trained fixture bot."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from bot.config import BotConfig
from bot.web.app import create_app

API_TOKEN = "test-api-token-0123456789"
API = {"Authorization": f"Bearer {API_TOKEN}"}


def with_api_token(config: BotConfig) -> BotConfig:
    return config.model_copy(update={"security": config.security.model_copy(update={"api_token": API_TOKEN})})


@pytest.fixture(scope="module")
def client(minibot_assistant) -> TestClient:
    return TestClient(create_app(with_api_token(minibot_assistant.config), assistant=minibot_assistant))


def test_health_ready_status(client: TestClient, minibot_assistant) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["model"] == minibot_assistant.version
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


def test_rest_webhook_retry_with_the_same_message_id_is_answered_once(client: TestClient) -> None:
    body = {"sender": "retry-1", "message": "补卡要多少钱", "message_id": "client-42"}
    first = client.post("/webhooks/rest/webhook", json=body)
    second = client.post("/webhooks/rest/webhook", json=body)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    tracker = client.get("/conversations/retry-1/tracker", headers=API).json()
    assert [e["event"] for e in tracker["events"]].count("user") == 1


def test_tracker_has_rasa_events_in_order(client: TestClient) -> None:
    client.post("/webhooks/rest/webhook", json={"sender": "tracked", "message": "你好"})
    client.post("/webhooks/rest/webhook", json={"sender": "tracked", "message": "我要掛失"})
    tracker = client.get("/conversations/tracked/tracker", headers=API).json()
    assert tracker["sender_id"] == "tracked" and tracker["channel"] == "rest" and tracker["paused"] is False
    kinds = [e["event"] for e in tracker["events"]]
    assert kinds == ["session_started", "user", "action", "bot", "user", "action", "bot"]
    assert tracker["events"][4]["parse_data"]["intent"]["name"] == "report_card_loss"
    assert tracker["latest_message"]["text"] == "我要掛失"
    by_id = client.get(f"/conversations/{tracker['conversation_id']}/tracker", headers=API).json()
    assert by_id["events"] == tracker["events"]


def test_unknown_conversation_is_404_with_a_reason(client: TestClient) -> None:
    response = client.get("/conversations/nobody-here/tracker", headers=API)
    assert response.status_code == 404
    assert "nobody-here" in response.json()["detail"]


@pytest.mark.parametrize("body", [{"sender": "x", "message": "你好", "message_id": ""},
                                  {"sender": "x", "message": "卡" * 2001}])
def test_malformed_messages_are_refused(client: TestClient, body: dict) -> None:
    assert client.post("/webhooks/rest/webhook", json=body).status_code == 422


@pytest.mark.parametrize("raw", [b'{"sender": "x", "message": "\xff\xfe"}', b'{"sender": "x", "message": ',
                                 b"sender=x&message=hi", b"[]"])
def test_undecodable_bodies_get_a_4xx_with_a_reason_not_500(client: TestClient, raw: bytes) -> None:
    response = client.post("/webhooks/rest/webhook", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    assert response.json()["detail"]


@pytest.mark.parametrize("text", ["🙂🙂🙂", "<script>alert(1)</script>", "\x00\x01你好\x7f", "a" * 2000])
def test_odd_but_valid_messages_get_a_polite_reply(client: TestClient, text: str) -> None:
    response = client.post("/webhooks/rest/webhook", json={"sender": "odd", "message": text})
    assert response.status_code == 200
    assert response.json() and all(r["text"] for r in response.json())


def test_openapi_documents_the_rasa_and_app_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/webhooks/rest/webhook", "/model/parse", "/conversations/{conversation_id}/tracker", "/status",
            "/channels/app/messages"} <= paths.keys()


def test_curl_style_form_content_type_is_read_as_json_like_rasa(client: TestClient) -> None:
    response = client.post("/webhooks/rest/webhook", content='{"sender":"curl","message":"你好"}'.encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json()[0]["recipient_id"] == "curl"


def test_tracker_shows_the_slots_and_the_active_form(bundled_assistant, tmp_path) -> None:
    from bot.storage import Database

    client = TestClient(create_app(with_api_token(bundled_assistant.config), assistant=bundled_assistant,
                                   database=Database(f"sqlite:///{tmp_path / 'bot.db'}")))
    client.post("/webhooks/rest/webhook", json={"sender": "form-1", "message": "我的卡丢了"})
    client.post("/webhooks/rest/webhook", json={"sender": "form-1", "message": "尾号6688"})
    tracker = client.get("/conversations/form-1/tracker", headers=API).json()
    assert tracker["active_loop"] == {"name": "card_loss_form"}
    assert tracker["slots"]["card_tail"] == "6688" and tracker["slots"]["requested_slot"] == "id_last4"


def test_the_favicon_is_served_and_muted_text_is_readable(client) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
    for sheet in ("/widget.css", "/agent.css"):
        muted = re.search(r"--muted:\s*#([0-9a-fA-F]{6})", client.get(sheet).text)
        assert muted and _contrast_on_white(muted.group(1)) >= 4.5, (sheet, muted and muted.group(1))


def _contrast_on_white(hex_colour: str) -> float:
    """WCAG 2 contrast ratio of a colour against white."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))
    luminance = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (luminance + 0.05)
