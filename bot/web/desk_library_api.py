"""The agent desk's library over HTTP: past conversations (search, read-only transcript), their labels, and
canned replies managed in the console; plus the library's script and style for /agent.

Every route takes the desk's session (`Authorization: Bearer`, the console's login). A conversation an agent
may not see is answered 404 like one that does not exist (`bot.handoff.library`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, field_validator, model_validator

from bot.handoff.library import Conflict, Forbidden, LibraryError, NotVisible, canned, labels, search
from bot.security.json_guard import is_valid_text
from bot.security.sessions import AgentSession
from bot.storage.database import Database
from bot.web.agent_api import MAX_ID, _session, static_files

SessionDep = Annotated[AgentSession, Depends(_session)]
ConversationId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
ReplyId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
BANK_ZONE = "Asia/Shanghai"  # when no skill group names one


def _plain(value: str | None) -> str | None:
    """A search term: trimmed, None when empty; no control characters (a NUL cannot reach PostgreSQL)."""
    if value is None:
        return None
    if not is_valid_text(value) or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("搜索条件含有无效字符")
    return value.strip() or None


class SearchQuery(BaseModel):
    customer: str | None = Field(None, max_length=64, description="客户号（或其一部分）或姓名的一部分")
    phone_tail: str | None = Field(None, description="手机号或卡号后四位")
    date_from: dt.date | None = Field(None, description="开始日期（含），银行所在时区")
    date_to: dt.date | None = Field(None, description="结束日期（含）")
    label: str | None = Field(None, max_length=16)
    text: str | None = Field(None, max_length=100, description="客户或机器人说过的话")
    page: int = Field(1, ge=1, le=10_000)

    @field_validator("customer", "phone_tail", "label", "text", mode="before")
    @classmethod
    def _terms(cls, value: Any) -> Any:
        return _plain(value) if isinstance(value, str) else value

    @field_validator("phone_tail")
    @classmethod
    def _tail(cls, value: str | None) -> str | None:
        if value is not None and not search.TAIL.match(value):
            raise ValueError("请输入手机号或卡号的后四位数字")
        return value

    @model_validator(mode="after")
    def _order(self) -> SearchQuery:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("开始日期不能晚于结束日期")
        return self


class ReplyIn(BaseModel):
    code: str = Field(min_length=2, max_length=32, description="以 / 开头的快捷码，如 /hi")
    text: str = Field(min_length=1, max_length=canned.MAX_TEXT)
    scope: Literal["personal", "group", "global"] = "personal"
    group: str | None = Field(None, max_length=64, description="scope 为 group 时的技能组")


def _database(request: Request) -> Database:
    return request.app.state.database


def _groups(request: Request) -> list[str]:
    return [g.name for g in request.app.state.config.handoff.groups]


def _zone(request: Request) -> ZoneInfo:
    groups = request.app.state.config.handoff.groups
    return ZoneInfo(groups[0].timezone if groups else BANK_ZONE)


def _defaults(request: Request) -> dict[str, str]:
    return dict(request.app.state.config.handoff.canned)


def _audit(request: Request, session: AgentSession, action: str, target: str, details: dict[str, Any]) -> None:
    request.app.state.conversations.store.audit(f"agent-id:{session.agent_id}", action, target, details)


def _visible(request: Request, session: AgentSession, conversation_id: str) -> None:
    if not search.may_see(_database(request), session, conversation_id):
        raise _not_found(conversation_id)


def _not_found(conversation_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"没有编号为 {conversation_id} 的会话，或它不在您的查看范围内。")


def _refused(error: LibraryError) -> HTTPException:
    status = 409 if isinstance(error, Conflict) else 403 if isinstance(error, Forbidden) else 422
    return HTTPException(status_code=status, detail=str(error))


def library_router() -> APIRouter:
    router = APIRouter(tags=["agent desk library"])

    router.include_router(static_files({"/agent-library.js": "agent-library.js",
                                        "/agent-library.css": "agent-library.css"}))

    @router.get("/api/agent/conversations")
    def find(query: Annotated[SearchQuery, Query()], session: SessionDep, request: Request) -> dict[str, Any]:
        """Past conversations this agent may see, newest first, 20 a page."""
        filters = search.Filters(**query.model_dump())
        return search.search(_database(request), session, filters, _zone(request))

    @router.get("/api/agent/conversations/{conversation_id}")
    def read(conversation_id: ConversationId, session: SessionDep, request: Request) -> dict[str, Any]:
        """One conversation, read-only: transcript, labels, hand-overs with rating and comment."""
        try:
            return search.conversation(_database(request), session, conversation_id)
        except NotVisible as e:
            raise _not_found(conversation_id) from e

    @router.put("/api/agent/conversations/{conversation_id}/labels/{label}")
    def add_label(conversation_id: ConversationId, label: str, session: SessionDep,
                  request: Request) -> dict[str, Any]:
        _visible(request, session, conversation_id)
        try:
            found = labels.add(_database(request), conversation_id, label, session.agent_id)
        except LibraryError as e:
            raise _refused(e) from e
        _audit(request, session, "label_added", conversation_id, {"label": labels.valid_label(label)})
        return {"conversation_id": conversation_id, "labels": found}

    @router.delete("/api/agent/conversations/{conversation_id}/labels/{label}")
    def remove_label(conversation_id: ConversationId, label: str, session: SessionDep,
                     request: Request) -> dict[str, Any]:
        _visible(request, session, conversation_id)
        try:
            found = labels.remove(_database(request), conversation_id, label)
        except LibraryError as e:
            raise _refused(e) from e
        _audit(request, session, "label_removed", conversation_id, {"label": labels.valid_label(label)})
        return {"conversation_id": conversation_id, "labels": found}

    @router.get("/api/agent/labels")
    def label_choices(session: SessionDep, request: Request) -> dict[str, list[str]]:
        """The suggested labels and the ones in use on conversations this agent may see."""
        return {"suggested": list(labels.SUGGESTED), "in_use": labels.in_use(_database(request), session)}

    @router.get("/api/agent/canned-replies")
    def replies(session: SessionDep, request: Request) -> dict[str, Any]:
        """The replies this agent may use or manage (each says whether they may change it), and the scopes
        they may create replies in."""
        return {"replies": canned.listing(_database(request), session, _defaults(request)),
                "scopes": _creatable(session, _groups(request))}

    @router.post("/api/agent/canned-replies", status_code=201)
    def add_reply(body: ReplyIn, session: SessionDep, request: Request) -> dict[str, Any]:
        try:
            reply = canned.create(_database(request), session, _draft(body), _groups(request))
        except LibraryError as e:
            raise _refused(e) from e
        _audit(request, session, "canned_created", str(reply["id"]), _audit_details(reply))
        return reply

    @router.put("/api/agent/canned-replies/{reply_id}")
    def change_reply(reply_id: ReplyId, body: ReplyIn, session: SessionDep, request: Request) -> dict[str, Any]:
        try:
            reply = canned.update(_database(request), session, reply_id, _draft(body), _groups(request))
        except NotVisible as e:
            raise HTTPException(status_code=404, detail="没有这条快捷回复。") from e
        except LibraryError as e:
            raise _refused(e) from e
        _audit(request, session, "canned_updated", str(reply_id), _audit_details(reply))
        return reply

    @router.delete("/api/agent/canned-replies/{reply_id}")
    def delete_reply(reply_id: ReplyId, session: SessionDep, request: Request) -> dict[str, str]:
        try:
            gone = canned.remove(_database(request), session, reply_id)
        except NotVisible as e:
            raise HTTPException(status_code=404, detail="没有这条快捷回复。") from e
        except LibraryError as e:
            raise _refused(e) from e
        _audit(request, session, "canned_deleted", str(reply_id), _audit_details(gone))
        return {"status": "deleted"}

    return router


def _draft(body: ReplyIn) -> canned.Draft:
    return canned.Draft(code=body.code, text=body.text, scope=body.scope, group=body.group)


def _audit_details(reply: dict[str, Any]) -> dict[str, Any]:
    return {"code": reply["code"], "scope": reply["scope"], "group": reply["group"]}


def _creatable(session: AgentSession, groups: list[str]) -> list[dict[str, Any]]:
    scopes: list[dict[str, Any]] = [{"scope": "personal", "label": canned.SCOPE_LABELS["personal"]}]
    if canned.may_change(session, "group", groups[0] if groups else None, None):
        scopes.append({"scope": "group", "label": canned.SCOPE_LABELS["group"], "groups": groups})
    if canned.may_change(session, "global", None, None):
        scopes.append({"scope": "global", "label": canned.SCOPE_LABELS["global"]})
    return scopes
