"""The agent desk's HTTP and WebSocket API, and the console page at /agent.

Agents log in with their password (argon2-hashed, see `bot agents add`). Failed logins are limited per account
and per client IP, and password checks run a few at a time (`bot.security.logins`). A login gives a session
token (`bot.security.sessions`, kept in the database) for `Authorization: Bearer <token>` and for the first
frame of the live socket, `{"type": "auth", "token": "<token>"}`: never in a URL, which access logs keep.

An agent reaches the hand-overs waiting in their skill groups and the ones assigned to them; supervisors and
admins every one. Any other id is answered 404, as an unknown one is. Customer text in every list, context
and live frame is masked (`bot.security.masking`), whatever was stored before masking at rest.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import select
from starlette.requests import HTTPConnection

from bot.channels import wecom
from bot.channels.chat_socket import receive_frame
from bot.channels.handshake import first_frame
from bot.channels.outbound import push_to_customer
from bot.channels.registry import channel_info, channels_json
from bot.handoff.agents import DESK_ROLES, SUPERVISING_ROLES, AccountError, authenticate, create_agent, may_reach
from bot.handoff.context import build_context, customer_words, summary_of
from bot.handoff.desk import AgentDesk, DeskError, latest_transfer, reply_deliveries, set_employee_no
from bot.handoff.library.canned import picker as canned_picker
from bot.handoff.reasons import reasons_json
from bot.live import after_grace
from bot.security.credentials import bearer_token
from bot.security.json_guard import is_valid_text, scrub
from bot.security.limits import Throttled, client_ip, too_many_requests
from bot.security.logins import Busy, LoginGuard, PasswordGate
from bot.security.masking import mask_value
from bot.security.origins import origin_allowed
from bot.security.sessions import AgentSession, Sessions
from bot.storage.models import AgentAccount, ChannelIdentity, Conversation, Customer, Event, Handoff, aware_utc

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# console.js: the helpers the desk, the trainer's workbench and /ops share; console.css: the look the last two share
CONSOLE_FILES = {"/agent": "agent.html", "/agent.js": "agent.js", "/agent.css": "agent.css",
                 "/console.js": "console.js", "/console.css": "console.css"}
DISPOSITIONS = ("已解决", "未解决", "转线下处理", "客户无应答")
MAX_ID = 2**63 - 1  # the database's BIGINT: a larger id would fail in the driver, not answer 404/422
UNMASKED_CONTEXT_KEYS = {"suggestions"}  # the knowledge base's answers: the bank's own text
RECENT_ROWS = 20  # rows of the supervisor's 待回电 and 最近评价 lists
CLOSED_ROWS = 5  # an agent's recently closed chats (with the customer's rating) under 我的会话


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)

    @field_validator("username")
    @classmethod
    def _printable(cls, value: str) -> str:
        # a NUL cannot even be looked up in PostgreSQL; no real name has control characters
        if not is_valid_text(value) or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("用户名含有无效字符")
        return value


class Presence(BaseModel):
    presence: str = Field(pattern=r"^(online|away|offline)$")


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class Transfer(BaseModel):
    """To a skill group (`group`) or to a named online colleague (`agent_id`): exactly one of the two."""
    group: str | None = Field(None, min_length=1, max_length=64)
    agent_id: int | None = Field(None, ge=1, le=MAX_ID)
    note: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _one_target(self) -> Transfer:
        if (self.group is None) == (self.agent_id is None):
            raise ValueError("请选择转接的技能组或同事（二选一）")
        return self


class Close(BaseModel):
    disposition: str = Field(description=" / ".join(DISPOSITIONS))


class Reassign(BaseModel):
    agent_id: int = Field(ge=1, le=MAX_ID)


class NewAgent(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    display_name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=10, max_length=256)
    role: str = Field("agent", pattern=r"^(agent|supervisor|admin|trainer|manager)$")
    groups: list[str] = Field(min_length=1)
    max_chats: int = Field(3, ge=1, le=20)
    employee_no: str | None = Field(None, min_length=1, max_length=16, pattern=r"^[A-Za-z0-9-]+$")  # 工号


def _sessions(connection: HTTPConnection) -> Sessions:
    return connection.app.state.sessions


def signed_in(request: Request, authorization: Annotated[str | None, Header()] = None) -> AgentSession:
    """Any live session of the desk's login (agents, supervisors, admins, trainers)."""
    token = bearer_token(authorization)
    found = _sessions(request).get(token) if token else None
    if found is None:
        raise HTTPException(status_code=401, detail="请先登录坐席工作台。", headers={"WWW-Authenticate": "Bearer"})
    return found


