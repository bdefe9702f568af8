"""Alembic environment: runs on the connection `api.migrate` hands over.

That connection already holds the advisory lock and an open transaction, so
every migration of one run commits together or not at all.
"""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
