"""Request and response bodies of the HTTP API (Rasa-compatible where Rasa has the endpoint)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

MAX_MESSAGE_CHARS = 2000


class ParseRequest(BaseModel):
    text: str = Field(max_length=MAX_MESSAGE_CHARS, description="The customer's message")
    message_id: str | None = None


class RestMessage(BaseModel):
    sender: str = Field(min_length=1, max_length=128, description="Conversation id chosen by the client")
    message: str = Field(max_length=MAX_MESSAGE_CHARS)
    channel: str = Field("web", pattern=r"^[a-z_]{1,32}$")
    message_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="Client message id; a repeated id gets the original replies")
    metadata: dict[str, Any] | None = None

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message is empty: send the customer's text")
        return value


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
