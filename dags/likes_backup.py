"""likes_backup: the daily verified backup, then the keep policy."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

from airflow.sdk import Param, dag, task

from likes_common import DEFAULT_ARGS, POOL, START_DATE, airflow_run, backup_dir, database_url
from ops import settings
from ops.backup import LABEL_PATTERN

DOC = """
### likes_backup
Daily at 02:00 UTC: `pg_dump` (custom format) of the likes database from one exported
snapshot, with a manifest beside it (sha256, size, pg_dump and server versions, start, end,
duration, per-table row counts from the same snapshot, schema revision). Written under a
temporary name and renamed only once `pg_restore --list` and the checksum pass; files 0600
in `LIKES_BACKUP_DIR`. Then the grandfather-father-son keep policy prunes old backups;
the newest backup is never deleted.

**Run by hand:** Trigger DAG ▸ set `label` (e.g. `pre-migration`) and, if needed, the keep
policy. The same as `python -m ops backup --label pre-migration` on the host.
"""


@dag(dag_id="likes_backup", schedule="0 2 * * *", start_date=START_DATE, catchup=False,
     max_active_runs=1, default_args=DEFAULT_ARGS, tags=["likes", "maintenance", "backup"], doc_md=DOC,
     params={
         "label": Param(None, type=["null", "string"], pattern=LABEL_PATTERN,
                        description="Optional suffix for the backup's name, e.g. pre-migration (a-z 0-9 -)."),
         "keep_daily": Param(settings.KEEP_DAILY, type="integer", minimum=0,
                             description="Daily backups to keep (the newest of each day)."),
         "keep_weekly": Param(settings.KEEP_WEEKLY, type="integer", minimum=0,
                              description="Weekly backups to keep (the newest of each ISO week)."),
         "keep_monthly": Param(settings.KEEP_MONTHLY, type="integer", minimum=0,
                               description="Monthly backups to keep (the newest of each month)."),
     })
def likes_backup():
    @task(pool=POOL)
    def backup(params=None, **context) -> dict:
        from ops import runs
        from ops.backup import backup as take_backup
        url = database_url()
        with runs.recorded(url, "backup", **airflow_run(context)) as run:
            result = take_backup(url, backup_dir(), label=params["label"])
            run.details.update(dataclasses.asdict(result))
        return dataclasses.asdict(result)

    @task(execution_timeout=timedelta(minutes=10))
    def prune(_: dict, params=None, **context) -> dict:
        from ops import runs
        from ops.backup import KeepPolicy
        from ops.backup import prune as prune_backups
        with runs.recorded(database_url(), "prune", **airflow_run(context)) as run:
            result = prune_backups(backup_dir(), KeepPolicy(params["keep_daily"], params["keep_weekly"],
                                                             params["keep_monthly"]))
            run.details.update(dataclasses.asdict(result))
        return dataclasses.asdict(result)

    prune(backup())


likes_backup()
