"""Restore drills: prove that a backup restores into a working, correct database.

Checksum first; restore into a scratch database with a unique name
(`pg_restore -j`); compare per-table row counts with the manifest; run the
integrity suite on the copy; record RTO and RPO. The scratch database is
always dropped, whatever happened.
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from ops import settings
from ops.backup import check_dump, find, restore_list
from ops.integrity import integrity
from ops.pg import OpsError, binary, connect, libpq_env, run, with_database

log = logging.getLogger("likes.ops.drill")


@dataclass
class DrillReport:
    backup: str
    passed: bool
    problem: str | None
    scratch_database: str
    rto_seconds: float | None = None
    rpo_backup_age_seconds: float | None = None
    rpo_newest_row_age_seconds: float | None = None
    dump_size_bytes: int | None = None
    restored_size_bytes: int | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    integrity_failures: list[str] = field(default_factory=list)
    docs_index: str | None = None


def drill(database_url: str, backup_dir: Path, name: str = "latest", jobs: int = settings.RESTORE_JOBS,
          docs_dir: Path | None = None) -> DrillReport:
    manifest = find(backup_dir, name)
    scratch = f"likes_drill_{datetime.now(timezone.utc):%Y%m%d%H%M%S}_{secrets.token_hex(3)}"
    now = datetime.now(timezone.utc)
    report = DrillReport(backup=manifest.name, passed=False, problem=None, scratch_database=scratch,
                         dump_size_bytes=manifest.size_bytes,
                         rpo_backup_age_seconds=round((now - datetime.fromisoformat(manifest.finished_at))
                                                      .total_seconds(), 1),
                         rpo_newest_row_age_seconds=round((now - datetime.fromisoformat(manifest.newest_row_at))
                                                          .total_seconds(), 1) if manifest.newest_row_at else None)
    path = Path(backup_dir) / manifest.file
    problem = check_dump(path, manifest)
    if problem:
        report.problem = problem
        return report
    admin = with_database(database_url, "postgres")
    with connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    try:
        scratch_url = with_database(database_url, scratch)
        t0 = time.monotonic()
        # Extensions (pg_stat_statements) need a superuser, and the copy does not need them.
        listing = restore_list(path, lambda line: " EXTENSION " not in line)
        try:
            run([binary("pg_restore"), f"--jobs={jobs}", "--exit-on-error", "--no-owner", "--use-list",
                 str(listing), "--dbname", scratch, str(path)], "pg_restore", env=libpq_env(scratch_url))
        finally:
            listing.unlink(missing_ok=True)
        report.rto_seconds = round(time.monotonic() - t0, 3)
        log.info("drill %s: restored into %s in %.1f s", manifest.name, scratch, report.rto_seconds)
        with connect(scratch_url) as conn:
            report.row_counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                                 for t in manifest.row_counts}
            report.restored_size_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        mismatched = {t: (report.row_counts[t], n) for t, n in manifest.row_counts.items() if report.row_counts[t] != n}
        if mismatched:
            report.problem = "manifest mismatch: " + ", ".join(
                f"{t} has {got} rows, the manifest says {want}" for t, (got, want) in mismatched.items())
            return report
        checked = integrity(scratch_url, docs_dir=docs_dir, docs_name="drill")
        report.docs_index = checked.docs_index
        report.integrity_failures = [c.meaning for c in checked.checks if not c.passed]
        if report.integrity_failures:
            report.problem = "integrity failed on the restored copy: " + "; ".join(report.integrity_failures)
            return report
        report.passed = True
        return report
    except (OpsError, psycopg.Error) as exc:      # a check that could not run fails the drill
        report.problem = f"could not complete the drill: {exc}"
        return report
    finally:
        _drop(admin, scratch)


def _drop(admin_url: str, scratch: str) -> None:
    with connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    log.info("drill: dropped scratch database %s", scratch)
