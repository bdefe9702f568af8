"""Liveness and readiness.

/health        liveness, no I/O.
/api/health    {"status", "release", "timestamp"}.
/api/monitoring/health   database, redis, pool and maintenance; 503 when the database is down,
                         degraded when Redis is down, the last backup or drill is over 26 h
                         old, or the last integrity check failed.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from sanic import Blueprint, Request, json

from api import store

bp = Blueprint("health")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@bp.get("/health")
async def liveness(request: Request):
    return json({"status": "ok"})


@bp.get("/api/health")
async def api_health(request: Request):
    return json({"status": "ok", "release": request.app.ctx.settings.release, "timestamp": _now()})


@bp.get("/api/monitoring/health")
async def monitoring_health(request: Request):
    ctx = request.app.ctx
    timeout = ctx.settings.db_timeout_seconds
    maintenance = None
    try:
        maintenance = await asyncio.wait_for(store.ops_status(ctx.pool), timeout)
        database = "connected"
    except Exception:
        store.purge_broken(ctx.pool)
        database = "unreachable"
    redis_ok = await ctx.redis.ping()
    stats = ctx.pool.get_stats()
    pool = {"min_size": ctx.pool.min_size, "max_size": ctx.pool.max_size,
            "size": stats.get("pool_size", 0), "available": stats.get("pool_available", 0),
            "waiting": stats.get("requests_waiting", 0)}
    # A fresh install has no backup or drill yet (*_missing): reported, not degraded.
    alerts = [p for p in (maintenance or {}).get("problems", []) if not p.endswith("_missing")]
    if database != "connected":
        status = "down"
    elif not redis_ok or alerts:
        status = "degraded"
    else:
        status = "ok"
    body = {"status": status, "database": database, "redis": "connected" if redis_ok else "unreachable",
            "pool": pool, "maintenance": maintenance, "release": ctx.settings.release, "timestamp": _now()}
    return json(body, status=503 if status == "down" else 200, headers={"Cache-Control": "no-store"})
