"""GET /metrics for Prometheus: `Authorization: Bearer <security.metrics_token>` (or the API token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from bot.ops import metrics
from bot.security.credentials import bearer_token, is_api_token


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/metrics", response_class=Response)
    async def prometheus_metrics(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
        """Prometheus' text format: messages by channel and outcome, turn and NLU latency, hand-overs by reason,
        queues, active conversations, the model version. Needs the metrics token (or the API token)."""
        _check_scraper(request, authorization)
        body = await run_in_threadpool(metrics.render, request.app.state)  # the gauges read the database
        return Response(content=body, media_type=metrics.CONTENT_TYPE)

    return router


def _check_scraper(request: Request, authorization: str | None) -> None:
    """The caller has the metrics token or the API token; neither configured: /metrics is closed."""
    security = request.app.state.config.security
    token = bearer_token(authorization)
    if any(is_api_token(token, configured) for configured in (security.metrics_token, security.api_token)):
        return
    off = "" if security.metrics_token or security.api_token else \
        " /metrics is closed until BOT__SECURITY__METRICS_TOKEN is set."
    raise HTTPException(status_code=401, detail=f"send 'Authorization: Bearer <metrics token>'.{off}",
                        headers={"WWW-Authenticate": "Bearer"})
