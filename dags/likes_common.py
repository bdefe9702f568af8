"""What the likes DAGs share: settings, retries, the failure alert, the pool.

No database or network work happens at import: the DAG processor imports these
files again and again.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import timedelta

CONN_ID = os.environ.get("LIKES_CONN_ID", "likes_db")       # an Airflow connection to the likes database (owner)
POOL = "likes_db"                                          # limits heavy database work; created by the deploy
BACKUP_DIR_DEFAULT = "/var/backups/likes"
log = logging.getLogger("likes.alerts")


def database_url() -> str:
    from airflow.sdk import Connection
    uri = Connection.get(CONN_ID).get_uri()
    return uri.split("?")[0] if uri.endswith("?") else uri


def backup_dir() -> str:
    return os.environ.get("LIKES_BACKUP_DIR", BACKUP_DIR_DEFAULT)


def run_date(context) -> str:
    """The run's date: manual and REST-triggered runs have no logical_date in Airflow 3."""
    dag_run = context["dag_run"]
    when = dag_run.logical_date or dag_run.run_after
    return when.isoformat()


def on_failure(context) -> None:
    """One structured alert line, and the failure recorded in ops_runs."""
    ti = context.get("task_instance")
    dag_id = context["dag"].dag_id if context.get("dag") else getattr(ti, "dag_id", "?")
    alert = {"alert": "likes_maintenance_failed", "dag_id": dag_id, "task_id": getattr(ti, "task_id", None),
             "try_number": getattr(ti, "try_number", None), "error": str(context.get("exception"))[:500]}
    log.error(json.dumps(alert))
    kind = KIND_BY_DAG.get(dag_id)
    if kind:
        try:
            from ops.runs import record_failure
            record_failure(database_url(), kind, alert)
        except Exception as exc:     # the alert line above is already out
            log.error(json.dumps({"alert": "likes_failure_not_recorded", "error": str(exc)[:200]}))


KIND_BY_DAG = {"likes_backup": "backup", "likes_retention": "retention", "likes_integrity": "integrity",
               "likes_restore_drill": "drill"}

DEFAULT_ARGS = {
    "owner": "likes-ops",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    "on_failure_callback": on_failure,
}


def fail_unless(ok: bool, message: str, result: dict) -> dict:
    if not ok:
        raise RuntimeError(f"{message}: {json.dumps(result, default=str)[:2000]}")
    return result
