"""`python -m api migrate|serve|check-config|flags`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from api.settings import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api", description="The likes API.")
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="apply the schema migrations to DATABASE_URL (as the schema owner)")
    migrate.add_argument("--check", action="store_true",
                         help="apply nothing; print the current and head revisions as JSON and exit 3 "
                              "when migrations are pending (0 when the schema is at head)")
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: PORT or 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: WORKERS or 2)")
    sub.add_parser("check-config", help="validate the environment and name every wrong setting")
    flags = sub.add_parser("flags", help="show or set the likes kill switch (DATABASE_URL of an operator role)")
    flags.add_argument("action", nargs="?", choices=["show", "kill", "restore"], default="show",
                       help="show the flags; kill = make likes read-only; restore = allow likes again")
    flags.add_argument("--name", default="likes", help="the flag's name (default: likes)")
    args = parser.parse_args(argv)
    return {"migrate": _migrate, "serve": _serve, "check-config": _check_config, "flags": _flags}[args.command](args)


MIGRATIONS_PENDING = 3


def _migrate(args) -> int:
    from api.migrate import MigrationError, current_revision, head_revision, migrate
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set: export the schema owner's URL, e.g. postgresql://likes_owner:...@host/likes",
              file=sys.stderr)
        return 2
    if args.check:
        try:
            current = current_revision(url)
        except Exception as exc:
            print(f"migrate --check: cannot read the schema revision: {exc}", file=sys.stderr)
            return 1
        head = head_revision()
        print(json.dumps({"current": current, "head": head, "pending": current != head}))
        return MIGRATIONS_PENDING if current != head else 0
    try:
        applied = migrate(url)
    except MigrationError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    print(f"migrate: applied {', '.join(applied)}" if applied else f"migrate: already at {head_revision()}")
    return 0


def _settings() -> Settings | None:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        print("configuration is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None


def _check_config(args) -> int:
    settings = _settings()
    if settings is None:
        return 1
    print("configuration is valid")
    for name in ("redis_url", "rate_limit_window_ms", "rate_limit_max_requests", "rate_limit_read_max_requests",
                 "cache_ttl_seconds", "log_level", "log_file", "host", "port", "workers"):
        print(f"  {name.upper()}={getattr(settings, name)}")
    return 0


def _serve(args) -> int:
    settings = _settings()
    if settings is None:
        return 1
    from sanic import Sanic
    from sanic.worker.loader import AppLoader
    from api.app import create_app

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="likes-metrics-")
    # Workers are spawned processes: each calls create_app(), which reads the environment.
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(host=host, port=port, workers=workers, motd=False, access_log=False)
    Sanic.serve(primary=app, app_loader=loader)
    return 0


def _flags(args) -> int:
    from api import store
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set: export an operator role's URL (likes_ops or likes_owner)", file=sys.stderr)
        return 2
    if args.action != "show":
        if not store.set_kill_switch(url, args.name, args.action == "kill"):
            print(f"no flag named {args.name!r}", file=sys.stderr)
            return 1
    for f in store.get_flags(url):
        state = "READ-ONLY (kill switch on)" if f["kill_switch"] or not f["enabled"] else "on"
        print(f"{f['name']}: {state}  enabled={f['enabled']} kill_switch={f['kill_switch']} updated_at={f['updated_at']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
