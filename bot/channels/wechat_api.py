"""The WeChat API client the bot needs: the access token and the customer-service message API
(`message/custom/send`), used for answers that miss WeChat's 5-second deadline and for agents' replies.

The token is cached until shortly before it expires; a lock makes concurrent callers share one refresh. A token
WeChat says is invalid or expired (40001, 40014, 42001) is refreshed and the call retried once; "system busy"
(-1), HTTP 5xx and network errors are retried with back-off. 45015 means the customer has not written for 48
hours: WeChat no longer lets the account write to them. `TokenClient` is the part WeCom's client
(bot/channels/wecom_api.py) shares.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

TOKEN_ERRORS = {40001, 40014, 42001}
BUSY = -1
OUTSIDE_WINDOW = 45015
MAX_TEXT_BYTES = 2000  # WeChat's limit is 2048 bytes of text per customer-service message


class WeChatAPIError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat API error {errcode}: {errmsg}")
        self.errcode = errcode


class OutsideWindow(WeChatAPIError):
    """The customer last wrote more than 48 hours ago."""


class TokenClient:
    """What WeChat's and WeCom's APIs share: an access token cached and refreshed under a lock, JSON calls
    retried once with a fresh token on a token error and with back-off when busy. Subclasses say how to fetch
    the token (`token_path`, `_token_params`)."""

    token_path = ""
    window_errors: frozenset[int] = frozenset()  # errcodes meaning "the customer is out of reach for now"

    def __init__(self, base_url: str, timeout: float = 5.0, attempts: int = 3, backoff: float = 0.2) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self.attempts, self.backoff = attempts, backoff
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def _token_params(self) -> dict[str, str]:
        raise NotImplementedError

    def access_token(self, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or time.monotonic() >= self._expires_at:
                body = self._request("GET", self.token_path, params=self._token_params())
                if "access_token" not in body:
                    raise WeChatAPIError(int(body.get("errcode", -1)), str(body.get("errmsg", "")))
                self._token = str(body["access_token"])
                self._expires_at = time.monotonic() + max(60, int(body.get("expires_in", 7200)) - 300)
            return self._token

    def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        for refreshed in (False, True):
            token = self.access_token(force=refreshed)
            body = self._request("POST", path, params={"access_token": token}, json=payload)
            code = int(body.get("errcode", 0))
            if code == 0:
                return body
            if code in TOKEN_ERRORS and not refreshed:
                continue
            if code in self.window_errors:
                raise OutsideWindow(code, str(body.get("errmsg", "")))
            raise WeChatAPIError(code, str(body.get("errmsg", "")))
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code < 500:
                    body = response.json()
                    if int(body.get("errcode", 0)) != BUSY:
                        return body
                last = WeChatAPIError(int(response.status_code), response.text[:200])
            except httpx.TransportError as e:
                last = e
            time.sleep(self.backoff * 2**attempt)
        raise WeChatAPIError(-1, f"{path} failed after {self.attempts} attempts: {last}")


class WeChatClient(TokenClient):
    token_path = "/cgi-bin/token"
    window_errors = frozenset({OUTSIDE_WINDOW})

    def __init__(self, app_id: str, app_secret: str, base_url: str = "https://api.weixin.qq.com",
                 timeout: float = 5.0, attempts: int = 3, backoff: float = 0.2) -> None:
        super().__init__(base_url, timeout, attempts, backoff)
        self.app_id, self.app_secret = app_id, app_secret

    def _token_params(self) -> dict[str, str]:
        return {"grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret}

    def send_text(self, openid: str, text: str) -> int:
        """Send `text` (split into WeChat-sized parts) to the customer; returns how many messages were sent."""
        parts = split_text(text)
        for part in parts:
            self._call("/cgi-bin/message/custom/send",
                       {"touser": openid, "msgtype": "text", "text": {"content": part}})
        return len(parts)


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Parts of at most `limit` UTF-8 bytes, broken at line ends where possible."""
    parts, current = [], ""
    for line in text.splitlines(keepends=True):
        while len(line.encode()) > limit:  # a single over-long line: cut by characters
            cut = len(line)
            while len(line[:cut].encode()) > limit:
                cut -= 1
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:cut])
            line = line[cut:]
        if len((current + line).encode()) > limit:
            parts.append(current)
            current = ""
        current += line
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]
