"""The conversation as the customer saw it (`ConversationService.history`, which says who wrote each reply) as a
text file the customer downloads (widget and app), masked as stored."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Response

from bot.handoff.notices import SOURCE as NOTICE_SOURCE
from bot.handoff.notices import agent_title

ZONE = ZoneInfo("Asia/Shanghai")  # the bank's customers read Beijing time
def speaker(message: dict[str, Any]) -> str:
    if message.get("role") == "user":
        return "我"
    if message.get("source") == "agent":
        return agent_title(message.get("agent"), None)
    if message.get("source") == NOTICE_SOURCE:
        return "提示"
    return "智能客服"


def render_transcript(messages: list[dict[str, Any]], now: dt.datetime) -> str:
    """One line per message: time (Beijing), who (我 / 智能客服 / 客服小王 / 提示), text; continuation lines
    indented."""
    lines = [f"聊天记录（导出于{now.astimezone(ZONE):%Y-%m-%d %H:%M}，北京时间）", ""]
    for message in messages:
        moment = _local(message.get("timestamp"))
        text = str(message.get("text") or "").strip().replace("\r\n", "\n")
        first, *rest = text.split("\n") if text else [""]
        lines.append(f"{moment} {speaker(message)}：{first}")
        lines.extend(f"    {line}" for line in rest)
    return "\n".join(lines) + "\n"


def transcript_response(service: Any, channel: str, sender: str, now: dt.datetime | None = None) -> Response:
    """The customer's transcript as a UTF-8 text download named like 聊天记录-20261130.txt."""
    now = now or dt.datetime.now(dt.UTC)
    body = render_transcript(service.history(channel, sender), now)
    filename = f"聊天记录-{now.astimezone(ZONE):%Y%m%d}.txt"
    return Response(body.encode("utf-8"), media_type="text/plain; charset=utf-8", headers={
        "Content-Disposition": f"attachment; filename=\"transcript.txt\"; filename*=UTF-8''{quote(filename)}",
        "Cache-Control": "no-store"})


def _local(timestamp: Any) -> str:
    try:
        moment = dt.datetime.fromisoformat(str(timestamp))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return f"{moment.astimezone(ZONE):%Y-%m-%d %H:%M:%S}"
