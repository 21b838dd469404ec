"""The FastAPI application, built by a factory so tests choose the config and the model."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse

from bot.assistant import Assistant
from bot.channels.app import app_router
from bot.channels.handoff_notices import HandoffNotices
from bot.channels.notify import notify_router
from bot.channels.wechat import wechat_router
from bot.channels.wecom import wecom_router
from bot.config import BotConfig
from bot.dialogue.service import (
    ConversationService,
    Inbound,
    Limits,
    MessageRejected,
    ServiceUnavailable,
    TooManyMessages,
    deliver_late,
    run_claim_sweep,
    run_reminders,
)
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.live import make_bus
from bot.ops.alerts import AlertMonitor
from bot.ops.logs import RequestIdMiddleware, configure_logs
from bot.ops.quality import QualityInspector
from bot.ops.routes import metrics_router
from bot.security.credentials import VisitorCredentials, bearer_token, is_api_token, server_key
from bot.security.edge import install_edge
from bot.security.json_guard import scrub
from bot.security.limits import RateLimiter, client_ip, make_limiter, too_many_requests
from bot.security.masking import install_log_masking, mask_value
from bot.security.sessions import Sessions
from bot.storage import ConversationStore, Database
from bot.storage.database import UNAVAILABLE_ERRORS, PoolSize, why_unavailable
from bot.storage.store import WORKER
from bot.trainer.swap import LiveModel, startup_assistant
from bot.web.agent_api import agent_router
from bot.web.attachments_api import attachments_router
from bot.web.desk_library_api import library_router
from bot.web.docs import docs_router
from bot.web.model_api import RasaStatus, model_router, rasa_status
from bot.web.ops_api import ops_router
from bot.web.ops_page import ops_page_router
from bot.web.quality_api import quality_router
from bot.web.schemas import ParseRequest, RestButton, RestMessage, RestReply, Tracker
from bot.web.trainer_api import trainer_router
from bot.web.trainer_edit_api import trainer_edit_router
from bot.web.widget import widget_router


def create_app(config: BotConfig, assistant: Assistant | None = None, database: Database | None = None) -> FastAPI:
    """The app for `config`: the database's active model version (bot/trainer/swap.py `startup_assistant`) unless
    `assistant` is given, the configured database (migrated to the current schema) unless `database` is given."""
    docs = config.server.docs  # /docs and /openapi.json; off in production
    app = FastAPI(title="示例银行智能客服 API", version="0.1.0",
                  description="Rasa-compatible NLU and REST channel of the bank's self-service bot.",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json" if docs else None,
                  lifespan=_lifespan)
    if docs:
        app.include_router(docs_router())  # Swagger UI from a package: nothing is fetched from a CDN
    install_log_masking()
    configure_logs(config.server.log_format)  # json: JSON lines with request and conversation ids
    app.state.config = config
    app.state.database = database or Database(config.storage.url, root=config.root,
                                              pool=PoolSize(config.storage.pool_size, config.storage.pool_overflow))
    app.state.assistant = assistant or startup_assistant(config, app.state.database)
    store = ConversationStore(app.state.database,
                              session_expiry=dt.timedelta(minutes=config.storage.session_expiry_minutes),
                              state_follows_customer=config.channels.state_follows == "customer",
                              security=config.security,
                              claim_lease=dt.timedelta(seconds=config.storage.claim_lease_seconds))
    app.state.hub = make_bus(config.security.redis_url)  # live events: Redis pub/sub across workers when set
    app.state.limiter = make_limiter(config.security.redis_url)  # logins, binding codes, message floods
    app.state.visitor_credentials = VisitorCredentials(server_key(config))
    app.state.background = set()  # grace-period tasks, kept referenced until they finish
    app.state.desk = AgentDesk(app.state.database, config.handoff)
    app.state.handover = Handover(app.state.desk, config.handoff, app.state.hub)
    app.state.desk.on_change(HandoffNotices(app))  # the customer hears who joins, passes on and leaves
    app.state.desk.on_change(QualityInspector(app.state.database, config.ops.quality))  # 质检 at close and rating
    app.state.conversations = ConversationService(app.state.assistant, store, handoff=app.state.handover,
                                                  limits=_limits(config, app.state.limiter))
    app.state.live_model = LiveModel(app.state, config, app.state.database)  # swaps app.state.assistant when told
    _routes(app)
    _unavailable_handlers(app)
    app.add_middleware(JsonBodyMiddleware, paths=RASA_JSON_PATHS)
    install_edge(app, config, json_paths=RASA_JSON_PATHS)  # body limit, JSON guard, headers, CORS: outermost
    app.add_middleware(RequestIdMiddleware)  # X-Request-ID in and out, on every log line of the request
    app.include_router(widget_router())  # the demo page at /, widget.js and the widget's WebSocket
    app.state.sessions = Sessions(app.state.database, hours=config.security.session_hours)
    app.include_router(agent_router())  # the agent desk: /agent console and /api/agent, /api/supervisor
    app.include_router(attachments_router())  # customers' pictures and files, for the desk
    app.include_router(library_router())  # the desk's library: past conversations, labels, canned replies
    app.include_router(app_router())  # the bank's mobile app: customers signed in by the app's back end
    app.include_router(wechat_router())  # the WeChat official account's server URL
    app.include_router(wecom_router())  # WeCom customer service (微信客服): callback, then sync_msg
    app.include_router(notify_router())  # proactive notifications from the bank's systems
    app.include_router(trainer_router())  # the trainer's review inbox: /api/trainer/inbox
    app.include_router(trainer_edit_router())  # the trainer's edits: /api/trainer/data, fixes, findings
    app.include_router(model_router())  # model versions: /api/trainer/models, Rasa's /model/train and PUT /model
    app.include_router(metrics_router())  # /metrics for Prometheus (security.metrics_token)
    app.state.ops_alerts = AlertMonitor(  # service-level alerts, announced by one worker at a time
        app.state.database, config, app.state.hub,
        lease=functools.partial(store.take_lease, "ops-alerts", WORKER, 3 * config.ops.alerts.check_seconds))
    app.include_router(ops_router())  # the operations figures: /api/ops/kpis, breakdown, drill-down, live
    app.include_router(ops_page_router())  # the operations dashboard's page /ops and its Chart.js
    app.include_router(quality_router())  # quality inspection: /api/ops/quality/* (hits, review, scorecards)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the app serves, due reminders fire (every worker looks; each reminder is claimed once), messages
    whose worker died mid-turn are answered (each claimed once) and the active model version is polled (every
    worker swaps to it)."""
    app.state.conversations.draining = False  # an app started again (tests do) answers again
    tasks = [asyncio.create_task(run_reminders(app.state.conversations)),
             asyncio.create_task(app.state.live_model.run()),
             asyncio.create_task(run_claim_sweep(app.state.conversations, functools.partial(deliver_late, app))),
             asyncio.create_task(app.state.ops_alerts.run())]  # service-level alerts to supervisors
    app.state.hub.start()  # with Redis: hear other workers' pushes, keep this worker's sockets announced
    try:
        yield
    finally:
        app.state.hub.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # turns still running in worker threads (a socket's, a reminder's) finish and are stored before the
        # process exits; none starts any more (503)
        await asyncio.to_thread(app.state.conversations.drain, SHUTDOWN_GRACE_SECONDS)


