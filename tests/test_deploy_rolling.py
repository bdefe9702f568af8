"""inventory/cluster-sim: three API instances behind HAProxy and Airflow on Celery, all on this
machine. deploy.yml rolls a new release through the instances under a bounded loopback load with
zero failed requests; then a deliberately broken release (it starts, but /api/monitoring/health
fails) is rolled back automatically, the play fails with a clear message, and no request of the
load ever reaches it. rotate_secrets.yml rotates every secret under the same load."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.deploy import (AIRFLOW, ROOT, Load, airflow_client, client_from, run_playbook, secret, task_states,
                          trigger_and_wait)

pytestmark = [pytest.mark.slow, pytest.mark.deploy]
INSTANCES = ("api-1", "api-2", "api-3")
LOG_DIR = Path("/var/log/likes")


def _current(instance: str) -> str:
    return Path(os.readlink(f"/opt/likes/instances/{instance}/current")).name


def _source_copy(tmp: Path, name: str, patch=None) -> Path:
    """A copy of api/ with a marker (so its content hash, the release name, differs), optionally patched."""
    dest = tmp / name / "api"
    shutil.copytree(ROOT / "api", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    init = dest / "__init__.py"
    init.write_text(init.read_text() + f"# test release {name}\n")
    if patch:
        patch(dest)
    return dest


def _break_health(api: Path) -> None:
    health = api / "blueprints" / "health.py"
    text = health.read_text()
    marker = "async def monitoring_health(request: Request):\n"
    assert marker in text
    health.write_text(text.replace(marker, marker + '    return json({"status": "down", "broken": "on purpose"}, status=500)\n'))


def _access_log(instance: str) -> list[dict]:
    path = LOG_DIR / f"{instance}.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if '"logger":"likes.access"' in line]


@pytest.fixture(scope="module")
def cluster_sim():
    run = run_playbook("cluster-sim", "site.yml", name="site")
    assert run.returncode == 0, f"cluster-sim converge failed, see {run.log}:\n{run.output[-3000:]}"
    return run


def test_cluster_sim_runs_three_instances_behind_haproxy_and_celery_workers(cluster_sim):
    seen = Counter()
    with client_from("127.0.0.51") as c:
        for _ in range(30):
            r = c.get("/api/health")
            assert r.status_code == 200
            seen[r.headers["X-Likes-Release"]] += 1
    assert len({_current(i) for i in INSTANCES}) == 1
    assert len(seen) == 1 and sum(seen.values()) == 30
    workers = subprocess.run(["supervisorctl", "status", "airflow-celery-worker-1", "airflow-celery-worker-2"],
                             capture_output=True, text=True).stdout
    assert workers.count("RUNNING") == 2, workers
    with airflow_client("cluster-sim") as af:
        run = trigger_and_wait(af, "likes_integrity", {"repair": False})
        assert run["state"] == "success", task_states(af, run)
    # The run went through Celery: its broker queue lives in Redis database 1, behind the password.
    keys = subprocess.run(["redis-cli", "--no-auth-warning", "-n", "1", "--scan"], capture_output=True, text=True,
                          env={**os.environ, "REDISCLI_AUTH": secret("cluster-sim", "redis")}).stdout.split()
    assert "_kombu.binding.default" in keys, keys[:20]


def test_rolling_deploy_under_load_has_zero_failed_requests(cluster_sim, tmp_path):
    old = _current("api-1")
    source = _source_copy(tmp_path, "rolling")
    with Load() as load:
        time.sleep(2)
        run = run_playbook("cluster-sim", "deploy.yml", "-e", f"likes_api__source_dir={source}", name="deploy-rolling")
        time.sleep(3)
    assert run.returncode == 0, f"see {run.log}:\n{run.output[-3000:]}"
    new = _current("api-1")
    assert new != old and {_current(i) for i in INSTANCES} == {new}
    statuses = load.statuses()
    assert load.errors == [] and set(statuses) == {200}, (statuses, load.errors[:5])
    assert sum(statuses.values()) > 500
    assert set(load.releases()) == {old, new}
    assert {release for _, _, release in load.results[-50:]} == {new}


def test_a_broken_release_is_rolled_back_and_never_serves_a_request(cluster_sim, tmp_path):
    good = _current("api-1")
    source = _source_copy(tmp_path, "broken", patch=_break_health)
    with Load() as load:
        time.sleep(2)
        run = run_playbook("cluster-sim", "deploy.yml", "-e", f"likes_api__source_dir={source}", name="deploy-broken")
        time.sleep(3)
    broken = next(p.name for p in Path("/opt/likes/releases").iterdir()
                  if (p / "api" / "__init__.py").exists() and "test release broken" in (p / "api" / "__init__.py").read_text())
    assert run.returncode != 0
    assert (f"Rollout of release {broken} to API instance api-1 failed" in run.output
            and f"rolled back to release {good}, is healthy and back in service" in " ".join(run.output.split()))
    # Rolled back, and the other instances were never touched.
    assert {_current(i) for i in INSTANCES} == {good}
    assert Path(os.readlink("/opt/likes/instances/api-1/previous")).name != broken
    # Zero failed requests, and none served by the broken release.
    statuses = load.statuses()
    assert load.errors == [] and set(statuses) == {200}, (statuses, load.errors[:5])
    assert broken not in load.releases() and set(load.releases()) == {good}
    # The broken release did run on api-1 (the deploy's health gate probed it), and answered nothing else.
    broken_routes = Counter(line["route"] for line in _access_log("api-1") if line.get("release") == broken)
    assert broken_routes and set(broken_routes) == {"/api/monitoring/health"}
    for other in ("api-2", "api-3"):
        assert [line for line in _access_log(other) if line.get("release") == broken] == []


def test_systemd_units_of_every_program_pass_systemd_analyze_verify(cluster_sim, tmp_path):
    # CI has no systemd as PID 1, so the supervision role's systemd path renders the same programs
    # into a scratch directory, and systemd-analyze (which works without PID 1) checks them.
    run = run_playbook("cluster-sim", "../tests/playbooks/systemd_units.yml", "-e", f"units_dir={tmp_path}",
                       name="systemd-units")
    assert run.returncode == 0, run.output[-3000:]
    units = sorted(p.name for p in tmp_path.glob("*.service"))
    assert units == sorted([f"likes-{i}.service" for i in INSTANCES]
                           + [f"airflow-{c}.service" for c in ("api-server", "scheduler", "dag-processor", "triggerer",
                                                              "celery-worker-1", "celery-worker-2")])
    out = subprocess.run(["systemd-analyze", "verify", "--man=false", *units], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_rotating_every_secret_keeps_serving_and_old_client_ids_work_during_the_grace_period(cluster_sim):
    old = {name: secret("cluster-sim", name) for name in ("client_id_secret", "db_likes_api", "db_likes_owner", "redis",
                                                     "airflow_admin")}
    with client_from("127.0.0.42") as c:
        first = c.post("/api/posts/like", json={"postId": "rotation", "op": "like"}).json()
        old_id = first["clientId"]
        with Load(max_seconds=900) as load:
            run = run_playbook("cluster-sim", "rotate_secrets.yml", "-e",
                               json.dumps({"likes_secrets__rotate": ["client_id", "db", "redis", "airflow_admin"]}),
                               name="rotate")
        assert run.returncode == 0, f"see {run.log}:\n{run.output[-3000:]}"
        new = {name: secret("cluster-sim", name) for name in old}
        assert [name for name in old if old[name] == new[name]] == []
        assert secret("cluster-sim", "client_id_secret.previous") == old["client_id_secret"]
        assert not Path(os.environ.get("LIKES_SECRETS_DIR") or Path.home() / ".config/likes/cluster-sim", "redis.previous").exists()

        # Requests kept being answered while the instances restarted one by one.
        statuses = load.statuses()
        assert load.errors == [] and set(statuses) <= {200}, (statuses, load.errors[:5])

        # An id signed with the old secret still works, and is the same client (grace period).
        r = c.get("/api/posts/like/count", params={"postId": "rotation"}, headers={"X-Client-Id": old_id})
        assert r.status_code == 200 and r.json()["liked"] is True
        with client_from("127.0.0.43") as fresh:          # no likes_cid cookie: a new client gets a new id
            new_id = fresh.post("/api/posts/like", json={"postId": "rotation-2", "op": "like"}).json()["clientId"]
        assert new_id.split(".")[0] != old_id.split(".")[0]          # signed with the new secret (its key id)

        # The new database and Redis passwords work; the old ones do not.
        url = "postgresql://likes_api:{}@127.0.0.1:5432/likes"
        with psycopg.connect(url.format(new["db_likes_api"]), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(url.format(old["db_likes_api"]), connect_timeout=5)
        for password, answer in ((new["redis"], "PONG"), (old["redis"], "WRONGPASS")):
            out = subprocess.run(["redis-cli", "--no-auth-warning", "PING"], capture_output=True, text=True,
                                 env={**os.environ, "REDISCLI_AUTH": password})
            assert answer in out.stdout + out.stderr
        health = c.get("/api/monitoring/health").json()
        assert health["database"] == "connected" and health["redis"] == "connected"

        # The new Airflow admin password logs in; the old one does not.
        for password, status in ((new["airflow_admin"], 201), (old["airflow_admin"], 401)):
            assert httpx.post(AIRFLOW + "/auth/token", json={"username": "admin", "password": password},
                              timeout=30).status_code == status

        # The grace period ends: ids signed with the old secret are refused.
        run = run_playbook("cluster-sim", "rotate_secrets.yml", "-e", json.dumps({"likes_secrets__rotate": ["client_id_grace_end"]}),
                           name="rotate-grace-end")
        assert run.returncode == 0, f"see {run.log}:\n{run.output[-3000:]}"
        r = c.get("/api/posts/like/count", params={"postId": "rotation"}, headers={"X-Client-Id": old_id})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_client_id"
        r = c.get("/api/posts/like/count", params={"postId": "rotation-2"}, headers={"X-Client-Id": new_id})
        assert r.status_code == 200 and r.json()["liked"] is True


def test_check_mode_runs_through_on_the_converged_platform(cluster_sim):
    # Last in the module: the rotation above converged the checkout's release again, so nothing is pending.
    run = run_playbook("cluster-sim", "site.yml", "--check", name="site-check")
    assert run.returncode == 0, f"see {run.log}:\n{run.output[-3000:]}"
    assert run.changed == 0 and all(h["failed"] == 0 for h in run.recap.values())
