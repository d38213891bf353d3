"""Alembic's environment: always online, on the connection ``repro.db.migrate`` holds in its transaction
(under the schema lock); there is no alembic.ini and no URL here."""
from alembic import context

from repro.db.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("repro's migrations run through repro.db (Database(url) upgrades), not the alembic command")
# render_as_batch: on SQLite, changes other than ADD COLUMN rebuild the table (copy, drop, rename)
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():  # the caller's transaction: a no-op here
    context.run_migrations()
