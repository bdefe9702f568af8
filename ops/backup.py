"""Backups: pg_dump from an exported snapshot, a manifest, verification, GFS pruning.

A backup is `<name>.dump` (pg_dump custom format) plus `<name>.manifest.json`.
Both are written under temporary names and renamed into place only after the
dump has been verified (`pg_restore --list` and the sha256), so every
manifest in the directory describes a verified backup.
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

from ops.pg import OpsError, binary, connect, run

log = logging.getLogger("likes.ops.backup")
MANIFEST_SUFFIX = ".manifest.json"
DUMP_SUFFIX = ".dump"
_LABEL_RE = re.compile(r"^[a-z0-9-]{1,40}$")


@dataclass(frozen=True)
class KeepPolicy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 6

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


def backup(database_url: str, backup_dir: Path, label: str | None = None) -> BackupResult:
    """Dump the database from one snapshot, write its manifest, verify, publish."""
    if label is not None and not _LABEL_RE.match(label):
        raise OpsError(f"label must be 1-40 characters of a-z 0-9 -, got {label!r}")
    backup_dir = _prepare_dir(backup_dir)
    started = datetime.now(timezone.utc)
    name = "likes-" + started.strftime("%Y%m%dT%H%M%SZ") + (f"-{label}" if label else "")
    final = backup_dir / (name + DUMP_SUFFIX)
    tmp = backup_dir / (".tmp-" + name + DUMP_SUFFIX)
    t0 = time.monotonic()
    # Counts and dump come from the same snapshot: export it in a REPEATABLE READ
    # transaction that stays open while pg_dump runs with --snapshot.
    with connect(database_url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        counts = _row_counts(conn)
        newest = conn.execute("SELECT greatest((SELECT max(created_at) FROM eng_post_likes), "
                              "(SELECT max(updated_at) FROM eng_post_like_counter_slots))").fetchone()[0]
        log.info("backup %s: dumping from snapshot %s (%d tables, %d rows)", name, snapshot, len(counts),
                 sum(counts.values()))
        _dump(database_url, snapshot, tmp)
        conn.rollback()
    os.chmod(tmp, 0o600)
    size = tmp.stat().st_size
    log.info("backup %s: wrote %d bytes in %.1f s", name, size, time.monotonic() - t0)
    manifest = Manifest(
        name=name, file=final.name, sha256=sha256_of(tmp), size_bytes=size, format="custom",
        pg_dump_version=run([binary("pg_dump"), "--version"], "pg_dump --version").stdout.strip(),
        server_version=server_version, started_at=started.isoformat(),
        finished_at=datetime.now(timezone.utc).isoformat(), duration_seconds=round(time.monotonic() - t0, 3),
        row_counts=counts, newest_row_at=newest.isoformat() if newest else None, label=label)
    problem = _check_dump(tmp, manifest)
    if problem:
        tmp.unlink(missing_ok=True)
        raise OpsError(f"backup {name} failed verification: {problem}")
    manifest.verified_at = datetime.now(timezone.utc).isoformat()
    os.replace(tmp, final)
    _write_json_atomically(backup_dir / (name + MANIFEST_SUFFIX), asdict(manifest))
    return BackupResult(name, str(final), str(backup_dir / (name + MANIFEST_SUFFIX)), size,
                        manifest.duration_seconds, counts)


def verify(backup_dir: Path, name: str = "latest") -> VerifyResult:
    """Check a published backup: size, sha256 and `pg_restore --list` against its manifest."""
    manifest = find(backup_dir, name)
    problem = _check_dump(Path(backup_dir) / manifest.file, manifest)
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
    d = Path(backup_dir)
    if not d.is_dir():
        return []
    return [Manifest.load(p) for p in sorted(d.glob("likes-*" + MANIFEST_SUFFIX))]


def find(backup_dir: Path, name: str = "latest") -> Manifest:
    backups = sorted(list_backups(backup_dir), key=lambda m: m.started)
    if not backups:
        raise OpsError(f"no verified backup in {backup_dir}: run `python -m ops backup` first")
    if name == "latest":
        return backups[-1]
    for m in backups:
        if m.name == name or m.file == name:
            return m
    raise OpsError(f"no backup named {name!r} in {backup_dir}; have: {', '.join(m.name for m in backups[-5:])}")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_dump(path: Path, manifest: Manifest) -> str | None:
    """The reason a dump does not match its manifest, or None. Size first, so a
    truncated file is named as truncated rather than as a checksum mismatch."""
    if not path.exists():
        return f"missing file: {path.name} does not exist"
    size = path.stat().st_size
    if size < manifest.size_bytes:
        return f"truncated file: {path.name} is {size} bytes, the manifest says {manifest.size_bytes}"
    if size != manifest.size_bytes or sha256_of(path) != manifest.sha256:
        return f"corrupted file: the sha256 of {path.name} does not match its manifest"
    listed = subprocess.run([binary("pg_restore"), "--list", str(path)], capture_output=True, text=True)
    if listed.returncode != 0:
        return f"unreadable archive: pg_restore --list failed: {listed.stderr.strip()[-500:]}"
    return None


def _dump(database_url: str, snapshot: str, target: Path) -> None:
    # Custom format: one file to checksum; the restore side runs pg_restore -j in parallel.
    run([binary("pg_dump"), "--format=custom", f"--snapshot={snapshot}", "--file", str(target), database_url],
        "pg_dump")


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
    cutoff = (now - timedelta(days=1)).timestamp()
    for p in backup_dir.glob(".tmp-*"):
        if p.stat().st_mtime < cutoff:
            p.unlink(missing_ok=True)
            log.info("prune: removed stale temporary %s", p.name)
