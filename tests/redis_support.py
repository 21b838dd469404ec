"""The Redis server every test machine runs at 127.0.0.1:6379: what tests leave there is swept away."""

from __future__ import annotations

import redis


def delete_keys(url: str, pattern: str) -> None:
    """Delete the keys matching `pattern` in the database of `url`."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=pattern))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
