"""`make bench`, maintenance part: the ops at 10 million like rows over 100,000 posts.

Runs alone with `python -m bench.maintenance` (about 10-15 minutes on 2 cores).
It starts its own PostgreSQL, Redis and API on loopback, generates the data
with generate_series (consistent counter slots and daily events, so the
integrity suite passes), then measures in this one run, as ratios:

  backup       `ops backup` (snapshot counts, manifest, sha256, verify) vs a bare
               `pg_dump -Fc` of the same database, best of two alternating runs each;
               also `pg_dump -Fd -j2` once, for reference
  drill        `ops drill` of that backup: RTO (restore seconds) and the whole drill
  integrity    the GX suite vs the raw SQL of the same checks on one connection
  retention    API like p99 while retention deletes 1,000,000 expired daily-event rows
               vs API like p99 without it (paced wrk load, about 300 likes/s: 20 s before,
               exactly the retention's duration, 20 s after; baseline = mean of before and after)
  pgBackRest   full backup and restore of the same cluster, if `pgbackrest` is installed

Writes bench/results/maintenance.json and prints the table for the README.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg

from bench.run import LIKE_SPREAD, RESULTS, ROOT, _stop, report, start_api
from dev.stack import PG_BIN, PostgresServer, RedisServer, _as_postgres, free_port
from ops import backup as ops_backup
from ops import drill as ops_drill
from ops import integrity as ops_integrity
from ops import retention as ops_retention
from ops.pg import libpq_env

LIKES = int(os.environ.get("BENCH_LIKES", "10000000"))
POSTS = int(os.environ.get("BENCH_POSTS", "100000"))
EXPIRED_DAYS = 10                  # every post has EXPIRED_DAYS expired daily-event rows: POSTS * 10 = 1,000,000
RECENT_DAYS = 10
PACED_RPS = float(os.environ.get("BENCH_PACED_RPS", "300"))
PACED_CONNECTIONS = 8
PACED_DELAY_MS = PACED_CONNECTIONS * 1000.0 / PACED_RPS - 1.0
QUIET_SECONDS = 20
PGBACKREST = shutil.which("pgbackrest")

# Bench data: like rows spread over 120 days, counters from them, and for each post
# (on its lowest slot) likes in EXPIRED_DAYS days older than 90 and RECENT_DAYS
# recent days; retired_net balances the ledger like_count = retired_net + events.
GENERATE = [
    "ALTER TABLE eng_post_likes DROP CONSTRAINT eng_post_likes_pkey",
    """INSERT INTO eng_post_likes (post_id, client_hash, created_at)
       SELECT 'p' || (i %% %(posts)s), sha256(int8send(i)),
              now() - (i %% 120) * interval '1 day' - (i %% 86400) * interval '1 second'
         FROM generate_series(1, %(likes)s) i""",
    "ALTER TABLE eng_post_likes ADD CONSTRAINT eng_post_likes_pkey PRIMARY KEY (post_id, client_hash)",
    """INSERT INTO eng_post_like_counter_slots (post_id, slot, like_count, retired_net, updated_at)
       SELECT post_id, get_byte(client_hash, 0) %% 16, count(*), count(*), max(created_at)
         FROM eng_post_likes GROUP BY 1, 2""",
    """INSERT INTO eng_post_like_events_daily (post_id, day, slot, likes, unlikes)
       SELECT s.post_id, current_date - d, s.slot, 1, 0
         FROM (SELECT DISTINCT ON (post_id) post_id, slot FROM eng_post_like_counter_slots
                ORDER BY post_id, slot) s,
              (SELECT generate_series(91, 90 + %(expired)s) UNION ALL SELECT generate_series(0, %(recent)s - 1)) g(d)""",
    """UPDATE eng_post_like_counter_slots s SET retired_net = s.like_count - e.net
         FROM (SELECT post_id, slot, sum(likes - unlikes) AS net FROM eng_post_like_events_daily
                GROUP BY 1, 2) e
        WHERE e.post_id = s.post_id AND e.slot = s.slot""",
]


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="likes-bench-maint-"))
    os.chmod(tmp, 0o755)
    pg, redis, procs = PostgresServer(), RedisServer(), []
    r: dict = {"likes": LIKES, "posts": POSTS, "date": date.today().isoformat(), "cores": os.cpu_count()}
    t_start = time.monotonic()
    try:
        pg.start()
        pg.provision()
        owner = pg.url("likes_owner")
        subprocess.run([sys.executable, "-m", "api", "migrate"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DATABASE_URL": owner})
        r["generate_seconds"] = _generate(pg)
        r["database_bytes"] = int(pg.psql("SELECT pg_database_size('likes')"))
        print(f"generated {LIKES} like rows over {POSTS} posts in {r['generate_seconds']} s "
              f"({r['database_bytes'] / 1e9:.2f} GB)", flush=True)

        backups = tmp / "backups"
        r.update(_backups(owner, backups, tmp))
        r.update(_integrity(owner))
        r.update(_drill(owner, backups, tmp))
        redis.start()
        api_proc, api = start_api(pg, redis, tmp)
        procs.append(api_proc)
        r.update(_retention_under_load(owner, api, tmp))
        _stop(api_proc)
        if PGBACKREST:
            r.update(_pgbackrest(pg, tmp))
        r["bench_seconds"] = round(time.monotonic() - t_start, 1)
    finally:
        for p in procs:
            _stop(p)
        redis.destroy()
        pg.destroy()
        if os.environ.get("BENCH_KEEP_TMP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    _report(r)
    return 0


def _generate(pg: PostgresServer) -> float:
    t0 = time.monotonic()
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET work_mem = '256MB'")
        for sql in GENERATE:
            conn.execute(sql, {"posts": POSTS, "likes": LIKES, "expired": EXPIRED_DAYS, "recent": RECENT_DAYS})
        # Hint bits and statistics now, so the first measured reader does not pay for them.
        conn.execute("VACUUM (ANALYZE, FREEZE)")
        conn.execute("CHECKPOINT")
    return round(time.monotonic() - t0, 1)


def _backups(owner: str, backups: Path, tmp: Path) -> dict:
    """Twice each, alternating, best of two for both sides: this machine is shared."""
    bare_file, bare_dir = tmp / "bare.dump", tmp / "bare.dir"
    bare, ours = [], []
    for _ in range(2):
        t0 = time.monotonic()
        subprocess.run([str(PG_BIN / "pg_dump"), "--format=custom", "--file", str(bare_file)], check=True,
                       env=libpq_env(owner))
        bare.append(time.monotonic() - t0)
        bare_size = bare_file.stat().st_size
        bare_file.unlink()
        t0 = time.monotonic()
        result = ops_backup.backup(owner, backups)
        ours.append(time.monotonic() - t0)
    t0 = time.monotonic()
    subprocess.run([str(PG_BIN / "pg_dump"), "--format=directory", "--jobs=2", "--file", str(bare_dir)], check=True,
                   env=libpq_env(owner))
    directory = time.monotonic() - t0
    shutil.rmtree(bare_dir)
    print(f"backup: bare pg_dump -Fc {bare[0]:.1f}/{bare[1]:.1f} s, ops backup {ours[0]:.1f}/{ours[1]:.1f} s, "
          f"pg_dump -Fd -j2 {directory:.1f} s", flush=True)
    return {"bare_pg_dump_seconds": round(min(bare), 2), "bare_pg_dump_runs": [round(x, 2) for x in bare],
            "bare_pg_dump_bytes": bare_size, "ops_backup_seconds": round(min(ours), 2),
            "ops_backup_runs": [round(x, 2) for x in ours], "ops_backup_bytes": result.size_bytes,
            "pg_dump_directory_j2_seconds": round(directory, 2), "backup_name": result.name}


def _drill(owner: str, backups: Path, tmp: Path) -> dict:
    t0 = time.monotonic()
    report = ops_drill.drill(owner, backups, "latest", docs_dir=tmp / "docs")
    total = time.monotonic() - t0
    if not report.passed:
        raise RuntimeError(f"the drill failed: {report.problem}")
    print(f"drill: RTO {report.rto_seconds} s, whole drill {total:.1f} s", flush=True)
    return {"drill_rto_seconds": report.rto_seconds, "drill_seconds": round(total, 2),
            "drill_restored_bytes": report.restored_size_bytes}


def _integrity(owner: str) -> dict:
    t0 = time.monotonic()
    ops_integrity.load_gx()
    gx_import = time.monotonic() - t0
    t0 = time.monotonic()
    result = ops_integrity.integrity(owner)
    gx = time.monotonic() - t0
    if not result.passed:
        raise RuntimeError(f"integrity failed on the bench data: {[c.meaning for c in result.checks if not c.passed]}")
    t0 = time.monotonic()
    with psycopg.connect(owner) as conn:
        for sql in _raw_checks():
            assert conn.execute(sql).fetchone()[0] == 0, sql
    raw = time.monotonic() - t0
    print(f"integrity: GX suite {gx:.1f} s (+{gx_import:.1f} s import), raw SQL {raw:.1f} s", flush=True)
    return {"integrity_gx_seconds": round(gx, 2), "integrity_gx_import_seconds": round(gx_import, 2),
            "integrity_raw_sql_seconds": round(raw, 2)}


def _raw_checks() -> list[str]:
    """The suite's row queries as plain SQL, each counting the rows that break its rule:
    taken from the suite file itself, so both sides check the same things."""
    spec = json.loads(ops_integrity.SUITE.read_text())
    sql = []
    for e in spec["expectations"]:
        if e["type"] != "UnexpectedRowsExpectation":
            raise RuntimeError(f"no raw SQL for {e['type']}: add it here")
        query = e["kwargs"]["unexpected_rows_query"].replace("{batch}", e["asset"])
        sql.append(f"SELECT count(*) FROM ({query}) q")
    return sql


def _retention_under_load(owner: str, api: str, tmp: Path) -> dict:
    """Like p99 over three phases of the same paced load: QUIET_SECONDS quiet, then
    for exactly as long as retention runs, then QUIET_SECONDS quiet again."""
    script = tmp / "likes.lua"
    script.write_text(LIKE_SPREAD % (POSTS, f"function delay() return {PACED_DELAY_MS:.2f} end"))
    _load(api, script, seconds=5)                                           # warm-up
    before = _load(api, script, seconds=QUIET_SECONDS)
    wrk = _start_load(api, script, seconds=600)
    result = ops_retention.retention(owner)
    during = _finish_load(wrk)
    after = _load(api, script, seconds=QUIET_SECONDS)
    quiet_p99 = (before["p99_ms"] + after["p99_ms"]) / 2
    print(f"retention: removed {result.removed} in {result.duration_seconds} s; like p99 {before['p99_ms']} ms "
          f"before, {during['p99_ms']} ms during, {after['p99_ms']} ms after", flush=True)
    return {"retention_rows_removed": result.removed["eng_post_like_events_daily"],
            "retention_seconds": result.duration_seconds, "paced_rps_target": PACED_RPS,
            "p99_ms_before_cleanup": before["p99_ms"], "p99_ms_during_cleanup": during["p99_ms"],
            "p99_ms_after_cleanup": after["p99_ms"], "p99_ms_without_cleanup": round(quiet_p99, 2),
            "rps_before_cleanup": before["rps"], "rps_during_cleanup": during["rps"], "rps_after_cleanup": after["rps"],
            "requests_during_cleanup": during["requests"], "failed_during_cleanup": during["failed"]}


def _load(api: str, script: Path, seconds: int) -> dict:
    return _finish_load(_start_load(api, script, seconds), stop=False)


def _start_load(api: str, script: Path, seconds: int) -> subprocess.Popen:
    """wrk on loopback, PACED_CONNECTIONS connections each pausing between likes (about PACED_RPS)."""
    return subprocess.Popen(["wrk", "-t2", f"-c{PACED_CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s",
                             "-s", str(script), api + "/api/posts/like"], stdout=subprocess.PIPE, text=True)


def _finish_load(wrk: subprocess.Popen, stop: bool = True) -> dict:
    """Read wrk's summary; with stop, end it now (SIGINT: it reports the time so far)."""
    if stop and wrk.poll() is None:
        wrk.send_signal(signal.SIGINT)
    out = wrk.communicate(timeout=None if not stop else 60)[0]
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk did not report (exit {wrk.returncode}):\n{out}")
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p99_ms": round(float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)], 2),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "failed": int(failed.group(1)) if failed else 0}


