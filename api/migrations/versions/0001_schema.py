"""Likes schema: like rows, striped counters, daily events, flags, functions, grants.

Revision ID: 0001_schema
Revises:
"""
from api.migrate import run_sql_file

revision = "0001_schema"
down_revision = None


def upgrade() -> None:
    run_sql_file("0001_schema.sql")
