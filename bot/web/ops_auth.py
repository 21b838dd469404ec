"""Who may see the operations figures (/ops, /api/ops/*): a supervisor's, an admin's or a manager's session of
the desk's login. Agents and trainers get 403, callers without a session 401."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException

from bot.handoff.agents import OPS_ROLES
from bot.security.sessions import AgentSession
from bot.web.agent_api import signed_in


def ops_session(session: Annotated[AgentSession, Depends(signed_in)]) -> AgentSession:
    if session.role not in OPS_ROLES:
        raise HTTPException(status_code=403, detail="只有主管、经理和管理员可以查看运营数据。")
    return session


OpsDep = Annotated[AgentSession, Depends(ops_session)]
