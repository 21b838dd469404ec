"""Canned replies kept in the database: an agent's own (personal), a skill group's, and everyone's (global);
`handoff.canned` in config.yml stays as read-only defaults under them.

Who may change which: any agent their own personal replies (nobody else sees them); supervisors and admins a
group's replies, for any configured group; admins the global ones. Agents use their groups' and the global
replies but do not change them: what a whole group sends is decided by those who answer for the group.

A short code sent as a whole message expands to the first reply with that code in this order: the agent's own,
then each of the agent's groups (in the order of their account), then global, then the config's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, or_, select

from bot.handoff.agents import SUPERVISING_ROLES, Reacher
from bot.handoff.library import Conflict, Forbidden, LibraryError, NotVisible
from bot.security.json_guard import is_valid_text
from bot.security.masking import mask_text
from bot.storage.database import Database
from bot.storage.models import AgentAccount, CannedReply, utcnow

Scope = Literal["personal", "group", "global"]
CODE = re.compile(r"^/[^\s/]{1,31}$")
MAX_TEXT = 500
SCOPE_LABELS = {"personal": "个人", "group": "技能组", "global": "全局", "default": "系统默认"}


@dataclass(frozen=True)
class Draft:
    """A reply as the agent writes it."""

    code: str
    text: str
    scope: Scope
    group: str | None = None


def scope_of(reply: CannedReply) -> Scope:
    if reply.owner_id is not None:
        return "personal"
    return "group" if reply.group is not None else "global"


def may_change(viewer: Reacher, scope: str, group: str | None, owner_id: int | None) -> bool:
    if scope == "personal":
        return owner_id == viewer.agent_id
    if scope == "group":
        return viewer.role in SUPERVISING_ROLES and group is not None
    return viewer.role == "admin"


def listing(database: Database, viewer: Reacher, defaults: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every reply `viewer` may use or manage: their own, their groups' (every group's for supervisors and
    admins), the global ones, then the config's defaults; each says whether `viewer` may change it."""
    groups = None if viewer.role in SUPERVISING_ROLES else list(viewer.groups)
    with database.session() as session:
        rows = session.scalars(select(CannedReply).where(_usable(viewer.agent_id, groups))
                               .order_by(CannedReply.code, CannedReply.id)).all()
    order = {"personal": 0, "group": 1, "global": 2}
    ordered = sorted(rows, key=lambda r: (order[scope_of(r)], r.group or "", r.code, r.id))
    return [_json(r, viewer) for r in ordered] + [
        {"id": None, "code": code, "text": text, "scope": "default", "scope_label": SCOPE_LABELS["default"],
         "group": None, "editable": False, "updated_at": None} for code, text in defaults.items()]


def picker(database: Database, agent_id: int, groups: Iterable[str],
           defaults: Mapping[str, str]) -> list[dict[str, str]]:
    """What the console's canned-reply picker lists for an agent: one reply per code, the one that "/code"
    expands to (see the module's order)."""
    groups = list(groups)
    with database.session() as session:
        rows = session.scalars(select(CannedReply).where(_usable(agent_id, groups)).order_by(CannedReply.id)).all()
    rank = {g: i for i, g in enumerate(groups)}

    def precedence(reply: CannedReply) -> tuple[int, int]:
        scope = scope_of(reply)
        return (0, 0) if scope == "personal" else (1, rank.get(reply.group or "", 0)) if scope == "group" else (2, 0)

    chosen: dict[str, dict[str, str]] = {}
    for reply in sorted(rows, key=precedence):
        chosen.setdefault(reply.code, {"code": reply.code, "text": reply.text, "scope": scope_of(reply)})
    for code, text in defaults.items():
        chosen.setdefault(code, {"code": code, "text": text, "scope": "default"})
    return sorted(chosen.values(), key=lambda c: c["code"])


def expand(database: Database, agent_id: int, text: str, defaults: Mapping[str, str]) -> str:
    """`text` itself, or the canned reply its short code stands for (see the module's order)."""
    if not text.startswith("/") or not CODE.match(text):
        return defaults.get(text, text)
    with database.session() as session:
        account = session.get(AgentAccount, agent_id)
        groups = list(account.groups or []) if account else []
    for reply in picker(database, agent_id, groups, defaults):
        if reply["code"] == text:
            return reply["text"]
    return text


def create(database: Database, viewer: Reacher, draft: Draft, known_groups: Iterable[str]) -> dict[str, Any]:
    code, text, group = _checked(draft, known_groups)
    owner = viewer.agent_id if draft.scope == "personal" else None
    if not may_change(viewer, draft.scope, group, owner):
        raise Forbidden(_refusal(draft.scope))
    with database.session() as session, session.begin():
        _unique(session, code, group, owner, None)
        reply = CannedReply(code=code, text=text, group=group, owner_id=owner, updated_by=viewer.agent_id,
                            updated_at=utcnow())
        session.add(reply)
        session.flush()
        return _json(reply, viewer)


