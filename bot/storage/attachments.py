"""Images and files customers send (WeChat, WeCom, the app): checked, stored, and added to the conversation.

An attachment is kept only when it is small enough (`attachments.max_bytes`) and its content is one of the
allowed types (`attachments.allowed_types`), judged by its first bytes (a program renamed .png is still a
program); otherwise the customer is told, in Chinese, what may be sent. The row lives in `attachments`; the
conversation gets a `user` event whose text is "[图片]" or "[文件] 名称.pdf" (what the bot and the transcript read)
and whose data carries `attachment: {"id", "kind", "mime", "size", "filename"}` (what the desk renders).

The bot does not try to understand a picture: while an agent has the chat the agent's console gets it live and
the bot says nothing; while the customer waits they hear their place; with the bot they are told it was
received and offered a person. Agents read it with GET /api/agent/attachments/{id} (bot/web/attachments_api.py),
and only those who may see the conversation (`may_see`).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bot.channels.registry import channel_info
from bot.config import AttachmentsConfig
from bot.security.masking import mask_text
from bot.storage.database import Database
from bot.storage.models import Attachment, Event, Handoff, new_id, utcnow
from bot.storage.store import ConversationStore, TurnStart

# the content's first bytes -> its type; what is not recognised here is refused whatever it claims to be
SIGNATURES: tuple[tuple[bytes, int, str], ...] = (  # (magic, offset, mime)
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
)
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
              "application/pdf": ".pdf"}
MAX_FILENAME_CHARS = 100
HUMAN_BUTTON = {"title": "转人工", "payload": "/request_human"}


class AttachmentRefused(ValueError):
    """Not stored: the message says why, in words for the customer."""


@dataclass(frozen=True)
class Upload:
    """What a channel received: the bytes, and the name and type the sender gave (both only hints)."""

    data: bytes
    filename: str | None = None
    declared_mime: str | None = None


@dataclass(frozen=True)
class AttachmentTurn:
    conversation_id: str
    replies: list[dict[str, Any]]  # as the conversation service's: {"text", "buttons", "source", "timestamp"}
    attachment: dict[str, Any] | None  # {"id", "kind", "mime", "size", "filename"}; None when refused
    duplicate: bool = False
    refused: str | None = None  # why it was not stored (what the customer was told)


# --- checking ---------------------------------------------------------------------------------------------


def sniff_mime(data: bytes) -> str | None:
    """The type the content really is, from its first bytes; None when it is none we recognise."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, offset, mime in SIGNATURES if data[offset:offset + len(magic)] == magic), None)


def refusal_text(config: AttachmentsConfig) -> str:
    return f"暂不支持该类型的文件，请发送图片或PDF（不超过{_size(config.max_bytes)}）。"


def too_large_text(config: AttachmentsConfig) -> str:
    return f"文件太大了，请发送不超过{_size(config.max_bytes)}的图片或PDF。"


def not_fetched_text(kind: str) -> str:
    what = "图片" if kind == "image" else "文件"
    return f"抱歉，{what}没有接收成功，请稍后重新发送，或用文字描述您的问题。"


def _size(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):.1f}".removesuffix(".0") + "MB"
    return f"{limit // 1024}KB"


def check(upload: Upload, config: AttachmentsConfig) -> str:
    """The content's type when it may be stored; AttachmentRefused (with the customer's message) otherwise."""
    if len(upload.data) > config.max_bytes:
        raise AttachmentRefused(too_large_text(config))
    mime = sniff_mime(upload.data)
    if mime is None or mime not in config.allowed_types:
        raise AttachmentRefused(refusal_text(config))
    return mime


def kind_of(mime: str) -> str:
    return "image" if mime.startswith("image/") else "file"


def clean_filename(name: str | None, mime: str) -> str:
    """A name safe to show and to put in a header: no path, no control characters, personal numbers masked
    (a photo named after an ID number), the extension of what the content really is."""
    base = os.path.basename((name or "").replace("\\", "/"))
    base = "".join(c for c in base if unicodedata.category(c)[0] not in "CZ" or c == " ").strip(" .")
    stem = os.path.splitext(base)[0] if base else ""
    stem = mask_text(stem)[:MAX_FILENAME_CHARS] or ("图片" if kind_of(mime) == "image" else "文件")
    return stem + EXTENSIONS.get(mime, "")


def label(kind: str, filename: str | None = None) -> str:
    """The user event's text: what the bot and a transcript read instead of the bytes."""
    if kind == "image":
        return "[图片]"
    return f"[文件] {filename}" if filename else "[文件]"


# --- storing and reading ----------------------------------------------------------------------------------


def attach(database: Database, start: TurnStart, channel: str, upload: Upload, mime: str) -> dict[str, Any]:
    """Store the attachment and point the turn's user event at it, in one transaction; its summary."""
    kind = kind_of(mime)
    filename = clean_filename(upload.filename, mime)
    with database.session() as session, session.begin():
        row = Attachment(id=_stable_id(), conversation_id=start.conversation_id, channel=channel, kind=kind,
                         mime=mime, size=len(upload.data), filename=filename,
                         sha256=hashlib.sha256(upload.data).hexdigest(), data=upload.data)
        session.add(row)
        summary = {"id": row.id, "kind": kind, "mime": mime, "size": row.size, "filename": filename}
        event = session.get(Event, start.user_event_id)
        assert event is not None
        event.data = {**event.data, "text": label(kind, filename), "attachment": summary}
    return summary


