"""PostgreSQL plumbing shared by the operations: connections and client binaries.

Client binaries get the connection through libpq's PG* environment variables,
never on their command line, so the password does not show in `ps`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
# libpq connection parameters and the environment variables that carry them.
_LIBPQ_ENV = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
              "user": "PGUSER", "password": "PGPASSWORD", "passfile": "PGPASSFILE", "sslmode": "PGSSLMODE",
              "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
              "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME",
              "target_session_attrs": "PGTARGETSESSIONATTRS", "options": "PGOPTIONS"}


class OpsError(RuntimeError):
    """An operation failed; the message says what and why."""


def binary(name: str) -> str:
    """pg_dump/pg_restore/psql matching the server (PostgreSQL 15), not whatever is first on PATH."""
    candidate = PG_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise OpsError(f"{name} not found: install postgresql-client-15 or set PG_BIN")
    return found


def connect(url: str, **kw) -> psycopg.Connection:
    return psycopg.connect(url, **kw)


def libpq_env(url: str) -> dict[str, str]:
    """The environment for a client binary that connects to `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k == "PG_BIN"}
    for key, value in conninfo_to_dict(url).items():
        if key not in _LIBPQ_ENV:
            raise OpsError(f"DATABASE_URL parameter {key!r} is not supported by the maintenance tools")
        env[_LIBPQ_ENV[key]] = str(value)
    return env


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def run(cmd: list[str], what: str, timeout: float | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise OpsError(f"{what} failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    return out
