"""Small helpers shared by the API tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

JSON = {"Content-Type": "application/json"}


def like(client, post_id: str, op: str = "like", client_id: str | None = None, **kw):
    body = {"postId": post_id, "op": op}
    if client_id is not None:
        body["clientId"] = client_id
    return client.post("/api/posts/like", json=body, **kw)


def stored(db: psycopg.Connection) -> dict[str, int]:
    """Row counts of every table a request could write to."""
    return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("eng_post_likes", "eng_post_like_counter_slots", "eng_post_like_events_daily")}


def nothing_stored(db: psycopg.Connection) -> bool:
    return all(n == 0 for n in stored(db).values())


def counter(db: psycopg.Connection, post_id: str) -> int:
    row = db.execute("SELECT like_count FROM eng_post_like_counters WHERE post_id = %s", (post_id,)).fetchone()
    return row[0] if row else 0


def like_rows(db: psycopg.Connection, post_id: str) -> int:
    return db.execute("SELECT count(*) FROM eng_post_likes WHERE post_id = %s", (post_id,)).fetchone()[0]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and len(body["error"]["message"]) > 10
    assert "Traceback" not in response.text
    return body


def flags(pg, action: str) -> None:
    """`python -m api flags kill|restore`, as an operator runs it."""
    out = subprocess.run([sys.executable, "-m", "api", "flags", action], cwd=Path(__file__).resolve().parent.parent,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DATABASE_URL": pg.url("likes_ops")})
    assert out.returncode == 0, out.stderr
