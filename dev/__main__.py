"""`make dev`: a throwaway PostgreSQL and Redis, migrated, then the API on 127.0.0.1:8000.

Everything lives in temporary directories and is removed on Ctrl-C.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from dev.stack import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    pg = PostgresServer().start()
    redis = RedisServer().start()
    try:
        pg.provision()
        subprocess.run([sys.executable, "-m", "api", "migrate"], check=True, cwd=ROOT,
                       env={**os.environ, "DATABASE_URL": pg.url("likes_owner")})
        env = {"DATABASE_URL": pg.url("likes_api"), "REDIS_URL": redis.url,
               "CLIENT_ID_SECRET": os.environ.get("CLIENT_ID_SECRET") or secrets.token_hex(32),
               "LOG_FILE": os.environ.get("LOG_FILE", str(ROOT / "logs" / "app.log")),
               "PORT": os.environ.get("PORT", "8000")}
        print("dev stack:")
        print(f"  API            http://127.0.0.1:{env['PORT']}  (docs: /docs, OpenAPI: /openapi.json)")
        print(f"  DATABASE_URL   {pg.url('likes_owner')}   (schema owner; the API uses likes_api)")
        print(f"  REDIS_URL      {redis.url}")
        print(f"  logs           {env['LOG_FILE']}")
        print("Ctrl-C stops the API and removes the database and Redis.", flush=True)
        api = subprocess.Popen([sys.executable, "-m", "api", "serve"], cwd=ROOT, env={**os.environ, **env})
        # SIGTERM (e.g. from a supervisor) tears down like Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            return api.wait()
        except KeyboardInterrupt:
            api.send_signal(signal.SIGTERM)
            return api.wait(30)
    finally:
        redis.destroy()
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