def _pgbackrest(pg: PostgresServer, tmp: Path) -> dict:
    """A stanza on this throwaway cluster, its repository in a temp dir; full backup, then
    restore into a new data directory and start it until it answers queries."""
    root = tmp / "pgbackrest"
    for d in ("repo", "log", "lock", "spool"):
        (root / d).mkdir(parents=True)
    conf = root / "pgbackrest.conf"
    conf.write_text(f"""[global]
repo1-path={root}/repo
log-path={root}/log
lock-path={root}/lock
spool-path={root}/spool
process-max=2
start-fast=y
log-level-console=warn

[bench]
pg1-path={pg.datadir}
pg1-port={pg.port}
pg1-socket-path={pg.root}
pg1-user=postgres
""")
    subprocess.run(["chown", "-R", "postgres:postgres", str(root)], check=True)
    base = ["pgbackrest", f"--config={conf}", "--stanza=bench"]
    source_rows = int(pg.psql("SELECT count(*) FROM eng_post_likes"))
    pg.psql("ALTER SYSTEM SET archive_mode = on")
    pg.psql(f"ALTER SYSTEM SET archive_command = '{' '.join(base)} archive-push %p'")
    pg.restart()
    _as_pg(base + ["stanza-create"])
    _as_pg(base + ["check"])
    t0 = time.monotonic()
    _as_pg(base + ["backup", "--type=full"])
    backup_seconds = time.monotonic() - t0
    repo_bytes = int(subprocess.run(["du", "-sb", str(root / "repo")], capture_output=True, text=True)
                     .stdout.split()[0])
    target = tmp / "pgbackrest-restored"
    target.mkdir(mode=0o700)
    subprocess.run(["chown", "postgres:postgres", str(target)], check=True)
    t0 = time.monotonic()
    _as_pg(base + [f"--pg1-path={target}", "restore"])
    files_seconds = time.monotonic() - t0
    port = free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(target), "start", "-w", "-t", "300", "-l",
                                 str(root / "restored.log"), "-o",
                                 f"-p {port} -k {root} -c listen_addresses='' -c archive_mode=off -c max_connections=200"]),
                   check=True, stdout=subprocess.DEVNULL)
    try:
        url = f"postgresql://postgres@/likes?host={root}&port={port}"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with psycopg.connect(url) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    rows = conn.execute("SELECT count(*) FROM eng_post_likes").fetchone()[0]
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("the cluster restored by pgBackRest did not finish recovery in 600 s")
        restore_seconds = time.monotonic() - t0
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(target), "stop", "-m", "immediate"]),
                       stdout=subprocess.DEVNULL)
    if rows != source_rows:
        raise RuntimeError(f"pgBackRest restore has {rows} like rows, the source {source_rows}")
    print(f"pgBackRest: full backup {backup_seconds:.1f} s ({repo_bytes / 1e6:.0f} MB), restore {files_seconds:.1f} s "
          f"+ recovery = {restore_seconds:.1f} s", flush=True)
    return {"pgbackrest_backup_seconds": round(backup_seconds, 2), "pgbackrest_repo_bytes": repo_bytes,
            "pgbackrest_restore_files_seconds": round(files_seconds, 2),
            "pgbackrest_restore_seconds": round(restore_seconds, 2)}


def _as_pg(cmd: list[str]) -> None:
    out = subprocess.run(_as_postgres(cmd), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stdout[-1500:]}{out.stderr[-1500:]}")


def _report(r: dict) -> None:
    rows = [
        ("backup throughput, ops backup / bare pg_dump -Fc", r["bare_pg_dump_seconds"] / r["ops_backup_seconds"],
         ">=", 0.9),
        ("integrity suite time, GX / raw SQL of the same checks", r["integrity_gx_seconds"] /
         r["integrity_raw_sql_seconds"], "<=", 1.5),
        ("like p99 during retention of 1M rows / without", r["p99_ms_during_cleanup"] / r["p99_ms_without_cleanup"],
         "<=", 1.5),
    ]
    report("maintenance.json", rows, r, f"{LIKES} like rows over {POSTS} posts, {r['database_bytes'] / 1e9:.2f} GB; "
           f"{os.cpu_count()} cores, loopback; {datetime.now(timezone.utc):%Y-%m-%d}")


if __name__ == "__main__":
    sys.exit(main())
