"""Live delivery across workers: each worker keeps its own sockets (`LocalBus`) and every push is also published on
one Redis pub/sub channel per installation, which a listening thread of every worker hears and delivers to its own
sockets. Who is connected is kept in Redis too: a sorted set per customer and per agent whose members are the
workers holding a socket, scored by when that claim expires. A presence thread writes the claims (the event loop
never waits for Redis) and renews them every third of `presence_seconds`, so the sockets of a worker that crashed
stop counting within `presence_seconds`.

If Redis goes away, pushes still reach this worker's sockets and Redis is not asked again for `OUTAGE_SECONDS` after
a failure; both threads reconnect by themselves and the claims are back within a renewal after Redis is (a frame
published meanwhile is lost, but it is stored and the next history load shows it)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from bot.live.local import Feed, LocalBus

log = logging.getLogger(__name__)

PRESENCE_SECONDS = 30.0
OUTAGE_SECONDS = 1.0  # after a failed Redis call, pushes and presence checks skip Redis this long
RECONNECT_MAX_SECONDS = 5.0

PresenceChange = tuple[str, str]  # ("claim" | "drop", key)


class RedisBus:
    """`LocalBus` plus Redis: pushes reach sockets on every worker; presence is shared.

    Installations sharing one Redis server must use different database numbers (the channel and keys are named
    after it: pub/sub itself ignores database numbers) or different `namespace`s."""

    def __init__(self, url: str, namespace: str | None = None, presence_seconds: float = PRESENCE_SECONDS) -> None:
        self.worker = uuid.uuid4().hex  # this process's name in presence sets and messages
        self.client_name = f"bankbot-live-{self.worker[:12]}"  # what Redis's CLIENT LIST shows for this worker
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2,
                                           client_name=self.client_name)
        database = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self.namespace = namespace or f"bankbot:live:{database}"
        self.channel = f"{self.namespace}:events"
        self.presence_seconds = presence_seconds
        self._local = LocalBus()
        self._changes: queue.Queue[PresenceChange | None] = queue.Queue()
        self._stopping = threading.Event()
        self.listening = threading.Event()  # set while subscribed
        self._threads: list[threading.Thread] = []
        self._redis_down_until = 0.0

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._listen, name="live-bus-listen", daemon=True),
                         threading.Thread(target=self._keep_presence, name="live-bus-presence", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads and withdraw this worker's claims (a clean shutdown: its sockets stop counting now)."""
        self._stopping.set()
        self._changes.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self._quietly(lambda: self._write([("drop", key) for key in self._claims_here()]))

    # --- sockets ------------------------------------------------------------------------------------------

    def add_customer(self, channel: str, sender: str, websocket: Feed) -> None:
        self._local.add_customer(channel, sender, websocket)
        self._change("claim", self._customer_key(channel, sender))

    def remove_customer(self, channel: str, sender: str, websocket: Feed) -> None:
        self._local.remove_customer(channel, sender, websocket)
        if not self._local.customer_connected(channel, sender):
            self._change("drop", self._customer_key(channel, sender))

    def add_agent(self, agent_id: int, websocket: Feed) -> None:
        self._local.add_agent(agent_id, websocket)
        self._change("claim", self._agent_key(agent_id))

    def remove_agent(self, agent_id: int, websocket: Feed) -> None:
        self._local.remove_agent(agent_id, websocket)
        if not self._local.agent_connected(agent_id):
            self._change("drop", self._agent_key(agent_id))

    def customer_connected(self, channel: str, sender: str) -> bool:
        """On this worker, or claimed by another (asks Redis: call it from a thread, not the event loop)."""
        if self._local.customer_connected(channel, sender):
            return True
        return bool(self._quietly(lambda: self._live_count(self._customer_key(channel, sender)), default=0))

    def agent_connected(self, agent_id: int) -> bool:
        if self._local.agent_connected(agent_id):
            return True
        return bool(self._quietly(lambda: self._live_count(self._agent_key(agent_id)), default=0))

    def customers_here(self) -> list[tuple[str, str]]:
        return self._local.customers_here()

    def agents_here(self) -> list[int]:
        return self._local.agents_here()

    # --- pushes ---------------------------------------------------------------------------------------------

    def to_customer(self, channel: str, sender: str, frame: dict[str, Any]) -> int:
        """This worker's sockets of the customer that got `frame`, plus one for each other worker that claims one of
        their sockets (the frame was published to them): 0 means nobody will see it now."""
        here = self._local.to_customer(channel, sender, frame)
        message = {"to": "customer", "channel": channel, "sender": sender, "frame": frame}
        elsewhere = self._quietly(lambda: self._publish_to_claimants(self._customer_key(channel, sender), message),
                                  default=0)
        return here + elsewhere

    def to_agents(self, frame: dict[str, Any], agent_ids: list[int] | None = None) -> int:
        """Sent to this worker's consoles and published to every other worker; returns how many got it here."""
        here = self._local.to_agents(frame, agent_ids)
        self._quietly(lambda: self._publish({"to": "agents", "agent_ids": agent_ids, "frame": frame}))
        return here

    # --- Redis ------------------------------------------------------------------------------------------------

    def _customer_key(self, channel: str, sender: str) -> str:
        return f"{self.namespace}:customer:{channel}:{sender}"

    def _agent_key(self, agent_id: int) -> str:
        return f"{self.namespace}:agent:{agent_id}"

    def _claims_here(self) -> list[str]:
        return [self._customer_key(*key) for key in self._local.customers_here()] + \
            [self._agent_key(agent_id) for agent_id in self._local.agents_here()]

    def _write(self, changes: list[PresenceChange]) -> None:
        """Claims held until `presence_seconds` from now (or the next renewal), and claims dropped, in one trip."""
        if not changes:
            return
        until = time.time() + self.presence_seconds
        with self._redis.pipeline(transaction=False) as pipe:
            for change, key in changes:
                if change == "claim":
                    pipe.zadd(key, {self.worker: until})
                    pipe.expire(key, int(self.presence_seconds) + 1)
                else:
                    pipe.zrem(key, self.worker)
            pipe.execute()

    def _live_count(self, key: str) -> int:
        return int(self._redis.zcount(key, time.time(), "+inf"))

    def _publish_to_claimants(self, key: str, message: dict[str, Any]) -> int:
        """Publish when another worker claims a socket for `key`; how many other workers do."""
        others = [m for m in self._redis.zrangebyscore(key, time.time(), "+inf") if m.decode() != self.worker]
        if others:
            self._publish(message)
        return len(others)

    def _publish(self, message: dict[str, Any]) -> None:
        self._redis.publish(self.channel, json.dumps({**message, "origin": self.worker}, ensure_ascii=False))

    def _quietly(self, call: Callable[[], Any], default: Any = None) -> Any:
        """A Redis call whose failure only costs other workers' view: logged, not raised; skipped during an outage
        so that every push does not wait for a connection timeout."""
        if time.monotonic() < self._redis_down_until:
            return default
        try:
            return call()
        except (redis.RedisError, OSError) as e:
            self._redis_down_until = time.monotonic() + OUTAGE_SECONDS
            log.warning("live bus: Redis unavailable (%s)", type(e).__name__)
            return default

    # --- presence ---------------------------------------------------------------------------------------------

    def _change(self, change: str, key: str) -> None:
        """Queued for the presence thread; written here when it does not run (an app served without its lifespan)."""
        if self._threads:
            self._changes.put((change, key))
        else:
            self._quietly(lambda: self._write([(change, key)]))

    def _keep_presence(self) -> None:
        """Write claims and drops in the order sockets came and went; renew every claim every third of
        `presence_seconds` (after a Redis restart, too: its sets are empty)."""
        every = self.presence_seconds / 3
        renew_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                change = self._changes.get(timeout=max(0.0, renew_at - time.monotonic()))
            except queue.Empty:
                change = None
            if change is not None:
                self._write_safely([change])
            if time.monotonic() >= renew_at:
                self._write_safely([("claim", key) for key in self._claims_here()])
                renew_at = time.monotonic() + every

    def _write_safely(self, changes: list[PresenceChange]) -> None:
        try:
            self._write(changes)
        except (redis.RedisError, OSError) as e:  # a lost claim comes back with the next renewal
            log.warning("live bus: presence not written (%s)", type(e).__name__)

    # --- the listening thread ---------------------------------------------------------------------------------

    def _listen(self) -> None:
        """Subscribe and deliver what other workers publish; after a Redis error wait (0.5 s, doubling up to
        RECONNECT_MAX_SECONDS) and subscribe again."""
        wait = 0.5
        while not self._stopping.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.listening.set()
                wait = 0.5
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._deliver(message["data"])
            except (redis.RedisError, OSError) as e:
                log.warning("live bus: lost Redis (%s); subscribing again in %.1f s", type(e).__name__, wait)
                self._stopping.wait(wait)
                wait = min(wait * 2, RECONNECT_MAX_SECONDS)
            finally:
                self.listening.clear()
                pubsub.close()

    def _deliver(self, data: bytes) -> None:
        """Another worker's push, to this worker's sockets."""
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("live bus: a message that is not JSON on %s", self.channel)
            return
        if not isinstance(message, dict) or message.get("origin") == self.worker:
            return
        frame = message.get("frame")
        if message.get("to") == "customer":
            self._local.to_customer(str(message.get("channel")), str(message.get("sender")), frame)
        elif message.get("to") == "agents":
            self._local.to_agents(frame, message.get("agent_ids"))
