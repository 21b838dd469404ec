"""The operations figures over HTTP (/api/ops/*): a period's figures, breakdowns, the conversations behind a
figure, a CSV export and the live strip. Definitions: bot/ops/kpis.py. Supervisors, admins and managers only
(`OpsDep`)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from bot.config import BotConfig
from bot.handoff.reasons import reason_label
from bot.ops import alerts, kpis
from bot.security.masking import mask_text
from bot.web.ops_auth import OpsDep

CSV_HEADERS = {"key": "维度值", "label": "名称", "conversations": "会话量", "containment_rate": "未转人工率",
               "containment_rate_24h": "自助解决率(24小时)", "escalation_rate": "转人工率", "handovers": "转人工量",
               "no_answer_rate": "无答案率", "clarification_rate": "澄清率",
               "clarification_resolved_rate": "澄清解决率",
               "first_response_p50_s": "首响时长P50(秒)", "first_response_p90_s": "首响时长P90(秒)",
               "first_response_within_rate": "首响达标率", "service_level": "服务水平", "abandonment_rate": "放弃率",
               "aht_s": "平均处理时长(秒)", "csat": "满意度", "csat_participation": "参评率", "chats": "接待量",
               "concurrent_max": "最大并发", "concurrent_avg": "平均并发"}
DimensionQuery = Annotated[str, Query(pattern="^(day|hour|channel|group|agent|intent)$")]
DateQuery = Annotated[str | None, Query(alias="from")]


def _period(start: str | None, end: str | None, group: str | None, channel: str | None) -> kpis.Period:
    try:
        return kpis.Period.parse(start, end, group, channel)
    except kpis.PeriodError as e:
        raise HTTPException(status_code=400, detail=str(e)) from e


def _dataset(request: Request, period: kpis.Period) -> kpis.Dataset:
    return kpis.load(request.app.state.database, request.app.state.config, period)


def _intent_names(request: Request) -> dict[str, str]:
    return dict(request.app.state.conversations.display_names.intents)


def ops_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/api/ops/kpis")
    def kpi_summary(_: OpsDep, request: Request, start: DateQuery = None, to: str | None = None,
                    group: str | None = None, channel: str | None = None) -> dict[str, Any]:
        """The period's figures (Beijing dates, both included; today by default)."""
        config: BotConfig = request.app.state.config
        return kpis.summary(_dataset(request, _period(start, to, group, channel)), config)

    @router.get("/api/ops/breakdown")
    def breakdown(_: OpsDep, request: Request, by: DimensionQuery, start: DateQuery = None, to: str | None = None,
                  group: str | None = None, channel: str | None = None) -> dict[str, Any]:
        data = _dataset(request, _period(start, to, group, channel))
        return {"by": by, "rows": kpis.breakdown(data, request.app.state.config, by, _intent_names(request))}

    @router.get("/api/ops/conversations")
    def conversations(_: OpsDep, request: Request, figure: str = "conversations", by: str | None = None,
                      key: str | None = None, start: DateQuery = None, to: str | None = None,
                      group: str | None = None, channel: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """The conversations behind a figure, newest first."""
        data = _dataset(request, _period(start, to, group, channel))
        try:
            chosen = kpis.drill(data, figure, by, key)
        except kpis.PeriodError as e:
            raise HTTPException(status_code=400, detail=str(e)) from e
        chosen = sorted(chosen, key=lambda c: (c.started_at, c.id), reverse=True)
        names = _intent_names(request)
        return {"total": len(chosen), "rows": [_row(c, names, data.agents) for c in chosen[offset:offset + limit]]}

    @router.get("/api/ops/export.csv")
    def export(_: OpsDep, request: Request, by: DimensionQuery, start: DateQuery = None, to: str | None = None,
               group: str | None = None, channel: str | None = None) -> Response:
        period = _period(start, to, group, channel)
        rows = kpis.breakdown(_dataset(request, period), request.app.state.config, by, _intent_names(request))
        name = f"ops-{by}-{period.first.isoformat()}-{period.last.isoformat()}.csv"
        return Response(content=_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @router.get("/api/ops/live")
    def live(_: OpsDep, request: Request) -> dict[str, Any]:
        monitor = request.app.state.ops_alerts
        return alerts.live(request.app.state.database, request.app.state.config, monitor.active)

    return router


def _row(facts: kpis.ConversationFacts, names: dict[str, str], agents: dict[int, str]) -> dict[str, Any]:
    last = facts.handovers[-1] if facts.handovers else None
    customer = mask_text(facts.customer_id) if facts.customer_id else f"访客{facts.customer_key.split(':')[-1]}"
    intents = list(dict.fromkeys(names.get(i, i) for i in facts.intents))
    first = next((h.first_response_s for h in facts.handovers if h.first_response_s is not None), None)
    return {"conversation_id": facts.id, "channel": facts.channel,
            "channel_label": kpis.CHANNEL_LABELS.get(facts.channel, facts.channel),
            "started_at": facts.started_at.isoformat(), "customer": customer, "intents": intents,
            "group": facts.group, "agent": agents.get(last.agent_id) if last and last.agent_id else None,
            "reason": reason_label(last.reason) if last else None, "outcome": kpis.outcome(facts),
            "rating": next((h.rating for h in reversed(facts.handovers) if h.rating is not None), None),
            "first_response_s": kpis.seconds(first)}


def _csv(rows: list[dict[str, Any]]) -> str:
    columns = [c for c in CSV_HEADERS if any(c in row for row in rows)] or ["key", "label"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([CSV_HEADERS[c] for c in columns])
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return "\ufeff" + out.getvalue()