def _session(session: Annotated[AgentSession, Depends(signed_in)]) -> AgentSession:
    """A desk session: trainers work on the training data and managers on the figures; neither serves customers."""
    if session.role == "manager":
        raise HTTPException(status_code=403, detail="经理账号不接待客户，请使用运营看板（/ops）。")
    if session.role not in DESK_ROLES:
        raise HTTPException(status_code=403, detail="训练师账号不接待客户，请使用训练工作台（/trainer）。")
    return session


def _supervisor(session: Annotated[AgentSession, Depends(_session)]) -> AgentSession:
    if session.role not in SUPERVISING_ROLES:
        raise HTTPException(status_code=403, detail="只有主管可以使用主管视图。")
    return session


def _admin(session: Annotated[AgentSession, Depends(_session)]) -> AgentSession:
    if session.role != "admin":
        raise HTTPException(status_code=403, detail="只有管理员可以管理坐席账号。")
    return session


SessionDep = Annotated[AgentSession, Depends(_session)]
SupervisorDep = Annotated[AgentSession, Depends(_supervisor)]
AdminDep = Annotated[AgentSession, Depends(_admin)]


def _reachable(handoff_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], session: SessionDep,
               request: Request) -> Handoff:
    """The hand-over when this session may act on it. Otherwise the same 404 as for an id that does not exist,
    so ids (sequential) tell an agent nothing about other groups' work."""
    with request.app.state.database.session() as db:
        handoff = db.get(Handoff, handoff_id)
    if handoff is None or not may_reach(session, handoff):
        raise HTTPException(status_code=404, detail=f"没有编号为 {handoff_id} 的转人工记录，或它不在您的接待范围内。")
    return handoff


HandoffDep = Annotated[Handoff, Depends(_reachable)]


def _desk(request: Request) -> AgentDesk:
    return request.app.state.desk


DeskDep = Annotated[AgentDesk, Depends(_desk)]


def static_files(files: Mapping[str, str]) -> APIRouter:
    """GET routes for the consoles' pages, scripts and styles: each URL path serves the named file of bot/web/static
    (public: they hold no data). The mapping is the allow-list; nothing from a URL ever names a file."""
    router = APIRouter()
    for path, file in files.items():
        router.add_api_route(path, _file_endpoint(file), methods=["GET"], name=f"static:{file}",
                             include_in_schema=False)
    return router


def _file_endpoint(file: str) -> Callable[[], FileResponse]:
    media_type = f"{MEDIA_TYPES[Path(file).suffix]}; charset=utf-8"

    def serve() -> FileResponse:
        return FileResponse(STATIC / file, media_type=media_type)

    return serve


