"""The WeChat API client the bot needs: the access token and the customer-service message API
(`message/custom/send`), used for answers that miss WeChat's 5-second deadline and for agents' replies.

The token is cached until shortly before it expires; a lock makes concurrent callers share one refresh. With
Redis (`security.redis_url`) the token lives there (`SharedTokens`), so every worker on every host uses the same
one: WeChat invalidates the previous token when a new one is fetched, so workers refreshing on their own would keep
invalidating each other. A token WeChat says is invalid or expired (40001, 40014, 42001) is refreshed, only when the
cached one is still the one that failed (another worker or thread may have refreshed it already), and the call
retried once; "system busy"
(-1), HTTP 5xx and network errors are retried with back-off. 45015 means the customer has not written for 48
hours: WeChat no longer lets the account write to them. `TokenClient` is the part WeCom's client
(bot/channels/wecom_api.py) shares, including `media` (customers' pictures and files from `media/get`, read no
further than the attachments' size limit).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import redis

TOKEN_ERRORS = {40001, 40014, 42001}
BUSY = -1
OUTSIDE_WINDOW = 45015
MAX_TEXT_BYTES = 2000  # WeChat's limit is 2048 bytes of text per customer-service message
TOKEN_MARGIN_SECONDS = 300  # a token is renewed this long before WeChat says it expires
REDIS_OUTAGE_SECONDS = 5.0  # after a failed Redis call, tokens are kept in-process this long before asking again
log = logging.getLogger(__name__)


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
    """What WeChat's and WeCom's APIs share: an access token cached (in Redis when `redis_url` is given, shared by
    every worker) and refreshed by one caller at a time, JSON calls retried once with a fresh token on a token error
    and with back-off when busy. Subclasses say how to fetch the token (`token_path`, `_token_params`) and whose it
    is (`token_owner`)."""

    token_path = ""
    window_errors: frozenset[int] = frozenset()  # errcodes meaning "the customer is out of reach for now"

    def __init__(self, base_url: str, timeout: float = 5.0, attempts: int = 3, backoff: float = 0.2,
                 redis_url: str | None = None) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self.redis_url = redis_url
        self._shared: SharedTokens | None = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def _token_params(self) -> dict[str, str]:
        raise NotImplementedError

    def token_owner(self) -> str:
        """Whose token it is, in its Redis key: the platform and account, a secret only as a digest."""
        raise NotImplementedError

    def access_token(self, force: bool = False, failed: str | None = None) -> str:
        """The current token; a new one when `force`, or when the current one is `failed` (refused by the API:
        compare-and-refresh, so callers that all saw one token fail cause one refresh, not one each)."""
        shared = self._shared_tokens()
        if shared is not None and shared.usable():
            try:
                return shared.token(self._fetch_token, failed=failed, force=force)
            except (redis.RedisError, OSError) as e:
                shared.failed_now()
                log.warning("access token kept in this process: Redis unavailable (%s)", type(e).__name__)
        return self._local_token(force, failed)

    def _local_token(self, force: bool, failed: str | None) -> str:
        with self._lock:
            if force or self._token is None or self._token == failed or time.monotonic() >= self._expires_at:
                self._fetch_token()
            assert self._token is not None
            return self._token

    def _fetch_token(self) -> tuple[str, float]:
        """A new token from the API and how many seconds to use it (its lifetime minus a margin), also kept in this
        process for when Redis is away."""
        body = self._request("GET", self.token_path, params=self._token_params())
        if "access_token" not in body:
            raise WeChatAPIError(int(body.get("errcode", -1)), str(body.get("errmsg", "")))
        lifetime = max(60, int(body.get("expires_in", 7200)) - TOKEN_MARGIN_SECONDS)
        self._token, self._expires_at = str(body["access_token"]), time.monotonic() + lifetime
        return self._token, lifetime

    def _shared_tokens(self) -> SharedTokens | None:
        """Made on first use (the subclass's fields name the owner); the refresh lock outlives a slow token fetch."""
        if self.redis_url and self._shared is None:
            with self._lock:
                if self._shared is None:
                    fetch_seconds = self.attempts * self.timeout + self.backoff * 2**self.attempts
                    self._shared = SharedTokens(self.redis_url, self.token_owner(), refresh_seconds=fetch_seconds + 1)
        return self._shared

    def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        token: str | None = None
        for refreshed in (False, True):
            token = self.access_token(failed=token)  # the second time: a token other than the one refused
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
        token: str | None = None
        for refreshed in (False, True):
            token = self.access_token(failed=token)
            params = {"access_token": token, "media_id": media_id}
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


RELEASE_IF_MINE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class SharedTokens:
    """One account's access token in Redis, for every worker of an installation: under
    `bankbot:token:<db>:<owner>` with the token's own expiry, and refreshed by one worker at a time (a lock taken
    with SET NX PX, expiring by itself if its holder dies); the others wait for the new token and read it.
    Redis errors are raised (except when storing a token just fetched: it is returned all the same); the caller then
    falls back to its own token, and `usable` is False for a while."""

    def __init__(self, url: str, owner: str, refresh_seconds: float = 20.0, poll_seconds: float = 0.05) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        database = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self.key = f"bankbot:token:{database}:{owner}"
        self.lock_key = f"{self.key}:refreshing"
        self.refresh_seconds, self.poll_seconds = refresh_seconds, poll_seconds
        self._down_until = 0.0

    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed_now(self) -> None:
        self._down_until = time.monotonic() + REDIS_OUTAGE_SECONDS

    def token(self, fetch: Callable[[], tuple[str, float]], failed: str | None = None, force: bool = False) -> str:
        """The token in Redis unless it is `failed` (any token but the current one, when `force`); otherwise a new
        one from `fetch` by whichever worker holds the lock, the others waiting to read it. A worker that waited
        past the lock's expiry twice over fetches a token itself."""
        if force:
            failed = self._read() or failed
        me, give_up_at = uuid.uuid4().hex, time.monotonic() + 2 * self.refresh_seconds
        while True:
            current = self._read()
            if current is not None and current != failed:
                return current
            if self._redis.set(self.lock_key, me, nx=True, px=int(self.refresh_seconds * 1000)):
                try:
                    current = self._read()  # the worker that held the lock just before may have refreshed it
                    return current if current is not None and current != failed else self._refresh(fetch)
                finally:
                    with contextlib.suppress(redis.RedisError, OSError):  # else it expires by itself
                        self._redis.eval(RELEASE_IF_MINE, 1, self.lock_key, me)
            if time.monotonic() > give_up_at:
                log.warning("access token: the refresh lock %s was held too long; fetching without it", self.lock_key)
                return self._refresh(fetch)
            time.sleep(self.poll_seconds)

    def _read(self) -> str | None:
        value = self._redis.get(self.key)
        return value.decode() if value is not None else None

    def _refresh(self, fetch: Callable[[], tuple[str, float]]) -> str:
        """A new token, stored for the others; if Redis fails now, still this caller's (fetching again would
        invalidate it)."""
        token, lifetime = fetch()
        try:
            self._redis.set(self.key, token, px=int(lifetime * 1000))
        except (redis.RedisError, OSError) as e:
            self.failed_now()
            log.warning("access token not shared: Redis unavailable (%s)", type(e).__name__)
        return token


def secret_tag(secret: str) -> str:
    """A short digest naming a secret in a Redis key (WeCom issues one token per corp id and secret)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


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
                 timeout: float = 5.0, attempts: int = 3, backoff: float = 0.2, redis_url: str | None = None) -> None:
        super().__init__(base_url, timeout, attempts, backoff, redis_url)
        self.app_id, self.app_secret = app_id, app_secret

    def _token_params(self) -> dict[str, str]:
        return {"grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret}

    def token_owner(self) -> str:
        return f"wechat:{self.app_id}:{secret_tag(self.app_secret)}"

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
