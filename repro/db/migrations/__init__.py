"""Alembic's environment (``env.py``) and revision scripts (``versions/``) for the results database, run by
``repro.db.migrate`` whenever a database is opened (there is no alembic.ini).

A schema change is a new script: ``alembic.command.revision(repro.db.migrate.alembic_config(),
"what changed", rev_id="0004")`` writes one from ``script.py.mako``; fill in ``upgrade()``, change
``repro.db.schema`` to match and add the id to ``migrate.REVISIONS``. The tests hold the two against each other.
"""