def agent_router() -> APIRouter:
    router = APIRouter(tags=["agent desk"])
    gate = PasswordGate()  # one per app: create_app includes this router once

    router.include_router(static_files(CONSOLE_FILES))

    @router.post("/api/agent/login", responses={401: {"description": "wrong name or password"},
                                                429: {"description": "too many failures: see Retry-After"},
                                                503: {"description": "too many logins at once"}})
    async def login(body: Login, request: Request) -> dict[str, Any]:
        """A session token for `Authorization: Bearer`. Async, so that logins waiting for a password check hold
        no worker thread."""
        account = await _verify(request, gate, body)
        token = await run_in_threadpool(_sessions(request).start, account)
        return {"token": token, "agent": _agent_json(account)}

    @router.post("/api/agent/logout")
    def logout(session: Annotated[AgentSession, Depends(signed_in)], request: Request,
               desk: DeskDep) -> dict[str, str]:
        desk.set_presence(session.agent_id, "offline")
        _sessions(request).revoke(session.id)
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
            closed = db.scalars(select(Handoff).where(Handoff.status == "closed", Handoff.agent_id == account.id)
                                .order_by(Handoff.closed_at.desc(), Handoff.id.desc()).limit(CLOSED_ROWS)).all()
            visible = [h for h in waiting if may_reach(session, h)]
            return {"agent": _agent_json(account), "waiting": [_summary(db, h) for h in visible],
                    "mine": [_summary(db, h) for h in mine], "closed": [_summary(db, h) for h in closed]}

    @router.post("/api/agent/handoffs/{handoff_id}/accept")
    def accept(handoff: HandoffDep, session: SessionDep, desk: DeskDep, request: Request) -> dict[str, Any]:
        """Take a waiting chat; a chat already given to this agent (automatically) is simply theirs: 200."""
        if _desk_call(desk.accept, handoff.id, session.agent_id):
            request.app.state.handover.queue_changed()
        return _context(request, handoff.id, session)

    @router.get("/api/agent/handoffs/{handoff_id}/context")
    def context(handoff: HandoffDep, session: SessionDep, request: Request) -> dict[str, Any]:
        return _context(request, handoff.id, session)

    @router.post("/api/agent/handoffs/{handoff_id}/messages")
    def message(handoff: HandoffDep, body: Text, session: SessionDep, desk: DeskDep,
                request: Request) -> dict[str, Any]:
        """Send a reply. When it does not reach the customer, that is recorded in the transcript (a `delivery`
        event) and the answer says why; see `/retry` and `/callback`."""
        sent = _desk_call(desk.agent_message, handoff.id, session.agent_id, body.text)
        delivered, reason = _deliver_reply(request, sent)
        if not delivered:
            desk.record_delivery(sent["conversation_id"], sent["seq"], False, reason)
        return {"seq": sent["seq"], "text": sent["text"], "timestamp": sent["timestamp"], "delivered": delivered,
                "reason": reason, "warning": None if delivered else f"消息已保存，但未能送达：{reason}"}

    @router.post("/api/agent/handoffs/{handoff_id}/messages/{seq}/retry",
                 responses={409: {"description": "already delivered, being retried, or not this agent's"}})
    def retry(handoff: HandoffDep, seq: Annotated[int, PathParam(ge=0, le=MAX_ID)], session: SessionDep,
              desk: DeskDep, request: Request) -> dict[str, Any]:
        """Push an undelivered reply again and record the outcome; a delivered one is never sent twice. A widget
        or app customer who has reopened the chat got the stored reply in their history: it is recorded as
        delivered then, not pushed a second time."""
        with _retrying(handoff.id, seq):
            reply = _desk_call(desk.undelivered_reply, handoff.id, session.agent_id, seq)
            if _back_with_history(request, reply["conversation_id"]):
                delivered, reason, note = True, None, "客户已重新打开对话，已在聊天记录中收到这条消息"
            else:
                (delivered, reason), note = _deliver_reply(request, reply), None
            desk.record_delivery(reply["conversation_id"], seq, delivered, reason)
        return {"seq": seq, "delivered": delivered, "reason": reason, "note": note}

    @router.post("/api/agent/handoffs/{handoff_id}/messages/{seq}/callback", status_code=201)
    def callback(handoff: HandoffDep, seq: Annotated[int, PathParam(ge=0, le=MAX_ID)], session: SessionDep,
                 desk: DeskDep, request: Request) -> dict[str, Any]:
        """Instead of a retry: a callback ticket for the undelivered reply (on the supervisors' 待回电 list)."""
        with _retrying(handoff.id, seq):
            ticket_id = _desk_call(desk.callback_ticket, handoff.id, session.agent_id, seq)
        request.app.state.handover.queue_changed()
        return {"seq": seq, "ticket_id": ticket_id}

    @router.post("/api/agent/handoffs/{handoff_id}/notes")
    def note(handoff: HandoffDep, body: Text, session: SessionDep, desk: DeskDep) -> dict[str, str]:
        _desk_call(desk.note, handoff.id, session.agent_id, body.text)
        return {"status": "noted"}

    @router.post("/api/agent/handoffs/{handoff_id}/transfer", responses={409: {"description": "refused: why"}})
    def transfer(handoff: HandoffDep, body: Transfer, session: SessionDep, desk: DeskDep,
                 request: Request) -> dict[str, str]:
        """To another agent of a group (never back to this one; refused when nobody else there is online with
        room) or to a named online colleague with room."""
        if body.agent_id is not None:
            name = _desk_call(desk.transfer_to_agent, handoff.id, session.agent_id, body.agent_id, body.note)
            message = f"已转接给{name}"
        else:
            assert body.group is not None
            _desk_call(desk.transfer, handoff.id, session.agent_id, body.group, body.note)
            message = f"已转接至{body.group}"
        request.app.state.handover.queue_changed()
        return {"status": "transferred", "message": message}

    @router.post("/api/agent/handoffs/{handoff_id}/close")
    def close(handoff: HandoffDep, body: Close, session: SessionDep, desk: DeskDep,
              request: Request) -> dict[str, str]:
        if body.disposition not in DISPOSITIONS:
            raise HTTPException(status_code=422, detail=f"处理结果须为：{'、'.join(DISPOSITIONS)}")
        conversation_id = _desk_call(desk.close, handoff.id, session.agent_id, body.disposition)
        survey = _last_bot_event(request, conversation_id)
        if survey is not None:
            _to_customer(request, conversation_id, {"type": "bot", "text": survey["text"],
                                                    "buttons": survey["buttons"], "timestamp": survey["timestamp"],
                                                    "source": survey["source"],
                                                    "reply_to": None, "duplicate": False})
        _end_channel_session(request, conversation_id)  # after the survey: an ended session takes no messages
        request.app.state.handover.queue_changed()
        return {"status": "closed"}

    @router.get("/api/agent/canned")
    def canned(session: SessionDep, request: Request) -> list[dict[str, str]]:
        """What the reply box's picker lists: the agent's own, their groups', global and config replies, one per
        code (the one "/code" expands to: `bot.handoff.library.canned`)."""
        return canned_picker(request.app.state.database, session.agent_id, session.groups,
                             request.app.state.config.handoff.canned)

    @router.get("/api/agent/groups")
    def groups(session: SessionDep, request: Request) -> list[str]:
        return [g.name for g in request.app.state.config.handoff.groups]

    @router.get("/api/agent/colleagues")
    def colleagues(session: SessionDep, desk: DeskDep) -> list[dict[str, Any]]:
        """Desk accounts with presence and load, for the transfer dialog (the caller marked `me`)."""
        return [{**c, "me": c["id"] == session.agent_id} for c in desk.colleagues()]

    @router.get("/api/agent/meta")
    def meta(session: SessionDep) -> dict[str, Any]:
        """What the console names by label: channels (bot/channels/registry.py) and hand-over reasons
        (bot/handoff/reasons.py), so the page keeps no copy of its own."""
        return {"channels": channels_json(), "reasons": reasons_json()}

    @router.get("/api/agent/knowledge")
    def knowledge(q: str, session: SessionDep, request: Request) -> list[dict[str, Any]]:
        return _suggest(request)(q)

    @router.get("/api/supervisor/overview")
    def overview(session: SupervisorDep, request: Request) -> dict[str, Any]:
        with request.app.state.database.session() as db:
            open_handoffs = db.scalars(select(Handoff).where(Handoff.status.in_(("waiting", "assigned")))).all()
            agents = db.scalars(select(AgentAccount)).all()
            load = {a.id: sum(1 for h in open_handoffs if h.agent_id == a.id and h.status == "assigned")
                    for a in agents}
            tickets = db.scalars(select(Handoff).where(Handoff.status == "ticket")
                                 .order_by(Handoff.created_at.desc()).limit(RECENT_ROWS)).all()
            rated = db.scalars(select(Handoff).where(Handoff.rating.is_not(None))
                               .order_by(Handoff.closed_at.desc(), Handoff.id.desc()).limit(RECENT_ROWS)).all()
            names = {a.id: a.display_name for a in agents}
            return {"groups": _group_queues(request, open_handoffs),
                    "agents": [{"id": a.id, "display_name": a.display_name, "employee_no": a.employee_no,
                                "presence": a.presence, "load": load[a.id], "max_chats": a.max_chats,
                                "groups": a.groups} for a in agents],
                    "live": [_summary(db, h) for h in open_handoffs if h.status == "assigned"],
                    "callbacks": [_summary(db, h) for h in tickets],
                    "rated": [{**_summary(db, h), "agent": names.get(h.agent_id or 0)} for h in rated]}

    @router.post("/api/supervisor/handoffs/{handoff_id}/reassign")
    def reassign(session: SupervisorDep, handoff: HandoffDep, body: Reassign, desk: DeskDep,
                 request: Request) -> dict[str, str]:
        _desk_call(desk.reassign, handoff.id, body.agent_id)
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
        if body.employee_no:
            set_employee_no(request.app.state.database, body.username, body.employee_no)
            account.employee_no = body.employee_no
        request.app.state.conversations.store.audit(f"agent-id:{session.agent_id}", "create_agent",
                                                    body.username, {"role": body.role, "groups": body.groups})
        return _agent_json(account)

    @router.get("/api/admin/agents")
    def list_agents(session: SupervisorDep, request: Request) -> list[dict[str, Any]]:
        with request.app.state.database.session() as db:
            return [_agent_json(a) for a in db.scalars(select(AgentAccount).order_by(AgentAccount.id))]

    @router.websocket("/api/agent/ws")
    async def live(websocket: WebSocket) -> None:
        """Queue changes and customers' messages, live. The first frame authenticates:
        `{"type": "auth", "token": "<session token>"}`; the answer is `{"type": "welcome"}`. Later frames are
        keep-alives (`{"type": "ping"}`), each of which re-checks the session."""
        if not origin_allowed(websocket, websocket.app.state.config.server.allowed_origins):
            await websocket.close(code=4403)  # before accept: the browser sees the handshake refused
            return
        await websocket.accept()
        token, session = await _socket_session(websocket)
        if session is None:
            return
        await websocket.send_json({"type": "welcome"})
        hub = websocket.app.state.hub
        feed = _MaskedFeed(websocket)
        hub.add_agent(session.agent_id, feed)
        try:
            await _listen(websocket, token)
        finally:
            hub.remove_agent(session.agent_id, feed)
            _release_after_grace(websocket, session.agent_id)

    return router


