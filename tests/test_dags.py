"""The maintenance DAGs in a real Airflow 3 (metadata DB migrated by the fixture),
run with dag.test() against the real likes database."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DAGS = ROOT / "dags"
EXPECTED = {
    "likes_backup": ("0 2 * * *", {"label", "keep_daily", "keep_weekly", "keep_monthly"}),
    "likes_retention": ("0 3 * * *", {"dry_run", "events_days", "security_days", "airflow_days", "batch_size"}),
    "likes_integrity": ("@hourly", {"repair"}),
    "likes_restore_drill": ("0 4 * * *", {"backup", "jobs"}),
}


@pytest.fixture(scope="module")
def airflow_env(pg, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    backups = tmp_path_factory.mktemp("backups")
    docs = tmp_path_factory.mktemp("docs")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_LIKES_DB": pg.url("likes_owner"),
        "LIKES_BACKUP_DIR": str(backups),
        "LIKES_DATA_DOCS_DIR": str(docs),
        "GX_ANALYTICS_ENABLED": "false",
    }
    os.environ.update(env)
    sys.path[:0] = [str(DAGS)]
    airflow = str(Path(sys.executable).parent / "airflow")
    for cmd in (["db", "migrate"], ["pools", "set", "likes_db", "1", "heavy likes database work"]):
        out = subprocess.run([airflow, *cmd], capture_output=True, text=True, env={**os.environ})
        assert out.returncode == 0, out.stderr[-2000:]
    yield backups


@pytest.fixture(scope="module")
def dagbag(airflow_env):
    from airflow.dag_processing.dagbag import DagBag
    return DagBag(dag_folder=str(DAGS))


def _without_retries(dag):
    # A run that is meant to fail should fail now, not after the backoff;
    # the retry settings themselves are checked in the DagBag test.
    for t in dag.tasks:
        t.retries = 0
    return dag


def _seed(db):
    for p in range(3):
        for c in range(3):
            db.execute("SELECT eng_post_like_apply(%s, sha256(%s::bytea), 'like')", (f"post-{p}", f"c{c}".encode()))


def test_every_dag_loads_with_its_schedule_params_and_settings(dagbag):
    assert dagbag.import_errors == {}
    assert set(EXPECTED) <= set(dagbag.dag_ids)
    for dag_id, (schedule, params) in EXPECTED.items():
        dag = dagbag.get_dag(dag_id)
        assert dag.schedule == schedule if isinstance(dag.schedule, str) else str(dag.timetable.summary) == schedule
        assert set(dag.params.keys()) == params
        assert dag.catchup is False and dag.max_active_runs == 1 and dag.doc_md and dag.tags
        assert "Run by hand" in dag.doc_md
        for name in params:
            param = dag.params.get_param(name)
            assert param.schema.get("type") and param.description, (dag_id, name)
        for t in dag.tasks:
            assert t.retries == 2 and t.retry_exponential_backoff and t.on_failure_callback and t.execution_timeout
        assert any(t.pool == "likes_db" for t in dag.tasks)


def test_backup_dag_produces_a_verified_backup_and_manifest(dagbag, airflow_env, db):
    db.execute("TRUNCATE ops_runs")
    _seed(db)
    run = dagbag.get_dag("likes_backup").test(run_conf={"label": "dagtest"})
    assert run.state == "success"
    manifests = list(airflow_env.glob("likes-*-dagtest.manifest.json"))
    assert len(manifests) == 1
    from ops.backup import verify
    assert verify(airflow_env, manifests[0].name.removesuffix(".manifest.json")).ok
    assert db.execute("SELECT outcome FROM ops_runs WHERE kind = 'backup'").fetchone() == ("success",)


def test_drill_dag_passes_on_the_latest_backup(dagbag, airflow_env, db):
    run = dagbag.get_dag("likes_restore_drill").test()
    assert run.state == "success"
    assert db.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'likes_drill_%'").fetchone()[0] == 0


def test_drill_dag_fails_on_a_corrupted_backup_and_records_it(dagbag, airflow_env, db):
    db.execute("TRUNCATE ops_runs")
    from ops.backup import find
    dump = airflow_env / find(airflow_env).file
    original = dump.read_bytes()
    dump.write_bytes(original[: len(original) // 2])
    try:
        run = _without_retries(dagbag.get_dag("likes_restore_drill")).test(run_conf={"jobs": 1})
        assert run.state == "failed"
        # One record of the failure: the drill's own row, with the callback's alert added to it.
        rows = db.execute("SELECT outcome, details FROM ops_runs WHERE kind = 'drill'").fetchall()
        assert len(rows) == 1 and rows[0][0] == "failed"
        details = rows[0][1]
        assert "truncated file" in details["problem"] and details["airflow_run_id"] == run.run_id
        assert details["alert"]["alert"] == "likes_maintenance_failed" and details["alert"]["task_id"] == "drill"
    finally:
        dump.write_bytes(original)


def test_integrity_dag_fails_on_drift_and_passes_with_repair(dagbag, airflow_env, db):
    _seed(db)
    db.execute("UPDATE eng_post_like_counter_slots SET like_count = like_count + 1 WHERE post_id = 'post-1'")
    dag = _without_retries(dagbag.get_dag("likes_integrity"))
    assert dag.test().state == "failed"
    assert dag.test(run_conf={"repair": True}).state == "success"
    assert (Path(os.environ["LIKES_DATA_DOCS_DIR"]) / "live" / "index.html").is_file()


def test_retention_dag_dry_run_then_real_run(dagbag, airflow_env, db):
    _seed(db)
    db.execute("INSERT INTO eng_security_events VALUES (now() - interval '40 days', 'rate_limited', 'warning', '\\x01', 1)")
    dag = dagbag.get_dag("likes_retention")
    assert dag.test(run_conf={"dry_run": True}).state == "success"
    assert db.execute("SELECT count(*) FROM eng_security_events").fetchone()[0] == 1
    assert dag.test(run_conf={"dry_run": False}).state == "success"
    assert db.execute("SELECT count(*) FROM eng_security_events").fetchone()[0] == 0
