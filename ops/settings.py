"""Where the maintenance operations keep their files, and the defaults of their policies.

One place for these facts: the CLI, the DAGs and the README read them from here.
"""
from __future__ import annotations

import os
from pathlib import Path

BACKUP_DIR_ENV = "LIKES_BACKUP_DIR"
BACKUP_DIR_DEFAULT = "/var/backups/likes"          # the API's user cannot read it: 0700, files 0600
DATA_DOCS_DIR_ENV = "LIKES_DATA_DOCS_DIR"
DATA_DOCS_DIR_DEFAULT = "/var/lib/likes/data-docs"  # GX Data Docs HTML, served by the Airflow host or opened by hand

KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY = 7, 4, 6     # grandfather-father-son
EVENTS_DAYS = 90                                    # daily like events
SECURITY_DAYS = 30                                  # security events
AIRFLOW_DAYS = 30                                   # Airflow's own metadata (airflow db clean)
BATCH_SIZE = 5000                                   # rows per retention delete batch
BATCH_SIZE_MAX = 100_000
RETENTION_THROTTLE = 1.0                            # rest after each batch, as a multiple of the batch's time
RESTORE_JOBS = 2                                    # pg_restore -j in drills


def backup_dir(given: str | None = None) -> Path:
    return Path(given or os.environ.get(BACKUP_DIR_ENV) or BACKUP_DIR_DEFAULT)


def data_docs_dir(given: str | None = None) -> Path:
    return Path(given or os.environ.get(DATA_DOCS_DIR_ENV) or DATA_DOCS_DIR_DEFAULT)