async def _verify(request: Request, gate: PasswordGate, body: Login) -> AgentAccount:
    """The account of a right name and password, checked a few at a time; 429 past the failure limits (before
    and after waiting for a check: a flood queued meanwhile is refused without hashing), 401 when wrong."""
    security = request.app.state.config.security
    guard = LoginGuard(request.app.state.limiter, security)
    ip = client_ip(request, request.app.state.config.server.trusted_proxies)
    try:
        await run_in_threadpool(guard.check, body.username, ip)
        account = await gate.run(security.password_hash_concurrency, _check_password, request, guard, body, ip)
    except Throttled as e:
        raise too_many_requests(e) from e
    except Busy as e:
        raise HTTPException(status_code=503, detail=e.message,
                            headers={"Retry-After": str(e.retry_after)}) from e
    if account is None:
        raise HTTPException(status_code=401, detail="用户名或密码错误。")
    return account


def _check_password(request: Request, guard: LoginGuard, body: Login, ip: str) -> AgentAccount | None:
    """In a worker thread: the limits again, the password, the count and the audit (never the password)."""
    guard.check(body.username, ip)
    account = authenticate(request.app.state.database, body.username, body.password)
    store = request.app.state.conversations.store
    if account is None:
        guard.failed(body.username, ip)
        store.audit(ip, "login_failed", body.username, {"surface": "agent-desk"})
        return None
    guard.succeeded(body.username)
    store.audit(f"agent:{account.username}", "login", "agent-desk", {"ip": ip})
    return account


