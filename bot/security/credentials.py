"""Credentials the server issues itself: the web widget's visitor credential, signed with the server's key.

A visitor id alone is worth nothing: the widget gets `v1.<visitor id>.<HMAC>` on its first connection and
presents it on every later one, so knowing or guessing someone's visitor id replays no history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from bot.config import BotConfig

PREFIX = "v1"
KEY_FILE = "secret_key"


def server_key(config: BotConfig) -> bytes:
    """`security.secret_key`, or a random key made once and kept next to the SQLite database, readable only by
    the server's user (several workers must share one key: set BOT__SECURITY__SECRET_KEY)."""
    if config.security.secret_key:
        return config.security.secret_key.encode()
    path = config.path("data") / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    key = Path(path).read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path}: the server key is missing or too short; delete the file to make a new one")
    return key.encode()


def _create_key_file(path: Path) -> None:
    """Write a new key beside `path`, then link it into place: the file appears whole or not at all, and a
    worker that starts at the same moment keeps the key the first one made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(48))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


class VisitorCredentials:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"visitor-credential:" + key).digest()

    def issue(self) -> tuple[str, str]:
        """A new visitor: (visitor id, credential)."""
        visitor_id = "v-" + secrets.token_urlsafe(18)
        return visitor_id, f"{PREFIX}.{visitor_id}.{self._sign(visitor_id)}"

    def verify(self, credential: object) -> str | None:
        """The visitor id of a credential we issued, else None."""
        if not isinstance(credential, str) or len(credential) > 200:
            return None
        prefix, _, rest = credential.partition(".")
        visitor_id, _, signature = rest.rpartition(".")
        if prefix != PREFIX or not visitor_id or not hmac.compare_digest(signature, self._sign(visitor_id)):
            return None
        return visitor_id

    def _sign(self, visitor_id: str) -> str:
        digest = hmac.new(self._key, visitor_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; empty for any other header or none."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def is_api_token(token: str, configured: str | None) -> bool:
    """Whether `token` is `security.api_token` (never when none is configured); compared in constant time."""
    return bool(token and configured) and hmac.compare_digest(token.encode(), str(configured).encode())
