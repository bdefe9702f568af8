"""Helpers for the deploy tests: run ansible-playbook against an inventory, read its recap, and
talk to the deployed platform (HAProxy on :8000, Airflow's REST API on :8080)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
API = "http://127.0.0.1:8000"
AIRFLOW = "http://127.0.0.1:8080"
TIMINGS = ARTIFACTS / "deploy-timings.json"
_RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                    r"\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float
    log: Path

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """The PLAY RECAP, host -> counters (the last recap if the output has several)."""
        keys = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
        return {m[0]: dict(zip(keys, map(int, m[1:]))) for m in _RECAP.findall(self.output)}

    @property
    def changed(self) -> int:
        return sum(h["changed"] for h in self.recap.values())


def run_playbook(inventory: str, playbook: str, *args: str, name: str | None = None,
                 timeout: float = 1500) -> PlaybookRun:
    """ansible-playbook -i inventory/<inventory> playbooks/<playbook> from the repo root, logged to artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / f"ansible-{name or Path(playbook).stem}-{inventory}.log"
    # profile_tasks: each task's wall time in the log, and the slowest ones after the recap.
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "PYTHONUNBUFFERED": "1",
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}
    start = time.monotonic()
    out = subprocess.run([ANSIBLE_PLAYBOOK, "-i", f"inventory/{inventory}", f"playbooks/{playbook}", *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    log.write_text(out.stdout + out.stderr)
    return PlaybookRun(out.returncode, out.stdout + out.stderr, seconds, log)


@pytest.fixture(scope="session")
def local():
    """inventory/local converged twice (from whatever state the machine is in); the second run's
    recap is what the idempotence test reads. Shared by every deploy test module of the session."""
    first = run_playbook("local", "site.yml", name="site-first")
    assert first.returncode == 0, f"first converge failed, see {first.log}:\n{first.output[-3000:]}"
    record_timing("local_first_converge_seconds", first.seconds)
    second = run_playbook("local", "site.yml", name="site-second")
    assert second.returncode == 0, f"second converge failed, see {second.log}:\n{second.output[-3000:]}"
    record_timing("local_noop_converge_seconds", second.seconds)
    return second


def record_timing(key: str, seconds: float) -> None:
    data = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    data[key] = round(seconds, 1)
    TIMINGS.write_text(json.dumps(data, indent=2) + "\n")


def secret(inventory: str, name: str) -> str:
    """A generated secret from the controller's file store (as likes_secrets__dir computes it)."""
    base = os.environ.get("LIKES_SECRETS_DIR") or str(Path.home() / ".config" / "likes" / inventory)
    return (Path(base) / name).read_text().strip()


def client_from(source_ip: str, base_url: str = API, **kw) -> httpx.Client:
    """An HTTP client whose connections come from a loopback source address of its own.

    The API limits writes per client IP (HAProxy forwards it, PROXIES_COUNT=1): each test that
    writes uses its own 127.0.0.x, so verify.yml's deliberate 429s do not spill into it."""
    return httpx.Client(base_url=base_url, timeout=15, transport=httpx.HTTPTransport(local_address=source_ip), **kw)


def airflow_client(inventory: str) -> httpx.Client:
    """A client of Airflow's REST API, logged in as the admin with a token from POST /auth/token."""
    r = httpx.post(AIRFLOW + "/auth/token", timeout=30,
                   json={"username": "admin", "password": secret(inventory, "airflow_admin")})
    r.raise_for_status()
    return httpx.Client(base_url=AIRFLOW, timeout=30, headers={"Authorization": f"Bearer {r.json()['access_token']}"})


def trigger_and_wait(af: httpx.Client, dag_id: str, conf: dict, timeout: float = 300) -> dict:
    """POST /api/v2/dags/{dag_id}/dagRuns (what the UI's trigger form does), then poll to a final state."""
    r = af.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = af.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(2)
    raise AssertionError(f"{dag_id} run {run_id} did not finish within {timeout}s: {run['state']}")


def task_states(af: httpx.Client, run: dict) -> dict[str, str]:
    tis = af.get(f"/api/v2/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances").json()
    return {t["task_id"]: t["state"] for t in tis["task_instances"]}


@dataclass
class Load:
    """Reads and a few likes through HAProxy from 4 threads, each from its own loopback address,
    at most `max_requests` in all and for at most `max_seconds`. Every response is recorded."""
    max_requests: int = 40_000
    max_seconds: float = 600
    threads: int = 4                 # more only takes CPU from the playbook on a 2-core machine
    pause: float = 0.05
    results: list[tuple[str, int, str | None]] = field(default_factory=list)   # (route, status or -1, release)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> "Load":
        self._deadline = time.monotonic() + self.max_seconds
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(30)

    def _run(self, n: int) -> None:
        with client_from(f"127.0.0.{60 + n}") as c:
            i = 0
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                with self._lock:
                    if len(self.results) >= self.max_requests:
                        return
                i += 1
                write = i % 100 == 0     # a like every few seconds per thread: well under the per-IP write limit
                route = "/api/posts/like" if write else "/api/posts/like/count"
                try:
                    r = (c.post(route, json={"postId": f"load-{n}-{i}", "op": "like"}) if write
                         else c.get(route, params={"postId": f"load-{n % 4}"}))
                    rec = (route, r.status_code, r.headers.get("X-Likes-Release"))
                except httpx.HTTPError as exc:
                    rec = (route, -1, None)
                    with self._lock:
                        self.errors.append(f"{route}: {exc!r}")
                with self._lock:
                    self.results.append(rec)
                time.sleep(self.pause)

    def statuses(self) -> Counter:
        return Counter(status for _, status, _ in self.results)

    def releases(self) -> Counter:
        return Counter(release for _, _, release in self.results)
