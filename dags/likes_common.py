"""What the likes DAGs share: settings, retries, the failure alert, the pool.

No database or network work happens at import: the DAG processor imports these
files again and again. The defaults (retention days, keep policy, directories)
come from ops.settings, the one place they are defined.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import date, datetime, timedelta

from ops import settings

CONN_ID = os.environ.get("LIKES_CONN_ID", "likes_db")       # an Airflow connection to the likes database (owner)
POOL = "likes_db"                                          # limits heavy database work; created by the deploy
START_DATE = datetime(2026, 1, 1)
log = logging.getLogger("likes.alerts")


def database_url() -> str:
    from airflow.sdk import Connection
    uri = Connection.get(CONN_ID).get_uri()
    return uri[:-1] if uri.endswith("?") else uri


def backup_dir():
    return settings.backup_dir()


def docs_dir():
    return settings.data_docs_dir()


def run_after(context) -> datetime:
    """When the run was due. Manual and REST-triggered runs have no logical_date in
    Airflow 3; every run has run_after."""
    dag_run = context["dag_run"]
    return dag_run.run_after or dag_run.logical_date


def run_day(context) -> date:
    return run_after(context).date()


def airflow_run(context) -> dict:
    """What ties an ops_runs row to its Airflow run (and lets the failure callback find it)."""
    ti = context["ti"]
    return {"airflow_run_id": context["dag_run"].run_id, "airflow_dag_id": ti.dag_id, "airflow_task_id": ti.task_id,
            "airflow_try_number": ti.try_number, "run_after": run_after(context).isoformat()}


def on_failure(context) -> None:
    """One structured alert line, and the failure recorded in ops_runs."""
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or (context["dag"].dag_id if context.get("dag") else None)
    alert = {"alert": "likes_maintenance_failed", "dag_id": dag_id, "task_id": getattr(ti, "task_id", None),
             "run_id": getattr(dag_run, "run_id", None), "try_number": getattr(ti, "try_number", None),
             "error": str(context.get("exception"))[:500]}
    log.error(json.dumps(alert))
    kind = KIND_BY_TASK.get(alert["task_id"]) or KIND_BY_DAG.get(dag_id)
    if kind:
        try:
            from ops.runs import record_failure
            record_failure(database_url(), kind, alert, alert["run_id"], alert["task_id"])
        except Exception as exc:     # the alert line above is already out
            log.error(json.dumps({"alert": "likes_failure_not_recorded", "dag_id": dag_id, "error": str(exc)[:200]}))


KIND_BY_DAG = {"likes_backup": "backup", "likes_retention": "retention", "likes_integrity": "integrity",
               "likes_restore_drill": "drill"}
KIND_BY_TASK = {"prune": "prune"}          # a task recorded under another kind than its DAG's

DEFAULT_ARGS = {
    "owner": "likes-ops",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(hours=2),
    "on_failure_callback": on_failure,
}


def fail_unless(ok: bool, message: str, result: dict) -> dict:
    if not ok:
        raise RuntimeError(f"{message}: {json.dumps(result, default=str)[:2000]}")
    return result
