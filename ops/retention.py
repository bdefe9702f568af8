"""Retention: delete expired rows in small batches that never block the API.

Daily like events older than 90 days go; their net (likes - unlikes) moves
into the counter slot's retired_net in the same transaction, so a counter
always equals retired_net plus its remaining daily events. Security events
older than 30 days go. A compliance check then fails the run if any expired
row remains (runbook 002's retention alert), and ANALYZE refreshes statistics.
Never VACUUM FULL.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg

from ops import settings
from ops.pg import OpsError, connect

log = logging.getLogger("likes.ops.retention")
PROGRESS_SECONDS = 5

_DELETE_EVENTS = """
WITH batch AS (
    SELECT post_id, day, slot FROM eng_post_like_events_daily
     WHERE day < %(cutoff)s LIMIT %(batch)s FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM eng_post_like_events_daily d USING batch b
     WHERE d.post_id = b.post_id AND d.day = b.day AND d.slot = b.slot
    RETURNING d.post_id, d.slot, d.likes - d.unlikes AS net
), carried AS (
    UPDATE eng_post_like_counter_slots s SET retired_net = s.retired_net + n.net
      FROM (SELECT post_id, slot, sum(net) AS net FROM gone GROUP BY post_id, slot) n
     WHERE s.post_id = n.post_id AND s.slot = n.slot
    RETURNING 1
)
SELECT count(*) FROM gone
"""
_DELETE_SECURITY = """
WITH gone AS (
    DELETE FROM eng_security_events WHERE ctid IN (
        SELECT ctid FROM eng_security_events WHERE created_at < %(cutoff)s LIMIT %(batch)s)
    RETURNING 1
)
SELECT count(*) FROM gone
"""


@dataclass
class RetentionResult:
    dry_run: bool
    cutoffs: dict[str, str]
    removed: dict[str, int] = field(default_factory=dict)
    remaining_expired: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0

    @property
    def compliant(self) -> bool:
        return all(n == 0 for n in self.remaining_expired.values())


def retention(database_url: str, events_days: int = settings.EVENTS_DAYS,
              security_days: int = settings.SECURITY_DAYS, batch_size: int = settings.BATCH_SIZE,
              dry_run: bool = False, today: date | None = None,
              lock_timeout_ms: int = 2000, statement_timeout_ms: int = 30000,
              throttle: float = settings.RETENTION_THROTTLE) -> RetentionResult:
    """Delete what is older than its cutoff. `today` (the run's date; default: today in UTC)
    is kept with the `events_days` days before it: rows of earlier days go. Security
    events go when created before midnight UTC `security_days` days before `today`.
    After each batch it rests `throttle` times as long as the batch took, leaving
    CPU and locks to the API."""
    for name, value, lo, hi in (("events_days", events_days, 1, None), ("security_days", security_days, 1, None),
                                ("batch_size", batch_size, 1, settings.BATCH_SIZE_MAX)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi and value > hi):
            raise OpsError(f"{name} must be a whole number from {lo}{f' to {hi}' if hi else ' up'}, got {value!r}")
    t0 = time.monotonic()
    today = today or datetime.now(timezone.utc).date()
    events_cutoff = today - timedelta(days=events_days)
    security_cutoff = datetime.combine(today - timedelta(days=security_days), datetime.min.time(), timezone.utc)
    result = RetentionResult(dry_run, {"eng_post_like_events_daily": events_cutoff.isoformat(),
                                       "eng_security_events": security_cutoff.isoformat()})
    with connect(database_url, autocommit=True) as conn:
        expired = _expired(conn, events_cutoff, security_cutoff)
        if dry_run:
            result.removed = {t: 0 for t in expired}
            result.remaining_expired = expired
            log.info("retention dry run: would remove %s", expired)
        else:
            batching = _Batching(batch_size, lock_timeout_ms, statement_timeout_ms, throttle)
            result.removed = {
                "eng_post_like_events_daily": _in_batches(conn, _DELETE_EVENTS, events_cutoff, batching,
                                                          "daily events"),
                "eng_security_events": _in_batches(conn, _DELETE_SECURITY, security_cutoff, batching,
                                                   "security events"),
            }
            result.remaining_expired = _expired(conn, events_cutoff, security_cutoff)
            for table in ("eng_post_like_events_daily", "eng_security_events", "eng_post_like_counter_slots"):
                conn.execute(f"ANALYZE {table}")
    result.duration_seconds = round(time.monotonic() - t0, 3)
    return result


@dataclass(frozen=True)
class _Batching:
    size: int
    lock_timeout_ms: int
    statement_timeout_ms: int
    throttle: float


def _in_batches(conn, sql: str, cutoff, b: _Batching, what: str) -> int:
    """One short transaction per batch, then a rest. A batch that hits lock_timeout
    is retried after a pause rather than waiting on the API's locks."""
    total, last_report, lock_misses = 0, time.monotonic(), 0
    while True:
        started = time.monotonic()
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = {int(b.lock_timeout_ms)}")
                conn.execute(f"SET LOCAL statement_timeout = {int(b.statement_timeout_ms)}")
                n = conn.execute(sql, {"cutoff": cutoff, "batch": b.size}).fetchone()[0]
        except psycopg.errors.LockNotAvailable:
            lock_misses += 1
            if lock_misses > 10:
                raise OpsError(f"retention: {what}: gave up after {lock_misses} lock timeouts "
                               f"({total} rows deleted so far)") from None
            time.sleep(0.5 * lock_misses)
            continue
        total += n
        if n < b.size or time.monotonic() - last_report >= PROGRESS_SECONDS:
            log.info("retention: deleted %d %s so far", total, what)
            last_report = time.monotonic()
        if n < b.size:
            return total
        time.sleep(b.throttle * (time.monotonic() - started))


def _expired(conn, events_cutoff, security_cutoff) -> dict[str, int]:
    return {
        "eng_post_like_events_daily": conn.execute(
            "SELECT count(*) FROM eng_post_like_events_daily WHERE day < %s", (events_cutoff,)).fetchone()[0],
        "eng_security_events": conn.execute(
            "SELECT count(*) FROM eng_security_events WHERE created_at < %s", (security_cutoff,)).fetchone()[0],
    }
