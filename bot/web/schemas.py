"""Request and response bodies of the HTTP API (Rasa-compatible where Rasa has the endpoint)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, field_validator

from bot.security.json_guard import UnsafeJson, check_value

MAX_MESSAGE_CHARS = 2000
MAX_METADATA_BYTES = 4096  # it is stored with every message
MAX_METADATA_DEPTH = 5


class ParseRequest(BaseModel):
    text: str = Field(max_length=MAX_MESSAGE_CHARS, description="The customer's message")
    message_id: str | None = None


class RestMessage(BaseModel):
    sender: str = Field(min_length=1, max_length=128, description="Conversation id chosen by the client")
    message: str = Field(max_length=MAX_MESSAGE_CHARS)
    message_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="Client message id; a repeated id gets the original replies")
    metadata: dict[str, Any] | None = Field(None, description="Passed to custom actions; it never says who the "
                                            "customer is (`customer_id`, `verified`, `tier` are ignored). At "
                                            f"most {MAX_METADATA_BYTES} bytes as JSON, nested at most "
                                            f"{MAX_METADATA_DEPTH} levels")

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_metadata(value)
        return value

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message is empty: send the customer's text")
        return value


def check_metadata(value: dict[str, Any]) -> None:
    """ValueError (pydantic's 422) unless `value` is shallow, small, valid Unicode and finite."""
    try:
        check_value(value, MAX_METADATA_DEPTH, finite=True)  # first: the depth bounds what json.dumps recurses into
    except UnsafeJson as e:
        if e.kind == "depth":
            raise ValueError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels: flatten it") from e
        if e.kind == "number":
            raise ValueError("metadata refused: numbers must be finite (no NaN or Infinity)") from e
        raise ValueError(f"metadata refused: {e.message}") from e
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are accepted: send "
                         "only what custom actions need")


class RestButton(BaseModel):
    title: str
    payload: str


class RestReply(BaseModel):
    recipient_id: str
    text: str
    buttons: list[RestButton] | None = None


class Status(BaseModel):
    model_version: str
    model_file: str
    intents: int
    knowledge_entries: int
    encoder: str
    metadata: dict[str, Any]


class Tracker(BaseModel):
    """Rasa's tracker format, plus the conversation's own id, channel and status."""

    sender_id: str
    conversation_id: str
    channel: str
    status: str
    slots: dict[str, Any]
    latest_message: dict[str, Any]
    latest_event_time: float | None
    paused: bool
    active_loop: dict[str, Any]
    events: list[dict[str, Any]]
