"""The WeCom customer-service (微信客服) API the bot needs: read messages (`kf/sync_msg`), answer them
(`kf/send_msg`, `kf/send_msg_on_event` for the welcome), and read or change who serves a customer
(`kf/service_state/get`, `kf/service_state/trans`).

Token caching (shared through Redis when configured), the refresh on 40001/40014/42001 and the retries on
busy/5xx are WeChat's client's (`TokenClient`); only the token request differs (`gettoken` with the corp id and
the 微信客服 secret).
"""

from __future__ import annotations

from typing import Any

from bot.channels.wechat_api import TokenClient, secret_tag, split_text

# service_state values
NEW, BOT, POOL, SERVICER, ENDED = 0, 1, 2, 3, 4
API_MAY_SEND = (NEW, BOT)


class WeComClient(TokenClient):
    token_path = "/cgi-bin/gettoken"

    def __init__(self, corp_id: str, secret: str, base_url: str = "https://qyapi.weixin.qq.com",
                 timeout: float = 5.0, attempts: int = 3, backoff: float = 0.2, redis_url: str | None = None) -> None:
        super().__init__(base_url, timeout, attempts, backoff, redis_url)
        self.corp_id, self.secret = corp_id, secret

    def _token_params(self) -> dict[str, str]:
        return {"corpid": self.corp_id, "corpsecret": self.secret}

    def token_owner(self) -> str:
        return f"wecom:{self.corp_id}:{secret_tag(self.secret)}"  # a corp has one token per application secret

    def sync_msg(self, open_kfid: str, cursor: str, token: str, limit: int = 1000) -> dict[str, Any]:
        """One page: {"next_cursor", "has_more", "msg_list": [...]}."""
        payload: dict[str, Any] = {"cursor": cursor, "limit": limit, "voice_format": 0, "open_kfid": open_kfid}
        if token:
            payload["token"] = token
        return self._call("/cgi-bin/kf/sync_msg", payload)

    def send_text(self, open_kfid: str, external_userid: str, text: str) -> int:
        """Send `text` (split into parts of at most 2000 bytes); returns how many messages were sent."""
        parts = split_text(text)
        for part in parts:
            self._call("/cgi-bin/kf/send_msg", {"touser": external_userid, "open_kfid": open_kfid,
                                                "msgtype": "text", "text": {"content": part}})
        return len(parts)

    def send_on_event(self, code: str, text: str) -> None:
        """Answer an event that came with a one-time code (the enter_session welcome_code)."""
        self._call("/cgi-bin/kf/send_msg_on_event", {"code": code, "msgtype": "text", "text": {"content": text}})

    def service_state(self, open_kfid: str, external_userid: str) -> tuple[int, str | None]:
        """(state, servicer userid or None) of the customer's session."""
        body = self._call("/cgi-bin/kf/service_state/get", {"open_kfid": open_kfid,
                                                            "external_userid": external_userid})
        return int(body.get("service_state", NEW)), body.get("servicer_userid") or None

    def transfer(self, open_kfid: str, external_userid: str, state: int, servicer_userid: str | None = None) -> None:
        payload: dict[str, Any] = {"open_kfid": open_kfid, "external_userid": external_userid, "service_state": state}
        if servicer_userid:
            payload["servicer_userid"] = servicer_userid
        self._call("/cgi-bin/kf/service_state/trans", payload)
