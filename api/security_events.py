"""Security events (runbook 004), aggregated per minute in each process and
flushed to eng_security_events every few seconds, so a flood of rejected
requests costs one row per (minute, type, severity, IP hash), not one per request.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timezone

from psycopg_pool import AsyncConnectionPool

from api import store

FLUSH_SECONDS = 5.0
log = logging.getLogger("likes.security")


class SecurityEvents:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool
        self.pending: Counter[tuple] = Counter()
        self._task: asyncio.Task | None = None

    def record(self, event_type: str, severity: str, ip_hash: bytes) -> None:
        minute = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        self.pending[(minute, event_type, severity, ip_hash)] += 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, Counter()
        try:
            await store.record_security_events(self.pool, [(*k, n) for k, n in batch.items()])
        except Exception as exc:   # keep them for the next flush rather than lose them
            self.pending.update(batch)
            log.warning("could not store security events: %s", exc.__class__.__name__)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
