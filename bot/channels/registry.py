"""What a channel is, decided once: its name, its Chinese label, whether it shows buttons, which answer variant
it gets, and how a message the bank starts (an agent's reply, a notice) reaches it. Everything that needs one of
these facts (the dialogue service, the context package, the agent desk's pages, outbound pushes) reads it here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# socket: only while the customer's widget/app has an open chat socket; api: the platform's send API (within its
# window); none: the bank cannot write first (a REST caller gets answers only in the HTTP response)
PushKind = Literal["socket", "api", "none"]


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    label: str  # shown to agents and in summaries
    plain_text: bool  # no buttons: options are numbered and answered with the number
    variant: str  # which answer variant of a response it gets (`channel:` in nlu_data responses)
    push: PushKind


CHANNELS: dict[str, ChannelInfo] = {c.name: c for c in (
    ChannelInfo("web", "网页", plain_text=False, variant="web", push="socket"),
    ChannelInfo("app", "手机银行App", plain_text=False, variant="app", push="socket"),
    ChannelInfo("wechat", "微信", plain_text=True, variant="wechat", push="api"),
    ChannelInfo("wecom", "微信客服", plain_text=True, variant="wechat", push="api"),
    ChannelInfo("rest", "接口", plain_text=False, variant="web", push="none"),
)}
UNKNOWN = ChannelInfo("other", "其他渠道", plain_text=False, variant="web", push="none")


def channel_info(name: str) -> ChannelInfo:
    """The channel's facts; a channel not listed (a custom connector) is a rich-text channel nobody can push to."""
    return CHANNELS.get(name) or ChannelInfo(name, UNKNOWN.label, UNKNOWN.plain_text, UNKNOWN.variant, UNKNOWN.push)


def channel_label(name: str) -> str:
    return channel_info(name).label


def channels_json() -> list[dict[str, Any]]:
    """For the consoles (served to agent.js): every known channel's facts."""
    return [asdict(c) for c in CHANNELS.values()]
