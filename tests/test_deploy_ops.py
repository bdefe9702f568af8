"""The operations playbooks against the local deployment: backup.yml (the ops CLI the DAG uses) and
restore.yml (confirmation, safety backup, kill switch). rotate_secrets.yml is tested on cluster-sim,
where three instances let a rolling restart keep serving."""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from api import store
from tests.deploy import client_from, run_playbook, secret

pytestmark = [pytest.mark.slow, pytest.mark.deploy]
BACKUP_DIR = Path("/var/backups/likes")


def _backups(label: str) -> list[Path]:
    return sorted(BACKUP_DIR.glob(f"*-{label}.dump"))


def _count(c: httpx.Client, post: str, client_id: str) -> int:
    """The count from the database: with a client id the API reads it there, not from the Redis
    cache (which may hold a count from before the restore for CACHE_TTL_SECONDS)."""
    return c.get("/api/posts/like/count", params={"postId": post}, headers={"X-Client-Id": client_id}).json()["count"]


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


@pytest.fixture
def likes_enabled(local):
    """The kill switch off before and after: a failed restore leaves it on, as it should, and the
    machine keeps that state from one run to the next; the tests here and after need likes."""
    url = f"postgresql://likes_owner:{secret('local', 'db_likes_owner')}@127.0.0.1:5432/likes"
    store.set_kill_switch(url, "likes", False)
    yield
    store.set_kill_switch(url, "likes", False)


def test_restore_puts_the_named_backup_back_behind_the_kill_switch(likes_enabled):
    # Post ids of this run only: the machine keeps the likes of earlier runs.
    kept, lost, after = (f"restore-{what}-{uuid.uuid4().hex[:8]}" for what in ("kept", "lost", "after"))
    with client_from("127.0.0.41") as c:
        liked = c.post("/api/posts/like", json={"postId": kept, "op": "like"})
        assert liked.status_code == 200
        client_id = liked.json()["clientId"]
        run = run_playbook("local", "backup.yml", "-e", "airflow__backup_label=before-restore")
        assert run.returncode == 0, run.output[-2000:]
        name = _backups("before-restore")[-1].stem
        assert c.post("/api/posts/like", json={"postId": lost, "op": "like"},
                      headers={"X-Client-Id": client_id}).status_code == 200
        safety_before = _backups("pre-restore")
        # The safety backup follows this one on the same day: nothing on the way may prune it.
        run = run_playbook("local", "restore.yml", "-e", f"restore_backup={name}", "-e", f"restore_confirm={name}")
        assert run.returncode == 0, run.output[-3000:]
        assert _count(c, kept, client_id) == 1 and _count(c, lost, client_id) == 0
        safety = [p for p in _backups("pre-restore") if p not in safety_before]
        assert len(safety) == 1 and safety[0].stem in run.output
        # The kill switch is off again: likes are accepted.
        assert c.post("/api/posts/like", json={"postId": after, "op": "like"}).status_code == 200


def test_a_failed_restore_keeps_the_kill_switch_on_and_names_the_problem(likes_enabled):
    taken = subprocess.run(["/usr/local/bin/likes-ops", "backup", "--label", "failing-restore", "--no-prune"],
                           capture_output=True, text=True)
    assert taken.returncode == 0, taken.stderr[-2000:]
    name = json.loads(taken.stdout)["name"]
    manifest = BACKUP_DIR / f"{name}.manifest.json"
    original = manifest.read_bytes()
    data = json.loads(original)
    data["row_counts"]["eng_post_likes"] += 1           # the archive no longer matches: the load rolls back
    try:
        manifest.write_text(json.dumps(data))
        with client_from("127.0.0.44") as c:
            run = run_playbook("local", "restore.yml", "-e", f"restore_backup={name}", "-e", f"restore_confirm={name}",
                               name="restore-failing")
            assert run.returncode != 0
            said = " ".join(run.output.split())
            assert f"The restore of {name} failed:" in said and "manifest mismatch: restored eng_post_likes" in said
            assert "The kill switch stays ON" in said and "The database as it was before is in the safety backup" in said
            r = c.post("/api/posts/like", json={"postId": f"restore-refused-{uuid.uuid4().hex[:8]}", "op": "like"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "likes_disabled"
    finally:
        manifest.write_bytes(original)
