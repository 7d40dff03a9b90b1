"""`RedisCache`: a shared cache tier in Redis with a local copy in each instance, and synchronous invalidation.

Apps with several instances (gunicorn workers, hosts) pass `RedisCache(url)` as
`Optimizer(cache=...)`. Values are shared by every instance; each keeps a local
copy (bounded like `InProcessCache`) so a hit costs no round trip.

Why invalidation waits for acknowledgements: a write must never be followed by
a stale read on any instance, so `invalidate` has to return only once every
local copy is gone. Plain pub/sub is fire-and-forget, and checking a shared
generation key on every local hit would cost a round trip per hit, the very
thing the local copy saves. So `invalidate` deletes the shared value, bumps the
key's generation, publishes the invalidation, and waits until every subscriber
(PUBLISH returns how many got it) has dropped its copy, fenced its in-flight
loads and pushed an acknowledgement. An instance that does not answer within
`ack_timeout_s` is logged; it is one that lost its connection, and an instance
flushes its whole local copy whenever it (re)subscribes, because pub/sub drops
messages while disconnected.

Generations also fence the shared tier: a load records the generations of its
key and tags before it starts, and a Lua script stores its result only if they
are unchanged, so a fetch that started before a write on any instance never
lands in Redis. A value read from Redis lands in the local copy only if no
invalidation was handled meanwhile.

An invalidation that cannot be confirmed (Redis failed, or an instance did not
acknowledge) is retried for up to `confirm_timeout_s`; if it is still
unconfirmed, `invalidate` raises `InvalidationUnconfirmed` so the caller does
not acknowledge the write, and the key or tag stays *pending*: this instance
serves it from the backend only (no local copy, nothing shared) while a
background thread keeps retrying until the invalidation is confirmed.

If Redis fails, reads go to the backend without raising, and Redis is retried
after `retry_after_s`. The local copy is served only while the subscription is
up: an instance that is not subscribed cannot hear other instances'
invalidations, and its copy is flushed when it subscribes again.

Redis keys, under `{namespace}:{fn}:` (the optimizer's keys already carry the schema version)::

    k:{key}      JSON {"v": value, "f": fresh until, "s": stale until, "w": stored at, "t": tags}, times in wall-clock
                 seconds, expiring with "s"
    g:{key}      generation of the key, bumped by each invalidation
    t:{tag}      generation of the tag
    ts:{tag}     set of keys carrying the tag
    ack:{id}     acknowledgements of one invalidation
    invalidations  the pub/sub channel
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from optimizer import sizing
from optimizer.cache import Cache, Entry, LocalStore, RemoteInvalidation
from optimizer.errors import InvalidationUnconfirmed
from optimizer.settings import OptimizerConfig

logger = logging.getLogger(__name__)

_GENERATION_TTL_MS = 3_600_000
_CONFIRM_RETRY_S = 0.1

# KEYS: value, key generation, n tag generations, n tag sets.
# ARGV: payload, px, n, key generation fence, n tag generation fences, member name.
_SHARE = """
local n = tonumber(ARGV[3])
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[4] then return 0 end
for i = 1, n do
  if (redis.call('GET', KEYS[2 + i]) or '0') ~= ARGV[4 + i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 1, n do
  redis.call('SADD', KEYS[2 + n + i], ARGV[5 + n])
  if redis.call('PTTL', KEYS[2 + n + i]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[2 + n + i], ARGV[2])
  end
end
return 1
"""

# KEYS: tag generation, tag set. ARGV: value key prefix, generation ttl ms.
_INVALIDATE_TAG = """
local members = redis.call('SMEMBERS', KEYS[2])
for _, member in ipairs(members) do
  redis.call('DEL', ARGV[1] .. member)
end
redis.call('DEL', KEYS[2])
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return #members
"""

# KEYS: value, key generation. ARGV: generation ttl ms.
_INVALIDATE_KEY = """
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""


class RedisCache(Cache):
    """Shared Redis tier plus a local copy; one instance per `Optimizer`.

    :param redis_url: e.g. `redis://127.0.0.1:6379/0`.
    :param namespace: first part of every Redis key; tests use a unique one each.
    :param max_entries: bound of the local copy (default: the optimizer's config).
    :param max_bytes: bound of the local copy (default: the optimizer's config).
    :param socket_timeout_s: per Redis command; a slow Redis counts as a failed one.
    :param ack_timeout_s: longest `invalidate` waits for other instances to acknowledge.
    :param retry_after_s: how long calls skip Redis after a failure.
    :param confirm_timeout_s: longest `invalidate` retries before raising `InvalidationUnconfirmed`.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str = "rollguard",
        max_entries: int | None = None,
        max_bytes: int | None = None,
        socket_timeout_s: float = 0.5,
        ack_timeout_s: float = 2.0,
        retry_after_s: float = 1.0,
        confirm_timeout_s: float = 3.0,
    ) -> None:
        self._url = redis_url
        self._namespace = namespace
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ack_timeout_s = ack_timeout_s
        self._retry_after_s = retry_after_s
        self._confirm_timeout_s = confirm_timeout_s
        self.instance_id = uuid.uuid4().hex[:12]
        # Named connections let operators (and tests) tell the instances apart in CLIENT LIST.
        self.client_name = f"rollguard-optimizer-{self.instance_id}"
        self._redis = redis.Redis.from_url(
            redis_url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            client_name=self.client_name,
            # Pings an idle subscriber connection, so a silently dropped one is noticed and resubscribed.
            health_check_interval=30,
        )
        self._blocking = redis.Redis.from_url(
            redis_url,
            socket_timeout=ack_timeout_s + socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
        )
        self._share_script = self._redis.register_script(_SHARE)
        self._invalidate_tag_script = self._redis.register_script(_INVALIDATE_TAG)
        self._invalidate_key_script = self._redis.register_script(_INVALIDATE_KEY)
        self._local = LocalStore(max_entries=max_entries or 10_000, max_bytes=max_bytes or 16 * 1024 * 1024)
        self._lock = threading.Lock()
        self._seq = 0
        self._down_until = 0.0
        self._callbacks: list[RemoteInvalidation] = []
        self._clock: Callable[[], float] = time.monotonic
        self._prefix = ""
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._listener: threading.Thread | None = None
        self._replayer: threading.Thread | None = None
        self.subscriptions = 0
        # Unconfirmed invalidations: how many are outstanding per key and per tag, and those
        # whose caller gave up, which the replayer thread retries.
        self._pending_keys: dict[str, int] = {}
        self._pending_tags: dict[str, int] = {}
        self._abandoned: list[tuple[str | None, str | None]] = []
        self._replay_wanted = threading.Event()

    # Cache boundary

    def attach(self, *, name: str, config: OptimizerConfig, clock: Callable[[], float]) -> None:
        if self._listener is not None:
            raise RuntimeError("a RedisCache serves one Optimizer; build one per optimized function")
        self._clock = clock
        self._prefix = f"{self._namespace}:{name}:"
        self._local = LocalStore(
            max_entries=self._max_entries or config.max_entries,
            max_bytes=self._max_bytes or config.max_bytes,
        )
        self._listener = threading.Thread(target=self._listen, name=f"optimizer-redis-{name}", daemon=True)
        self._listener.start()
        self._replayer = threading.Thread(
            target=self._replay, name=f"optimizer-redis-replay-{name}", daemon=True
        )
        self._replayer.start()

    def on_remote_invalidation(self, callback: RemoteInvalidation) -> None:
        self._callbacks.append(callback)

    def wait_subscribed(self, timeout: float = 5.0) -> bool:
        """Block until the invalidation listener is subscribed (startup, tests)."""
        return self._subscribed.wait(timeout)

    def get(self, key: str) -> Entry | None:
        # Unsubscribed, the local copy may have missed invalidations: it is flushed on resubscribe.
        local = self._local.get(key) if self._subscribed.is_set() else None
        if local is not None and self._pending_for(key, local.tags):
            return None
        if local is not None and self._clock() < local.fresh_until:
            return local
        if not self._up():
            return local
        seq = self._seq
        try:
            raw = self._redis.get(self._prefix + "k:" + key)
        except redis.RedisError as exc:
            self._failed("get", exc)
            return local
        if raw is None:
            return local
        entry = self._decode(key, raw)
        if entry is None:
            return local
        if self._pending_for(key, entry.tags):
            return None
        with self._lock:
            # An invalidation handled since the read may concern this very value.
            if self._seq == seq:
                self._local.put(key, entry)
        return entry

    def fence(self, key: str, tags: frozenset[str]) -> Any:
        if not self._up():
            return None
        names = [self._prefix + "g:" + key] + [self._prefix + "t:" + tag for tag in sorted(tags)]
        try:
            values = self._redis.mget(names)
        except redis.RedisError as exc:
            self._failed("fence", exc)
            return None
        return (sorted(tags), [_text(v) if v is not None else "0" for v in values])

    def share(self, key: str, entry: Entry, fence: Any) -> None:
        if fence is None or not self._up() or self._pending_for(key, entry.tags):
            return
        tags, generations = fence
        now_wall, now = time.time(), self._clock()
        px = math.ceil((entry.stale_until - now) * 1000)
        if px <= 0:
            return
        try:
            payload = json.dumps(
                {
                    "v": entry.value,
                    "f": now_wall + entry.fresh_until - now,
                    "s": now_wall + entry.stale_until - now,
                    "w": now_wall + entry.stored_at - now,
                    "t": tags,
                }
            )
        except (TypeError, ValueError) as exc:
            logger.warning("RedisCache: value of %s is not JSON, kept locally only: %s", key, exc)
            return
        p = self._prefix
        keys = [p + "k:" + key, p + "g:" + key]
        keys += [p + "t:" + tag for tag in tags] + [p + "ts:" + tag for tag in tags]
        try:
            self._share_script(keys=keys, args=[payload, px, len(tags), *generations, key])
        except redis.RedisError as exc:
            self._failed("share", exc)

    def put(self, key: str, entry: Entry) -> None:
        if not self._pending_for(key, entry.tags):
            self._local.put(key, entry)

    def invalidate(self, key: str) -> None:
        self._confirm(key, None)

    def invalidate_tag(self, tag: str) -> None:
        self._confirm(None, tag)

    def clear(self) -> None:
        with self._lock:
            self._seq += 1
            self._local.clear()

    def contains(self, key: str) -> bool:
        return self._local.contains(key)

    @property
    def bytes(self) -> int:
        return self._local.bytes

    @property
    def entries(self) -> int:
        return self._local.entries

    @property
    def evictions(self) -> int:
        return self._local.evictions

    @property
    def degraded(self) -> bool:
        """Whether calls currently skip Redis after a failure."""
        return not self._up()

    @property
    def pending(self) -> int:
        """Invalidations not yet confirmed (their keys are served from the backend only)."""
        with self._lock:
            return sum(self._pending_keys.values()) + sum(self._pending_tags.values())

    def close(self) -> None:
        self._stop.set()
        self._replay_wanted.set()
        for thread in (self._listener, self._replayer):
            if thread is not None:
                thread.join(timeout=5)
        self._redis.close()
        self._blocking.close()

    # invalidation: confirm, or keep pending and retry in the background

    def _confirm(self, key: str | None, tag: str | None) -> None:
        """Invalidate `key` or `tag` everywhere; raise InvalidationUnconfirmed if that cannot be confirmed."""
        self._mark_pending(key, tag, +1)
        self._drop_local(key, tag)
        deadline = time.monotonic() + self._confirm_timeout_s
        while not self._invalidate_once(key, tag):
            if time.monotonic() >= deadline or self._stop.is_set():
                with self._lock:
                    self._abandoned.append((key, tag))
                self._replay_wanted.set()
                raise InvalidationUnconfirmed(
                    f"could not confirm the invalidation of {key or 'tag ' + str(tag)} within "
                    f"{self._confirm_timeout_s}s; it is retried, and served from the backend meanwhile"
                )
            self._stop.wait(_CONFIRM_RETRY_S)
        self._mark_pending(key, tag, -1)

    def _invalidate_once(self, key: str | None, tag: str | None) -> bool:
        """Delete the shared value(s), bump generations and broadcast; whether every instance confirmed."""
        p = self._prefix
        try:
            if key is not None:
                self._invalidate_key_script(keys=[p + "k:" + key, p + "g:" + key], args=[_GENERATION_TTL_MS])
                confirmed = self._broadcast({"k": key})
            else:
                self._invalidate_tag_script(
                    keys=[p + "t:" + str(tag), p + "ts:" + str(tag)], args=[p + "k:", _GENERATION_TTL_MS]
                )
                confirmed = self._broadcast({"t": tag})
        except redis.RedisError as exc:
            self._failed("invalidate", exc)
            return False
        # This instance's own copy: dropped again, after the shared value is surely gone.
        self._drop_local(key, tag)
        return confirmed

    def _mark_pending(self, key: str | None, tag: str | None, delta: int) -> None:
        with self._lock:
            table, name = (self._pending_keys, key) if key is not None else (self._pending_tags, str(tag))
            count = table.get(name, 0) + delta
            if count > 0:
                table[name] = count
            else:
                table.pop(name, None)

    def _pending_for(self, key: str, tags: frozenset[str]) -> bool:
        if not self._pending_keys and not self._pending_tags:
            return False
        with self._lock:
            return key in self._pending_keys or any(tag in self._pending_tags for tag in tags)

    def _replay(self) -> None:
        """Retry abandoned invalidations until each is confirmed (runs in its own thread)."""
        while not self._stop.is_set():
            self._replay_wanted.wait(self._retry_after_s)
            self._replay_wanted.clear()
            with self._lock:
                todo, self._abandoned = self._abandoned, []
            failed = [(key, tag) for key, tag in todo if not self._invalidate_once(key, tag)]
            for key, tag in todo:
                if (key, tag) not in failed:
                    self._mark_pending(key, tag, -1)
                    logger.info("RedisCache: invalidation of %s confirmed late", key or tag)
            with self._lock:
                self._abandoned.extend(failed)

    def _broadcast(self, message: dict[str, Any]) -> bool:
        """Publish an invalidation and wait for every subscriber's acknowledgement; whether all came."""
        ack_id = uuid.uuid4().hex
        message = {**message, "ack": ack_id, "from": self.instance_id}
        ack_key = self._prefix + "ack:" + ack_id
        receivers = int(self._redis.publish(self._prefix + "invalidations", json.dumps(message)))
        deadline = time.monotonic() + self._ack_timeout_s
        acked = 0
        try:
            while acked < receivers:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._blocking.blpop([ack_key], timeout=remaining) is None:
                    logger.warning(
                        "RedisCache: %d of %d instances acknowledged an invalidation within %ss",
                        acked,
                        receivers,
                        self._ack_timeout_s,
                    )
                    return False
                acked += 1
        finally:
            self._redis.delete(ack_key)
        return True

    def _listen(self) -> None:
        channel = self._prefix + "invalidations"
        while not self._stop.is_set():
            pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._on_subscribed()
                    elif message["type"] == "message":
                        self._on_message(message["data"])
            except redis.RedisError as exc:
                self._subscribed.clear()
                self._failed("subscription", exc)
                # Reconnect after a pause, not in a tight loop against a Redis that is down.
                self._stop.wait(self._retry_after_s)
            finally:
                pubsub.close()

    def _on_subscribed(self) -> None:
        # Messages published while we were not subscribed are lost: forget everything local.
        self.subscriptions += 1
        self._drop_local(None, None)
        for callback in self._callbacks:
            callback(None, None)
        self._down_until = 0.0
        self._subscribed.set()

    def _on_message(self, data: builtins.bytes | str) -> None:
        try:
            message = json.loads(data)
            key, tag = message.get("k"), message.get("t")
        except (ValueError, AttributeError):
            logger.warning("RedisCache: unreadable invalidation %.200r", data)
            return
        self._drop_local(key, tag)
        if key is not None or tag is not None:
            for callback in self._callbacks:
                callback(key, tag)
        ack = message.get("ack")
        if ack:
            ack_key = self._prefix + "ack:" + ack
            pipe = self._redis.pipeline()
            pipe.rpush(ack_key, self.instance_id)
            pipe.pexpire(ack_key, 60_000)
            pipe.execute()

    def _drop_local(self, key: str | None, tag: str | None) -> None:
        with self._lock:
            self._seq += 1
            if key is not None:
                self._local.delete(key)
            elif tag is not None:
                self._local.delete_tag(tag)
            else:
                self._local.clear()

    # health

    def _up(self) -> bool:
        return self._down_until == 0.0 or time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: Exception) -> None:
        if self._up():
            logger.warning("RedisCache: %s failed, reading the backend meanwhile: %s", what, exc)
        self._down_until = time.monotonic() + self._retry_after_s

    def _decode(self, key: str, raw: builtins.bytes | str) -> Entry | None:
        try:
            data = json.loads(raw)
            value, fresh_wall, stale_wall = data["v"], float(data["f"]), float(data["s"])
            stored_wall = float(data.get("w", "-inf"))
            tags = frozenset(str(tag) for tag in data.get("t") or ())
        except (ValueError, KeyError, TypeError):
            logger.warning("RedisCache: unreadable entry for %s dropped", key)
            return None
        offset = self._clock() - time.time()
        return Entry(
            value=value,
            fresh_until=fresh_wall + offset,
            stale_until=stale_wall + offset,
            stored_at=stored_wall + offset,
            size=sizing.measure(key, value, len(tags)),
            tags=tags,
        )


def _text(value: builtins.bytes | str) -> str:
    return value.decode() if isinstance(value, builtins.bytes) else str(value)