def update(database: Database, viewer: Reacher, reply_id: int, draft: Draft,
           known_groups: Iterable[str]) -> dict[str, Any]:
    """Change a reply's code, text or scope; `viewer` must be allowed both the old and the new scope."""
    code, text, group = _checked(draft, known_groups)
    owner = viewer.agent_id if draft.scope == "personal" else None
    with database.session() as session, session.begin():
        reply = _changeable(session, viewer, reply_id)
        if not may_change(viewer, draft.scope, group, owner):
            raise Forbidden(_refusal(draft.scope))
        _unique(session, code, group, owner, reply.id)
        reply.code, reply.text, reply.group, reply.owner_id = code, text, group, owner
        reply.updated_by, reply.updated_at = viewer.agent_id, utcnow()
        session.flush()
        return _json(reply, viewer)


def remove(database: Database, viewer: Reacher, reply_id: int) -> dict[str, Any]:
    with database.session() as session, session.begin():
        reply = _changeable(session, viewer, reply_id)
        gone = _json(reply, viewer)
        session.delete(reply)
    return gone


# --- helpers --------------------------------------------------------------------------------------------------

def _usable(agent_id: int, groups: list[str] | None) -> Any:
    """Own replies, global ones, and those of `groups` (None: every group)."""
    of_groups = and_(CannedReply.owner_id.is_(None), CannedReply.group.is_not(None))
    if groups is not None:
        of_groups = and_(of_groups, CannedReply.group.in_(groups))
    everyone = and_(CannedReply.owner_id.is_(None), CannedReply.group.is_(None))
    return or_(CannedReply.owner_id == agent_id, of_groups, everyone)


def _checked(draft: Draft, known_groups: Iterable[str]) -> tuple[str, str, str | None]:
    code, text = draft.code.strip(), draft.text.strip()
    if not CODE.match(code):
        raise LibraryError("快捷码须以 / 开头，共 2-32 个字符，不含空格和其他 /，例如 /hi。")
    if mask_text(code) != code:
        raise LibraryError("快捷码不能包含手机号、卡号等个人信息。")
    if not text or len(text) > MAX_TEXT:
        raise LibraryError(f"回复内容须为 1-{MAX_TEXT} 个字符。")
    if not is_valid_text(text) or any(ord(c) < 32 and c not in "\n\t" or ord(c) == 127 for c in text + code):
        raise LibraryError("快捷回复不能包含控制字符。")
    group = draft.group if draft.scope == "group" else None
    if draft.scope == "group" and group not in set(known_groups):
        raise LibraryError("请选择一个已配置的技能组。")
    return code, mask_text(text), group


def _unique(session: Any, code: str, group: str | None, owner: int | None, reply_id: int | None) -> None:
    same = select(CannedReply.id).where(
        CannedReply.code == code,
        CannedReply.owner_id == owner if owner is not None else CannedReply.owner_id.is_(None),
        CannedReply.group == group if group is not None else CannedReply.group.is_(None))
    if reply_id is not None:
        same = same.where(CannedReply.id != reply_id)
    if session.scalar(same) is not None:
        raise Conflict(f"同一范围内已有快捷码 {code}。")


def _changeable(session: Any, viewer: Reacher, reply_id: int) -> CannedReply:
    """The reply when `viewer` may change it; someone else's personal reply is `NotVisible` (as if absent), a
    group's or the global one they may only use is `Forbidden`."""
    reply = session.get(CannedReply, reply_id)
    if reply is None or (reply.owner_id is not None and reply.owner_id != viewer.agent_id):
        raise NotVisible(reply_id)
    scope = scope_of(reply)
    if scope == "group" and viewer.role not in SUPERVISING_ROLES and reply.group not in viewer.groups:
        raise NotVisible(reply_id)
    if not may_change(viewer, scope, reply.group, reply.owner_id):
        raise Forbidden(_refusal(scope))
    return reply


def _refusal(scope: str) -> str:
    if scope == "group":
        return "只有主管和管理员可以维护技能组的快捷回复。"
    if scope == "global":
        return "只有管理员可以维护全局快捷回复。"
    return "只能维护自己的个人快捷回复。"


def _json(reply: CannedReply, viewer: Reacher) -> dict[str, Any]:
    scope = scope_of(reply)
    return {"id": reply.id, "code": reply.code, "text": reply.text, "scope": scope,
            "scope_label": SCOPE_LABELS[scope], "group": reply.group,
            "editable": may_change(viewer, scope, reply.group, reply.owner_id),
            "updated_at": reply.updated_at.isoformat() if reply.updated_at else None}
