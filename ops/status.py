"""`python -m ops status`: the ages /api/monitoring/health reports, from ops_runs.

The rules (26 h staleness) live in the database function eng_ops_status().
"""
from __future__ import annotations

from dataclasses import dataclass

from ops.pg import connect


@dataclass
class Status:
    backup_age_seconds: float | None
    drill_age_seconds: float | None
    integrity_age_seconds: float | None
    integrity_outcome: str | None
    problems: list[str]

    @property
    def healthy(self) -> bool:
        return not self.problems


def status(database_url: str) -> Status:
    with connect(database_url) as conn:
        row = conn.execute("SELECT backup_age_seconds, drill_age_seconds, integrity_age_seconds, "
                           "integrity_outcome, problems FROM eng_ops_status()").fetchone()
    return Status(*row[:4], problems=list(row[4]))
