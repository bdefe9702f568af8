"""ops_runs: the record of every maintenance run, and eng_ops_status() for health.

Revision ID: 0002_ops_runs
Revises: 0001_schema
"""
from api.migrate import run_sql_file

revision = "0002_ops_runs"
down_revision = "0001_schema"


def upgrade() -> None:
    run_sql_file("0002_ops_runs.sql")
