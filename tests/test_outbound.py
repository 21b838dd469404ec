"""Issue 13: what a channel is, decided once (bot/channels/registry.py), and a push to a customer says whether it
arrived and, if not, why: an open socket for the widget and the app, the platform's API for WeChat and WeCom, and
nothing for a REST caller or a channel nobody registered - an error the agent sees, never a silent loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.channels import outbound, wechat, wecom
from bot.channels.delivery import Delivery
from bot.channels.registry import CHANNELS, channel_info, channel_label
from bot.dialogue import service

FRAME = {"type": "bot", "text": "您好，我是人工客服小王。", "buttons": None}


class Hub:
    def __init__(self, open_sockets: int) -> None:
        self.open_sockets = open_sockets
        self.sent: list[tuple[str, str, dict]] = []

    def to_customer(self, channel: str, sender: str, frame: dict) -> int:
        self.sent.append((channel, sender, frame))
        return self.open_sockets


def app(open_sockets: int = 0) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(hub=Hub(open_sockets)))


@pytest.mark.parametrize("channel", ["web", "app"])
def test_socket_channels_are_delivered_only_to_an_open_chat(channel: str) -> None:
    delivered = outbound.push_to_customer(app(open_sockets=1), channel, "v1", FRAME)
    assert delivered == Delivery(True) and delivered
    gone = outbound.push_to_customer(app(open_sockets=0), channel, "v1", FRAME)
    assert not gone and "离开聊天窗口" in gone.reason


@pytest.mark.parametrize("channel", ["rest", "line-connector"])
def test_a_channel_nobody_can_push_to_is_an_error_with_its_reason(channel: str) -> None:
    pushed = app(open_sockets=1)
    result = outbound.push_to_customer(pushed, channel, "c1", FRAME)
    assert not result and result.reason == outbound.CANNOT_PUSH
    assert pushed.state.hub.sent == []  # not even tried


@pytest.mark.parametrize(("channel", "module", "name"), [("wechat", wechat, "send_by_api"),
                                                         ("wecom", wecom, "send_text")])
def test_api_channels_return_what_their_sender_says(monkeypatch, channel: str, module, name: str) -> None:
    sent: list[str] = []
    monkeypatch.setattr(module, name, lambda _app, _sender, text: sent.append(text) or True)
    assert outbound.push_to_customer(app(), channel, "o1", FRAME) == Delivery(True) and sent == [FRAME["text"]]
    monkeypatch.setattr(module, name, lambda *_: False)  # a sender that still answers with a bool
    refused = outbound.push_to_customer(app(), channel, "o1", FRAME)
    assert not refused and channel_label(channel) in refused.reason and "48小时" in refused.reason
    why = Delivery(False, "超过48小时，微信不允许主动发送")
    monkeypatch.setattr(module, name, lambda *_: why)  # a sender that already explains itself
    assert outbound.push_to_customer(app(), channel, "o1", FRAME) is why


def test_every_reader_takes_the_channels_facts_from_the_registry() -> None:
    assert outbound.API_CHANNELS == {name for name, c in CHANNELS.items() if c.push == "api"} == {"wechat", "wecom"}
    for name, info in CHANNELS.items():
        assert service._reply_channel(name) == info.variant
    assert service._reply_channel("line-connector") == "web" and channel_info("line-connector").push == "none"
    assert channel_label("wecom") == "微信客服" and channel_label("line-connector") == "其他渠道"
    assert not hasattr(service, "PLAIN_TEXT_CHANNELS")
