"""When the bot hands over: each rule of `handoff` in config.yml, checked after the bot's turn on the facts of
that turn (`TurnFacts`). A new trigger reads what it needs from the facts (add a field there) and returns one of
the kinds named in bot/handoff/reasons.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.config import HandoffConfig
from bot.handoff.reasons import ANGER, FALLBACK, FORM_FAILED, REQUEST, SENSITIVE, VIP
from bot.training_data import DisplayNames

REQUEST_INTENT = "request_human"


@dataclass(frozen=True)
class TurnFacts:
    """What the bot knows after one turn of the customer's: enough for every trigger to decide."""

    text: str  # the customer's message (a chosen option's payload when they answered by number)
    parse: dict[str, Any] = field(default_factory=dict)  # the parse the turn acted on
    slots: dict[str, Any] = field(default_factory=dict)  # after the turn
    fallbacks: int = 0  # consecutive turns not understood, this one included
    tier: str | None = None  # the linked customer's tier (白金卡, 私人银行 …)
    previous_text: str | None = None  # the customer's message before this one
    active_loop: str | None = None  # the form in progress after the turn
    names: DisplayNames = field(default_factory=DisplayNames)  # the model's display names, for the detail

    @property
    def intent(self) -> str:
        return str((self.parse.get("intent") or {}).get("name") or "")

    def title(self, name: str, kind: str = "intents") -> str:
        """How agents read an intent or a slot: its display name, else the name itself."""
        return getattr(self.names, kind).get(name) or name


@dataclass(frozen=True)
class Escalation:
    kind: str  # one of bot.handoff.reasons.REASONS
    detail: str  # for the agent: what exactly triggered it
    intent: str | None = None  # the sensitive intent that triggered it (None: a word, or another kind)


def detect_escalation(config: HandoffConfig, facts: TurnFacts) -> Escalation | None:
    """The reason to hand this conversation to a person now, or None. Checked in order of urgency."""
    text, slots, lowered = facts.text, facts.slots, facts.text.lower()
    if facts.intent in config.sensitive_intents:
        shown = facts.names.intents.get(facts.intent) or "其他业务"  # never the intent's name
        return Escalation(SENSITIVE, f"敏感业务（{shown}）", facts.intent)
    if word := next((w for w in config.sensitive_words if w in text), None):
        return Escalation(SENSITIVE, f"疑似盗刷或诈骗（“{word}”）")
    if angry := next((w for w in config.anger_words if w.lower() in lowered), None):
        return Escalation(ANGER, f"客户情绪激动或投诉（“{angry}”）")
    asks = facts.intent == REQUEST_INTENT or any(w.lower() in lowered for w in config.request_words)
    if asks and not cancels_handoff(text):  # "取消转人工" names a person but does not ask for one
        return Escalation(REQUEST, "客户要求转人工")
    if requested := slots.get("handoff_requested"):  # a rule ended with action_handoff for this intent
        return Escalation(REQUEST, f"按业务规则转人工（{facts.title(str(requested))}）")
    if text.strip() == "0" and (facts.previous_text or "").strip() == "0":  # "press 0 for a person", twice
        return Escalation(REQUEST, "客户连续按0要求转人工")
    if failed := next((s for s in config.failure_slots if slots.get(s)), None):
        return Escalation(FORM_FAILED, f"业务办理多次验证失败（{facts.title(failed, 'slots')}）")
    vip = facts.tier is not None and facts.tier in config.vip_tiers
    if vip and facts.fallbacks >= config.vip_max_fallbacks:
        return Escalation(VIP, f"{facts.tier}客户，智能客服未能理解")
    if facts.fallbacks >= config.max_fallbacks:
        return Escalation(FALLBACK, f"连续{facts.fallbacks}次未能理解客户的问题")
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
