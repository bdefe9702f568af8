"""ops_runs: the kind 'restore', for `python -m ops restore`.

Revision ID: 0003_ops_runs_restore
Revises: 0002_ops_runs
"""
from api.migrate import run_sql_file

revision = "0003_ops_runs_restore"
down_revision = "0002_ops_runs"


def upgrade() -> None:
    run_sql_file("0003_ops_runs_restore.sql")
