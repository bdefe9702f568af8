"""likes_integrity: the GX count-integrity suite against the live database, hourly."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

from airflow.sdk import Param, dag, task

from likes_common import DEFAULT_ARGS, POOL, START_DATE, airflow_run, database_url, docs_dir, fail_unless

DOC = """
### likes_integrity
Hourly: runs the Great Expectations suite `expectations/likes_integrity.json` against the
live database: no negative counts; each counter equals its like rows; no like rows without
a counter and no non-zero counter without like rows; one row per post in the counter view;
daily events agree with the totals. Failing rows go to the task log (capped) and the run
fails. The Data Docs HTML goes to `LIKES_DATA_DOCS_DIR/live/index.html`.

**Run by hand:** Trigger DAG. With `repair: true` it first recomputes drifted counters from
the like rows in one transaction, logs each changed post with its count before and after,
then validates again. The same as `python -m ops integrity` / `python -m ops repair`.
"""


@dag(dag_id="likes_integrity", schedule="@hourly", start_date=START_DATE, catchup=False,
     max_active_runs=1, default_args=DEFAULT_ARGS, tags=["likes", "maintenance", "integrity"], doc_md=DOC,
     params={"repair": Param(False, type="boolean",
                             description="Recompute drifted counters from the like rows, then validate again.")})
def likes_integrity():
    @task(pool=POOL, execution_timeout=timedelta(minutes=45))
    def validate(params=None, **context) -> dict:
        from ops import runs
        from ops.integrity import integrity, repair
        url = database_url()
        if params["repair"]:
            with runs.recorded(url, "repair", **airflow_run(context)) as run:
                fixed = repair(url)
                run.details.update(changed=fixed.changed, passed=fixed.integrity_after.passed)
        with runs.recorded(url, "integrity", **airflow_run(context)) as run:
            result = integrity(url, docs_dir=docs_dir())
            run.details.update(dataclasses.asdict(result), passed=result.passed)
        return fail_unless(result.passed, "count integrity failed", dataclasses.asdict(result))

    validate()


likes_integrity()
