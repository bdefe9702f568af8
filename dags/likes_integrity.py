"""likes_integrity: the GX count-integrity suite against the live database, hourly."""
from __future__ import annotations

import dataclasses
from datetime import datetime

from airflow.sdk import Param, dag, task

from likes_common import DEFAULT_ARGS, POOL, database_url, fail_unless, run_date

DOC = """
### likes_integrity
Hourly: runs the Great Expectations suite in `expectations/likes_integrity.json` against
the live database (no negative counts; each counter equals its like rows; no orphan likes
or counters; one row per post; daily events agree with the totals). Failing rows go to the
task log and the run fails.

**Run by hand:** Trigger DAG. With `repair: true` it first recomputes drifted counters from
the like rows in one transaction, logs each changed post (count before and after), then
validates again. Same as `python -m ops integrity` / `python -m ops repair`.
"""


@dag(dag_id="likes_integrity", schedule="@hourly", start_date=datetime(2026, 1, 1), catchup=False,
     max_active_runs=1, default_args=DEFAULT_ARGS, tags=["likes", "maintenance", "integrity"], doc_md=DOC,
     params={"repair": Param(False, type="boolean",
                             description="Recompute drifted counters from the like rows, then validate again.")})
def likes_integrity():
    @task(pool=POOL)
    def validate(params=None, **context) -> dict:
        from ops import runs
        from ops.integrity import integrity, repair
        url = database_url()
        if params["repair"]:
            with runs.recorded(url, "repair") as run:
                fixed = repair(url)
                run.details.update(changed=fixed.changed, passed=fixed.integrity_after.passed)
        with runs.recorded(url, "integrity") as run:
            result = integrity(url)
            run.details.update(dataclasses.asdict(result), run_date=run_date(context), passed=result.passed)
        return fail_unless(result.passed, "count integrity failed", dataclasses.asdict(result))

    validate()


likes_integrity()
