"""Why a conversation went to a person, named once: each escalation kind's Chinese label (for agents, reports and
the consoles) and its default queue priority (lower is served first; `handoff.priorities` in config.yml may
override it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Reason:
    kind: str
    label: str
    priority: int


SENSITIVE = "sensitive"  # fraud, a stolen card, a disputed transaction: the customer first gets the urgent step
ANGER = "anger"
VIP = "vip"
FORM_FAILED = "form_failed"
REQUEST = "request"
FALLBACK = "fallback"

REASONS: dict[str, Reason] = {r.kind: r for r in (
    Reason(SENSITIVE, "敏感业务", 1),
    Reason(ANGER, "情绪/投诉", 2),
    Reason(VIP, "VIP客户", 2),
    Reason(FORM_FAILED, "验证失败", 3),
    Reason(REQUEST, "客户要求", 3),
    Reason(FALLBACK, "未能理解", 4),
)}


def reason_label(kind: str) -> str:
    reason = REASONS.get(kind)
    return reason.label if reason else kind


def default_priorities() -> dict[str, int]:
    return {kind: reason.priority for kind, reason in REASONS.items()}


def reasons_json() -> list[dict[str, Any]]:
    return [asdict(r) for r in REASONS.values()]
