"""The agent desk reads a customer's image or file: GET /api/agent/attachments/{id}.

Only agents who may see the conversation get it (agents of a group it was handed over to, agents who served it,
supervisors); anyone else gets the same 404 as for an id that does not exist. It is served with the type its
content was checked to be (never HTML: a picture cannot become a page on our origin), `nosniff`, and a
`Content-Disposition` naming the file (inline for pictures, a download for files).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from bot.handoff.agents import SUPERVISING_ROLES
from bot.storage.attachments import load, may_see
from bot.web.agent_api import SessionDep

SAFE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"})


def attachments_router() -> APIRouter:
    router = APIRouter(tags=["agent desk"])

    @router.get("/api/agent/attachments/{attachment_id}", response_class=Response,
                responses={200: {"content": {t: {} for t in sorted(SAFE_TYPES)}}, 404: {}})
    async def attachment(attachment_id: Annotated[str, PathParam(min_length=1, max_length=32,
                                                                 pattern=r"^[0-9a-f]+$")],
                         session: SessionDep, request: Request) -> Response:
        """A customer's picture or file, for an agent who may see its conversation."""
        database = request.app.state.database
        found = await run_in_threadpool(load, database, attachment_id)
        if found is None or not await run_in_threadpool(may_see, database, session, found, SUPERVISING_ROLES):
            raise HTTPException(status_code=404, detail="没有这个附件，或它不在您的接待范围内。")
        mime = found.mime if found.mime in SAFE_TYPES else "application/octet-stream"
        disposition = "inline" if found.kind == "image" else "attachment"
        name = found.filename or f"附件-{found.id[:8]}"
        headers = {"Content-Disposition": f"{disposition}; filename=\"{_ascii_name(name, found.id)}\"; "
                                          f"filename*=UTF-8''{quote(name)}",
                   "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store",
                   "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox"}
        return Response(found.data, media_type=mime, headers=headers)

    return router


def _ascii_name(name: str, attachment_id: str) -> str:
    """For browsers that ignore `filename*`: the name's ASCII part, or attachment-<id> with its extension."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    keep = "".join(c for c in stem if c.isascii() and (c.isalnum() or c in "-_ ")).strip()
    return (keep or f"attachment-{attachment_id[:8]}") + (f".{extension}" if extension.isascii() and extension else "")
