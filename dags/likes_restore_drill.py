"""likes_restore_drill: prove every day that the latest backup restores and is correct."""
from __future__ import annotations

import dataclasses

from airflow.sdk import Param, dag, task

from likes_common import (DEFAULT_ARGS, POOL, START_DATE, airflow_run, backup_dir, database_url, docs_dir,
                          fail_unless)
from ops import settings
from ops.backup import NAME_PATTERN

DOC = """
### likes_restore_drill
Daily at 04:00 UTC, after the backup. Checks the backup's checksum, restores it with
`pg_restore -j` into a scratch database with a unique name, compares per-table row counts
with the manifest, runs the integrity suite on the copy (Data Docs in
`LIKES_DATA_DOCS_DIR/drill/index.html`) and records RTO (restore seconds), RPO (age of the
backup and of its newest row), sizes and the outcome. The scratch database is always
dropped. A corrupted file, a truncated file or a manifest mismatch fails the run and says
which.

**Run by hand:** Trigger DAG ▸ `backup`: `latest` or a backup's name. The same as
`python -m ops drill --backup latest`.
"""


@dag(dag_id="likes_restore_drill", schedule="0 4 * * *", start_date=START_DATE, catchup=False,
     max_active_runs=1, default_args=DEFAULT_ARGS, tags=["likes", "maintenance", "backup", "drill"], doc_md=DOC,
     params={
         "backup": Param("latest", type="string", pattern=f"^(latest|{NAME_PATTERN[1:-1]})$",
                         description='"latest" or a backup name such as likes-20261122T020000Z.'),
         "jobs": Param(settings.RESTORE_JOBS, type="integer", minimum=1, maximum=16,
                       description="pg_restore -j parallel jobs."),
     })
def likes_restore_drill():
    @task(pool=POOL)
    def drill(params=None, **context) -> dict:
        from ops import runs
        from ops.drill import drill as run_drill
        url = database_url()
        with runs.recorded(url, "drill", **airflow_run(context)) as run:
            report = run_drill(url, backup_dir(), params["backup"], params["jobs"], docs_dir=docs_dir())
            run.details.update(dataclasses.asdict(report), passed=report.passed)
        return fail_unless(report.passed, f"restore drill failed: {report.problem}", dataclasses.asdict(report))

    drill()


likes_restore_drill()
