"""To whom: the skill group for a conversation, its priority, and whether the group is at work now."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from bot.config import HandoffConfig, SkillGroupConfig

# Intents that say how the customer talks, not what their matter is: they never decide the topic or the group
NOT_TOPICS = frozenset({"request_human", "nlu_fallback", "greet", "thanks", "goodbye", "affirm", "deny", "chitchat",
                        "bot_identity", "out_of_scope"})


# Intents that say how the customer feels about their matter more than what it is ("你们这服务太差劲了"): the topic
# only when the customer named no other matter, so that anger about a lost card still goes to the card team
MOOD_TOPICS = frozenset({"complaint"})


def main_topic(intents: list[str | None]) -> str | None:
    """The conversation's main topic: the latest intent that names a matter (not a greeting, a yes/no, a request
    for a person or a message not understood; a complaint only when nothing else was asked), or None."""
    matters = [i for i in intents if i and i not in NOT_TOPICS]
    return next((i for i in reversed(matters) if i not in MOOD_TOPICS), None) or next(reversed(matters), None)


def conversation_group(config: HandoffConfig, topics: list[str | None],
                       categories: list[str] | None = None) -> SkillGroupConfig:
    """The group for a whole conversation, whatever triggered the hand-over: `topics` are the intents of the
    customer's own questions in order (form answers left out), up to and including the hand-over turn. The main
    topic decides; knowledge categories only count when the customer named no matter at all, and the default
    group takes a topic no group names (the words of the hand-over request, "转人工", say nothing about it)."""
    topic = main_topic(topics)
    if topic is not None:
        return next((g for g in config.groups if topic in g.intents), None) or group_named(config, config.default_group)
    return skill_group(config, [], categories or [])


def skill_group(config: HandoffConfig, intents: list[str], categories: list[str]) -> SkillGroupConfig:
    """The group for the newest intent (or knowledge category) some group names, else the default group."""
    for intent in reversed(intents):
        if group := next((g for g in config.groups if intent in g.intents), None):
            return group
    for category in reversed(categories):
        if group := next((g for g in config.groups if category in g.categories), None):
            return group
    return group_named(config, config.default_group)


def group_named(config: HandoffConfig, name: str) -> SkillGroupConfig:
    found = next((g for g in config.groups if g.name == name), None)
    if found is None:
        raise KeyError(f"handoff: no group named {name!r}; groups are {[g.name for g in config.groups]}")
    return found


def priority(config: HandoffConfig, kind: str, tier: str | None) -> int:
    """Lower is served first; VIP tiers go one step ahead of others with the same reason."""
    base = config.priorities.get(kind, max(config.priorities.values(), default=5))
    return max(0, base - 1) if tier in config.vip_tiers else base


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def is_open(group: SkillGroupConfig, now: dt.datetime) -> bool:
    local = now.astimezone(ZoneInfo(group.timezone))
    start, end = (_minutes(c) for c in group.hours.split("-"))
    minute = local.hour * 60 + local.minute
    return local.weekday() in group.days and start <= minute < end


def next_opening(group: SkillGroupConfig, now: dt.datetime) -> dt.datetime:
    """When the group is next at work (now, if it is), in the group's time zone."""
    local = now.astimezone(ZoneInfo(group.timezone)).replace(second=0, microsecond=0)
    if is_open(group, local):
        return local
    start = _minutes(group.hours.split("-")[0])
    for days_ahead in range(8):
        day = (local + dt.timedelta(days=days_ahead)).replace(hour=start // 60, minute=start % 60)
        if day > local and day.weekday() in group.days:
            return day
    raise ValueError(f"group {group.name} has no working day")
