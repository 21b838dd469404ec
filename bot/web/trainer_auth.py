"""Who may use the trainer's workbench: a trainer's or an admin's session (the desk's login), and for Rasa's
model API (`POST /model/train`, `PUT /model`) also `security.api_token`, as tooling that speaks Rasa's API uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from bot.handoff.agents import TRAINING_ROLES
from bot.security.credentials import bearer_token, is_api_token
from bot.security.sessions import AgentSession
from bot.web.agent_api import signed_in


def trainer_session(session: Annotated[AgentSession, Depends(signed_in)]) -> AgentSession:
    if session.role not in TRAINING_ROLES:
        raise HTTPException(status_code=403, detail="只有训练师或管理员可以使用训练工作台。")
    return session


def trainer_or_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's name for the audit log: `api-token`, or `agent:<username>` of a trainer's session."""
    if is_api_token(bearer_token(authorization), request.app.state.config.security.api_token):
        return "api-token"
    session = trainer_session(signed_in(request, authorization))
    return f"agent:{session.agent_id}"


TrainerDep = Annotated[AgentSession, Depends(trainer_session)]
TrainerOrTokenDep = Annotated[str, Depends(trainer_or_token)]
