"""likes_backup: the daily verified backup, then the keep policy."""
from __future__ import annotations

import dataclasses
from datetime import datetime

from airflow.sdk import Param, dag, task

from likes_common import DEFAULT_ARGS, POOL, backup_dir, database_url, run_date

DOC = """
### likes_backup
Daily at 02:00 UTC: `pg_dump` of the likes database from one exported snapshot, with a
manifest (sha256, size, versions, timings, per-table row counts from the same snapshot).
A backup counts only once `pg_restore --list` and the checksum pass. Then the
grandfather-father-son keep policy prunes old backups (never the newest).

**Run by hand:** Trigger DAG ▸ set `label` (e.g. `pre-migration`) and, if needed, the keep
policy. Same as `python -m ops backup --label pre-migration` on the host.
"""


@dag(dag_id="likes_backup", schedule="0 2 * * *", start_date=datetime(2026, 1, 1), catchup=False,
     max_active_runs=1, default_args=DEFAULT_ARGS, tags=["likes", "maintenance", "backup"], doc_md=DOC,
     params={
         "label": Param(None, type=["null", "string"], pattern="^[a-z0-9-]{1,40}$",
                        description="Optional suffix for the backup's name, e.g. pre-migration."),
         "keep_daily": Param(7, type="integer", minimum=1, description="Daily backups to keep."),
         "keep_weekly": Param(4, type="integer", minimum=0, description="Weekly backups to keep."),
         "keep_monthly": Param(6, type="integer", minimum=0, description="Monthly backups to keep."),
     })
def likes_backup():
    @task(pool=POOL)
    def backup(params=None, **context) -> dict:
        from ops import runs
        from ops.backup import backup as take_backup
        url = database_url()
        with runs.recorded(url, "backup") as run:
            result = take_backup(url, backup_dir(), label=params["label"])
            run.details.update(dataclasses.asdict(result), run_date=run_date(context))
        return dataclasses.asdict(result)

    @task
    def prune(_: dict, params=None) -> dict:
        from ops import runs
        from ops.backup import KeepPolicy
        from ops.backup import prune as prune_backups
        with runs.recorded(database_url(), "prune") as run:
            result = prune_backups(backup_dir(), KeepPolicy(params["keep_daily"], params["keep_weekly"],
                                                             params["keep_monthly"]))
            run.details.update(dataclasses.asdict(result))
        return dataclasses.asdict(result)

    prune(backup())


likes_backup()
