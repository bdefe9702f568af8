"""`python -m ops backup|verify|prune|retention|integrity|repair|drill|status`.

Reads DATABASE_URL (the schema owner's) and the backup directory from --dir or
LIKES_BACKUP_DIR. Prints the result as JSON; exits 1 when the operation
fails or a check does not pass, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from ops.pg import OpsError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops", description="Likes platform maintenance.")
    p.add_argument("--dir", help="backup directory (default: LIKES_BACKUP_DIR)")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup", help="pg_dump from one snapshot, manifest, verify")
    b.add_argument("--label", help="a-z 0-9 - suffix for the backup's name, e.g. pre-migration")
    b.add_argument("--no-prune", action="store_true", help="do not apply the keep policy afterwards")
    _keep_args(b)
    v = sub.add_parser("verify", help="check a backup's size, sha256 and archive against its manifest")
    v.add_argument("--backup", default="latest")
    pr = sub.add_parser("prune", help="apply the grandfather-father-son keep policy")
    pr.add_argument("--dry-run", action="store_true")
    _keep_args(pr)
    r = sub.add_parser("retention", help="delete expired events in batches, then check compliance")
    r.add_argument("--events-days", type=int, default=90)
    r.add_argument("--security-days", type=int, default=30)
    r.add_argument("--batch-size", type=int, default=5000)
    r.add_argument("--dry-run", action="store_true")
    sub.add_parser("integrity", help="run the GX count-integrity suite")
    rp = sub.add_parser("repair", help="recompute drifted counters from the like rows, then validate")
    rp.add_argument("--post-id", action="append", help="only these posts (repeatable)")
    d = sub.add_parser("drill", help="restore a backup into a scratch database and prove it")
    d.add_argument("--backup", default="latest")
    d.add_argument("--jobs", type=int, default=2)
    sub.add_parser("status", help="ages of the last backup, drill and integrity check")
    args = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}')
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set: export the schema owner's URL (postgresql://likes_owner:...@host/likes)",
              file=sys.stderr)
        return 2
    try:
        return _run(args, url)
    except OpsError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1


def _run(args, url: str) -> int:
    from ops import backup, drill, integrity, retention, runs, status

    def backup_dir() -> Path:
        d = args.dir or os.environ.get("LIKES_BACKUP_DIR")
        if not d:
            raise OpsError("no backup directory: pass --dir or set LIKES_BACKUP_DIR")
        return Path(d)

    if args.command == "status":
        s = status.status(url)
        _print({**dataclasses.asdict(s), "healthy": s.healthy})
        return 0 if s.healthy else 1
    with runs.recorded(url, args.command) as run:
        if args.command == "backup":
            result = backup.backup(url, backup_dir(), label=args.label)
            if not args.no_prune:
                run.details["prune"] = dataclasses.asdict(backup.prune(backup_dir(), _policy(args)))
            ok = True
        elif args.command == "verify":
            result = backup.verify(backup_dir(), args.backup)
            ok = result.ok
        elif args.command == "prune":
            result = backup.prune(backup_dir(), _policy(args), dry_run=args.dry_run)
            ok = True
        elif args.command == "retention":
            result = retention.retention(url, args.events_days, args.security_days, args.batch_size, args.dry_run)
            ok = result.compliant or args.dry_run
        elif args.command == "integrity":
            result = integrity.integrity(url)
            ok = result.passed
        elif args.command == "repair":
            result = integrity.repair(url, args.post_id)
            ok = result.integrity_after.passed
        elif args.command == "drill":
            result = drill.drill(url, backup_dir(), args.backup, args.jobs)
            ok = result.passed
        run.details.update(dataclasses.asdict(result))
        run.details["passed"] = ok
    _print(dataclasses.asdict(result))
    return 0 if ok else 1


def _keep_args(parser) -> None:
    parser.add_argument("--keep-daily", type=int, default=7)
    parser.add_argument("--keep-weekly", type=int, default=4)
    parser.add_argument("--keep-monthly", type=int, default=6)


def _policy(args):
    from ops.backup import KeepPolicy
    return KeepPolicy(args.keep_daily, args.keep_weekly, args.keep_monthly)


def _print(data: dict) -> None:
    print(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
