"""Restore a named, verified backup into the LIVE database.

`python -m ops restore --backup NAME --confirm NAME`. In order:
1. the operator repeats the backup's name (--confirm), or nothing happens;
2. the backup's size, sha256 and archive are checked against its manifest, and
   its schema revision (alembic) must equal the live database's;
3. the likes kill switch goes on (likes read-only), and in-flight likes are
   drained, so that nothing is written between the safety backup and the restore;
4. a safety backup of the live database (label `pre-restore`);
5. the backup's eng_* data replaces the live eng_* data in ONE transaction
   (TRUNCATE, pg_restore's data, a row-count check against the manifest): on any
   error, or a count that differs, it rolls back and the live data is untouched.
   ops_runs, feature_flags and alembic_version stay as they are live; the schema
   is not touched (the revisions are equal);
6. the integrity suite runs against the live database;
7. the kill switch goes back to its state before step 3, also on failure.
RTO here is the time likes were read-only (steps 3 to 7).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from api import store
from api.migrate import current_revision
from ops import runs
from ops.backup import backup, check_dump, find, restore_list, table_data_entries
from ops.integrity import integrity, load_gx
from ops.pg import OpsError, binary, connect, libpq_env, run

log = logging.getLogger("likes.ops.restore")
RESTORED_PREFIX = "eng_"          # the likes data; everything else stays as it is live
KILL_SWITCH = "likes"
SAFETY_LABEL = "pre-restore"
LOCK_TIMEOUT = "30s"              # for the drain and the TRUNCATE; a backup holding the tables makes it fail
RESTORE_LOCK_KEY = 0x6C696B6573727374  # pg_try_advisory_lock key: "likesrst"
_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


class ConfirmationError(OpsError):
    """The operator did not repeat the backup's name: nothing was changed."""


@dataclass
class RestoreResult:
    backup: str
    passed: bool
    problem: str | None = None
    safety_backup: str | None = None
    schema_revision: str | None = None
    restored_rows: dict[str, int] = field(default_factory=dict)
    rto_seconds: float | None = None
    load_seconds: float | None = None
    kill_switch_before: bool | None = None
    kill_switch_after: bool | None = None
    integrity_failures: list[str] = field(default_factory=list)
    docs_index: str | None = None


def check_confirmation(backup_dir: Path, name: str, confirm: str | None):
    """The manifest of the backup to restore, if `confirm` repeats its name exactly."""
    manifest = find(backup_dir, name)
    if confirm != manifest.name:
        got = "no --confirm" if confirm is None else f"--confirm {confirm!r}"
        raise ConfirmationError(
            f"restore replaces the live likes data with backup {manifest.name}: repeat its name to go ahead "
            f"(--confirm {manifest.name}); got {got}. Nothing was changed.")
    return manifest


def restore(database_url: str, backup_dir: Path, name: str, confirm: str | None,
            docs_dir: Path | None = None) -> RestoreResult:
    manifest = check_confirmation(backup_dir, name, confirm)
    path = Path(backup_dir) / manifest.file
    problem = check_dump(path, manifest)
    if problem:
        raise OpsError(f"backup {manifest.name} cannot be restored: {problem}. Nothing was changed.")
    revision, live_revision = archive_revision(path), current_revision(database_url)
    if revision != live_revision:
        raise OpsError(f"backup {manifest.name} has schema revision {revision}, the live database has "
                       f"{live_revision}: its data would not fit. Restore it into a database migrated to {revision} "
                       "instead (`python -m ops drill --backup NAME` proves it restores). Nothing was changed.")
    listing = run([binary("pg_restore"), "--list", str(path)], "pg_restore --list").stdout
    tables = sorted(t for t in table_data_entries(listing) if t.startswith(RESTORED_PREFIX))
    bad = [t for t in tables if not _TABLE_RE.match(t) or t not in manifest.row_counts]
    if not tables or bad:
        raise OpsError(f"backup {manifest.name} has no usable likes data (tables {tables}). Nothing was changed.")

    result = RestoreResult(backup=manifest.name, passed=False, schema_revision=revision)
    load_gx()                           # now, not while likes are read-only
    with connect(database_url, autocommit=True) as lock_conn:
        if not lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (RESTORE_LOCK_KEY,)).fetchone()[0]:
            raise OpsError("another restore is running against this database. Nothing was changed.")
        result.kill_switch_before = _kill_switch(database_url)
        t0 = time.monotonic()
        try:
            _replace_live_data(database_url, backup_dir, manifest, path, listing, tables, docs_dir, result)
        except OpsError as exc:                 # reported with what was done so far (the safety backup's name)
            result.problem = str(exc)
            log.error("restore %s failed: %s", manifest.name, exc)
        finally:
            try:
                store.set_kill_switch(database_url, KILL_SWITCH, result.kill_switch_before)
                result.kill_switch_after = _kill_switch(database_url)
                result.rto_seconds = round(time.monotonic() - t0, 3)
                log.info("restore %s: kill switch back to %s after %.1f s", manifest.name,
                         "on" if result.kill_switch_after else "off", result.rto_seconds)
            except Exception as exc:
                log.error("restore %s: could not put the kill switch back to %s: %s; run `python -m api flags %s`",
                          manifest.name, result.kill_switch_before, exc,
                          "kill" if result.kill_switch_before else "restore")
                raise
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (RESTORE_LOCK_KEY,))
    return result


