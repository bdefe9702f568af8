"""`python -m ops backup|verify|prune|retention|integrity|repair|drill|restore|status`.

Reads DATABASE_URL (the schema owner's), the backup directory from --dir or
LIKES_BACKUP_DIR (default /var/backups/likes) and the Data Docs directory from
--docs-dir or LIKES_DATA_DOCS_DIR (default /var/lib/likes/data-docs). Prints
the result as JSON on stdout and progress as JSON lines on stderr. Exits 0 when
the operation succeeded and its checks passed, 1 when it failed or a check did
not pass, 2 on bad input (nothing is changed or recorded then).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys

import psycopg

from api.logs import JsonFormatter
from api.models import POST_ID_PATTERN
from ops import backup, drill, integrity, restore, retention, runs, settings, status
from ops.backup import LABEL_PATTERN, NAME_PATTERN, KeepPolicy, find
from ops.pg import OpsError
from ops.restore import ConfirmationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set: export the schema owner's URL (postgresql://likes_owner:...@host/likes)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        _check_backup_name(args)
    except OpsError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run(args, url)
    except ConfirmationError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OpsError, psycopg.Error) as exc:
        print(f"{args.command}: {str(exc).strip()}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops", description="Likes platform maintenance.")
    p.add_argument("--dir", help=f"backup directory (default: {settings.BACKUP_DIR_ENV} or "
                                 f"{settings.BACKUP_DIR_DEFAULT})")
    p.add_argument("--docs-dir", help=f"GX Data Docs directory (default: {settings.DATA_DOCS_DIR_ENV} or "
                                      f"{settings.DATA_DOCS_DIR_DEFAULT})")
    sub = p.add_subparsers(dest="command", required=True)
    backup_name = _matching(f"latest|{NAME_PATTERN[1:-1]}", "a backup name such as likes-20261122T020000Z, or latest")

    b = sub.add_parser("backup", help="pg_dump from one snapshot, manifest, verify, then the keep policy")
    b.add_argument("--label", type=_matching(LABEL_PATTERN[1:-1], "1-40 characters of a-z 0-9 and -"),
                   help="suffix for the backup's name, e.g. pre-migration")
    b.add_argument("--no-prune", action="store_true", help="do not apply the keep policy afterwards")
    _keep_args(b)
    v = sub.add_parser("verify", help="check a backup's size, sha256 and archive against its manifest")
    v.add_argument("--backup", default="latest", type=backup_name)
    pr = sub.add_parser("prune", help="apply the grandfather-father-son keep policy")
    pr.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    _keep_args(pr)
    r = sub.add_parser("retention", help="delete expired events in batches, then check compliance and ANALYZE")
    r.add_argument("--events-days", type=_whole(1), default=settings.EVENTS_DAYS,
                   help=f"keep daily like events this many days (default {settings.EVENTS_DAYS})")
    r.add_argument("--security-days", type=_whole(1), default=settings.SECURITY_DAYS,
                   help=f"keep security events this many days (default {settings.SECURITY_DAYS})")
    r.add_argument("--batch-size", type=_whole(1, settings.BATCH_SIZE_MAX), default=settings.BATCH_SIZE,
                   help=f"rows per delete transaction (default {settings.BATCH_SIZE})")
    r.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    sub.add_parser("integrity", help="run the GX count-integrity suite, publish its Data Docs")
    rp = sub.add_parser("repair", help="recompute drifted counters from the like rows, then validate")
    rp.add_argument("--post-id", action="append", type=_matching(POST_ID_PATTERN[1:-1], "1-128 of A-Z a-z 0-9 _ . : -"),
                    help="only this post (repeatable; default: every post)")
    d = sub.add_parser("drill", help="restore a backup into a scratch database and prove it")
    d.add_argument("--backup", default="latest", type=backup_name)
    d.add_argument("--jobs", type=_whole(1, 16), default=settings.RESTORE_JOBS, help="pg_restore -j")
    rs = sub.add_parser("restore", help="restore a backup into the LIVE database (safety backup, kill switch)")
    rs.add_argument("--backup", required=True, type=backup_name)
    rs.add_argument("--confirm", help="the backup's name again: restore replaces the live likes data")
    sub.add_parser("status", help="ages of the last backup, drill and integrity check")
    return p


def _run(args, url: str) -> int:
    if args.command == "status":
        s = status.status(url)
        _print({**dataclasses.asdict(s), "healthy": s.healthy})
        return EXIT_OK if s.healthy else EXIT_FAILED
    if args.command == "restore":      # checked before anything is recorded: a wrong --confirm changes nothing
        restore.check_confirmation(settings.backup_dir(args.dir), args.backup, args.confirm)
    backup_dir, docs_dir = settings.backup_dir(args.dir), settings.data_docs_dir(args.docs_dir)
    with runs.recorded(url, args.command) as run:
        if args.command == "backup":
            result = backup.backup(url, backup_dir, label=args.label)
            if not args.no_prune:
                run.details["prune"] = dataclasses.asdict(backup.prune(backup_dir, _policy(args)))
            ok = True
        elif args.command == "verify":
            result = backup.verify(backup_dir, args.backup)
            ok = result.ok
        elif args.command == "prune":
            result = backup.prune(backup_dir, _policy(args), dry_run=args.dry_run)
            ok = True
        elif args.command == "retention":
            result = retention.retention(url, args.events_days, args.security_days, args.batch_size, args.dry_run)
            ok = result.compliant or args.dry_run
        elif args.command == "integrity":
            result = integrity.integrity(url, docs_dir=docs_dir)
            ok = result.passed
        elif args.command == "repair":
            result = integrity.repair(url, args.post_id, docs_dir=docs_dir)
            ok = result.integrity_after.passed
        elif args.command == "drill":
            result = drill.drill(url, backup_dir, args.backup, args.jobs, docs_dir=docs_dir)
            ok = result.passed
        elif args.command == "restore":
            result = restore.restore(url, backup_dir, args.backup, args.confirm, docs_dir=docs_dir)
            ok = result.passed
        run.details.update(dataclasses.asdict(result))
        run.details["passed"] = ok
    _print(dataclasses.asdict(result))
    return EXIT_OK if ok else EXIT_FAILED


def _check_backup_name(args) -> None:
    """A named backup that does not exist is bad input: say so before anything is recorded."""
    name = getattr(args, "backup", None)
    if name is not None:
        find(settings.backup_dir(args.dir), name)


def _keep_args(parser) -> None:
    for period, default in (("daily", settings.KEEP_DAILY), ("weekly", settings.KEEP_WEEKLY),
                            ("monthly", settings.KEEP_MONTHLY)):
        parser.add_argument(f"--keep-{period}", type=_whole(0), default=default,
                            help=f"{period} backups to keep (default {default}); the newest is always kept")


def _policy(args):
    return KeepPolicy(args.keep_daily, args.keep_weekly, args.keep_monthly)


def _whole(lo: int, hi: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(
                f"must be a whole number {f'from {lo} to {hi}' if hi is not None else f'>= {lo}'}, got {text!r}")
        return value
    return parse


def _matching(pattern: str, what: str):
    compiled = re.compile(f"^(?:{pattern})$")

    def parse(text: str) -> str:
        if not compiled.match(text):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return text
    return parse


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("likes")
    logger.handlers = [handler]
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    logger.propagate = False


def _print(data: dict) -> None:
    print(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
