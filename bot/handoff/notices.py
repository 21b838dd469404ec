"""What the customer is told when a person takes, passes on or hands back their conversation: the words, and
the frame the widget's and the app's sockets get. `bot.channels.handoff_notices` stores and delivers them.

On every hand-over change a customer should know about, one `bot` event is stored (data.source `handoff_notice`,
with the status and the agent's name, so history after a reload and the agents' transcript show it) and pushed to
the customer's channel: WeChat and WeCom get the text, the widget's and the app's sockets a `handoff` frame (see
`bot.channels.chat_socket`):

    {"type": "handoff", "status": "agent_joined" | "agent_left" | "transferred" | "requeued",
     "agent": "小王" | None, "employee_no": "1024" | None, "text": "客服小王（工号1024）为您服务", "timestamp"}

Nothing is said when the customer cancelled (the bot's own reply says so), left the queue, or was served
outside this desk. A customer whose own message was given to an agent at once hears it as a reply of that turn
(`bot.handoff.handover`), after the bot's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.handoff.desk import QueueTicket
from bot.storage.models import AgentAccount

SOURCE = "handoff_notice"
AGENT_JOINED, AGENT_LEFT, TRANSFERRED, REQUEUED = "agent_joined", "agent_left", "transferred", "requeued"


@dataclass(frozen=True)
class Notice:
    status: str  # AGENT_JOINED | AGENT_LEFT | TRANSFERRED | REQUEUED
    text: str
    agent: str | None = None
    employee_no: str | None = None

    def frame(self, timestamp: str) -> dict[str, Any]:
        return {"type": "handoff", "status": self.status, "agent": self.agent, "employee_no": self.employee_no,
                "text": self.text, "timestamp": timestamp}

    def event_data(self) -> dict[str, Any]:
        return {"text": self.text, "data": {"buttons": None, "source": SOURCE, "status": self.status,
                                            "agent": self.agent, "employee_no": self.employee_no}}


def agent_title(name: str | None, employee_no: str | None) -> str:
    """How customers are told who serves them: 客服小王（工号1024）, or 客服小王 without an employee number."""
    title = f"客服{name or ''}"
    return f"{title}（工号{employee_no}）" if employee_no else title


def notice_for(payload: dict[str, Any], agent: AgentAccount | None) -> Notice | None:
    """The notice for one `handoff` event's data (`agent`: the account it names by `agent_id`), or None."""
    status = payload.get("status")
    name = payload.get("agent") or (agent.display_name if agent else None)
    number = payload.get("employee_no") or (agent.employee_no if agent else None)
    if status == "assigned":
        if payload.get("from_agent_id") is not None:  # a supervisor gave the chat to someone else
            return Notice(AGENT_JOINED, f"已为您转由{agent_title(name, number)}继续服务", name, number)
        return Notice(AGENT_JOINED, f"{agent_title(name, number)}为您服务", name, number)
    if status == "transferred":
        return Notice(TRANSFERRED, f"正在为您转接{payload.get('group') or '其他'}客服，请稍候")
    if status == "waiting" and payload.get("from_agent_id") is not None:  # the agent's connection dropped
        return Notice(REQUEUED, "客服连接中断，正在为您重新接入人工客服，请稍候")
    if status == "closed" and payload.get("agent_id") is not None:
        return Notice(AGENT_LEFT, f"{agent_title(name, None)}已结束本次服务，智能客服继续为您服务", name)
    return None  # cancelled, abandoned, closed elsewhere, a new request: said otherwise or not at all


def queue_frame(ticket: QueueTicket) -> dict[str, Any]:
    """The status-line frame of a waiting customer's place: live as the queue moves, and on a reconnect."""
    ahead = f"前面还有{ticket.position - 1}位" if ticket.position > 1 else "您是下一位"
    return {"type": "queue", "position": ticket.position, "text": f"排队中：{ahead}，预计约{ticket.eta_minutes}分钟"}
