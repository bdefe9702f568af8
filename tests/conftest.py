"""Fixtures: real PostgreSQL 15 and redis-server on free ports, the schema
migrated by `python -m api migrate`, and the API run as a real process
(`python -m api serve`). Nothing is mocked.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from dev.stack import PostgresServer, RedisServer, free_port
# Defined here, not imported into each deploy module: an imported fixture is a new one per module,
# and the local converge (minutes) would run once per module.
from tests.deploy import local  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
TABLES = "eng_post_likes, eng_post_like_counter_slots, eng_post_like_events_daily, eng_security_events"


def pytest_collection_modifyitems(items):
    """The deploy tests (marked `deploy`) take over the machine's system services: they run last, in order."""
    items.sort(key=lambda item: item.get_closest_marker("deploy") is not None)


@pytest.fixture(scope="session")
def pg():
    server = PostgresServer().start()
    server.provision()
    subprocess.run([sys.executable, "-m", "api", "migrate"], check=True, cwd=ROOT,
                   env={**os.environ, "DATABASE_URL": server.url("likes_owner")}, stdout=subprocess.DEVNULL)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.destroy()


@pytest.fixture
def db(pg, redis_server):
    """A superuser connection to the likes database, emptied (with Redis) before each test."""
    with redis.Redis.from_url(redis_server.url) as r:
        r.flushdb()
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES}")
        conn.execute("UPDATE feature_flags SET kill_switch = false, enabled = true")
        yield conn


class ApiProcess:
    def __init__(self, pg: PostgresServer, redis_server: RedisServer, **env: str):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_file = ARTIFACTS / f"api-{self.port}.log"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DATABASE_URL": pg.url("likes_api"),
            "REDIS_URL": redis_server.url,
            "CLIENT_ID_SECRET": secrets.token_hex(32),
            "RATE_LIMIT_MAX_REQUESTS": "1000000",
            "RATE_LIMIT_READ_MAX_REQUESTS": "1000000",
            "LOG_FILE": str(self.log_file),
            "LOG_LEVEL": "INFO",
            "WORKERS": "2",
            "PORT": str(self.port),
            **env,
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ApiProcess":
        self.log_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "api", "serve"], cwd=ROOT, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited with {self.proc.returncode}; see {self.log_file}")
            # Every worker must be ready: Sanic ignores a SIGTERM that lands mid-startup.
            ready = sum('"Worker ready' in line for line in self.log_lines())
            if ready >= int(self.env["WORKERS"]):
                try:
                    if httpx.get(self.base_url + "/health", timeout=0.5).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"API did not come up on {self.base_url}; see {self.log_file}")

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode if self.proc else None

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10, **kw)

    def log_lines(self) -> list[str]:
        return self.log_file.read_text().splitlines() if self.log_file.exists() else []


@pytest.fixture(scope="session")
def api_factory(pg, redis_server):
    started: list[ApiProcess] = []

    @contextmanager
    def make(**env: str):
        proc = ApiProcess(pg, redis_server, **env).start()
        started.append(proc)
        try:
            yield proc
        finally:
            proc.stop()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def api(api_factory):
    """The shared API process, with rate limits high enough not to interfere."""
    with api_factory() as proc:
        yield proc


@pytest.fixture
def client(api, db):
    with api.client() as c:
        yield c
