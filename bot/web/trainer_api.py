"""The trainer's review inbox over HTTP: the JSON the /trainer page is built on. Every route needs a trainer's or
an admin's session (`Authorization: Bearer <token>` from `POST /api/agent/login`); customer text is masked.

`GET /api/trainer/inbox`: the ranked groups of messages that need a trainer (`bot.trainer.inbox`). Query
parameters, all optional: `since`, `until` (YYYY-MM-DD, UTC days, `until` included; default the 30 days up to
today), `channel` (web | app | wechat | wecom | rest), `intent` (the parsed intent), `band` (low | medium | high),
`outcome` (answer | clarify | out_of_scope | handoff | fallback), `reason` (clarify_rejected | agent_corrected |
low_rating | handoff_avoidable | fallback | low_confidence | clarified), `status` (open, the default: not
reviewed | dismissed | fixed | out_of_scope | all), `page` (from 1), `page_size` (1-100, default 20). Answers
`InboxPage`: `{"since", "until", "total_groups", "total_messages", "page", "page_size", "groups": [{"group_id",
"score", "count", "keys", "messages": [{"key", "text", "count", "status"}], "samples", "channels": {channel: n},
"first_at", "last_at", "reasons": {reason: n}, "outcomes": {outcome: n}, "bands": {band: n}, "intents": [{"name",
"count"}], "knowledge": [{"id", "question", "count"}], "conversations": [id]}]}`.

`POST /api/trainer/inbox/dismiss` with `{"keys": [message_key, ...]}` (1-500 keys from the groups): marks them
dismissed so they leave the open inbox (audited as `review.dismiss`); answers `{"dismissed": [keys newly
dismissed], "unchanged": [keys that had a mark already]}`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from bot.trainer.inbox import InboxContext, InboxFilters, InboxPage, build_inbox, dismiss
from bot.web.agent_api import static_files
from bot.web.trainer_auth import TrainerDep

MESSAGE_KEY = r"^[0-9a-f]{64}$"
# the workbench's page; the helpers its script uses, /console.js, are served with the desk's (bot/web/agent_api.py)
PAGE_FILES = {"/trainer": "trainer.html", "/trainer.js": "trainer.js", "/trainer.css": "trainer.css"}


class DismissRequest(BaseModel):
    keys: list[Annotated[str, Field(pattern=MESSAGE_KEY)]] = Field(min_length=1, max_length=500)


class DismissResult(BaseModel):
    dismissed: list[str]
    unchanged: list[str]


def trainer_router() -> APIRouter:
    router = APIRouter(prefix="/api/trainer", tags=["trainer"])

    @router.get("/inbox", response_model=InboxPage)
    def inbox(request: Request, session: TrainerDep, filters: Annotated[InboxFilters, Query()]) -> InboxPage:
        """The review inbox: groups of near-identical customer messages that need a trainer, most important
        first (see the module docstring for the parameters and the shape)."""
        state = request.app.state
        return build_inbox(state.database, InboxContext.from_assistant(state.assistant), filters)

    @router.post("/inbox/dismiss", response_model=DismissResult)
    def dismiss_messages(body: DismissRequest, request: Request, session: TrainerDep) -> DismissResult:
        """Dismiss messages by key: nothing to fix, hide them from the open inbox."""
        done = dismiss(request.app.state.conversations.store, body.keys, f"agent:{session.agent_id}")
        return DismissResult(dismissed=done, unchanged=[k for k in dict.fromkeys(body.keys) if k not in done])

    app_router = static_files(PAGE_FILES)  # the workbench page: its paths have no /api/trainer prefix
    app_router.include_router(router)
    return app_router
