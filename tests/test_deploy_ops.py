"""The operations playbooks against the local deployment: backup.yml (the ops CLI the DAG uses),
restore.yml (confirmation, safety backup, kill switch) and rotate_secrets.yml (client-id secret
with a grace period, database, Redis and Airflow admin passwords), under a light load."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.deploy import AIRFLOW, Load, client_from, run_playbook, secret

pytestmark = [pytest.mark.slow, pytest.mark.deploy]
BACKUP_DIR = Path("/var/backups/likes")


@pytest.fixture(scope="module")
def local():
    run = run_playbook("local", "site.yml", name="site-ops")
    assert run.returncode == 0, f"converge failed, see {run.log}:\n{run.output[-3000:]}"


def _backups(label: str) -> list[Path]:
    return sorted(BACKUP_DIR.glob(f"*-{label}.dump"))


def _count(c: httpx.Client, post: str) -> int:
    return c.get("/api/posts/like/count", params={"postId": post}, headers={"Cache-Control": "no-cache"}).json()["count"]


def _ops_has_restore() -> bool:
    out = subprocess.run(["/usr/local/bin/likes-ops", "restore", "--help"], capture_output=True, text=True)
    return out.returncode == 0


def test_backup_playbook_takes_a_verified_backup_with_the_ops_cli(local):
    before = _backups("playbook-test")
    run = run_playbook("local", "backup.yml", "-e", "airflow__backup_label=playbook-test")
    assert run.returncode == 0, run.output[-3000:]
    new = [p for p in _backups("playbook-test") if p not in before]
    assert len(new) == 1 and new[0].name in run.output
    manifest = json.loads(new[0].with_name(new[0].name.replace(".dump", ".manifest.json")).read_text())
    assert manifest["verified_at"] and manifest["label"] == "playbook-test"
    verify = subprocess.run(["/usr/local/bin/likes-ops", "verify", "--backup", new[0].stem],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_restore_refuses_without_a_matching_confirmation_and_changes_nothing(local):
    name = _backups("playbook-test")[-1].stem
    safety_before = _backups("pre-restore")
    for extra in ([], ["-e", f"restore_backup={name}"], ["-e", f"restore_backup={name}", "-e", "restore_confirm=other"]):
        run = run_playbook("local", "restore.yml", *extra, name="restore-unconfirmed")
        assert run.returncode != 0
        assert "Restoring replaces the live database. Name the backup and confirm it" in run.output
        assert run.changed == 0 and _backups("pre-restore") == safety_before


@pytest.mark.skipif(not _ops_has_restore(),
                    reason="needs `python -m ops restore --backup NAME --confirm NAME` (the maintenance branch); "
                           "restore.yml calls exactly that interface")
def test_restore_puts_the_named_backup_back_behind_the_kill_switch(local):
    with client_from("127.0.0.41") as c:
        assert c.post("/api/posts/like", json={"postId": "restore-kept", "op": "like"}).status_code == 200
        run = run_playbook("local", "backup.yml", "-e", "airflow__backup_label=before-restore")
        assert run.returncode == 0, run.output[-2000:]
        name = _backups("before-restore")[-1].stem
        assert c.post("/api/posts/like", json={"postId": "restore-lost", "op": "like"}).status_code == 200
        safety_before = _backups("pre-restore")
        run = run_playbook("local", "restore.yml", "-e", f"restore_backup={name}", "-e", f"restore_confirm={name}")
        assert run.returncode == 0, run.output[-3000:]
        assert _count(c, "restore-kept") == 1 and _count(c, "restore-lost") == 0
        assert len(_backups("pre-restore")) > len(safety_before)
        # The kill switch is off again: likes are accepted.
        assert c.post("/api/posts/like", json={"postId": "restore-after", "op": "like"}).status_code == 200


def test_rotating_every_secret_keeps_serving_and_old_client_ids_work_during_the_grace_period(local):
    old = {name: secret("local", name) for name in ("client_id_secret", "db_likes_api", "db_likes_owner", "redis",
                                                     "airflow_admin")}
    with client_from("127.0.0.42") as c:
        first = c.post("/api/posts/like", json={"postId": "rotation", "op": "like"}).json()
        old_id = first["clientId"]
        with Load(max_seconds=900, pause=0.15) as load:   # under the local per-IP read limit
            run = run_playbook("local", "rotate_secrets.yml", "-e",
                               json.dumps({"likes_secrets__rotate": ["client_id", "db", "redis", "airflow_admin"]}),
                               name="rotate")
        assert run.returncode == 0, f"see {run.log}:\n{run.output[-3000:]}"
        new = {name: secret("local", name) for name in old}
        assert [name for name in old if old[name] == new[name]] == []
        assert secret("local", "client_id_secret.previous") == old["client_id_secret"]
        assert not Path(os.environ.get("LIKES_SECRETS_DIR") or Path.home() / ".config/likes/local", "redis.previous").exists()

        # Requests kept being answered while the instances restarted one by one.
        statuses = load.statuses()
        assert load.errors == [] and set(statuses) <= {200}, (statuses, load.errors[:5])

        # An id signed with the old secret still works, and is the same client (grace period).
        r = c.get("/api/posts/like/count", params={"postId": "rotation"}, headers={"X-Client-Id": old_id})
        assert r.status_code == 200 and r.json()["liked"] is True
        new_id = c.post("/api/posts/like", json={"postId": "rotation-2", "op": "like"}).json()["clientId"]
        assert new_id.split(".")[0] != old_id.split(".")[0]

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
        run = run_playbook("local", "rotate_secrets.yml", "-e", json.dumps({"likes_secrets__rotate": ["client_id_grace_end"]}),
                           name="rotate-grace-end")
        assert run.returncode == 0, f"see {run.log}:\n{run.output[-3000:]}"
        r = c.get("/api/posts/like/count", params={"postId": "rotation"}, headers={"X-Client-Id": old_id})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_client_id"
        r = c.get("/api/posts/like/count", params={"postId": "rotation-2"}, headers={"X-Client-Id": new_id})
        assert r.status_code == 200 and r.json()["liked"] is True
