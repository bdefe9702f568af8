"""`python -m ops status`: the ages the API's health reports, from ops_runs."""
from __future__ import annotations

from dataclasses import dataclass

from ops.pg import connect

STALE_SECONDS = 26 * 3600


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
        row = conn.execute("SELECT * FROM eng_ops_status()").fetchone()
    return Status(*row, problems=problems(*row))


def problems(backup_age, drill_age, integrity_age, integrity_outcome) -> list[str]:
    """Runbook staleness alerts: the same rules as /api/monitoring/health."""
    found = []
    for what, age in (("backup", backup_age), ("restore drill", drill_age)):
        if age is None:
            found.append(f"no successful {what} recorded yet")
        elif age > STALE_SECONDS:
            found.append(f"last successful {what} is {age / 3600:.1f} h old (limit 26 h)")
    if integrity_outcome == "failed":
        found.append("the last integrity check failed")
    return found
