"""The database contract (least privilege, RLS, the runbook's psql checks),
migrations, and the `python -m api` commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import httpx
import psycopg
import pytest

from api.migrate import head_revision
from tests.conftest import ROOT
from tests.helpers import assert_error, counter, like


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api", *args], cwd=ROOT, capture_output=True, text=True,
                          env={k: v for k, v in {**os.environ, **env}.items() if v is not None}, timeout=60)


def _psql(pg, sql: str, role: str = "likes_owner") -> subprocess.CompletedProcess:
    # Exactly as the runbook runs it: psql $DATABASE_URL -c "..."
    return subprocess.run(["psql", pg.url(role), "-c", sql], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("sql", [
    "UPDATE eng_post_like_counter_slots SET like_count = 99",
    "UPDATE eng_post_like_counters SET like_count = 99",
    "DELETE FROM eng_post_likes",
    "INSERT INTO eng_post_likes (post_id, client_hash) VALUES ('x', sha256('x'))",
    "SELECT count(*) FROM eng_post_likes",
    "DELETE FROM eng_post_like_events_daily",
    "UPDATE feature_flags SET kill_switch = true",
    "CREATE TABLE eng_evil (id int)",
    "DROP FUNCTION eng_post_like_apply(text, bytea, text)",
])
def test_api_role_cannot_write_tables_read_likes_or_change_the_schema(pg, db, sql):
    with psycopg.connect(pg.url("likes_api"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)


def test_api_role_can_only_like_through_the_function(pg, db):
    with psycopg.connect(pg.url("likes_api"), autocommit=True) as conn:
        row = conn.execute("SELECT * FROM eng_post_like_apply('p1', sha256('c1'), 'like')").fetchone()
        assert row == (True, True, 1)
        assert conn.execute("SELECT like_count FROM eng_post_like_counters WHERE post_id = 'p1'").fetchone() == (1,)


def test_rls_is_on_for_every_eng_table(pg, db):
    out = _psql(pg, "SELECT schemaname, tablename, rowsecurity FROM pg_tables WHERE tablename LIKE 'eng_%';")
    assert out.returncode == 0, out.stderr
    rows = [line.split("|") for line in out.stdout.splitlines() if "| eng_" in line]
    assert len(rows) == 4 and all(r[2].strip() == "t" for r in rows)


def test_the_runbook_psql_checks_work_as_written(pg, db, client):
    like(client, "test-post-id")
    checks = {
        "SELECT proname FROM pg_proc WHERE proname LIKE '%post_like%';": "eng_post_like_apply",
        "SELECT COUNT(*) FROM eng_post_like_counters;": "1",
        "SELECT * FROM eng_post_like_counters WHERE like_count < 0;": "(0 rows)",
        "UPDATE eng_post_like_counters SET like_count = 0 WHERE like_count < 0;": "UPDATE 0",
        "SELECT post_id, like_count FROM eng_post_like_counters ORDER BY like_count DESC LIMIT 10;": "test-post-id",
        "SELECT COUNT(*) as total_posts, SUM(like_count) as total_likes FROM eng_post_like_counters;": "1 |",
        "DELETE FROM eng_post_like_events_daily WHERE day < NOW() - INTERVAL '90 days';": "DELETE 0",
        "ANALYZE eng_post_like_counters;": "ANALYZE",
        "SELECT * FROM eng_post_like_counters WHERE post_id NOT IN (SELECT id FROM posts);": "(0 rows)",
        "EXPLAIN ANALYZE SELECT * FROM eng_post_like_counters WHERE post_id = 'test-post-id';": "Execution Time",
        "SELECT count(*) FROM pg_stat_activity;": "count",
        "SELECT query, mean_exec_time, calls FROM pg_stat_statements ORDER BY mean_exec_time DESC LIMIT 5;": "query",
    }
    for sql, expected in checks.items():
        out = _psql(pg, sql)
        assert out.returncode == 0 and expected in out.stdout, (sql, out.stdout, out.stderr)


def test_the_runbook_fix_counts_update_recomputes_from_like_rows(pg, db, client):
    for _ in range(3):
        with httpx.Client(base_url=str(client.base_url)) as c:
            like(c, "drifty")
    db.execute("UPDATE eng_post_like_counter_slots SET like_count = like_count + 5 WHERE post_id = 'drifty'")
    assert counter(db, "drifty") > 3
    out = _psql(pg, "UPDATE eng_post_like_counters SET like_count = 0 WHERE post_id = 'drifty';")
    assert out.returncode == 0, out.stderr
    assert counter(db, "drifty") == 3


def test_a_negative_slot_count_is_impossible(db):
    db.execute("INSERT INTO eng_post_like_counter_slots (post_id, slot, like_count) VALUES ('n', 0, 0)")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE eng_post_like_counter_slots SET like_count = -1 WHERE post_id = 'n'")


def test_migrate_twice_and_from_two_hosts_at_once(pg):
    pg.psql("DROP DATABASE IF EXISTS likes_mig", database="postgres")
    pg.psql("CREATE DATABASE likes_mig OWNER likes_owner", database="postgres")
    env = {"DATABASE_URL": pg.url("likes_owner", "likes_mig")}
    results = []
    threads = [threading.Thread(target=lambda: results.append(_cli("migrate", env=env))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-500:] for r in results]
    outputs = sorted(r.stdout.strip() for r in results)
    head = head_revision()
    assert outputs[0] == f"migrate: already at {head}", outputs
    assert outputs[1].startswith("migrate: applied 0001_schema, ") and outputs[1].endswith(head), outputs
    again = _cli("migrate", env=env)
    assert again.returncode == 0 and "already at" in again.stdout
    assert pg.psql("SELECT count(*) FROM alembic_version", database="likes_mig") == "1"
    pg.psql("DROP DATABASE likes_mig", database="postgres")


def test_migrate_names_missing_roles_and_database_url():
    out = _cli("migrate", env={"DATABASE_URL": None})
    assert out.returncode == 2 and "DATABASE_URL is not set" in out.stderr


def test_check_config_names_every_wrong_setting():
    out = _cli("check-config", env={"DATABASE_URL": None, "CLIENT_ID_SECRET": "short", "RATE_LIMIT_WINDOW_MS": "abc",
                                    "RATE_LIMIT_MAX_REQUESTS": "0", "CACHE_TTL_SECONDS": "-5",
                                    "REDIS_URL": "http://x", "LOG_LEVEL": "LOUD"})
    assert out.returncode == 1
    for expected in ("DATABASE_URL is not set", "CLIENT_ID_SECRET is too short", "RATE_LIMIT_WINDOW_MS must be a whole number",
                     "RATE_LIMIT_MAX_REQUESTS must be between 1", "CACHE_TTL_SECONDS must be between 1",
                     "REDIS_URL must be a redis:// URL", "LOG_LEVEL must be one of"):
        assert expected in out.stderr, (expected, out.stderr)


def test_check_config_accepts_a_valid_environment(pg):
    out = _cli("check-config", env={"DATABASE_URL": pg.url("likes_api"), "CLIENT_ID_SECRET": "a" * 64,
                                    "RATE_LIMIT_WINDOW_MS": "60000"})
    assert out.returncode == 0 and "configuration is valid" in out.stdout and "RATE_LIMIT_MAX_REQUESTS=60" in out.stdout


def test_serve_refuses_to_start_on_bad_config_with_the_same_messages():
    out = _cli("serve", env={"DATABASE_URL": "mysql://x/y", "CLIENT_ID_SECRET": "a" * 64})
    assert out.returncode == 1 and "DATABASE_URL must be a postgresql:// URL" in out.stderr


def test_kill_switch_makes_likes_read_only_without_restart(pg, db, client):
    like(client, "k1")
    env = {"DATABASE_URL": pg.url("likes_ops")}
    out = _cli("flags", "kill", env=env)
    assert out.returncode == 0 and "likes: READ-ONLY" in out.stdout
    body = assert_error(like(client, "k1", "unlike"), 503, "likes_disabled")
    assert "read-only" in body["error"]["message"]
    assert client.get("/api/posts/like/count", params={"postId": "k1"}).json()["count"] == 1
    assert counter(db, "k1") == 1
    out = _cli("flags", "restore", env=env)
    assert out.returncode == 0 and "likes: on" in out.stdout
    assert like(client, "k1", "unlike").status_code == 200


def test_runbook_002_kill_switch_sql_works_as_written(pg, db, client):
    out = _psql(pg, "UPDATE feature_flags SET kill_switch = true WHERE name = 'likes';", role="likes_ops")
    assert out.returncode == 0 and "UPDATE 1" in out.stdout
    assert_error(like(client, "k2"), 503, "likes_disabled")


def test_migrate_check_exits_3_while_migrations_are_pending_and_0_at_head(pg):
    pg.psql("DROP DATABASE IF EXISTS likes_chk", database="postgres")
    pg.psql("CREATE DATABASE likes_chk OWNER likes_owner", database="postgres")
    env = {"DATABASE_URL": pg.url("likes_owner", "likes_chk")}
    empty = _cli("migrate", "--check", env=env)
    assert empty.returncode == 3 and json.loads(empty.stdout) == {"current": None, "head": head_revision(),
                                                                  "pending": True}
    assert pg.psql("SELECT to_regclass('alembic_version') IS NULL", database="likes_chk") == "t"   # applied nothing
    assert _cli("migrate", env=env).returncode == 0
    at_head = _cli("migrate", "--check", env=env)
    assert at_head.returncode == 0 and json.loads(at_head.stdout)["pending"] is False
    pg.psql("DROP DATABASE likes_chk", database="postgres")


def test_migrate_check_fails_clearly_when_the_database_is_unreachable():
    out = _cli("migrate", "--check", env={"DATABASE_URL": "postgresql://likes_owner:x@127.0.0.1:1/likes"})
    assert out.returncode == 1 and "cannot read the schema revision" in out.stderr
