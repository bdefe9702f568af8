"""Redis: rate limits and cached counts, both derived data.

PostgreSQL is the truth; Redis may vanish at any moment. When it does, the
limiter falls back to an in-memory sliding window in each process, counts are
read from PostgreSQL, health says `degraded`, and Redis is probed again at
most once a second until it answers.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api import metrics
from api.settings import Settings

log = logging.getLogger("likes.redis")
PROBE_INTERVAL_SECONDS = 1.0
COUNT_KEY = "likes:count:{}"


class RedisGate:
    """One connection pool, and whether Redis is believed to be up."""

    def __init__(self, url: str, timeout: float = 0.25):
        self.pool = aioredis.ConnectionPool.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
            max_connections=64)
        self.client = aioredis.Redis(connection_pool=self.pool)
        self.up = True
        self._probe_at = 0.0

    def usable(self) -> bool:
        """Up, or down long enough that this call may serve as the probe."""
        return self.up or time.monotonic() >= self._probe_at

    def failed(self, exc: BaseException) -> None:
        if self.up:
            log.warning("redis unavailable, falling back: %s", exc.__class__.__name__)
        self.up = False
        self._probe_at = time.monotonic() + PROBE_INTERVAL_SECONDS

    def succeeded(self) -> None:
        if not self.up:
            log.info("redis is back")
        self.up = True

    async def ping(self) -> bool:
        try:
            await self.client.ping()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.failed(exc)
            return False
        self.succeeded()
        return True

    async def close(self) -> None:
        await self.client.aclose()
        await self.pool.aclose()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    window: int               # seconds
    remaining: int | None     # known only when refused (reading it costs a round trip)
    reset_in: int | None      # seconds until the window frees a request, when refused


class RateLimiter:
    """Sliding-window-counter limits per client IP and per client id."""

    def __init__(self, settings: Settings, gate: RedisGate):
        self.window = settings.rate_limit_window_seconds
        self.items = {"write": RateLimitItemPerSecond(settings.rate_limit_max_requests, self.window),
                      "read": RateLimitItemPerSecond(settings.rate_limit_read_max_requests, self.window)}
        self.gate = gate
        self.shared = SlidingWindowCounterRateLimiter(RedisStorage(
            "async+redis://", implementation="redispy", wrap_exceptions=True, connection_pool=gate.pool))
        self.local = SlidingWindowCounterRateLimiter(MemoryStorage())

    async def hit(self, kind: str, identities: list[str]) -> Decision:
        """Count one request against every identity; refused if any is over."""
        item = self.items[kind]
        keys = [f"{kind}:{i}" for i in identities]
        if self.gate.usable():
            try:
                return await self._hit(self.shared, item, keys)
            except (StorageError, RedisError, OSError, asyncio.TimeoutError) as exc:
                self.gate.failed(exc)
            else:
                self.gate.succeeded()
        return await self._hit(self.local, item, keys)

    async def _hit(self, limiter: SlidingWindowCounterRateLimiter, item, keys: list[str]) -> Decision:
        if len(keys) == 1:
            allowed = [await limiter.hit(item, keys[0])]
        else:
            allowed = await asyncio.gather(*(limiter.hit(item, k) for k in keys))
        if all(allowed):
            return Decision(True, item.amount, self.window, None, None)
        refused = [k for k, ok in zip(keys, allowed) if not ok]
        stats = await asyncio.gather(*(limiter.get_window_stats(item, k) for k in refused))
        reset_in = max(1, math.ceil(max(s.reset_time for s in stats) - time.time()))
        return Decision(False, item.amount, self.window, 0, reset_in)


class CountCache:
    """Cached counts, `likes:count:<postId>`, with TTL CACHE_TTL_SECONDS."""

    def __init__(self, gate: RedisGate, ttl: int):
        self.gate = gate
        self.ttl = ttl

    async def get_many(self, post_ids: list[str]) -> list[int | None]:
        if not self.gate.usable():
            return [None] * len(post_ids)
        try:
            values = await self.gate.client.mget([COUNT_KEY.format(p) for p in post_ids])
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.gate.failed(exc)
            return [None] * len(post_ids)
        self.gate.succeeded()
        result = [None if v is None else int(v) for v in values]
        for v in result:
            (metrics.CACHE_MISSES if v is None else metrics.CACHE_HITS).inc()
        return result

    async def put_many(self, counts: dict[str, int]) -> None:
        """Store counts read from, or committed to, PostgreSQL."""
        if not counts or not self.gate.usable():
            return
        try:
            async with self.gate.client.pipeline(transaction=False) as pipe:
                for post_id, n in counts.items():
                    pipe.set(COUNT_KEY.format(post_id), n, ex=self.ttl)
                await pipe.execute()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.gate.failed(exc)
        else:
            self.gate.succeeded()
