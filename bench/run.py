"""`make bench`: the API's throughput and latency against fair baselines, in one run.

Every phase runs on loopback for a fixed time. Figures are ratios measured in
this run on this machine, because the machines are shared and noisy.

  likes      API POST /api/posts/like (2 workers), fresh client per request, over 100k posts
             vs pgbench running eng_post_like_apply at the same concurrency
  reads      API GET /api/posts/like/count, cache warm  vs  a bare Sanic JSON route (2 workers)
  hot post   API likes on one post by distinct clients  vs  likes spread over many posts
  p99        at about half the peak rate, paced with wrk's delay() hook
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from dev.stack import PG_BIN, PostgresServer, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DURATION = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
WORKERS = 2
POSTS = 100_000

LIKE_SPREAD = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, nil, nil, '{"postId":"p' .. math.random(1, %d) .. '","op":"like"}')
end
%s
"""
LIKE_HOT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"postId":"hot-post","op":"like"}'
%s
"""
PGBENCH_SPREAD = """\\set r random(1, 1000000000000)
\\set p random(1, %d)
SELECT * FROM eng_post_like_apply('p' || :p, sha256(:r::text::bytea), 'like');
"""


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="likes-bench-"))
    pg, redis, procs = PostgresServer(), RedisServer(), []
    try:
        pg.start()
        pg.provision()
        subprocess.run([sys.executable, "-m", "api", "migrate"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DATABASE_URL": pg.url("likes_owner")})
        redis.start()
        api_proc, api = start_api(pg, redis, tmp)
        procs.append(api_proc)
        bare_port = free_port()
        procs.append(_start([sys.executable, "-m", "bench.bare_serve", str(bare_port), str(WORKERS)], bare_port,
                            tmp / "bare.log", {}))
        bare = f"http://127.0.0.1:{bare_port}"
        httpx.post(api + "/api/posts/like", json={"postId": "p1", "op": "like"})

        r = {}
        r["api_likes_rps"] = _wrk(api + "/api/posts/like", LIKE_SPREAD % (POSTS, ""), tmp)["rps"]
        r["pgbench_tps"] = _pgbench(pg, PGBENCH_SPREAD % POSTS, tmp)
        r["api_hot_likes_rps"] = _wrk(api + "/api/posts/like", LIKE_HOT % "", tmp)["rps"]
        r["api_reads_rps"] = _wrk(api + "/api/posts/like/count?postId=p1", None, tmp)["rps"]
        r["bare_sanic_rps"] = _wrk(bare + "/bare", None, tmp)["rps"]
        half_likes = _paced(api + "/api/posts/like", LIKE_SPREAD % (POSTS, "%s"), r["api_likes_rps"] / 2, tmp)
        half_reads = _paced(api + "/api/posts/like/count?postId=p1", 'wrk.method = "GET"\n%s',
                            r["api_reads_rps"] / 2, tmp)
        r.update({"likes_p99_ms_at_half_peak": half_likes["p99_ms"], "likes_rps_at_half_peak": half_likes["rps"],
                  "reads_p99_ms_at_half_peak": half_reads["p99_ms"], "reads_rps_at_half_peak": half_reads["rps"]})
        total = pg.psql("SELECT count(*) FROM eng_post_likes")
        r["like_rows_written"] = int(total)
    finally:
        for p in procs:
            _stop(p)
        redis.destroy()
        pg.destroy()

    rows = [
        ("like throughput, API (2 workers) / pgbench same SQL", r["api_likes_rps"] / r["pgbench_tps"], ">=", 0.6),
        ("count reads, cache warm / bare Sanic JSON route", r["api_reads_rps"] / r["bare_sanic_rps"], ">=", 0.7),
        ("likes on one hot post / likes spread over many", r["api_hot_likes_rps"] / r["api_likes_rps"], ">=", 0.8),
        ("likes p99 at half peak (ms)", r["likes_p99_ms_at_half_peak"], "<=", 20.0),
        ("reads p99 at half peak (ms)", r["reads_p99_ms_at_half_peak"], "<=", 5.0),
    ]
    report("latest.json", rows, {k: round(v, 1) for k, v in r.items()},
           f"machine: {os.cpu_count()} cores; {DURATION} s per phase, {CONNECTIONS} connections, loopback",
           cores=os.cpu_count(), seconds_per_phase=DURATION, connections=CONNECTIONS)
    return 0


def report(file_name: str, rows: list[tuple], raw: dict, header: str, **meta) -> None:
    """Print the table of (measure, value, ">=" or "<=", target) rows and write it, with
    the raw figures, to bench/results/<file_name>."""
    measures = [{"measure": m, "value": round(v, 3), "target": f"{op} {t}", "met": v >= t if op == ">=" else v <= t}
                for m, v, op, t in rows]
    (RESULTS / file_name).write_text(json.dumps({**meta, "raw": raw, "measures": measures}, indent=2))
    width = max(len(m["measure"]) for m in measures)
    print(f"\n{header}\n")
    print(f"| {'measure':<{width}} | {'value':>8} | {'target':>8} | met |")
    print(f"|{'-' * (width + 2)}|{'-' * 10}|{'-' * 10}|-----|")
    for m in measures:
        print(f"| {m['measure']:<{width}} | {m['value']:>8} | {m['target']:>8} | {'yes' if m['met'] else 'no':>3} |")
    print("\nraw: " + ", ".join(f"{k}={v}" for k, v in raw.items()))
    print(f"written: {RESULTS / file_name}")


def start_api(pg: PostgresServer, redis: RedisServer, tmp: Path) -> tuple[subprocess.Popen, str]:
    """The API as deployed (2 workers), with rate limits out of the way; returns it and its base URL."""
    port = free_port()
    proc = _start([sys.executable, "-m", "api", "serve"], port, tmp / "api.log", {
        "DATABASE_URL": pg.url("likes_api"), "REDIS_URL": redis.url, "CLIENT_ID_SECRET": os.urandom(32).hex(),
        "RATE_LIMIT_MAX_REQUESTS": "1000000", "RATE_LIMIT_READ_MAX_REQUESTS": "10000000",
        "PORT": str(port), "WORKERS": str(WORKERS), "LOG_FILE": str(tmp / "app.log")})
    return proc, f"http://127.0.0.1:{port}"


def _start(cmd: list[str], port: int, log: Path, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health" if "api" in cmd else f"http://127.0.0.1:{port}/bare",
                         timeout=0.5).status_code == 200:
                time.sleep(1.5)      # let every worker finish starting
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{' '.join(cmd)} did not come up; see {log}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _wrk(url: str, script: str | None, tmp: Path, connections: int = CONNECTIONS, seconds: int = DURATION) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script:
        path = tmp / f"s{abs(hash(script))}.lua"
        path.write_text(script)
        cmd += ["-s", str(path)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed responses during the benchmark:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"rps": rps, "requests": requests,
            "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")}


def _paced(url: str, script_with_delay: str, rate: float, tmp: Path, seconds: int = DURATION) -> dict:
    """About `rate` requests/s: few connections, each waiting between requests."""
    connections = 8
    delay_ms = max(0.0, connections * 1000.0 / rate - 1.0)
    hook = f"function delay() return {delay_ms:.2f} end"
    return _wrk(url, script_with_delay % hook, tmp, connections=connections, seconds=seconds)


def _pgbench(pg: PostgresServer, script: str, tmp: Path) -> float:
    path = tmp / "pgbench.sql"
    path.write_text(script)
    out = subprocess.run([str(PG_BIN / "pgbench"), "-n", f"-c{CONNECTIONS}", "-j2", f"-T{DURATION}", "-M", "prepared",
                          "-f", str(path), pg.url("likes_owner")], capture_output=True, text=True,
                         timeout=DURATION + 60)
    match = re.search(r"tps = ([\d.]+)", out.stdout)
    if not match:
        raise RuntimeError(f"pgbench failed:\n{out.stdout}\n{out.stderr}")
    return float(match.group(1))


if __name__ == "__main__":
    sys.exit(main())
