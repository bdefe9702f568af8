"""likes_retention: delete expired events in batches, check compliance, clean Airflow's metadata."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import timedelta

from airflow.sdk import Param, dag, task

from likes_common import DEFAULT_ARGS, POOL, START_DATE, airflow_run, database_url, fail_unless, run_after, run_day
from ops import settings

DOC = f"""
### likes_retention
Daily at 03:00 UTC. The cutoffs count back from the run's date (`run_after`), so a late or
retried run deletes the same rows. Deletes:
- like events older than `events_days` ({settings.EVENTS_DAYS}) days from
  `eng_post_like_events_daily`, their net carried into the counters' `retired_net`;
- security events older than `security_days` ({settings.SECURITY_DAYS}) days;
- Airflow's own metadata older than `airflow_days` ({settings.AIRFLOW_DAYS}) days, with
  `airflow db clean --error-on-cleanup-failure`.

Deletes run in batches of `batch_size` rows, one short transaction each, under
`lock_timeout` and `statement_timeout`, so the API is never blocked. A compliance check then
fails the run if any expired row remains (runbook 002's retention alert). Then ANALYZE;
never VACUUM FULL. The task log and the returned result give the rows removed per table
and the time taken.

**Run by hand:** Trigger DAG ▸ `dry_run: true` reports what would go and deletes nothing.
The same as `python -m ops retention --dry-run`.
"""


@dag(dag_id="likes_retention", schedule="0 3 * * *", start_date=START_DATE, catchup=False,
     max_active_runs=1, default_args=DEFAULT_ARGS, tags=["likes", "maintenance", "retention"], doc_md=DOC,
     params={
         "dry_run": Param(False, type="boolean", description="Report what would be deleted, delete nothing."),
         "events_days": Param(settings.EVENTS_DAYS, type="integer", minimum=1,
                              description="Keep daily like events this many days."),
         "security_days": Param(settings.SECURITY_DAYS, type="integer", minimum=1,
                                description="Keep security events this many days."),
         "airflow_days": Param(settings.AIRFLOW_DAYS, type="integer", minimum=1,
                               description="Keep Airflow's metadata (task instances, logs, XComs) this many days."),
         "batch_size": Param(settings.BATCH_SIZE, type="integer", minimum=1, maximum=settings.BATCH_SIZE_MAX,
                             description="Rows per delete batch (one short transaction each)."),
     })
def likes_retention():
    @task(pool=POOL)
    def delete_expired(params=None, **context) -> dict:
        from ops import runs
        from ops.retention import retention
        url = database_url()
        with runs.recorded(url, "retention", **airflow_run(context)) as run:
            result = retention(url, params["events_days"], params["security_days"], params["batch_size"],
                               params["dry_run"], today=run_day(context))
            ok = result.compliant or params["dry_run"]
            run.details.update(dataclasses.asdict(result), passed=ok)
        return fail_unless(ok, "retention compliance failed: expired rows remain", dataclasses.asdict(result))

    @task(execution_timeout=timedelta(hours=1))
    def clean_airflow_metadata(params=None, **context) -> str:
        before = (run_after(context) - timedelta(days=params["airflow_days"])).isoformat()
        cmd = [sys.executable, "-m", "airflow", "db", "clean", "--clean-before-timestamp", before, "--yes",
               "--skip-archive", "--batch-size", str(params["batch_size"]), "--error-on-cleanup-failure"]
        if params["dry_run"]:
            cmd.append("--dry-run")
        out = subprocess.run(cmd, capture_output=True, text=True, env=_metadata_db_env())
        if out.returncode != 0:
            raise RuntimeError(f"airflow db clean failed: {out.stderr[-1500:]}")
        return f"cleaned Airflow metadata before {before}" + (" (dry run)" if params["dry_run"] else "")

    delete_expired() >> clean_airflow_metadata()


def _metadata_db_env() -> dict[str, str]:
    """The environment for `airflow db clean`: Airflow 3 points a task's SQL_ALCHEMY_CONN at a blocked URL;
    without it the CLI reads the metadata database from AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD (set by the deploy)."""
    blocked = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN")
    if not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"):
        return dict(os.environ)
    return {k: v for k, v in os.environ.items() if k not in blocked}


likes_retention()