async def _socket_session(websocket: WebSocket) -> tuple[str, AgentSession | None]:
    """The token and session of the socket's first frame; without a live one the socket is closed (4401)."""
    frame = await first_frame(websocket, "auth")
    if frame is None:
        return "", None
    token = frame.get("token")
    session = await run_in_threadpool(_sessions(websocket).get, token) if isinstance(token, str) else None
    if session is None or session.role not in DESK_ROLES:
        await websocket.send_json({"type": "error", "message": "登录已失效，请重新登录。"})
        await websocket.close(code=4401, reason="unauthorized")
        return "", None
    return token, session


async def _listen(websocket: WebSocket, token: str) -> None:
    """Until the console goes away. Each keep-alive re-checks the session, so a logout elsewhere, its expiry
    or a disabled account closes the socket (4401) within one keep-alive interval."""
    max_bytes = websocket.app.state.config.server.max_frame_bytes
    sessions = _sessions(websocket)
    try:
        while await receive_frame(websocket, max_bytes) is not None:
            if await run_in_threadpool(sessions.get, token) is None:
                await websocket.close(code=4401, reason="session ended")
                return
    except WebSocketDisconnect:
        return


class _MaskedFeed:
    """An agent's socket as the hub sees it: frames pushed from anywhere (e.g. a customer's message while the
    agent has the chat) leave masked."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.websocket.send_json(mask_value(frame))


def _release_after_grace(websocket: WebSocket, agent_id: int) -> None:
    """An agent whose last console stays away past the grace period goes offline; their chats are re-queued."""
    state = websocket.app.state

    def release() -> None:
        if state.desk.release_agent(agent_id):
            state.handover.queue_changed()

    task = asyncio.ensure_future(after_grace(state.config.handoff.agent_grace_seconds,
                                             lambda: not state.hub.agent_connected(agent_id), release))
    state.background.add(task)
    task.add_done_callback(state.background.discard)


def _group_queues(request: Request, open_handoffs: Any) -> list[dict[str, Any]]:
    groups = []
    for group in request.app.state.config.handoff.groups:
        waiting = [summary_of(h) for h in open_handoffs if h.group == group.name and h.status == "waiting"]
        groups.append({"name": group.name, "waiting": len(waiting),
                       "longest_wait_seconds": max((w["waiting_seconds"] for w in waiting), default=0)})
    return groups


def _desk_call(method: Any, *args: Any) -> Any:
    try:
        return method(*args)
    except DeskError as e:
        raise HTTPException(status_code=409, detail=str(e)) from e


def _agent_json(account: AgentAccount) -> dict[str, Any]:
    return {"id": account.id, "username": account.username, "display_name": account.display_name,
            "employee_no": account.employee_no, "role": account.role, "groups": account.groups,
            "presence": account.presence}


def _account(request: Request, agent_id: int) -> AgentAccount:
    with request.app.state.database.session() as db:
        account = db.get(AgentAccount, agent_id)
    if account is None:
        raise HTTPException(status_code=401, detail="坐席账号不存在。")
    return account


def _summary(db: Any, handoff: Handoff) -> dict[str, Any]:
    """A hand-over as the queue, "my chats" and the supervisor's live list show it."""
    conversation = db.get(Conversation, handoff.conversation_id)
    customer = db.get(Customer, conversation.customer_id) if conversation and conversation.customer_id else None
    last = db.scalar(select(Event).where(Event.conversation_id == handoff.conversation_id, Event.type == "user")
                     .order_by(Event.seq.desc()).limit(1))
    return _shown({**summary_of(handoff), "channel": conversation.channel if conversation else None,
                   "customer": None if customer is None else {"id": customer.id, "name": customer.name,
                                                              "tier": customer.tier, "verified": customer.verified},
                   "last_message": customer_words(last.data or {}) if last else None,
                   "transfer": latest_transfer(db, handoff), **_rating(handoff),
                   "created_at": _iso(handoff.created_at), "closed_at": _iso(handoff.closed_at)})


