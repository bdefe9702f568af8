"""The maintenance library against a real PostgreSQL with real pg_dump/pg_restore."""
from __future__ import annotations

import html
import json
import os
import stat
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ops import backup as bk
from ops.drill import drill
from ops.integrity import integrity, repair
from ops.pg import OpsError
from ops.restore import restore
from ops.retention import retention
from ops.status import status
from tests.conftest import ROOT


@pytest.fixture
def owner(pg, db):
    db.execute("TRUNCATE ops_runs")
    return pg.url("likes_owner")


def _like(db, post: str, client: str, op: str = "like"):
    db.execute("SELECT eng_post_like_apply(%s, sha256(%s::bytea), %s)", (post, client.encode(), op))


def _seed(db, posts: int = 5, clients: int = 4):
    for p in range(posts):
        for c in range(clients):
            _like(db, f"post-{p}", f"client-{c}")


def _scratch_databases(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname LIKE 'likes_drill_%'")]


def _ops(*args: str, url: str, backup_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops", "--dir", str(backup_dir), "--docs-dir",
                           str(backup_dir.parent / "docs"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "DATABASE_URL": url})


def _fake_backup(directory: Path, started: datetime) -> str:
    """A published backup as prune sees it: a manifest and its file (pruning reads only metadata)."""
    name = "likes-" + started.strftime("%Y%m%dT%H%M%SZ")
    (directory / (name + ".dump")).write_bytes(b"x")
    (directory / (name + ".manifest.json")).write_text(json.dumps({
        "name": name, "file": name + ".dump", "sha256": "", "size_bytes": 1, "format": "custom",
        "pg_dump_version": "", "server_version": "", "started_at": started.isoformat(),
        "finished_at": started.isoformat(), "duration_seconds": 1, "row_counts": {}, "newest_row_at": None}))
    return name


# Backups

def test_backup_writes_a_verified_dump_and_manifest_from_one_snapshot(owner, db, tmp_path):
    _seed(db)
    result = bk.backup(owner, tmp_path / "b", label="test")
    dump, manifest_path = Path(result.path), Path(result.manifest)
    manifest = json.loads(manifest_path.read_text())
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600 and stat.S_IMODE(manifest_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o700
    assert manifest["sha256"] == bk.sha256_of(dump) and manifest["size_bytes"] == dump.stat().st_size
    assert manifest["row_counts"]["eng_post_likes"] == 20 and manifest["verified_at"]
    assert manifest["server_version"].startswith("15") and "pg_dump (PostgreSQL) 15" in manifest["pg_dump_version"]
    assert {"started_at", "finished_at", "duration_seconds", "newest_row_at"} <= set(manifest)
    assert not list((tmp_path / "b").glob(".tmp-*"))
    assert bk.verify(tmp_path / "b").ok


def test_verify_names_a_flipped_byte_and_a_truncated_file(owner, db, tmp_path):
    _seed(db)
    result = bk.backup(owner, tmp_path)
    data = bytearray(Path(result.path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(result.path).write_bytes(bytes(data))
    assert "corrupted file" in bk.verify(tmp_path).problem
    Path(result.path).write_bytes(bytes(data[: len(data) // 2]))
    assert "truncated file" in bk.verify(tmp_path).problem


def test_gfs_prune_over_a_simulated_month_keeps_exactly_the_right_backups(tmp_path):
    # Daily backups at 02:00 from 1 Oct to 9 Nov 2026, and a second one on 9 Nov at 14:00.
    stamps = [datetime(2026, 10, 1, 2, tzinfo=timezone.utc) + timedelta(days=i) for i in range(40)]
    stamps.append(datetime(2026, 11, 9, 14, tzinfo=timezone.utc))
    for s in stamps:
        _fake_backup(tmp_path, s)
    result = bk.prune(tmp_path, bk.KeepPolicy(daily=7, weekly=4, monthly=6))
    kept_days = sorted(n[6:22] for n in result.kept)
    # daily: 3-9 Nov (9 Nov's newest is 14:00); weekly (ISO weeks from Monday): 9 Nov, 8 Nov,
    # 1 Nov, 25 Oct; monthly: 9 Nov, 31 Oct.
    assert kept_days == ["20261025T020000Z", "20261031T020000Z", "20261101T020000Z", "20261103T020000Z",
                         "20261104T020000Z", "20261105T020000Z", "20261106T020000Z", "20261107T020000Z",
                         "20261108T020000Z", "20261109T140000Z"]
    assert len(result.deleted) == 31
    assert sorted(p.name[6:22] for p in tmp_path.glob("*.dump")) == kept_days


def test_prune_removes_day_old_temporaries_and_dumps_without_a_manifest(tmp_path):
    kept = _fake_backup(tmp_path, datetime(2026, 1, 1, tzinfo=timezone.utc))
    day_old = datetime.now().timestamp() - 25 * 3600
    for name in (".tmp-likes-20260101T000000Z.dump", "likes-20251231T000000Z.dump"):   # crashed runs
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (day_old, day_old))
    (tmp_path / ".tmp-likes-20260102T000000Z.dump").write_bytes(b"x")                  # a backup running now
    bk.prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".tmp-likes-20260102T000000Z.dump", f"{kept}.dump", f"{kept}.manifest.json"]


def test_prune_never_deletes_the_newest_backup(tmp_path):
    name = _fake_backup(tmp_path, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert bk.prune(tmp_path, bk.KeepPolicy(0, 0, 0)).kept == [name]


# Retention

def _rows(db, sql: str) -> set[tuple]:
    return set(db.execute(sql).fetchall())


def test_retention_removes_exactly_the_expired_rows_and_keeps_the_ledger(owner, db):
    today = date(2026, 11, 22)
    _seed(db, posts=2, clients=3)
    # Events 91, 90 and 89 days before `today` on every counter slot: only day 91 is past the cutoff.
    db.execute("""INSERT INTO eng_post_like_events_daily (post_id, day, slot, likes, unlikes)
                  SELECT post_id, %s::date - d, slot, 2, 1 FROM eng_post_like_counter_slots, unnest(ARRAY[91, 90, 89]) d""",
               (today,))
    # Those events moved no counter; book them so the ledger holds before retention runs.
    db.execute("UPDATE eng_post_like_counter_slots SET retired_net = retired_net - 3")
    cutoff = datetime(2026, 10, 23, tzinfo=timezone.utc)          # midnight UTC, 30 days before `today`
    security = [cutoff - timedelta(minutes=1), cutoff, cutoff + timedelta(days=1)]
    for i, at in enumerate(security):
        db.execute("INSERT INTO eng_security_events VALUES (%s, 'rate_limited', 'warning', '\\x01', %s)", (at, i + 1))
    events = "SELECT post_id, day, slot, likes, unlikes FROM eng_post_like_events_daily"
    before = _rows(db, events)
    counts = _rows(db, "SELECT post_id, like_count FROM eng_post_like_counters")
    expired = {r for r in before if r[1] == today - timedelta(days=91)}
    assert expired and all(r[1] >= today - timedelta(days=90) for r in before - expired)

    dry = retention(owner, today=today, dry_run=True)
    assert dry.remaining_expired == {"eng_post_like_events_daily": len(expired), "eng_security_events": 1}
    assert _rows(db, events) == before and db.execute("SELECT count(*) FROM eng_security_events").fetchone()[0] == 3

    result = retention(owner, today=today, batch_size=2)
    assert result.removed == {"eng_post_like_events_daily": len(expired), "eng_security_events": 1}
    assert result.compliant and result.remaining_expired == {"eng_post_like_events_daily": 0, "eng_security_events": 0}
    assert _rows(db, events) == before - expired
    assert [r[0] for r in db.execute("SELECT created_at FROM eng_security_events ORDER BY 1")] == security[1:]
    assert _rows(db, "SELECT post_id, like_count FROM eng_post_like_counters") == counts
    assert integrity(owner).passed        # counters still equal retired_net + remaining events


# Integrity and repair

def test_integrity_passes_on_consistent_data(owner, db):
    _seed(db)
    _like(db, "post-0", "client-0", "unlike")
    result = integrity(owner)
    assert result.passed and len(result.checks) == 6


@pytest.mark.parametrize("fault, failing", [
    ("UPDATE eng_post_like_counter_slots SET like_count = like_count + 2 WHERE post_id = 'post-1' AND like_count > 0",
     "Every post's counter equals its number of like rows."),
    ("DELETE FROM eng_post_like_counter_slots WHERE post_id = 'post-2'",
     "No like rows exist without a counter (orphan likes)."),
    ("DELETE FROM eng_post_likes WHERE post_id = 'post-3'",
     "No non-zero counter exists without like rows (orphan counters)."),
    ("ALTER TABLE eng_post_like_counter_slots DROP CONSTRAINT eng_post_like_counter_slots_nonnegative;"
     "UPDATE eng_post_like_counter_slots SET like_count = -9 WHERE post_id = 'post-4'",
     "No post has a negative like count."),
])
def test_integrity_fails_on_each_injected_fault_and_passes_after_repair(owner, db, pg, fault, failing):
    _seed(db)
    try:
        db.execute(fault)
        result = integrity(owner)
        assert not result.passed
        failed = {c.meaning: c for c in result.checks if not c.passed}
        assert failing in failed and failed[failing].unexpected_count
        fixed = repair(owner)
        assert fixed.changed and fixed.integrity_after.passed
        assert all(c["count_after"] == db.execute("SELECT count(*) FROM eng_post_likes WHERE post_id = %s",
                                                  (c["post_id"],)).fetchone()[0] for c in fixed.changed)
    finally:
        db.execute("UPDATE eng_post_like_counter_slots SET like_count = 0 WHERE like_count < 0")
        db.execute("ALTER TABLE eng_post_like_counter_slots DROP CONSTRAINT IF EXISTS eng_post_like_counter_slots_nonnegative;"
                   "ALTER TABLE eng_post_like_counter_slots ADD CONSTRAINT eng_post_like_counter_slots_nonnegative "
                   "CHECK (like_count >= 0)")


def test_a_row_check_counts_every_failing_row_and_logs_a_capped_sample(owner, db):
    db.execute("""SELECT eng_post_like_apply('drift-' || i, sha256(i::text::bytea), 'like')
                  FROM generate_series(1, 250) i""")
    db.execute("UPDATE eng_post_like_counter_slots SET like_count = like_count + 1 WHERE post_id LIKE 'drift-%'")
    result = integrity(owner)
    drifted = next(c for c in result.checks if c.meaning == "Every post's counter equals its number of like rows.")
    assert not drifted.passed and drifted.unexpected_count == 250
    assert len(drifted.rows) == 20 and all(r["like_count"] == 2 and r["like_rows"] == 1 for r in drifted.rows)
    assert all("unexpected_total" not in r for r in drifted.rows)


def test_a_check_that_cannot_run_is_a_failure(owner, db, tmp_path):
    suite = json.loads((ROOT / "expectations" / "likes_integrity.json").read_text())
    suite["expectations"] = [{"meaning": "broken on purpose", "asset": "eng_post_like_counters",
                              "type": "UnexpectedRowsExpectation",
                              "kwargs": {"unexpected_rows_query": "SELECT no_such_column FROM {batch}"}}]
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    result = integrity(owner, suite_path=path)
    assert not result.passed and result.checks[0].error


def _docs_rows(site: Path) -> list[str]:
    """The expectation rows (<tr>) of a Data Docs site's validation pages, as text."""
    pages = "".join(p.read_text() for p in site.glob("validations/**/*.html"))
    return [html.unescape(chunk) for chunk in pages.split("<tr>")]


def test_integrity_publishes_data_docs_that_name_the_failing_expectation(owner, db, tmp_path):
    _seed(db)
    db.execute("UPDATE eng_post_like_counter_slots SET like_count = like_count + 1 WHERE post_id = 'post-1'")
    result = integrity(owner, docs_dir=tmp_path)
    assert not result.passed and result.docs_error is None
    assert Path(result.docs_index) == tmp_path / "live" / "index.html" and Path(result.docs_index).is_file()
    rows = _docs_rows(tmp_path / "live")
    failing = [r for r in rows if "Every post's counter equals its number of like rows." in r]
    passing = [r for r in rows if "No post has a negative like count." in r]
    assert failing and all("fa-times" in r for r in failing)
    assert passing and all("fa-check" in r and "fa-times" not in r for r in passing)
    repair(owner, docs_dir=tmp_path)        # a second publication replaces the first: no pile of old sites
    assert len(list((tmp_path / ".builds").iterdir())) == 1
    assert not any("fa-times" in r for r in _docs_rows(tmp_path / "live"))


# Restore drills

def test_drill_passes_on_a_good_backup_and_drops_its_scratch_database(owner, db, tmp_path):
    _seed(db)
    bk.backup(owner, tmp_path)
    report = drill(owner, tmp_path)
    assert report.passed, report.problem
    assert report.rto_seconds > 0 and report.rpo_backup_age_seconds >= 0
    assert report.row_counts["eng_post_likes"] == 20 and report.restored_size_bytes > 0
    assert _scratch_databases(db) == []


@pytest.mark.parametrize("damage, message", [
    ("flip", "corrupted file"), ("truncate", "truncated file"), ("manifest", "manifest mismatch"),
])
def test_drill_fails_with_the_right_message_and_leaves_no_scratch_database(owner, db, tmp_path, damage, message):
    _seed(db)
    result = bk.backup(owner, tmp_path)
    dump, manifest_path = Path(result.path), Path(result.manifest)
    data = bytearray(dump.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
    elif damage == "truncate":
        dump.write_bytes(bytes(data[:-100]))
    else:
        m = json.loads(manifest_path.read_text())
        m["row_counts"]["eng_post_likes"] += 1
        manifest_path.write_text(json.dumps(m))
    report = drill(owner, tmp_path)
    assert not report.passed and message in report.problem
    assert _scratch_databases(db) == []


# CLI and status

def test_cli_records_runs_and_status_reports_their_ages(owner, db, tmp_path):
    _seed(db)
    out = _ops("backup", "--label", "cli", url=owner, backup_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["name"].endswith("-cli")
    assert _ops("drill", url=owner, backup_dir=tmp_path).returncode == 0
    assert _ops("integrity", url=owner, backup_dir=tmp_path).returncode == 0
    s = status(owner)
    assert s.healthy and s.backup_age_seconds < 60 and s.drill_age_seconds < 60 and s.integrity_outcome == "success"
    kinds = db.execute("SELECT kind, outcome FROM ops_runs ORDER BY id").fetchall()
    assert kinds == [("backup", "success"), ("drill", "success"), ("integrity", "success")]


def test_cli_exits_nonzero_and_records_a_failed_drill(owner, db, tmp_path):
    _seed(db)
    result = bk.backup(owner, tmp_path)
    Path(result.path).write_bytes(Path(result.path).read_bytes()[:50])
    out = _ops("drill", url=owner, backup_dir=tmp_path)
    assert out.returncode == 1 and "truncated file" in out.stdout
    assert db.execute("SELECT outcome FROM ops_runs WHERE kind = 'drill'").fetchone() == ("failed",)
    assert not status(owner).healthy and "drill_missing" in status(owner).problems


def test_cli_names_missing_settings(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ops", "status"], cwd=ROOT, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})
    assert out.returncode == 2 and "DATABASE_URL is not set" in out.stderr


def test_monitoring_health_reports_maintenance_ages_and_degrades_when_stale(owner, db, client):
    body = client.get("/api/monitoring/health").json()
    assert body["status"] == "ok"       # a fresh install: nothing has run yet, reported but not an alert
    assert set(body["maintenance"]["problems"]) == {"backup_missing", "drill_missing"}
    db.execute("INSERT INTO ops_runs (kind, started_at, finished_at, outcome) VALUES "
               "('backup', now() - interval '27 hours', now() - interval '27 hours', 'success'),"
               "('drill', now() - interval '1 hour', now() - interval '1 hour', 'success')")
    body = client.get("/api/monitoring/health").json()
    assert body["status"] == "degraded" and body["maintenance"]["problems"] == ["backup_stale"]
    assert 27 * 3600 <= body["maintenance"]["backup_age_seconds"] < 28 * 3600
    db.execute("INSERT INTO ops_runs (kind, started_at, finished_at, outcome) VALUES "
               "('backup', now(), now(), 'success'), ('integrity', now(), now(), 'failed')")
    body = client.get("/api/monitoring/health").json()
    assert body["status"] == "degraded" and body["maintenance"]["problems"] == ["integrity_failed"]
    db.execute("INSERT INTO ops_runs (kind, started_at, finished_at, outcome) VALUES "
               "('integrity', now() + interval '1 second', now() + interval '1 second', 'success')")
    assert client.get("/api/monitoring/health").json()["status"] == "ok"


@pytest.fixture
def one_backup(owner, db, tmp_path):
    _seed(db)
    return bk.backup(owner, tmp_path / "backups")


def _state(db, backup_dir: Path) -> tuple:
    """What a rejected command must leave as it was."""
    return (_rows(db, "SELECT post_id, client_hash FROM eng_post_likes"),
            _rows(db, "SELECT post_id, slot, like_count, retired_net FROM eng_post_like_counter_slots"),
            _rows(db, "SELECT kind, outcome FROM ops_runs"), _flag(db),
            sorted(p.name for p in backup_dir.iterdir()))


def _flag(db) -> bool:
    return db.execute("SELECT kill_switch FROM feature_flags WHERE name = 'likes'").fetchone()[0]


@pytest.mark.parametrize("args, message", [
    (["backup", "--keep-daily", "-1"], "--keep-daily: must be a whole number >= 0, got '-1'"),
    (["prune", "--keep-monthly", "six"], "--keep-monthly: must be a whole number >= 0, got 'six'"),
    (["backup", "--label", "Pre Migration"], "--label: must be 1-40 characters of a-z 0-9 and -"),
    (["retention", "--batch-size", "0"], "--batch-size: must be a whole number from 1 to 100000"),
    (["retention", "--events-days", "-5"], "--events-days: must be a whole number >= 1"),
    (["drill", "--backup", "yesterday"], "--backup: must be a backup name such as likes-20261122T020000Z"),
    (["drill", "--backup", "likes-20200101T000000Z"], "no backup named 'likes-20200101T000000Z'"),
    (["verify", "--backup", "likes-20200101T000000Z-x"], "no backup named 'likes-20200101T000000Z-x'"),
    (["repair", "--post-id", "a b"], "--post-id: must be 1-128 of A-Z a-z 0-9 _ . : -"),
])
def test_cli_bad_input_names_the_problem_and_changes_nothing(owner, db, one_backup, args, message):
    backups = Path(one_backup.path).parent
    before = _state(db, backups)
    out = _ops(*args, url=owner, backup_dir=backups)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    assert _state(db, backups) == before


# Restore into the live database

def test_restore_brings_back_the_backed_up_rows_and_puts_the_kill_switch_back(owner, db, one_backup, tmp_path):
    backups = Path(one_backup.path).parent
    likes = "SELECT post_id, client_hash FROM eng_post_likes"
    backed_up = _rows(db, likes)
    for c in range(4):                      # after the backup: post-1 loses its likes, post-9 gains one
        _like(db, "post-1", f"client-{c}", "unlike")
    _like(db, "post-9", "client-new")
    assert _rows(db, likes) != backed_up
    out = _ops("restore", "--backup", one_backup.name, "--confirm", one_backup.name, url=owner, backup_dir=backups)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["passed"] and report["problem"] is None
    assert _rows(db, likes) == backed_up
    assert _rows(db, "SELECT post_id, like_count FROM eng_post_like_counters") == \
        {(f"post-{p}", 4) for p in range(5)}
    assert report["kill_switch_before"] is False and report["kill_switch_after"] is False and _flag(db) is False
    assert report["rto_seconds"] >= report["load_seconds"] > 0
    assert report["restored_rows"]["eng_post_likes"] == 20 and Path(report["docs_index"]).is_file()
    # The safety backup holds the state the restore replaced.
    safety = bk.find(backups, report["safety_backup"])
    assert safety.name.endswith("-pre-restore") and bk.verify(backups, safety.name).ok
    assert safety.row_counts["eng_post_likes"] == 17
    assert db.execute("SELECT kind, outcome FROM ops_runs ORDER BY id").fetchall() == \
        [("restore", "success"), ("backup", "success"), ("integrity", "success")]


@pytest.mark.parametrize("confirm", [None, "likes-20200101T000000Z", "latest"])
def test_restore_without_the_backups_name_repeated_changes_nothing(owner, db, one_backup, confirm):
    backups = Path(one_backup.path).parent
    _like(db, "post-9", "client-new")
    before = _state(db, backups)
    args = ["restore", "--backup", one_backup.name] + (["--confirm", confirm] if confirm else [])
    out = _ops(*args, url=owner, backup_dir=backups)
    assert out.returncode == 2, out.stderr
    assert f"repeat its name to go ahead (--confirm {one_backup.name})" in out.stderr
    assert "Nothing was changed" in out.stderr and out.stdout == ""
    assert _state(db, backups) == before


def test_a_restore_that_fails_rolls_back_and_puts_a_kill_switch_that_was_on_back_on(owner, db, one_backup):
    backups = Path(one_backup.path).parent
    _like(db, "post-9", "client-new")
    db.execute("UPDATE feature_flags SET kill_switch = true WHERE name = 'likes'")
    manifest_path = Path(one_backup.manifest)
    m = json.loads(manifest_path.read_text())
    m["row_counts"]["eng_post_likes"] += 1             # the data no longer matches the manifest
    manifest_path.write_text(json.dumps(m))
    live = _rows(db, "SELECT post_id, client_hash FROM eng_post_likes")
    result = restore(owner, backups, one_backup.name, one_backup.name)
    assert not result.passed and "manifest mismatch: restored eng_post_likes has 20 rows" in result.problem
    assert "rolled back, the live data is unchanged" in result.problem
    assert _rows(db, "SELECT post_id, client_hash FROM eng_post_likes") == live
    assert result.kill_switch_before is True and result.kill_switch_after is True and _flag(db) is True
    assert result.safety_backup and bk.verify(backups, result.safety_backup).ok


def test_restore_refuses_a_backup_of_another_schema_revision(owner, db, one_backup):
    backups = Path(one_backup.path).parent
    head = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    _like(db, "post-9", "client-new")
    before = _state(db, backups)
    try:
        db.execute("UPDATE alembic_version SET version_num = 'some_later_revision'")
        with pytest.raises(OpsError, match=f"has schema revision {head}, the live database has some_later_revision"):
            restore(owner, backups, one_backup.name, one_backup.name)
    finally:
        db.execute("UPDATE alembic_version SET version_num = %s", (head,))
    assert _state(db, backups) == before