logger = logging.getLogger(__name__)
REST_CHANNEL = "rest"
SHUTDOWN_GRACE_SECONDS = 30.0
RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "服务暂时不可用，请稍后再试。"
RASA_JSON_PATHS = frozenset({"/webhooks/rest/webhook", "/model/parse"})


class JsonBodyMiddleware:
    """Rasa reads these endpoints' bodies as JSON whatever the Content-Type, so `curl -d '{...}'` (which sends
    application/x-www-form-urlencoded) works; so do we."""

    def __init__(self, app: Any, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


def _limits(config: BotConfig, limiter: RateLimiter) -> Limits:
    rates = config.security.rate_limits
    return Limits(limiter, per_sender=rates.per_sender, per_ip=rates.per_ip, window_seconds=rates.window_seconds,
                  binding_failures=config.security.binding_max_failures,
                  binding_window_seconds=config.security.binding_window_minutes * 60)


def _agent(request: Request) -> Assistant:
    return request.app.state.assistant


def _conversations(request: Request) -> ConversationService:
    return request.app.state.conversations


def _reader(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """Who may read conversations over the API: a caller with the API token (`security.api_token`; without
    one the API is off, as Rasa's is without --enable-api), or a signed-in supervisor or admin."""
    token = bearer_token(authorization)
    configured = request.app.state.config.security.api_token
    if is_api_token(token, configured):
        return "api"
    session = request.app.state.sessions.get(token) if token else None
    if session is not None and session.role in ("supervisor", "admin"):
        return session.role
    if session is not None:
        raise HTTPException(status_code=403, detail="坐席请在工作台查看自己接待的会话。")
    off = "" if configured else " The conversation API is off until BOT__SECURITY__API_TOKEN is set."
    raise HTTPException(status_code=401, detail=f"send 'Authorization: Bearer <API token>'.{off}",
                        headers={"WWW-Authenticate": "Bearer"})


AssistantDep = Annotated[Assistant, Depends(_agent)]
ConversationsDep = Annotated[ConversationService, Depends(_conversations)]
ReaderDep = Annotated[str, Depends(_reader)]


def _routes(app: FastAPI) -> None:
    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    def ready(request: Request) -> JSONResponse:
        """200 when this worker can answer: the database answers `SELECT 1`, Redis (when configured) answers
        PING, a model is loaded; otherwise 503 naming what is down."""
        checks = _readiness(request.app)
        down = [name for name, result in checks.items() if result != "ok"]
        assistant = getattr(request.app.state, "assistant", None)
        body = {"status": "unavailable" if down else "ready", "model": getattr(assistant, "version", None),
                "checks": checks, "down": down}
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if down else None
        return JSONResponse(body, status_code=503 if down else 200, headers=headers)

    @app.get("/status", response_model=RasaStatus, tags=["rasa"])
    def status(request: Request) -> RasaStatus:
        """Rasa's status: `model_file`, `model_id`, `num_active_training_jobs`, `fingerprint`, and ours."""
        return rasa_status(request)

    @app.post("/model/parse", tags=["rasa"])
    def parse(body: ParseRequest, assistant: AssistantDep, request: Request) -> dict[str, Any]:
        """Rasa's parse format: text, intent, intent_ranking, entities, plus the knowledge retrieval."""
        rates = request.app.state.config.security.rate_limits
        wait = request.app.state.limiter.hit(f"parse:ip:{_ip(request)}", rates.per_ip, rates.window_seconds)
        if wait > 0:
            raise too_many_requests(TooManyMessages(wait))
        return dict(assistant.parse(body.text))

    @app.post("/webhooks/rest/webhook", response_model=list[RestReply], response_model_exclude_none=True,
              tags=["rasa"])
    def rest_webhook(body: RestMessage, conversations: ConversationsDep, request: Request) -> list[RestReply]:
        """Rasa's REST channel: one customer message in, the bot's messages out. Send `message_id` to make
        retries safe: a repeated id gets the original replies and is not processed again. The sender is
        whatever the caller says, so these conversations never belong to a known bank customer."""
        inbound = Inbound(channel=REST_CHANNEL, sender=body.sender, text=body.message, message_id=body.message_id,
                          metadata=body.metadata or {}, client_ip=_ip(request))
        try:
            turn = conversations.handle(inbound)
        except TooManyMessages as e:
            raise too_many_requests(e) from e
        except MessageRejected as e:
            raise HTTPException(status_code=422, detail=str(e)) from e
        return [RestReply(recipient_id=body.sender, text=r["text"],
                          buttons=[RestButton(**b) for b in r["buttons"]] if r["buttons"] else None)
                for r in turn.replies]

    @app.get("/conversations/{conversation_id}/tracker", response_model=Tracker, tags=["rasa"])
    def tracker(conversation_id: str, conversations: ConversationsDep, reader: ReaderDep) -> Tracker:
        """Rasa's tracker: the conversation's events in order, personal data masked. The id is a conversation id
        or a sender id. Needs the API token or a supervisor's session."""
        conversation = conversations.store.find_conversation(conversation_id)
        if conversation is None:
            raise HTTPException(status_code=404, detail=f"no conversation with id or sender '{conversation_id}'")
        events = readable(conversations.store.events(conversation.id))
        latest = next((e for e in reversed(events) if e["event"] == "user"), None)
        dialogue = readable((conversation.state or {}).get("dialogue") or {})
        loop = dialogue.get("active_loop")
        return Tracker(sender_id=conversation_id, conversation_id=conversation.id, channel=conversation.channel,
                       status=conversation.status, slots=dialogue.get("slots") or {},
                       latest_message=(latest or {}).get("parse_data") or {},
                       latest_event_time=events[-1]["timestamp"] if events else None,
                       paused=conversation.status in ("queued", "human") or bool(dialogue.get("paused")),
                       active_loop={"name": loop} if loop else {},
                       events=events)


def _readiness(app: FastAPI) -> dict[str, str]:
    checks = {"database": app.state.database.ping() or "ok"}
    redis_url = app.state.config.security.redis_url
    if redis_url:
        checks["redis"] = _redis_ping(redis_url)
    checks["model"] = "ok" if getattr(app.state, "assistant", None) is not None else "not loaded"
    return checks


def _redis_ping(url: str) -> str:
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
            client.ping()
    except Exception as e:  # noqa: BLE001 - whatever it is, Redis is not usable
        return f"{type(e).__name__}"
    return "ok"


def _unavailable_handlers(app: FastAPI) -> None:
    """The database away (or this worker shutting down): 503 with Retry-After, never a bare 500. Connections
    broken meanwhile are replaced by the pool's pre-ping, so answers resume by themselves."""

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        retry_after = getattr(error, "retry_after", RETRY_AFTER_SECONDS)
        logger.warning("503 for %s %s: %s", request.method, request.url.path, why_unavailable(error, 300))
        return JSONResponse({"detail": UNAVAILABLE}, status_code=503, headers={"Retry-After": str(retry_after)})

    for kind in (*UNAVAILABLE_ERRORS, ServiceUnavailable):
        app.add_exception_handler(kind, unavailable)


def readable(value: Any) -> Any:
    """Stored data as an API shows it: masked (rows stored before masking too) and safe to serialise."""
    return mask_value(scrub(value))


def _ip(request: Request) -> str:
    return client_ip(request, request.app.state.config.server.trusted_proxies)

