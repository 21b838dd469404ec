"""Labels agents put on conversations (投诉, 已回访, ...): a fixed list of suggestions, and any other short
label an agent types. A label is 1-16 characters without control characters; it is stored masked, like
everything agents write."""

from __future__ import annotations

import unicodedata

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from bot.handoff.agents import Reacher
from bot.handoff.library import LibraryError
from bot.handoff.library.search import labels_of, visibility
from bot.security.json_guard import is_valid_text
from bot.security.masking import mask_text
from bot.storage.database import Database
from bot.storage.models import Conversation, ConversationLabel

SUGGESTED = ("投诉", "疑似诈骗", "已回访", "需跟进", "表扬", "咨询")
MAX_CHARS = 16
IN_USE_SHOWN = 30


def valid_label(label: str) -> str:
    """The label as stored (trimmed, masked); `LibraryError` when it is empty, too long or has control or
    invisible formatting characters."""
    label = label.strip()
    if not label or len(label) > MAX_CHARS:
        raise LibraryError(f"标签须为 1-{MAX_CHARS} 个字符。")
    if not is_valid_text(label) or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in label):
        raise LibraryError("标签不能包含控制字符。")
    return mask_text(label)


def add(database: Database, conversation_id: str, label: str, agent_id: int) -> list[str]:
    """Put `label` on the conversation (again is fine); its labels."""
    label = valid_label(label)
    try:
        with database.session() as session, session.begin():
            exists = session.scalar(select(ConversationLabel.id).where(
                ConversationLabel.conversation_id == conversation_id, ConversationLabel.label == label))
            if exists is None:
                session.add(ConversationLabel(conversation_id=conversation_id, label=label, agent_id=agent_id))
    except IntegrityError:
        pass  # another agent put the same label on it at the same moment
    with database.session() as session:
        return labels_of(session, conversation_id)


def remove(database: Database, conversation_id: str, label: str) -> list[str]:
    """Take `label` off the conversation (absent is fine); its labels."""
    label = valid_label(label)
    with database.session() as session, session.begin():
        session.execute(delete(ConversationLabel).where(ConversationLabel.conversation_id == conversation_id,
                                                        ConversationLabel.label == label))
    with database.session() as session:
        return labels_of(session, conversation_id)


def in_use(database: Database, viewer: Reacher) -> list[str]:
    """The labels used most on the conversations `viewer` may see, for the label pickers."""
    query = select(ConversationLabel.label, func.count()).join(
        Conversation, Conversation.id == ConversationLabel.conversation_id)
    rule = visibility(viewer)
    if rule is not None:
        query = query.where(rule)
    with database.session() as session:
        rows = session.execute(query.group_by(ConversationLabel.label)
                               .order_by(func.count().desc(), ConversationLabel.label).limit(IN_USE_SHOWN))
        return [str(r[0]) for r in rows]
