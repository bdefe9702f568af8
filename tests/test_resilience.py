"""Redis and PostgreSQL failures, and graceful shutdown. Each test gets its
own servers and API process, so stopping them disturbs nothing else."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psycopg
import pytest

from dev.stack import PostgresServer, RedisServer
from tests.conftest import ROOT, ApiProcess
from tests.helpers import assert_error


@pytest.fixture
def own_stack():
    pg = PostgresServer().start()
    pg.provision()
    subprocess.run([sys.executable, "-m", "api", "migrate"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DATABASE_URL": pg.url("likes_owner")})
    redis = RedisServer().start()
    api = ApiProcess(pg, redis, DB_TIMEOUT_SECONDS="1", REQUEST_TIMEOUT="5").start()
    try:
        yield pg, redis, api
    finally:
        api.stop()
        redis.destroy()
        pg.destroy()


def _like(api: ApiProcess, post: str = "p1") -> httpx.Response:
    return httpx.post(api.base_url + "/api/posts/like", json={"postId": post, "op": "like"}, timeout=10)


def _wait_for(predicate, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def test_redis_down_keeps_serving_degraded_and_recovers(own_stack):
    pg, redis, api = own_stack
    assert _like(api).json()["count"] == 1
    redis.stop()
    assert _like(api).json()["count"] == 2
    count = httpx.get(api.base_url + "/api/posts/like/count", params={"postId": "p1"})
    assert count.status_code == 200 and count.json()["count"] == 2      # read from PostgreSQL
    health = httpx.get(api.base_url + "/api/monitoring/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded" and health.json()["redis"] == "unreachable"
    # Rate limiting goes on in memory meanwhile.
    assert _like(api).status_code == 200 and "RateLimit-Limit" in _like(api).headers
    redis.start()
    assert _wait_for(lambda: httpx.get(api.base_url + "/api/monitoring/health").json()["status"] == "ok")
    import redis as redis_py
    with redis_py.Redis.from_url(redis.url) as r:
        # Writes fill the cache again once each worker has probed Redis.
        assert _wait_for(lambda: _like(api).status_code == 200 and r.get("likes:count:p1") is not None)


def test_postgres_down_gives_503_json_in_time_and_recovers_without_restart(own_stack):
    pg, redis, api = own_stack
    assert _like(api).status_code == 200
    pg.stop()
    started = time.monotonic()
    r = _like(api)
    assert time.monotonic() - started < 5
    assert_error(r, 503, "database_unavailable")
    health = httpx.get(api.base_url + "/api/monitoring/health")
    assert health.status_code == 503 and health.json()["status"] == "down"
    assert httpx.get(api.base_url + "/health").status_code == 200       # liveness needs no database
    pg.restart()
    assert _wait_for(lambda: _like(api).status_code == 200, 20)
    # Every worker recovers (each pool drops its broken connections), not just one.
    assert _wait_for(lambda: all(httpx.get(api.base_url + "/api/monitoring/health").json()["status"] == "ok"
                                 for _ in range(6)), 20)
    assert api.proc.poll() is None


def test_sigterm_finishes_requests_in_flight_then_exits(own_stack):
    pg, redis, api = own_stack
    result = {}
    with psycopg.connect(pg.url()) as blocker:
        # Hold a lock the like function needs, so a request is in flight when SIGTERM lands.
        blocker.execute("LOCK TABLE feature_flags IN ACCESS EXCLUSIVE MODE")
        t = threading.Thread(target=lambda: result.setdefault("r", _like(api, "inflight")))
        t.start()
        time.sleep(0.4)
        api.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        blocker.rollback()
    t.join(10)
    assert result["r"].status_code == 200 and result["r"].json()["changed"] is True
    assert api.proc.wait(15) == 0


def test_api_starts_while_postgres_is_down_and_serves_once_it_returns(own_stack):
    pg, redis, api = own_stack
    api.stop()
    pg.stop()
    late = ApiProcess(pg, redis, DB_TIMEOUT_SECONDS="1").start()
    try:
        assert httpx.get(late.base_url + "/api/monitoring/health").status_code == 503
        assert_error(_like(late), 503, "database_unavailable")
        pg.restart()
        assert _wait_for(lambda: _like(late).status_code == 200, 20)
    finally:
        late.stop()


def test_api_starts_while_redis_is_down_and_uses_it_once_it_returns(own_stack):
    pg, redis, api = own_stack
    api.stop()
    redis.stop()
    late = ApiProcess(pg, redis).start()
    try:
        assert _like(late).status_code == 200
        assert httpx.get(late.base_url + "/api/monitoring/health").json()["status"] == "degraded"
        redis.start()
        assert _wait_for(lambda: httpx.get(late.base_url + "/api/monitoring/health").json()["status"] == "ok")
    finally:
        late.stop()
