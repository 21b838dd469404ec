"""When the bot hands over: each rule of `handoff` in config.yml, checked after the bot's turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.config import HandoffConfig
from bot.handoff.context import topic_title

REQUEST_INTENT = "request_human"


@dataclass(frozen=True)
class Escalation:
    kind: str  # request | sensitive | anger | form_failed | fallback | vip
    detail: str  # for the agent: what exactly triggered it


def detect_escalation(config: HandoffConfig, text: str, parse: dict[str, Any], slots: dict[str, Any],
                      fallbacks: int, tier: str | None = None, previous_text: str | None = None) -> Escalation | None:
    """The reason to hand this conversation to a person now, or None. Checked in order of urgency."""
    intent = parse.get("intent", {}).get("name", "")
    lowered = text.lower()
    if intent in config.sensitive_intents:
        return Escalation("sensitive", f"敏感业务（{topic_title(intent)}）")
    if word := next((w for w in config.sensitive_words if w in text), None):
        return Escalation("sensitive", f"疑似盗刷或诈骗（“{word}”）")
    if angry := next((w for w in config.anger_words if w.lower() in lowered), None):
        return Escalation("anger", f"客户情绪激动或投诉（“{angry}”）")
    asks = intent == REQUEST_INTENT or any(w.lower() in lowered for w in config.request_words)
    if asks and not cancels_handoff(text):  # "取消转人工" names a person but does not ask for one
        return Escalation("request", "客户要求转人工")
    if slots.get("handoff_requested"):
        return Escalation("request", f"按业务规则转人工（{slots['handoff_requested']}）")
    if text.strip() == "0" and (previous_text or "").strip() == "0":  # "press 0 for a person", twice
        return Escalation("request", "客户连续按0要求转人工")
    if failed := next((s for s in config.failure_slots if slots.get(s)), None):
        return Escalation("form_failed", f"业务办理多次验证失败（{failed}）")
    vip = tier is not None and tier in config.vip_tiers
    if vip and fallbacks >= config.vip_max_fallbacks:
        return Escalation("vip", f"{tier}客户，智能客服未能理解")
    if fallbacks >= config.max_fallbacks:
        return Escalation("fallback", f"连续{fallbacks}次未能理解客户的问题")
    return None


# A waiting customer who gives up on the person: phrases found anywhere in a short message, and words that
# cancel only when they are the whole message ("取消" alone, not "取消信用卡自动还款").
CANCEL_PHRASES = ("不等了", "取消转人工", "取消人工", "不用人工", "不需要人工", "不要人工", "不转人工", "不排队了",
                  "不用转人工", "不需要转人工")
CANCEL_WHOLE = ("取消", "算了", "不用了", "cancel", "never mind", "nevermind", "stop waiting", "cancel handoff")
CANCEL_MAX_CHARS = 12


def cancels_handoff(text: str) -> bool:
    """Whether a message from a customer waiting in the queue takes back the request for a person."""
    cleaned = text.strip().lower().strip("。.!！~～,，?？ ")
    if not cleaned or len(cleaned) > CANCEL_MAX_CHARS:
        return False
    return cleaned in CANCEL_WHOLE or any(phrase in cleaned for phrase in CANCEL_PHRASES)