def _rating(handoff: Handoff) -> dict[str, Any]:
    """The customer's rating and comment of a hand-over (the comment stored masked, shown masked again)."""
    return {"rating": handoff.rating, "comment": handoff.comment, "disposition": handoff.disposition}


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def _context(request: Request, handoff_id: int, session: AgentSession) -> dict[str, Any]:
    """The context package, masked for every role: no desk screen needs more than a number's last digits."""
    try:
        names = request.app.state.assistant.model.display_names
        context = build_context(request.app.state.database, handoff_id, session.role, _suggest(request), names=names)
    except KeyError as e:
        raise HTTPException(status_code=404, detail=f"没有编号为 {handoff_id} 的转人工记录。") from e
    with request.app.state.database.session() as db:
        handoff = db.get(Handoff, handoff_id)
        assert handoff is not None
        context["transcript"] = _with_deliveries(db, handoff.conversation_id, context.get("transcript") or [])
        context.update(transfer=latest_transfer(db, handoff), mine=handoff.status == "assigned" and
                       handoff.agent_id == session.agent_id, **_rating(handoff))
    return {key: value if key in UNMASKED_CONTEXT_KEYS else _shown(value) for key, value in context.items()}


def _with_deliveries(db: Any, conversation_id: str, transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transcript's agent replies with their event seq and, when it failed, their delivery: the n-th agent
    line is the conversation's n-th agent `bot` event."""
    replies = [e.seq for e in db.scalars(select(Event).where(Event.conversation_id == conversation_id,
                                                             Event.type == "bot").order_by(Event.seq))
               if ((e.data or {}).get("data") or {}).get("source") == "agent"]
    states = reply_deliveries(db, conversation_id)
    agent_lines = iter(replies)
    shown = []
    for item in transcript:
        if item.get("role") == "agent" and (seq := next(agent_lines, None)) is not None:
            item = {**item, "seq": seq, "delivery": states.get(seq)}
        shown.append(item)
    return shown


def _shown(value: Any) -> Any:
    """Stored customer data as a desk screen shows it: masked (rows stored before masking at rest too) and safe
    to serialise (rows stored before hostile input was refused)."""
    return mask_value(scrub(value))


def _suggest(request: Request) -> Any:
    agent = request.app.state.assistant

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


def _to_customer(request: Request, conversation_id: str, frame: dict[str, Any]) -> tuple[bool, str | None]:
    """Deliver to the customer's channel now: an open widget/app socket, WeChat's customer-service API or
    WeCom's kf/send_msg. Whether it was delivered, and why not (it is stored either way)."""
    identity = _identity(request, conversation_id)
    if identity is None:
        return False, "找不到客户的渠道信息"
    result = push_to_customer(request.app, identity.channel, identity.external_id, frame)
    if result:
        return True, None
    return False, getattr(result, "reason", None) or _why_not(identity.channel)


def _why_not(channel: str) -> str:
    """A reason when the sender gave none, from what the channel registry says about pushing to it."""
    info = channel_info(channel)
    if info.push == "socket":
        return "客户已离开聊天窗口"
    if info.push == "api":
        return f"{info.label}未能送达（可能已超过48小时未互动）"
    return f"{info.label}渠道无法主动发送消息"


def _back_with_history(request: Request, conversation_id: str) -> bool:
    """A socket customer (widget, app) connected now: they reconnected after the failed push, and a reconnecting
    chat loads its stored history, this reply included."""
    identity = _identity(request, conversation_id)
    return identity is not None and channel_info(identity.channel).push == "socket" and \
        request.app.state.hub.customer_connected(identity.channel, identity.external_id)


def _deliver_reply(request: Request, reply: dict[str, Any]) -> tuple[bool, str | None]:
    """An agent's reply as the customer's channel gets it: marked as a person's, with their name and 工号."""
    return _to_customer(request, reply["conversation_id"], {
        "type": "bot", "text": reply["text"], "buttons": None, "timestamp": reply["timestamp"], "reply_to": None,
        "duplicate": False, "from": "agent", "source": "agent", "agent": reply["agent"],
        "employee_no": reply["employee_no"]})


_RETRYING: set[tuple[int, int]] = set()
_RETRYING_LOCK = threading.Lock()


@contextmanager
def _retrying(handoff_id: int, seq: int) -> Iterator[None]:
    """One retry (or callback) of a reply at a time, so two clicks never deliver it twice."""
    key = (handoff_id, seq)
    with _RETRYING_LOCK:
        if key in _RETRYING:
            raise HTTPException(status_code=409, detail="这条消息正在重发，请稍候。")
        _RETRYING.add(key)
    try:
        yield
    finally:
        with _RETRYING_LOCK:
            _RETRYING.discard(key)


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
        moment = aware_utc(event.timestamp)
        data = event.data.get("data") or {}
        return {"text": event.data.get("text"), "buttons": data.get("buttons"), "source": data.get("source"),
                "timestamp": moment.isoformat()}
