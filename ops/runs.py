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
def recorded(database_url: str, kind: str, **details) -> Iterator[Run]:
    """Insert a 'running' row (with `details`, e.g. the Airflow run that started it), then
    mark it success or failed (with the error) at the end. details["passed"] = False
    marks a run that completed but whose check did not pass."""
    with connect(database_url, autocommit=True) as conn:
        run_id = conn.execute("INSERT INTO ops_runs (kind, started_at, outcome, details) "
                              "VALUES (%s, now(), 'running', %s) RETURNING id",
                              (kind, json.dumps(details, default=str))).fetchone()[0]
    run = Run(kind, run_id, dict(details))
    try:
        yield run
    except BaseException as exc:
        run.details.setdefault("error", str(exc) or exc.__class__.__name__)
        _finish(database_url, run, "failed")
        raise
    _finish(database_url, run, "failed" if run.details.get("passed") is False else "success")


def record_failure(database_url: str, kind: str, alert: dict, airflow_run_id: str | None = None,
                   airflow_task_id: str | None = None) -> int:
    """Record a failure reported from outside `recorded` (an Airflow failure callback).

    The newest row of this kind written by the same Airflow task run gets the alert
    and is marked failed; that also closes a row left 'running' by a task that was
    killed. If the task failed before it recorded anything, a new row is written.
    Returns the row's id."""
    payload = json.dumps(alert, default=str)
    with connect(database_url, autocommit=True) as conn:
        row = None
        if airflow_run_id and airflow_task_id:
            row = conn.execute(
                "UPDATE ops_runs SET outcome = 'failed', finished_at = coalesce(finished_at, now()), "
                "details = details || jsonb_build_object('alert', %s::jsonb) "
                "WHERE id = (SELECT id FROM ops_runs WHERE kind = %s AND details->>'airflow_run_id' = %s "
                "AND details->>'airflow_task_id' = %s ORDER BY id DESC LIMIT 1) RETURNING id",
                (payload, kind, airflow_run_id, airflow_task_id)).fetchone()
        if row is None:
            row = conn.execute(
                "INSERT INTO ops_runs (kind, started_at, finished_at, outcome, details) "
                "VALUES (%s, now(), now(), 'failed', jsonb_build_object('alert', %s::jsonb, "
                "'airflow_run_id', %s::text, 'airflow_task_id', %s::text)) RETURNING id",
                (kind, payload, airflow_run_id, airflow_task_id)).fetchone()
        return row[0]


def _finish(database_url: str, run: Run, outcome: str) -> None:
    try:
        with connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE ops_runs SET finished_at = now(), outcome = %s, details = %s WHERE id = %s",
                         (outcome, json.dumps(run.details, default=str), run.id))
    except Exception as exc:     # the operation's own outcome matters more than its record
        log.error("could not record %s run %s as %s: %s", run.kind, run.id, outcome, exc)
