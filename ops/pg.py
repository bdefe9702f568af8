"""PostgreSQL plumbing shared by the operations: connections and client binaries."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class OpsError(RuntimeError):
    """An operation failed; the message says what and why."""


def binary(name: str) -> str:
    """pg_dump/pg_restore matching the server (PostgreSQL 15), not whatever is first on PATH."""
    candidate = PG_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise OpsError(f"{name} not found: install postgresql-client-15 or set PG_BIN")
    return found


def connect(url: str, **kw) -> psycopg.Connection:
    return psycopg.connect(url, **kw)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def run(cmd: list[str], what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise OpsError(f"{what} failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    return out
