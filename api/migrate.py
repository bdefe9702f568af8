"""Schema migrations: alembic with raw SQL files, under an advisory lock.

`python -m api migrate` is safe to run twice (alembic skips applied revisions)
and from two hosts at once: the second waits on the advisory lock, then finds
nothing left to do.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).resolve().parent
SQL_DIR = HERE / "sql"
MIGRATIONS_DIR = HERE / "migrations"
# pg_advisory_xact_lock key: the bytes of "likesmig" as a bigint.
ADVISORY_LOCK_KEY = 0x6C696B65736D6967
REQUIRED_ROLES = ("likes_api", "likes_ops")


def migrate(database_url: str) -> list[str]:
    """Apply every pending migration; return the revisions applied."""
    engine = sa.create_engine(_sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    cfg = _alembic_config()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            _require_roles(conn)
            before = MigrationContext.configure(conn).get_current_revision()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            after = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
    finally:
        engine.dispose()
    if before == after:
        return []
    script = ScriptDirectory.from_config(cfg)
    return [rev.revision for rev in script.iterate_revisions(after, before)][::-1]


def current_revision(database_url: str) -> str | None:
    engine = sa.create_engine(_sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def run_sql_file(name: str) -> None:
    """Run one SQL file from api/sql inside the migration's transaction."""
    # Straight to psycopg with no parameters: it sends the file as one simple
    # query, so `%` and `:` in the SQL are left alone.
    op.get_bind().connection.driver_connection.execute((SQL_DIR / name).read_text())


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _sqlalchemy_url(database_url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


def _require_roles(conn: sa.Connection) -> None:
    found = {r for (r,) in conn.execute(
        sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"),
        {"names": list(REQUIRED_ROLES)})}
    missing = [r for r in REQUIRED_ROLES if r not in found]
    if missing:
        raise MigrationError(
            "database role(s) " + ", ".join(missing) + " do not exist: the migration grants to them. "
            "Create them first (the postgresql playbook role does; by hand: CREATE ROLE likes_api LOGIN ...)")


class MigrationError(RuntimeError):
    pass
