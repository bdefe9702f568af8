"""The one record of every maintenance run: the ops_runs table."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ops.pg import connect

log = logging.getLogger("likes.ops")


@dataclass
class Run:
    kind: str
    id: int
    details: dict = field(default_factory=dict)


@contextmanager
def recorded(database_url: str, kind: str) -> Iterator[Run]:
    """Insert a 'running' row, then mark it success or failed (with the error) at the end."""
    with connect(database_url, autocommit=True) as conn:
        run_id = conn.execute("INSERT INTO ops_runs (kind, started_at, outcome) VALUES (%s, now(), 'running') "
                              "RETURNING id", (kind,)).fetchone()[0]
    run = Run(kind, run_id)
    try:
        yield run
    except BaseException as exc:
        run.details.setdefault("error", str(exc) or exc.__class__.__name__)
        _finish(database_url, run, "failed")
        raise
    _finish(database_url, run, "failed" if run.details.get("passed") is False else "success")


def record_failure(database_url: str, kind: str, details: dict) -> None:
    """Record a failure that happened outside `recorded` (e.g. an Airflow task that never started)."""
    with connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO ops_runs (kind, started_at, finished_at, outcome, details) "
                     "VALUES (%s, now(), now(), 'failed', %s)", (kind, json.dumps(details, default=str)))


def _finish(database_url: str, run: Run, outcome: str) -> None:
    try:
        with connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE ops_runs SET finished_at = now(), outcome = %s, details = %s WHERE id = %s",
                         (outcome, json.dumps(run.details, default=str), run.id))
    except Exception as exc:     # the operation's own outcome matters more than its record
        log.error("could not record %s run %s as %s: %s", run.kind, run.id, outcome, exc)