def _replace_live_data(database_url: str, backup_dir: Path, manifest, path: Path, listing: str, tables: list[str],
                       docs_dir: Path | None, result: RestoreResult) -> None:
    """Steps 3 to 6; they fill in `result` as they go."""
    store.set_kill_switch(database_url, KILL_SWITCH, True)
    log.info("restore %s: kill switch on (likes read-only); draining in-flight likes", manifest.name)
    _drain(database_url, tables)
    with runs.recorded(database_url, "backup", label=SAFETY_LABEL, before_restore_of=manifest.name) as rec:
        safety = backup(database_url, backup_dir, label=SAFETY_LABEL)
        rec.details.update(dataclasses.asdict(safety))
    result.safety_backup = safety.name
    log.info("restore %s: safety backup %s taken", manifest.name, safety.name)
    expected = {t: manifest.row_counts[t] for t in tables}
    t_load = time.monotonic()
    _load(database_url, path, listing, tables, expected)
    result.load_seconds = round(time.monotonic() - t_load, 3)
    result.restored_rows = expected
    log.info("restore %s: %d rows in %d tables restored in one transaction in %.1f s", manifest.name,
             sum(expected.values()), len(tables), result.load_seconds)
    with runs.recorded(database_url, "integrity", after_restore_of=manifest.name) as rec:
        checked = integrity(database_url, docs_dir=docs_dir)
        rec.details.update(dataclasses.asdict(checked), passed=checked.passed)
    result.docs_index = checked.docs_index
    result.integrity_failures = [c.meaning for c in checked.checks if not c.passed]
    if result.integrity_failures:
        result.problem = "integrity failed after the restore: " + "; ".join(result.integrity_failures)
    else:
        result.passed = True


def archive_revision(path: Path) -> str | None:
    """The alembic revision stored in the archive's alembic_version table."""
    out = run([binary("pg_restore"), "--data-only", "--table=alembic_version", "--file=-", str(path)],
              "pg_restore (alembic_version)").stdout
    rows, copying = [], False
    for line in out.splitlines():
        if line.startswith("COPY ") and "alembic_version" in line:
            copying = True
        elif copying and line == "\\.":
            break
        elif copying:
            rows.append(line.strip())
    return max(rows) if rows else None


def _kill_switch(database_url: str) -> bool:
    for flag in store.get_flags(database_url):
        if flag["name"] == KILL_SWITCH:
            return flag["kill_switch"]
    raise OpsError(f"the feature flag {KILL_SWITCH!r} does not exist: is the database migrated? Nothing was changed.")


def _drain(database_url: str, tables: list[str]) -> None:
    """Wait for like transactions that started before the kill switch went on: a
    SHARE lock waits for every writer holding the tables, then is released."""
    try:
        with connect(database_url) as conn:
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute("LOCK TABLE " + ", ".join(f"public.{t}" for t in tables if t != "eng_security_events")
                         + " IN SHARE MODE")
    except psycopg.errors.LockNotAvailable:
        raise OpsError(f"could not drain in-flight likes: writers held the tables for {LOCK_TIMEOUT} "
                       "(a retention batch?): retry. The live data was not changed.") from None


def _load(database_url: str, path: Path, listing: str, tables: list[str], expected: dict[str, int]) -> None:
    """TRUNCATE, the archive's data and a count check, all in one psql transaction."""
    entries = set(table_data_entries(listing)[t] for t in tables)
    use_list = restore_list(path, lambda line: line in entries)
    truncate = (f"SET lock_timeout = '{LOCK_TIMEOUT}'; "
                f"TRUNCATE {', '.join('public.' + t for t in tables)}")
    check = "DO $check$ BEGIN\n" + "\n".join(
        f"IF (SELECT count(*) FROM public.{t}) <> {int(n)} THEN RAISE EXCEPTION "
        f"'manifest mismatch: restored {t} has % rows, the manifest says {int(n)}', "
        f"(SELECT count(*) FROM public.{t}); END IF;" for t, n in expected.items()) + "\nEND $check$"
    env = libpq_env(database_url)
    try:
        producer = subprocess.Popen([binary("pg_restore"), "--data-only", "--use-list", str(use_list), "--file=-",
                                     str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        consumer = subprocess.run([binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                   "-c", truncate, "-f", "-", "-c", check], stdin=producer.stdout,
                                  capture_output=True, text=True, env=env)
        producer.stdout.close()
        produced_err = producer.stderr.read().decode(errors="replace")
        producer.wait()
    finally:
        use_list.unlink(missing_ok=True)
    if consumer.returncode != 0:        # first: a failed psql also breaks pg_restore's pipe
        raise OpsError("the restore transaction failed and was rolled back, the live data is unchanged: "
                       + _psql_error(consumer.stderr))
    if producer.returncode != 0:
        raise OpsError(f"pg_restore failed (exit {producer.returncode}) and the transaction was rolled back, "
                       f"the live data is unchanged: {produced_err.strip()[-1000:]}")


def _psql_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if "ERROR" in line or "FATAL" in line]
    message = (lines or stderr.strip().splitlines() or ["(no message)"])[-1]
    if "lock timeout" in message:
        message += f" (another session held the tables for {LOCK_TIMEOUT}; a running backup does: retry after it)"
    return json.dumps(message)[1:-1]
