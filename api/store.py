"""Every SQL statement the API runs. The logic lives in the database functions
(api/sql); this module only calls them, one round trip each.
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncio

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

LIKES_DISABLED_SQLSTATE = "LK001"


def is_database_error(exc: BaseException) -> bool:
    """The database is down, slow or refused: the request gets a 503."""
    return isinstance(exc, (psycopg.Error, PoolTimeout, asyncio.TimeoutError))


def purge_broken(pool: AsyncConnectionPool) -> None:
    """After a connection error, check every idle connection in the background, so
    a database restart costs each worker one failed request, not one per connection."""
    if not getattr(pool, "_likes_checking", False):
        pool._likes_checking = True

        async def check():
            try:
                await pool.check()
            except Exception:
                pass
            finally:
                pool._likes_checking = False

        asyncio.get_running_loop().create_task(check())


class LikesDisabled(Exception):
    """The kill switch is on: likes are read-only."""


@dataclass(frozen=True)
class LikeResult:
    liked: bool
    changed: bool
    count: int


async def apply_like(pool: AsyncConnectionPool, post_id: str, client_hash: bytes, op: str) -> LikeResult:
    try:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT liked, changed, like_count FROM eng_post_like_apply(%s, %s, %s)",
                                     (post_id, client_hash, op))
            liked, changed, count = await cur.fetchone()
    except psycopg.Error as exc:
        if exc.sqlstate == LIKES_DISABLED_SQLSTATE:
            raise LikesDisabled() from None
        raise
    return LikeResult(liked, changed, count)


async def count(pool: AsyncConnectionPool, post_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT like_count FROM eng_post_like_counts(ARRAY[%s])", (post_id,))
        return (await cur.fetchone())[0]


async def counts(pool: AsyncConnectionPool, post_ids: list[str]) -> dict[str, int]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT post_id, like_count FROM eng_post_like_counts(%s)", (post_ids,))
        return dict(await cur.fetchall())


async def status(pool: AsyncConnectionPool, post_id: str, client_hash: bytes) -> tuple[int, bool]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT like_count, liked FROM eng_post_like_status(%s, %s)", (post_id, client_hash))
        count_, liked = await cur.fetchone()
        return count_, liked


async def liked_among(pool: AsyncConnectionPool, post_ids: list[str], client_hash: bytes) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM eng_post_like_liked(%s, %s)", (post_ids, client_hash))
        return {row[0] for row in await cur.fetchall()}


async def likes_read_only(pool: AsyncConnectionPool) -> bool:
    """The kill switch, read as eng_post_like_apply reads it (api/sql/0001_schema.sql)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM feature_flags "
                                 "WHERE name = 'likes' AND (kill_switch OR NOT enabled))")
        return (await cur.fetchone())[0]


async def record_security_events(pool: AsyncConnectionPool, rows: list[tuple]) -> None:
    """rows: (minute, event_type, severity, ip_hash, count)."""
    if not rows:
        return
    cols = list(zip(*rows))
    async with pool.connection() as conn:
        await conn.execute("SELECT eng_security_events_record(%s, %s, %s, %s, %s)",
                           (list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]), list(cols[4])))


async def ping(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")


async def ops_status(pool: AsyncConnectionPool) -> dict:
    """Ages of the last backup, drill and integrity check, and their problems (from ops_runs)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT backup_age_seconds, drill_age_seconds, integrity_age_seconds, "
                                 "integrity_outcome, problems FROM eng_ops_status()")
        names = [d.name for d in cur.description]
        return dict(zip(names, await cur.fetchone()))


# Kill switch, used by `python -m api flags` with an operator's DATABASE_URL.

def get_flags(conninfo: str) -> list[dict]:
    with psycopg.connect(conninfo) as conn:
        cur = conn.execute("SELECT name, enabled, kill_switch, rollout_percentage, updated_at "
                           "FROM feature_flags ORDER BY name")
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def set_kill_switch(conninfo: str, name: str, on: bool) -> bool:
    with psycopg.connect(conninfo) as conn:
        cur = conn.execute("UPDATE feature_flags SET kill_switch = %s, updated_at = now() WHERE name = %s",
                           (on, name))
        return cur.rowcount == 1
