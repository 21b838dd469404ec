"""The agent desk's HTTP and WebSocket API, and the console page at /agent.

Agents log in with their password (argon2-hashed, see `bot agents add`) and get a session token for
`Authorization: Bearer <token>`; sessions live in this process and end after `SESSION_HOURS`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from bot.channels import wecom
from bot.channels.outbound import push_to_customer
from bot.handoff.agents import AccountError, authenticate, create_agent
from bot.handoff.context import build_context, summary_of
from bot.handoff.desk import AgentDesk, DeskError
from bot.storage.models import AgentAccount, ChannelIdentity, Conversation, Customer, Event, Handoff, utcnow
from bot.web.hub import after_grace

STATIC = Path(__file__).parent / "static"
SESSION_HOURS = 12
DISPOSITIONS = ("已解决", "未解决", "转线下处理", "客户无应答")


@dataclass
class AgentSession:
    agent_id: int
    role: str
    expires: dt.datetime


class Sessions:
    def __init__(self) -> None:
        self._by_token: dict[str, AgentSession] = {}
        self._lock = threading.Lock()

    def start(self, account: AgentAccount) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._by_token[token] = AgentSession(account.id, account.role,
                                                 utcnow() + dt.timedelta(hours=SESSION_HOURS))
        return token

    def get(self, token: str) -> AgentSession | None:
        with self._lock:
            found = self._by_token.get(token)
            if found is not None and found.expires < utcnow():
                del self._by_token[token]
                return None
            return found

    def end(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class Presence(BaseModel):
    presence: str = Field(pattern=r"^(online|away|offline)$")


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class Transfer(BaseModel):
    group: str
    note: str = ""


class Close(BaseModel):
    disposition: str = Field(description=" / ".join(DISPOSITIONS))


class Reassign(BaseModel):
    agent_id: int


class NewAgent(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    display_name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=10, max_length=256)
    role: str = Field("agent", pattern=r"^(agent|supervisor|admin)$")
    groups: list[str] = Field(min_length=1)
    max_chats: int = Field(3, ge=1, le=20)


def _session(request: Request, authorization: Annotated[str | None, Header()] = None) -> AgentSession:
    scheme, _, token = (authorization or "").partition(" ")
    found = request.app.state.sessions.get(token.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise HTTPException(status_code=401, detail="请先登录坐席工作台。", headers={"WWW-Authenticate": "Bearer"})
    return found


def _supervisor(session: Annotated[AgentSession, Depends(_session)]) -> AgentSession:
    if session.role not in ("supervisor", "admin"):
        raise HTTPException(status_code=403, detail="只有主管可以使用主管视图。")
    return session


def _admin(session: Annotated[AgentSession, Depends(_session)]) -> AgentSession:
    if session.role != "admin":
        raise HTTPException(status_code=403, detail="只有管理员可以管理坐席账号。")
    return session


SessionDep = Annotated[AgentSession, Depends(_session)]
SupervisorDep = Annotated[AgentSession, Depends(_supervisor)]
AdminDep = Annotated[AgentSession, Depends(_admin)]


def _desk(request: Request) -> AgentDesk:
    return request.app.state.desk


DeskDep = Annotated[AgentDesk, Depends(_desk)]


def agent_router() -> APIRouter:
    router = APIRouter(tags=["agent desk"])

    @router.get("/agent", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(STATIC / "agent.html", media_type="text/html; charset=utf-8")

    @router.get("/agent.js", include_in_schema=False)
    def console_js() -> FileResponse:
        return FileResponse(STATIC / "agent.js", media_type="text/javascript; charset=utf-8")

    @router.get("/agent.css", include_in_schema=False)
    def console_css() -> FileResponse:
        return FileResponse(STATIC / "agent.css", media_type="text/css; charset=utf-8")

    @router.post("/api/agent/login")
    def login(body: Login, request: Request) -> dict[str, Any]:
        account = authenticate(request.app.state.database, body.username, body.password)
        if account is None:
            raise HTTPException(status_code=401, detail="用户名或密码错误。")
        request.app.state.conversations.store.audit(f"agent:{account.username}", "login", "agent-desk")
        return {"token": request.app.state.sessions.start(account), "agent": _agent_json(account)}

    @router.post("/api/agent/logout")
    def logout(session: SessionDep, request: Request, desk: DeskDep,
               authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
        desk.set_presence(session.agent_id, "offline")
        request.app.state.sessions.end((authorization or "").partition(" ")[2].strip())
        return {"status": "logged out"}

    @router.post("/api/agent/presence")
    def presence(body: Presence, session: SessionDep, desk: DeskDep, request: Request) -> dict[str, Any]:
        desk.set_presence(session.agent_id, body.presence)
        request.app.state.handover.queue_changed()
        return _agent_json(_account(request, session.agent_id))

    @router.get("/api/agent/queue")
    def queue(session: SessionDep, request: Request) -> dict[str, Any]:
        account = _account(request, session.agent_id)
        with request.app.state.database.session() as db:
            waiting = db.scalars(select(Handoff).where(Handoff.status == "waiting")
                                 .order_by(Handoff.priority, Handoff.created_at)).all()
            mine = db.scalars(select(Handoff).where(Handoff.status == "assigned",
                                                    Handoff.agent_id == account.id)).all()
            visible = [h for h in waiting if h.group in (account.groups or []) or account.role != "agent"]
            return {"agent": _agent_json(account), "waiting": [_summary(db, h) for h in visible],
                    "mine": [_summary(db, h) for h in mine]}

    @router.post("/api/agent/handoffs/{handoff_id}/accept")
    def accept(handoff_id: int, session: SessionDep, desk: DeskDep, request: Request) -> dict[str, Any]:
        try:
            desk.accept(handoff_id, session.agent_id)
        except DeskError as e:
            raise HTTPException(status_code=409, detail=str(e)) from e
        request.app.state.handover.queue_changed()
        return _context(request, handoff_id, session)

    @router.get("/api/agent/handoffs/{handoff_id}/context")
    def context(handoff_id: int, session: SessionDep, request: Request) -> dict[str, Any]:
        return _context(request, handoff_id, session)

    @router.post("/api/agent/handoffs/{handoff_id}/messages")
    def message(handoff_id: int, body: Text, session: SessionDep, desk: DeskDep, request: Request) -> dict[str, Any]:
        try:
            sent = desk.agent_message(handoff_id, session.agent_id, body.text)
        except DeskError as e:
            raise HTTPException(status_code=409, detail=str(e)) from e
        delivered = _to_customer(request, sent["conversation_id"], {
            "type": "bot", "text": sent["text"], "buttons": None, "timestamp": sent["timestamp"], "reply_to": None,
            "duplicate": False, "from": "agent"})
        warning = None if delivered else "消息已保存，但未能送达：客户已离线或微信48小时互动窗口已过。"
        return {"text": sent["text"], "timestamp": sent["timestamp"], "delivered": delivered, "warning": warning}

    @router.post("/api/agent/handoffs/{handoff_id}/notes")
    def note(handoff_id: int, body: Text, session: SessionDep, desk: DeskDep) -> dict[str, str]:
        _desk_call(desk.note, handoff_id, session.agent_id, body.text)
        return {"status": "noted"}

    @router.post("/api/agent/handoffs/{handoff_id}/transfer")
    def transfer(handoff_id: int, body: Transfer, session: SessionDep, desk: DeskDep,
                 request: Request) -> dict[str, str]:
        try:
            desk.transfer(handoff_id, session.agent_id, body.group, body.note)
        except (DeskError, KeyError) as e:
            raise HTTPException(status_code=409, detail=str(e)) from e
        request.app.state.handover.queue_changed()
        return {"status": "transferred"}

    @router.post("/api/agent/handoffs/{handoff_id}/close")
    def close(handoff_id: int, body: Close, session: SessionDep, desk: DeskDep, request: Request) -> dict[str, str]:
        if body.disposition not in DISPOSITIONS:
            raise HTTPException(status_code=422, detail=f"处理结果须为：{'、'.join(DISPOSITIONS)}")
        conversation_id = _desk_call(desk.close, handoff_id, session.agent_id, body.disposition)
        survey = _last_bot_event(request, conversation_id)
        if survey is not None:
            _to_customer(request, conversation_id, {"type": "bot", "text": survey["text"],
                                                    "buttons": survey["buttons"], "timestamp": survey["timestamp"],
                                                    "reply_to": None, "duplicate": False})
        _end_channel_session(request, conversation_id)  # after the survey: an ended session takes no messages
        request.app.state.handover.queue_changed()
        return {"status": "closed"}

    @router.get("/api/agent/canned")
    def canned(session: SessionDep, request: Request) -> list[dict[str, str]]:
        return [{"code": c, "text": t} for c, t in request.app.state.config.handoff.canned.items()]

    @router.get("/api/agent/groups")
    def groups(session: SessionDep, request: Request) -> list[str]:
        return [g.name for g in request.app.state.config.handoff.groups]

    @router.get("/api/agent/knowledge")
    def knowledge(q: str, session: SessionDep, request: Request) -> list[dict[str, Any]]:
        return _suggest(request)(q)

    @router.get("/api/supervisor/overview")
    def overview(session: SupervisorDep, request: Request) -> dict[str, Any]:
        with request.app.state.database.session() as db:
            open_handoffs = db.scalars(select(Handoff).where(Handoff.status.in_(("waiting", "assigned")))).all()
            agents = db.scalars(select(AgentAccount)).all()
            groups = []
            for group in request.app.state.config.handoff.groups:
                waiting = [summary_of(h) for h in open_handoffs if h.group == group.name and h.status == "waiting"]
                groups.append({"name": group.name, "waiting": len(waiting),
                               "longest_wait_seconds": max((w["waiting_seconds"] for w in waiting), default=0)})
            load = {a.id: sum(1 for h in open_handoffs if h.agent_id == a.id and h.status == "assigned")
                    for a in agents}
            return {"groups": groups,
                    "agents": [{"id": a.id, "display_name": a.display_name, "presence": a.presence,
                                "load": load[a.id], "max_chats": a.max_chats, "groups": a.groups} for a in agents],
                    "live": [_summary(db, h) for h in open_handoffs if h.status == "assigned"]}

    @router.post("/api/supervisor/handoffs/{handoff_id}/reassign")
    def reassign(handoff_id: int, body: Reassign, session: SupervisorDep, desk: DeskDep,
                 request: Request) -> dict[str, str]:
        try:
            desk.reassign(handoff_id, body.agent_id)
        except DeskError as e:
            raise HTTPException(status_code=409, detail=str(e)) from e
        request.app.state.handover.queue_changed()
        return {"status": "reassigned"}

    @router.post("/api/admin/agents", status_code=201)
    def add_agent(body: NewAgent, session: AdminDep, request: Request) -> dict[str, Any]:
        """Create an agent account (admins only); the same as `bot agents add`."""
        known = {g.name for g in request.app.state.config.handoff.groups}
        if unknown := [g for g in body.groups if g not in known]:
            raise HTTPException(status_code=422, detail=f"未知的技能组：{'、'.join(unknown)}")
        try:
            account = create_agent(request.app.state.database, body.username, body.display_name, body.password,
                                   role=body.role, groups=body.groups, max_chats=body.max_chats)
        except AccountError as e:
            raise HTTPException(status_code=409, detail=str(e)) from e
        request.app.state.conversations.store.audit(f"agent-id:{session.agent_id}", "create_agent",
                                                    body.username, {"role": body.role, "groups": body.groups})
        return _agent_json(account)

    @router.get("/api/admin/agents")
    def list_agents(session: SupervisorDep, request: Request) -> list[dict[str, Any]]:
        with request.app.state.database.session() as db:
            return [_agent_json(a) for a in db.scalars(select(AgentAccount).order_by(AgentAccount.id))]

    @router.websocket("/api/agent/ws")
    async def live(websocket: WebSocket, token: str = "") -> None:
        session = websocket.app.state.sessions.get(token)
        if session is None:
            await websocket.close(code=4401, reason="unauthorized")
            return
        await websocket.accept()
        hub = websocket.app.state.hub
        hub.add_agent(session.agent_id, websocket)
        try:
            while True:
                await websocket.receive_text()  # the console only listens; anything it sends is a keep-alive
        except WebSocketDisconnect:
            return
        finally:
            hub.remove_agent(session.agent_id, websocket)
            desk = websocket.app.state.desk

            def release() -> None:
                if desk.release_agent(session.agent_id):
                    websocket.app.state.handover.queue_changed()

            task = asyncio.ensure_future(after_grace(websocket.app.state.config.handoff.agent_grace_seconds,
                                                     lambda: not hub.agent_connected(session.agent_id), release))
            websocket.app.state.background.add(task)
            task.add_done_callback(websocket.app.state.background.discard)

    return router


def _desk_call(method: Any, *args: Any) -> Any:
    try:
        return method(*args)
    except DeskError as e:
        raise HTTPException(status_code=409, detail=str(e)) from e


def _agent_json(account: AgentAccount) -> dict[str, Any]:
    return {"id": account.id, "username": account.username, "display_name": account.display_name,
            "role": account.role, "groups": account.groups, "presence": account.presence}


def _account(request: Request, agent_id: int) -> AgentAccount:
    with request.app.state.database.session() as db:
        account = db.get(AgentAccount, agent_id)
    if account is None:
        raise HTTPException(status_code=401, detail="坐席账号不存在。")
    return account


def _summary(db: Any, handoff: Handoff) -> dict[str, Any]:
    conversation = db.get(Conversation, handoff.conversation_id)
    customer = db.get(Customer, conversation.customer_id) if conversation and conversation.customer_id else None
    last = db.scalar(select(Event).where(Event.conversation_id == handoff.conversation_id, Event.type == "user")
                     .order_by(Event.seq.desc()).limit(1))
    return {**summary_of(handoff), "channel": conversation.channel if conversation else None,
            "customer": None if customer is None else {"id": customer.id, "name": customer.name,
                                                       "tier": customer.tier, "verified": customer.verified},
            "last_message": (last.data or {}).get("text") if last else None}


def _context(request: Request, handoff_id: int, session: AgentSession) -> dict[str, Any]:
    try:
        return build_context(request.app.state.database, handoff_id, session.role, _suggest(request))
    except KeyError as e:
        raise HTTPException(status_code=404, detail=f"没有编号为 {handoff_id} 的转人工记录。") from e


def _suggest(request: Request) -> Any:
    agent = request.app.state.agent

    def suggest(question: str) -> list[dict[str, Any]]:
        retriever = agent.model.retriever
        if retriever is None or not question.strip():
            return []
        normalised, tokens = agent.model.nlu.prepare(question)
        found = retriever.search(normalised, tokens, agent.model.nlu.embed(normalised), channel="web")
        return [{"id": a["id"], "question": a["question"], "answer": a["answer"], "confidence": a["confidence"]}
                for a in found["alternatives"]]

    return suggest


def _identity(request: Request, conversation_id: str) -> ChannelIdentity | None:
    with request.app.state.database.session() as db:
        conversation = db.get(Conversation, conversation_id)
        return db.get(ChannelIdentity, conversation.identity_id) if conversation else None


def _to_customer(request: Request, conversation_id: str, frame: dict[str, Any]) -> bool:
    """Deliver to the customer's channel now: an open widget/app socket, WeChat's customer-service API or
    WeCom's kf/send_msg. Returns whether it was delivered (it is stored either way)."""
    identity = _identity(request, conversation_id)
    if identity is None:
        return False
    return push_to_customer(request.app, identity.channel, identity.external_id, frame)


def _end_channel_session(request: Request, conversation_id: str) -> None:
    """After an agent closes a WeCom chat, WeCom's session ends too (service_state 4)."""
    identity = _identity(request, conversation_id)
    if identity is not None and identity.channel == "wecom":
        wecom.end_session(request.app, identity.external_id)


def _last_bot_event(request: Request, conversation_id: str) -> dict[str, Any] | None:
    with request.app.state.database.session() as db:
        event = db.scalar(select(Event).where(Event.conversation_id == conversation_id, Event.type == "bot")
                          .order_by(Event.seq.desc()).limit(1))
        if event is None:
            return None
        return {"text": event.data.get("text"), "buttons": (event.data.get("data") or {}).get("buttons"),
                "timestamp": event.timestamp.isoformat()}