def _note_refusal(database: Database, start: TurnStart, reason: str) -> None:
    """The transcript says what was refused and why (the agent may need to ask for it another way)."""
    with database.session() as session, session.begin():
        event = session.get(Event, start.user_event_id)
        assert event is not None
        event.data = {**event.data, "attachment_refused": reason}


def _stable_id() -> str:
    """An id the masking of event data leaves as it is (a long run of digits would be taken for a number)."""
    while True:
        candidate = new_id()
        if mask_text(candidate) == candidate:
            return candidate


def stored_summary(database: Database, start: TurnStart) -> dict[str, Any] | None:
    """The attachment a turn stored already (a retried message)."""
    with database.session() as session:
        event = session.get(Event, start.user_event_id)
        found = (event.data or {}).get("attachment") if event is not None else None
        return dict(found) if isinstance(found, dict) else None


def load(database: Database, attachment_id: str) -> Attachment | None:
    with database.session() as session:
        return session.get(Attachment, attachment_id)


def may_see(database: Database, who: Any, attachment: Attachment, supervising_roles: frozenset[str] | set[str]
            ) -> bool:
    """Supervisors see every attachment; an agent those of conversations handed over to one of their groups or
    that they served (assigned, or transferred away from them)."""
    if who.role in supervising_roles:
        return True
    with database.session() as session:
        handoffs = session.scalars(select(Handoff).where(Handoff.conversation_id == attachment.conversation_id))
        if any(h.group in who.groups or h.agent_id == who.agent_id for h in handoffs):
            return True
        served = session.scalars(select(Event.data).where(Event.conversation_id == attachment.conversation_id,
                                                          Event.type == "handoff"))
        return any(who.agent_id in ((d or {}).get("agent_id"), (d or {}).get("from_agent_id")) for d in served)


# --- the customer's turn ----------------------------------------------------------------------------------


def receive(app: Any, channel: str, sender: str, message_id: str, kind: str, fetch: Callable[[], Upload],
            metadata: dict[str, Any] | None = None) -> AttachmentTurn:
    """A customer's image or file as one turn of their conversation: recorded (a retried `message_id` gets the
    first answer back and `fetch` is not called again), checked, stored, and answered.

    `fetch` gets the bytes (a download from WeChat's or WeCom's media API, or the app's upload); AttachmentRefused
    from it (or from the checks) is told to the customer, any other error fails the turn, so a retry tries again.
    """
    service = app.state.conversations
    store: ConversationStore = service.store
    # one turn of a customer at a time, claimed with a lease, as their text messages are
    with service.claimed_turn(channel, sender, label(kind), message_id,
                              {**(metadata or {}), "attachment_kind": kind}) as start:
        if start.duplicate:
            return AttachmentTurn(start.conversation_id, start.replies, stored_summary(store.database, start),
                                  duplicate=True)
        try:
            return _stored_and_answered(app, start, channel, kind, fetch)
        except Exception as e:
            store.fail_turn(start, f"attachment: {type(e).__name__}: {e}")
            raise


def _stored_and_answered(app: Any, start: TurnStart, channel: str, kind: str,
                         fetch: Callable[[], Upload]) -> AttachmentTurn:
    store: ConversationStore = app.state.conversations.store
    config: AttachmentsConfig = app.state.config.attachments
    summary, refused = None, None
    try:
        upload = fetch()
        summary = attach(store.database, start, channel, upload, check(upload, config))
    except AttachmentRefused as e:
        refused = str(e)
        _note_refusal(store.database, start, refused)
    replies = [_stamped(refused, "attachment_refused")] if refused else _answer(app, start, channel, summary)
    bot_events = [{"event": "bot", "text": r["text"], "data": {"buttons": r["buttons"], "source": r["source"]}}
                  for r in replies]
    store.finish_turn(start, None, bot_events, replies, start.state)
    return AttachmentTurn(start.conversation_id, replies, summary, refused=refused)


def _answer(app: Any, start: TurnStart, channel: str, summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    """With an agent: nothing (their console shows it now); waiting: the place in the queue; with the bot: that
    it was received, and a person offered (the bot cannot read pictures)."""
    assert summary is not None
    text = label(summary["kind"], summary["filename"])
    if start.conversation_status in ("queued", "human"):
        handoff = app.state.desk.open_handoff(start.conversation_id)
        if handoff is not None and handoff.status != "waiting":
            _to_agent(app, handoff, text, summary)
            return []
        if handoff is not None:
            return [_stamped(r.text, r.source) for r in app.state.handover.while_with_people(start, text)]
    what, bot = ("图片" if summary["kind"] == "image" else "文件"), app.state.config.assistant_name
    received = f"收到您的{what}，已为您保存。{bot}暂时看不懂{what}内容，请用文字描述您的问题；"
    if channel_info(channel).plain_text:
        return [_stamped(received + "如需人工客服帮您查看，请回复“转人工”。", "attachment_received")]
    return [_stamped(received + "如需人工客服帮您查看，请点击“转人工”。", "attachment_received", [HUMAN_BUTTON])]


def _to_agent(app: Any, handoff: Handoff, text: str, summary: dict[str, Any]) -> None:
    """Live to the agent who has the chat, as the customer's text messages are (the transcript has it anyway)."""
    if handoff.agent_id is None or getattr(app.state, "hub", None) is None:
        return
    app.state.hub.to_agents({"type": "message", "handoff_id": handoff.id, "text": mask_text(text),
                             "attachment": summary, "timestamp": utcnow().isoformat()}, [handoff.agent_id])


def _stamped(text: str, source: str, buttons: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"text": text, "buttons": buttons, "source": source, "timestamp": utcnow().isoformat()}
