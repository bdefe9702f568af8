"""Maintenance for the likes platform: backups, retention, integrity, restore drills.

Plain Python with no Airflow import: the DAGs in dags/, the CLI
(`python -m ops ...`) and the playbooks all call these functions.
"""
