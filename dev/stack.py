"""Throwaway PostgreSQL 15 and Redis servers on free loopback ports.

Used by the pytest fixtures and by `make dev`. Each server lives in its own
temporary directory and is stopped by its PID. Nothing here is mocked: these
are the real server binaries from Debian's packages.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
DATABASE = "likes"
ROLES = ("likes_owner", "likes_api", "likes_ops")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class PostgresServer:
    """A PostgreSQL cluster with the likes database and its three roles."""
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="likes-pg-")))
    passwords: dict[str, str] = field(default_factory=lambda: {r: secrets.token_hex(12) for r in ("postgres", *ROLES)})

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, role: str = "postgres", database: str = DATABASE) -> str:
        return f"postgresql://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/{database}"

    def start(self) -> "PostgresServer":
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.passwords["postgres"] + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        if not (self.datadir / "PG_VERSION").exists():
            subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                                         "--auth-local=trust", "--auth-host=scram-sha-256",
                                         f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"]),
                           check=True, stdout=subprocess.DEVNULL)
        pwfile.unlink()
        self._start()
        return self

    def _start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.root / "server.log"), "-o",
                     f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                     "-c shared_preload_libraries=pg_stat_statements -c fsync=off "
                     "-c synchronous_commit=off -c max_connections=200")

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-w", "-m", mode)

    def restart(self) -> None:
        self.stop()
        self._start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, role: str = "postgres", database: str = DATABASE) -> str:
        out = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.url(role, database), "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def provision(self) -> None:
        """Create the roles and the database, as the deploy's postgresql role does."""
        for role in ROLES:
            self.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{self.passwords[role]}'", database="postgres")
        self.psql("ALTER ROLE likes_owner CREATEDB", database="postgres")   # restore drills create scratch databases
        self.psql(f"CREATE DATABASE {DATABASE} OWNER likes_owner", database="postgres")
        self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.psql("GRANT pg_read_all_stats TO likes_ops")

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), *args]),
                       check=True, stdout=subprocess.DEVNULL)


@dataclass
class RedisServer:
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="likes-redis-")))
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root), "--logfile", str(self.root / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on 127.0.0.1:{self.port}; see {self.root}/redis.log")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
