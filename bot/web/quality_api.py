"""Quality inspection (质检) for supervisors, managers and admins (`OpsDep`): the hits of the rules in a review
queue, an inspector's confirm/reject (audited), scorecards per agent, the rules with their precision, and one
chat's score. The rules and the scores are in bot/ops/quality.py. Periods are Beijing dates of the close."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from bot.ops import quality
from bot.ops.kpis import Period, PeriodError
from bot.storage.models import AgentAccount
from bot.web.agent_api import MAX_ID
from bot.web.ops_auth import OpsDep

HitStatus = Literal["pending", "confirmed", "rejected"]


class Review(BaseModel):
    decision: Literal["confirm", "reject"]
    note: str = Field("", max_length=1000)


def quality_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/api/ops/quality/hits")
    def hits(request: Request, _session: OpsDep, status: HitStatus | None = None,
             agent: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None, rule: str | None = None,
             start: Annotated[str | None, Query(alias="from")] = None,
             end: Annotated[str | None, Query(alias="to")] = None) -> dict[str, Any]:
        """The review queue: hits of hand-overs closed in the period (all when neither date is given), oldest
        first; `agent` is the agent's id."""
        window = _window(start, end) if start or end else quality.Window()
        return {"rows": quality.hit_rows(request.app.state.database, window, status=status, agent_id=agent,
                                         rule=rule or None)}

    @router.post("/api/ops/quality/hits/{hit_id}/review")
    def review(hit_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], body: Review, request: Request,
               session: OpsDep) -> dict[str, Any]:
        """An inspector's decision on a hit (it can be changed later: the latest counts in the precision)."""
        with request.app.state.database.session() as db:
            account = db.get(AgentAccount, session.agent_id)
            name, username = (account.display_name, account.username) if account else (str(session.agent_id), "")
        try:
            row, previous = quality.review(request.app.state.database, hit_id, body.decision, name, body.note)
        except quality.QualityError as e:
            raise HTTPException(status_code=404, detail=str(e)) from e
        request.app.state.conversations.store.audit(
            f"agent:{username or session.agent_id}", "quality_review", f"quality_hit:{hit_id}",
            {"decision": body.decision, "previous": previous, "rule": row["rule"], "handoff_id": row["handoff_id"],
             "note": body.note.strip()})
        return row

    @router.get("/api/ops/quality/scorecards")
    def scorecards(request: Request, _session: OpsDep, start: Annotated[str | None, Query(alias="from")] = None,
                   end: Annotated[str | None, Query(alias="to")] = None) -> dict[str, Any]:
        """Per agent over the hand-overs closed in the period (default: today, Beijing time)."""
        period = _period(start, end)
        return {"period": period.to_json(),
                "rows": quality.scorecards(request.app.state.database, quality.Window(period.start, period.end))}

    @router.get("/api/ops/quality/rules")
    def rules(request: Request, _session: OpsDep, start: Annotated[str | None, Query(alias="from")] = None,
              end: Annotated[str | None, Query(alias="to")] = None) -> dict[str, Any]:
        """Each rule with its points, hits and precision (all time unless a period is given)."""
        window = _window(start, end) if start or end else quality.Window()
        return {"rows": quality.rule_rows(request.app.state.database, request.app.state.config.ops.quality, window)}

    @router.get("/api/ops/quality/chats/{handoff_id}")
    def chat(handoff_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], request: Request,
             _session: OpsDep) -> dict[str, Any]:
        report = quality.chat_report(request.app.state.database, handoff_id)
        if report is None:
            raise HTTPException(status_code=404, detail="这个人工会话尚未结束或未经质检。")
        return report

    return router


def _period(start: str | None, end: str | None) -> Period:
    try:
        return Period.parse(start, end)
    except PeriodError as e:
        raise HTTPException(status_code=400, detail=str(e)) from e


def _window(start: str | None, end: str | None) -> quality.Window:
    period = _period(start, end)
    return quality.Window(period.start, period.end)
