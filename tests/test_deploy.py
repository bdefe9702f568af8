"""`make deploy` for real: converge this machine with inventory/local (from whatever state it is in),
converge again and expect no change, run verify.yml, then use the deployed platform through HAProxy
and Airflow's REST API. Nothing is mocked: these are the system PostgreSQL, Redis, HAProxy,
supervisord and Airflow that the playbooks install and start.
"""
from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.deploy import (API, airflow_client, client_from, run_playbook, secret, task_states,
                          trigger_and_wait)

pytestmark = [pytest.mark.slow, pytest.mark.deploy]
DAGS = ("likes_backup", "likes_retention", "likes_integrity", "likes_restore_drill")
BACKUP_DIR = Path("/var/backups/likes")


def test_second_converge_changes_nothing(local):
    assert local.recap, local.output[-2000:]
    changed = {host: counts["changed"] for host, counts in local.recap.items() if counts["changed"]}
    assert changed == {}, f"a no-op re-run changed something, see {local.log}"


def test_verify_playbook_passes_health_like_count_and_429(local):
    run = run_playbook("local", "verify.yml")
    assert run.returncode == 0, run.output[-3000:]
    for check in ("Check the platform's health", "Assert that the like counted", "Read the verification post's count",
                  "Assert that the rate limit answered 429 with Retry-After"):
        assert f"TASK [{check}" in run.output


def test_health_through_haproxy_names_the_release_the_instance_runs(local):
    release = Path(os.readlink("/opt/likes/instances/api-1/current")).name
    r = httpx.get(API + "/api/monitoring/health", timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["database"] == "connected" and body["redis"] == "connected"
    assert body["release"] == release and r.headers["X-Likes-Release"] == release


def test_a_like_through_haproxy_counts_once_and_reads_back(local):
    post = f"smoke-{os.getpid()}"
    with client_from("127.0.0.21") as c:
        first = c.post("/api/posts/like", json={"postId": post, "op": "like"})
        assert first.status_code == 200, first.text
        cid = first.json()["clientId"]
        again = c.post("/api/posts/like", json={"postId": post, "op": "like", "clientId": cid})
        assert first.json()["count"] == 1 and again.json() == {**first.json(), "changed": False}
        count = c.get("/api/posts/like/count", params={"postId": post}, headers={"X-Client-Id": cid})
        assert count.status_code == 200 and count.json() == {"postId": post, "count": 1, "liked": True}


def test_the_api_limits_per_client_ip_as_haproxy_forwards_it(local):
    # A write burst past the limit from one source address is refused; another address is not affected.
    with client_from("127.0.0.22") as c:
        limit = int(c.post("/api/posts/like", json={"postId": "ip-x", "op": "like"}).headers["RateLimit-Limit"])
        statuses = [c.post("/api/posts/like", json={"postId": f"ip-{i}", "op": "like"}).status_code
                    for i in range(limit + 2)]
    assert statuses[-1] == 429 and statuses.count(429) >= 2
    with client_from("127.0.0.23") as other:
        assert other.post("/api/posts/like", json={"postId": "ip-y", "op": "like"}).status_code == 200


def test_airflow_rest_login_requires_the_generated_password(local):
    ok = httpx.post("http://127.0.0.1:8080/auth/token", timeout=30,
                    json={"username": "admin", "password": secret("local", "airflow_admin")})
    assert ok.status_code == 201 and ok.json()["access_token"]
    for password in ("admin", "wrong-password"):
        bad = httpx.post("http://127.0.0.1:8080/auth/token", timeout=30, json={"username": "admin", "password": password})
        assert bad.status_code == 401
    assert httpx.get("http://127.0.0.1:8080/api/v2/dags", timeout=30).status_code == 401


def test_the_four_dags_are_listed_unpaused_with_no_import_errors(local):
    with airflow_client("local") as af:
        assert af.get("/api/v2/importErrors").json() == {"import_errors": [], "total_entries": 0}
        dags = {d["dag_id"]: d for d in af.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
    assert set(DAGS) <= set(dags)
    assert [d for d in DAGS if dags[d]["is_paused"]] == []


def test_each_dag_runs_to_success_when_triggered_through_the_rest_api(local):
    before = {p.name for p in BACKUP_DIR.glob("*.dump")}
    with airflow_client("local") as af:
        runs = {"likes_backup": trigger_and_wait(af, "likes_backup", {"label": "rest-smoke"})}
        # The drill restores the backup just taken.
        runs["likes_restore_drill"] = trigger_and_wait(af, "likes_restore_drill", {"backup": "latest"})
        runs["likes_integrity"] = trigger_and_wait(af, "likes_integrity", {"repair": False})
        runs["likes_retention"] = trigger_and_wait(af, "likes_retention", {"dry_run": True})
        states = {dag: (run["state"], task_states(af, run)) for dag, run in runs.items()}
    assert {dag: state for dag, (state, _) in states.items()} == dict.fromkeys(DAGS, "success"), states
    new = [p for p in BACKUP_DIR.glob("*.dump") if p.name not in before]
    assert len(new) == 1 and new[0].name.endswith("-rest-smoke.dump")
    assert stat.S_IMODE(new[0].stat().st_mode) == 0o600


def test_backups_are_out_of_the_api_users_reach(local):
    st = BACKUP_DIR.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and pwd.getpwuid(st.st_uid).pw_name == "airflow"
    out = subprocess.run(["runuser", "-u", "likes", "--", "ls", str(BACKUP_DIR)], capture_output=True, text=True)
    assert out.returncode != 0 and "Permission denied" in out.stderr


def test_secrets_and_env_files_are_private(local):
    env = Path("/etc/likes/api.env").stat()
    assert stat.S_IMODE(env.st_mode) == 0o600 and pwd.getpwuid(env.st_uid).pw_name == "likes"
    for path in (Path("/etc/airflow/airflow.env"), Path("/etc/airflow/passwords.json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = Path(os.environ.get("LIKES_SECRETS_DIR") or Path.home() / ".config/likes/local")
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in store.iterdir()} == {"0o600"}
    # Nothing in the repository carries a generated secret.
    tracked = subprocess.run(["git", "grep", "-l", "-F", secret("local", "client_id_secret")],
                             cwd=Path(__file__).parent.parent, capture_output=True, text=True)
    assert tracked.stdout == ""


def test_a_wrong_inventory_variable_fails_in_preflight_naming_it_before_anything_changes(local):
    run = run_playbook("local", "site.yml", "-e", "likes_api__port=99999", name="site-bad-port")
    assert run.returncode != 0
    assert "likes_api__port must be a TCP port (1-65535) on api-1, got 99999" in run.output
    assert run.changed == 0 and "PLAY [Set up PostgreSQL" not in run.output


def test_an_unsupported_os_fails_early_with_a_clear_message(local):
    facts = json.dumps({"ansible_facts": {"distribution": "Ubuntu", "distribution_major_version": "22",
                                          "distribution_version": "22.04", "service_mgr": "systemd",
                                          "memtotal_mb": 4096, "hostname": "x"}})
    run = run_playbook("local", "site.yml", "-e", facts, name="site-bad-os")
    assert run.returncode != 0
    assert "supports Debian 12 (bookworm) only; this host runs Ubuntu 22.04" in run.output
    assert run.changed == 0 and "PLAY [Set up PostgreSQL" not in run.output
