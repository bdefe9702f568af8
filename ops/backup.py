"""Backups: pg_dump from an exported snapshot, a manifest, verification, GFS pruning.

A backup is `<name>.dump` (pg_dump custom format) plus `<name>.manifest.json`.
Both are written under temporary names. The dump is renamed into place only
after it has been verified (its size and sha256 recorded, `pg_restore --list`
showing the data of every counted table), and the manifest after it, so every
manifest in the directory describes a verified backup. `verify` and every drill
recompute the sha256.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ops import settings
from ops.pg import OpsError, binary, connect, libpq_env, run

log = logging.getLogger("likes.ops.backup")
MANIFEST_SUFFIX = ".manifest.json"
DUMP_SUFFIX = ".dump"
LABEL_PATTERN = r"^[a-z0-9-]{1,40}$"
# A backup's name: likes-<UTC start, to the second>[-<label>].
NAME_PATTERN = r"^likes-[0-9]{8}T[0-9]{6}Z(-[a-z0-9-]{1,40})?$"
PROGRESS_SECONDS = 10


@dataclass(frozen=True)
class KeepPolicy:
    daily: int = settings.KEEP_DAILY
    weekly: int = settings.KEEP_WEEKLY
    monthly: int = settings.KEEP_MONTHLY

    def __post_init__(self):
        for name in ("daily", "weekly", "monthly"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise OpsError(f"keep policy: {name} must be a whole number >= 0, got {getattr(self, name)!r}")


@dataclass
class Manifest:
    name: str
    file: str
    sha256: str
    size_bytes: int
    format: str
    pg_dump_version: str
    server_version: str
    started_at: str
    finished_at: str
    duration_seconds: float
    row_counts: dict[str, int]
    newest_row_at: str | None
    label: str | None = None
    verified_at: str | None = None
    alembic_revision: str | None = None

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise OpsError(f"manifest {path.name} is unreadable: {exc}") from None

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)


@dataclass
class BackupResult:
    name: str
    path: str
    manifest: str
    size_bytes: int
    duration_seconds: float
    row_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class VerifyResult:
    name: str
    ok: bool
    problem: str | None = None


@dataclass
class PruneResult:
    kept: list[str]
    deleted: list[str]


def validate_label(label: str) -> str:
    if not re.match(LABEL_PATTERN, label):
        raise OpsError(f"label must be 1-40 characters of a-z 0-9 and -, got {label!r}")
    return label


def backup(database_url: str, backup_dir: Path, label: str | None = None) -> BackupResult:
    """Dump the database from one snapshot, write its manifest, verify, publish."""
    if label is not None:
        validate_label(label)
    backup_dir = _prepare_dir(backup_dir)
    started = datetime.now(timezone.utc)
    name = "likes-" + started.strftime("%Y%m%dT%H%M%SZ") + (f"-{label}" if label else "")
    final = backup_dir / (name + DUMP_SUFFIX)
    if final.exists() or (backup_dir / (name + MANIFEST_SUFFIX)).exists():
        raise OpsError(f"a backup named {name} already exists in {backup_dir}: wait a second and run again")
    tmp = backup_dir / (".tmp-" + name + DUMP_SUFFIX)
    t0 = time.monotonic()
    # Counts and dump come from the same snapshot: export it in a REPEATABLE READ
    # transaction that stays open while pg_dump runs with --snapshot. The counts
    # run in that transaction while pg_dump works, overlapping with it.
    with connect(database_url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        log.info("backup %s: dumping from snapshot %s", name, snapshot)
        dump = _start_dump(database_url, snapshot, tmp)
        try:
            counts = _row_counts(conn)
            revision = conn.execute("SELECT max(version_num) FROM alembic_version").fetchone()[0]
            # Every like and unlike stamps its counter slot: the newest stamp is the newest row (indexed).
            newest = conn.execute("SELECT max(updated_at) FROM eng_post_like_counter_slots").fetchone()[0]
            log.info("backup %s: %d tables, %d rows in the snapshot", name, len(counts), sum(counts.values()))
            _wait_for_dump(dump, tmp, name)
        except BaseException:
            if dump.poll() is None:
                dump.kill()
                dump.wait()
            tmp.unlink(missing_ok=True)
            raise
        conn.rollback()
    os.chmod(tmp, 0o600)
    size = tmp.stat().st_size
    log.info("backup %s: wrote %d bytes in %.1f s", name, size, time.monotonic() - t0)
    manifest = Manifest(
        name=name, file=final.name, sha256=sha256_of(tmp), size_bytes=size, format="custom",
        pg_dump_version=run([binary("pg_dump"), "--version"], "pg_dump --version").stdout.strip(),
        server_version=server_version, started_at=started.isoformat(),
        finished_at=datetime.now(timezone.utc).isoformat(), duration_seconds=round(time.monotonic() - t0, 3),
        row_counts=counts, newest_row_at=newest.isoformat() if newest else None, label=label,
        alembic_revision=revision)
    # The sha256 was just read from this file; recomputing it here would re-read the
    # same bytes. verify and every drill recompute it later.
    problem = check_dump(tmp, manifest, checksum=False)
    if problem:
        tmp.unlink(missing_ok=True)
        raise OpsError(f"backup {name} failed verification: {problem}")
    manifest.verified_at = datetime.now(timezone.utc).isoformat()
    os.replace(tmp, final)
    _write_json_atomically(backup_dir / (name + MANIFEST_SUFFIX), asdict(manifest))
    log.info("backup %s: verified and published (%d bytes, sha256 %s)", name, size, manifest.sha256[:12])
    return BackupResult(name, str(final), str(backup_dir / (name + MANIFEST_SUFFIX)), size,
                        round(time.monotonic() - t0, 3), counts)


def verify(backup_dir: Path, name: str = "latest") -> VerifyResult:
    """Check a published backup: size, sha256 and `pg_restore --list` against its manifest."""
    manifest = find(backup_dir, name)
    problem = check_dump(Path(backup_dir) / manifest.file, manifest)
    return VerifyResult(manifest.name, problem is None, problem)


def prune(backup_dir: Path, policy: KeepPolicy = KeepPolicy(), now: datetime | None = None,
          dry_run: bool = False) -> PruneResult:
    """Grandfather-father-son: keep the newest backup of each of the last `daily` days,
    `weekly` ISO weeks and `monthly` months. The newest backup is always kept."""
    manifests = sorted(list_backups(backup_dir), key=lambda m: m.started, reverse=True)
    keep: set[str] = set()
    if manifests:
        keep.add(manifests[0].name)
    for size, bucket in ((policy.daily, lambda d: d.date()), (policy.weekly, lambda d: d.isocalendar()[:2]),
                         (policy.monthly, lambda d: (d.year, d.month))):
        seen = []
        for m in manifests:
            b = bucket(m.started)
            if b not in seen:
                if len(seen) == size:
                    break
                seen.append(b)
                keep.add(m.name)
    deleted = [m.name for m in manifests if m.name not in keep]
    if not dry_run:
        for m in manifests:
            if m.name in deleted:
                (Path(backup_dir) / (m.name + MANIFEST_SUFFIX)).unlink(missing_ok=True)
                (Path(backup_dir) / m.file).unlink(missing_ok=True)
                log.info("prune: deleted %s", m.name)
        _remove_stale_temporaries(Path(backup_dir), now or datetime.now(timezone.utc))
    return PruneResult(kept=[m.name for m in manifests if m.name in keep], deleted=deleted)


def list_backups(backup_dir: Path) -> list[Manifest]:
    """The published backups. An unreadable manifest is skipped with an error in the
    log: it proves nothing, but it must not stop pruning or the drills of the others."""
    d = Path(backup_dir)
    if not d.is_dir():
        return []
    found = []
    for p in sorted(d.glob("likes-*" + MANIFEST_SUFFIX)):
        try:
            found.append(Manifest.load(p))
        except OpsError as exc:
            log.error("skipping backup: %s", exc)
    return found


def find(backup_dir: Path, name: str = "latest") -> Manifest:
    backups = sorted(list_backups(backup_dir), key=lambda m: m.started)
    if not backups:
        raise OpsError(f"no verified backup in {backup_dir}: run `python -m ops backup` first")
    if name == "latest":
        return backups[-1]
    for m in backups:
        if m.name == name or m.file == name:
            return m
    raise OpsError(f"no backup named {name!r} in {backup_dir}; the newest are: "
                   f"{', '.join(m.name for m in backups[-5:])} (`python -m ops verify --backup NAME` checks one)")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_dump(path: Path, manifest: Manifest, checksum: bool = True) -> str | None:
    """The reason a dump does not match its manifest, or None. Size first, so a
    truncated file is named as truncated rather than as a checksum mismatch."""
    if not path.exists():
        return f"missing file: {path.name} does not exist"
    size = path.stat().st_size
    if size < manifest.size_bytes:
        return f"truncated file: {path.name} is {size} bytes, the manifest says {manifest.size_bytes}"
    if size != manifest.size_bytes or (checksum and sha256_of(path) != manifest.sha256):
        return f"corrupted file: the sha256 of {path.name} does not match its manifest"
    listed = subprocess.run([binary("pg_restore"), "--list", str(path)], capture_output=True, text=True)
    if listed.returncode != 0:
        return f"unreadable archive: pg_restore --list failed: {listed.stderr.strip()[-500:]}"
    missing = set(manifest.row_counts) - set(table_data_entries(listed.stdout))
    if missing:
        return f"incomplete archive: no table data for {', '.join(sorted(missing))}"
    return None


def table_data_entries(listing: str) -> dict[str, str]:
    """Table name -> its `TABLE DATA` line in a `pg_restore --list` table of contents."""
    entries = {}
    for line in listing.splitlines():
        parts = line.split()
        if not line.startswith(";") and len(parts) >= 7 and parts[3:6] == ["TABLE", "DATA", "public"]:
            entries[parts[6]] = line
    return entries


def restore_list(path: Path, keep) -> Path:
    """A `pg_restore --use-list` file with the archive's entries for which keep(line)
    is true, written beside the archive (a .tmp- name that prune clears)."""
    listing = run([binary("pg_restore"), "--list", str(path)], "pg_restore --list").stdout
    target = path.with_name(".tmp-" + path.name + f".{os.getpid()}.list")
    target.write_text("\n".join(line for line in listing.splitlines() if keep(line)) + "\n")
    return target


def _start_dump(database_url: str, snapshot: str, target: Path) -> subprocess.Popen:
    # Custom format: one file, one checksum, one atomic rename, and pg_restore -j
    # still restores it in parallel. pg_dump -Fd -j parallelises by table, and
    # eng_post_likes holds most of the data: on 2 cores it was no reliable gain
    # (make bench measures it; see the README's benchmark section).
    return subprocess.Popen([binary("pg_dump"), "--format=custom", f"--snapshot={snapshot}", "--file", str(target)],
                            env=libpq_env(database_url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_dump(dump: subprocess.Popen, target: Path, name: str) -> None:
    """Wait for pg_dump, logging the bytes written so far every PROGRESS_SECONDS."""
    while True:
        try:
            _, stderr = dump.communicate(timeout=PROGRESS_SECONDS)
            break
        except subprocess.TimeoutExpired:
            written = target.stat().st_size if target.exists() else 0
            log.info("backup %s: %d bytes written so far", name, written)
    if dump.returncode != 0:
        raise OpsError(f"pg_dump failed (exit {dump.returncode}): {stderr.strip()[-2000:]}")


def _row_counts(conn) -> dict[str, int]:
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]
    return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def _prepare_dir(backup_dir: Path) -> Path:
    d = Path(backup_dir)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return d


def _write_json_atomically(path: Path, data: dict) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _remove_stale_temporaries(backup_dir: Path, now: datetime) -> None:
    """Temporaries, and dumps whose manifest was never written (a crash between the
    two renames), once they are a day old: no running backup still owns them."""
    cutoff = (now - timedelta(days=1)).timestamp()
    orphans = [p for p in backup_dir.glob("likes-*" + DUMP_SUFFIX)
               if not p.with_name(p.name[:-len(DUMP_SUFFIX)] + MANIFEST_SUFFIX).exists()]
    for p in [*backup_dir.glob(".tmp-*"), *orphans]:
        if p.stat().st_mtime < cutoff:
            p.unlink(missing_ok=True)
            log.info("prune: removed stale %s", p.name)
