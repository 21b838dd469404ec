"""Service-level alerts, computed from the desk's state every `ops.alerts.check_seconds` while the app serves:

- `oldest_wait`: the customer waiting longest in a skill group has waited `ops.alerts.oldest_wait_seconds` or more;
- `service_level`: the service level of a group's hand-overs requested in the last
  `ops.alerts.service_level_window_minutes` (bot/ops/kpis.py `service_level`) is below `ops.service_level.percent`.

An alert is pushed once, when it starts, to the consoles of the supervisors and admins online
(`{"type": "ops_alert", "alert": {...}}`), and POSTed as JSON to `ops.alerts.webhook_url` when one is set (a short
timeout; a failure is logged and never stops anything). While it lasts it is listed by /api/ops/live; once it is
over it may start again. Each worker runs its own check (with several workers, a console may hear an alert once
per worker).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from sqlalchemy import func, select

from bot.config import BotConfig
from bot.handoff.agents import DESK_ROLES, SUPERVISING_ROLES
from bot.ops import kpis
from bot.storage.database import Database
from bot.storage.models import AgentAccount, Handoff, aware_utc, utcnow

logger = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Alert:
    kind: str  # oldest_wait | service_level
    group: str
    value: float  # seconds waited, or the service level (0..1)
    threshold: float  # seconds, or the target (0..1)
    message: str  # Chinese, for the supervisor
    since: str  # ISO time the alert started

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeskState:
    """The desk right now: who waits in which group since when, who is online and busy."""

    oldest_waiting: dict[str, dt.datetime]  # group -> the request time of its longest-waiting customer
    waiting: int
    agents_online: int
    agents_busy: int


def desk_state(database: Database) -> DeskState:
    with database.session() as session:
        oldest = session.execute(select(Handoff.group, func.min(Handoff.created_at), func.count())
                                 .where(Handoff.status == "waiting").group_by(Handoff.group)).all()
        online = session.scalar(select(func.count()).select_from(AgentAccount).where(
            AgentAccount.presence == "online", AgentAccount.role.in_(DESK_ROLES))) or 0
        busy = session.scalar(select(func.count(func.distinct(Handoff.agent_id))).where(
            Handoff.status == "assigned")) or 0
    return DeskState({group: aware_utc(first) for group, first, _ in oldest}, sum(int(n) for _, _, n in oldest),
                     int(online), int(busy))


def live(database: Database, config: BotConfig, alerts: list[Alert], now: dt.datetime | None = None
         ) -> dict[str, Any]:
    """The live strip of /ops: waiting now, the longest wait, agents online and busy, today's service level."""
    now = now or utcnow()
    state = desk_state(database)
    longest = max(((now - first).total_seconds() for first in state.oldest_waiting.values()), default=None)
    today = kpis.Period.parse(None, None, today=now.astimezone(kpis.BEIJING).date())
    handovers = kpis.handovers_between(database, today.start, now + dt.timedelta(seconds=1))
    return {"waiting": state.waiting, "longest_wait_s": kpis.seconds(longest), "agents_online": state.agents_online,
            "agents_busy": state.agents_busy,
            "service_level_today": kpis.service_level(handovers, config.ops.service_level.seconds, now),
            "alerts": [a.to_json() for a in alerts]}


class AlertMonitor:
    def __init__(self, database: Database, config: BotConfig, hub: Any = None,
                 clock: Callable[[], dt.datetime] = utcnow, lease: Callable[[], bool] | None = None) -> None:
        self.database = database
        self.config = config
        self.hub = hub  # bot.live.LiveBus
        self.clock = clock
        # several workers: each one checks (for its /api/ops/live), only the one holding the lease announces, so a
        # console hears an alert once; None: this process alone
        self.lease = lease
        self._active: dict[tuple[str, str], Alert] = {}

    @property
    def active(self) -> list[Alert]:
        return sorted(self._active.values(), key=lambda a: (a.kind, a.group))

    def check(self) -> list[Alert]:
        """Look at the desk now: the alerts that just started (the ones that ended are dropped)."""
        now = self.clock()
        found = self._oldest_waits(now) + self._service_levels(now)
        current = {(a.kind, a.group): a for a in found}
        started = [a for key, a in current.items() if key not in self._active]
        self._active = {key: self._active.get(key, a) for key, a in current.items()}  # keep when it started
        return started

    def _oldest_waits(self, now: dt.datetime) -> list[Alert]:
        threshold = self.config.ops.alerts.oldest_wait_seconds
        alerts = []
        for group, first in sorted(desk_state(self.database).oldest_waiting.items()):
            waited = (now - first).total_seconds()
            if waited >= threshold:
                alerts.append(Alert("oldest_wait", group, round(waited, 1), threshold,
                                    f"{group}有客户已等待{int(waited)}秒，超过{threshold}秒，请尽快安排坐席接待。",
                                    now.isoformat()))
        return alerts

    def _service_levels(self, now: dt.datetime) -> list[Alert]:
        ops = self.config.ops
        minutes = ops.alerts.service_level_window_minutes
        target = round(ops.service_level.percent / 100, 4)
        handovers = kpis.handovers_between(self.database, now - dt.timedelta(minutes=minutes),
                                           now + dt.timedelta(seconds=1))
        by_group: dict[str, list[kpis.HandoverFacts]] = {}
        for handover in handovers:
            by_group.setdefault(handover.group, []).append(handover)
        alerts = []
        for group, mine in sorted(by_group.items()):
            level = kpis.service_level(mine, ops.service_level.seconds, now)
            if level is not None and level < target:
                alerts.append(Alert("service_level", group, level, target,
                                    f"{group}近{minutes}分钟服务水平为{level:.0%}，低于目标{ops.service_level.percent:g}%"
                                    f"（{ops.service_level.seconds}秒内接起）。", now.isoformat()))
        return alerts

    def supervisors(self) -> list[int]:
        """Every supervisor and admin, whatever their presence: a supervisor watching the desk while 离线 or 小休
        must hear it too; the bus reaches only those with a console open."""
        with self.database.session() as session:
            return list(session.scalars(select(AgentAccount.id).where(AgentAccount.role.in_(SUPERVISING_ROLES))))

    async def announce(self, alerts: list[Alert]) -> None:
        """Each new alert to the supervisors' consoles and the webhook; failures are logged, never raised."""
        if not alerts:
            return
        try:
            supervisors = await asyncio.to_thread(self.supervisors)
            if self.hub is not None and supervisors:
                for alert in alerts:
                    self.hub.to_agents({"type": "ops_alert", "alert": alert.to_json()}, supervisors)
        except Exception:
            logger.exception("could not push service-level alerts to the consoles")
        url = self.config.ops.alerts.webhook_url
        if url:
            await _post(url, alerts)

    async def run(self) -> None:
        """Check every `ops.alerts.check_seconds` until cancelled."""
        while True:
            try:
                started = await asyncio.to_thread(self.check)
                if self.lease is None or await asyncio.to_thread(self.lease):
                    await self.announce(started)
            except Exception:  # the database may be away for a moment: look again next time
                logger.exception("service-level alert check failed")
            await asyncio.sleep(self.config.ops.alerts.check_seconds)


async def _post(url: str, alerts: list[Alert]) -> None:
    try:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
            for alert in alerts:
                response = await client.post(url, json={"type": "ops_alert", "alert": alert.to_json()})
                if response.status_code >= 400:
                    logger.warning("alert webhook answered %s", response.status_code)
    except httpx.HTTPError as e:
        logger.warning("alert webhook failed: %s", type(e).__name__)
