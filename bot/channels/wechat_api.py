"""The WeChat API client the bot needs: the access token and the customer-service message API
(`message/custom/send`), used for answers that miss WeChat's 5-second deadline and for agents' replies.

The token is cached until shortly before it expires; a lock makes concurrent callers share one refresh. A token
WeChat says is invalid or expired (40001, 40014, 42001) is refreshed and the call retried once; "system busy"
(-1), HTTP 5xx and network errors are retried with back-off. 45015 means the customer has not written for 48
hours: WeChat no longer lets the account write to them. `TokenClient` is the part WeCom's client
(bot/channels/wecom_api.py) shares, including `media` (customers' pictures and files from `media/get`, read no
further than the attachments' size limit).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

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


def refusal_reason(error: WeChatAPIError, platform: str = "微信") -> str:
    """Why a message did not reach the customer, for the agent who wrote it (Chinese)."""
    if error.errcode == OUTSIDE_WINDOW:
        return "客户超过48小时未互动，微信不允许主动发送"
    if error.errcode == BUSY:  # what _request raises after its retries: no answer, or only busy/5xx ones
        return f"{platform}服务器暂时无法连接（网络故障或对方繁忙），消息未送达，请稍后重试"
    return f"{platform}拒绝发送（错误码{error.errcode}），消息未送达"


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


    def media(self, media_id: str, max_bytes: int) -> Media:
        """A customer's picture or file from the temporary media API (`media/get`, the same path on WeChat and
        WeCom). At most `max_bytes` + 1 bytes are read, enough for the caller to tell it is too large."""
        for refreshed in (False, True):
            params = {"access_token": self.access_token(force=refreshed), "media_id": media_id}
            media = self._download("/cgi-bin/media/get", params, max_bytes + 1)
            if isinstance(media, Media):
                return media
            code = int(media.get("errcode", -1))
            if code in TOKEN_ERRORS and not refreshed:
                continue
            raise WeChatAPIError(code, str(media.get("errmsg", "")))
        raise AssertionError("unreachable")

    def _download(self, path: str, params: dict[str, str], limit: int) -> Media | dict[str, Any]:
        """The file, or WeChat's JSON error body; network errors and 5xx retried with back-off."""
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                with self.http.stream("GET", path, params=params) as response:
                    if response.status_code < 500:
                        return _media_or_error(response, limit)
                    last = WeChatAPIError(int(response.status_code), "server error")
            except httpx.TransportError as e:
                last = e
            time.sleep(self.backoff * 2**attempt)
        raise WeChatAPIError(-1, f"{path} failed after {self.attempts} attempts: {last}")


@dataclass(frozen=True)
class Media:
    data: bytes
    content_type: str | None
    filename: str | None


def _media_or_error(response: httpx.Response, limit: int) -> Media | dict[str, Any]:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    if content_type in ("application/json", "text/plain") and data[:1] == b"{":
        try:
            body = json.loads(bytes(data))
        except ValueError:
            body = None
        if isinstance(body, dict) and "errcode" in body:
            return body
    return Media(bytes(data[:limit]), content_type, _filename(response.headers.get("content-disposition", "")))


def _filename(disposition: str) -> str | None:
    """The name in `Content-Disposition: attachment; filename="x.pdf"` (or RFC 5987's filename*=UTF-8''...)."""
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename*" and "''" in value:
            return unquote(value.split("''", 1)[1]) or None
        if key.lower() == "filename":
            return value.strip().strip('"') or None
    return None


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
