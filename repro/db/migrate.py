"""The schema's revision: every open brings the database to the head revision (``HEAD``) or leaves it alone.

- A database's revision is its ``alembic_version`` row. One made before Alembic (no such table, but a
  ``jobs`` table) is identified by its columns (``migrations.legacy.identify``), stamped with that
  revision, then upgraded by the scripts in ``migrations/versions``.
- A new database is created from ``schema`` by ``create_all`` and stamped at head: one pass of DDL, and
  the declared classes stay the one description of today's schema (running 0001..head on an empty
  database gives the same schema, which a test checks, so the two cannot drift apart).
- Several processes may open the same new or old database at once. Each reads the revision without a
  lock (a database at head costs two SELECTs, and Alembic is not even imported); to change the schema it
  takes a lock, reads again and does the work in one transaction, so the others wait and then find it
  done: PostgreSQL an advisory lock held for the transaction, SQLite its database write lock
  (``BEGIN IMMEDIATE``). Both run DDL inside the transaction, so a failed upgrade leaves nothing half-done.
- Read-only opens (``Database(url, create=False)``) never create a schema. An older database is upgraded
  in place when it can be written; one that cannot (a ``mode=ro`` URI, a read-only file) is copied into
  memory and upgraded there, so readers always see the head schema and the file is never written.
- A revision this code does not know (a newer repro wrote it) is one ``DatabaseError``: nothing is read
  or written under a schema we cannot describe.
- The revision is pinned once open (``pin_revision``): every transaction first reads it again, and one that
  finds another (a newer repro upgraded the database under a running worker, or an older schema was put
  back under a newer one) raises ``SchemaChanged``, naming both, before it reads or writes anything else.
  On PostgreSQL each transaction holds the schema lock shared, so an upgrade waits for the transactions
  in flight and the ones after it see its revision.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine

from .connect import DatabaseError, missing_file, read_only_uri, sqlite_path, where

REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")  # migrations/versions, oldest first
HEAD = REVISIONS[-1]
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Any fixed 64-bit key: every repro process changing a schema on the same PostgreSQL database takes it.
_SCHEMA_LOCK_KEY = 0x7265_7072_6F00  # "repro"


def revision(conn) -> tuple[str | None, bool]:
    """(revision, stamped): ``alembic_version``'s, or a pre-Alembic database's as its columns say
    (``stamped`` False); (None, False) where there is no repro schema."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().first()
        if found is not None:
            return found, True
    if "jobs" not in tables:
        return None, False
    from .migrations.legacy import identify

    return identify(inspect(conn)), False


def open_schema(engine: Engine, *, create: bool) -> Engine:
    """The engine to read and write through, its database at ``HEAD`` (see the module's docstring):
    ``engine`` itself, or for an old database that this process may not write, an upgraded copy."""
    path = sqlite_path(engine.url)
    if not create and path is not None:  # connecting would create the file
        missing_file(path)
    with engine.connect() as conn:
        rev, stamped = revision(conn)
    if rev == HEAD and stamped:
        return pin_revision(engine, HEAD)
    _known(rev, engine)
    if rev is None and not create:
        return engine  # nothing of ours there, and a read never creates
    if not create and _read_only(engine):
        return pin_revision(_upgraded_copy(engine), HEAD)
    with _locked(engine) as conn:
        _to_head(conn, engine)
    return pin_revision(engine, HEAD)


class SchemaChanged(DatabaseError):
    """The database's schema revision is no longer the one this process opened it at: stop, write nothing."""


def pin_revision(engine: Engine, pinned: str) -> Engine:
    """Every transaction of ``engine`` first checks that the schema is still at ``pinned`` (see the module's
    docstring); ``SchemaChanged`` otherwise."""
    postgres = engine.dialect.name == "postgresql"

    @event.listens_for(engine, "begin")
    def _check(conn):
        if postgres:  # an upgrade holds it exclusively (``_locked``): it waits for us, or we for it
            conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _SCHEMA_LOCK_KEY})
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().first()
        if found != pinned:
            raise SchemaChanged(f"{where(engine.url)} is now at schema revision {found!r}, but this repro opened it "
                                f"at {pinned!r} and writes only that schema: "
                                + ("a newer repro upgraded it; stop this one and run the newer version"
                                   if found is not None and (found not in REVISIONS or found > pinned) else
                                   "an older schema was put back; reopen it to upgrade it"))

    return engine


def _known(rev: str | None, engine: Engine) -> None:
    if rev is not None and rev not in REVISIONS:
        raise DatabaseError(f"{where(engine.url)} has schema revision {rev!r}, newer than this repro knows "
                            f"(up to {HEAD}): a newer version of repro wrote it; upgrade repro to use it")


def _to_head(conn, engine: Engine) -> None:
    rev, stamped = revision(conn)  # again, under the lock: another process may have done the work
    if rev == HEAD and stamped:
        return
    _known(rev, engine)
    if rev is None:
        from .schema import Base

        Base.metadata.create_all(conn)
        _alembic(conn, "stamp", HEAD)
        return
    if not stamped:
        _alembic(conn, "stamp", rev)
    if rev != HEAD:
        _alembic(conn, "upgrade", HEAD)


def alembic_config(conn=None):
    """Alembic's configuration for our scripts, run on ``conn`` (no alembic.ini: the package is the config)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _alembic(conn, command: str, rev: str) -> None:
    from alembic import command as commands

    getattr(commands, command)(alembic_config(conn), rev)


@contextmanager
def _locked(engine: Engine):
    """A connection in a transaction that no other repro process changing this schema runs beside."""
    if engine.dialect.name == "sqlite":
        ddl = sqlite_ddl_engine(engine.url)
        try:
            with ddl.begin() as conn:
                yield conn
        finally:
            ddl.dispose()
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        yield conn


def sqlite_ddl_engine(url=None, creator=None) -> Engine:
    """An engine whose transactions are SQLite's own: each begins with ``BEGIN IMMEDIATE`` (the database's
    write lock, waited for up to the busy timeout) and holds DDL too (pysqlite on its own would commit
    around it); foreign keys off, as rebuilding a table (Alembic's batch mode) requires."""
    from sqlalchemy.pool import NullPool, StaticPool

    engine = (create_engine(url, poolclass=NullPool) if creator is None
              else create_engine("sqlite://", creator=creator, poolclass=StaticPool))

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # the driver autocommits; BEGIN and COMMIT are ours
        for pragma in ("busy_timeout=60000", "journal_mode=WAL", "foreign_keys=OFF"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _read_only(engine: Engine) -> bool:
    path = sqlite_path(engine.url)
    if path is None:
        return False  # a server decides: an upgrade it refuses is a DatabaseError naming why
    return read_only_uri(engine.url) or not (os.access(path, os.W_OK) and os.access(Path(path).parent, os.W_OK))


def _upgraded_copy(engine: Engine) -> Engine:
    """The SQLite database behind ``engine``, copied into memory (the backup API: a consistent snapshot)
    and brought to head there; the file is only read. Writes through the copy are lost with it."""
    import sqlite3

    copy = sqlite3.connect(":memory:", check_same_thread=False)
    raw = engine.raw_connection()
    try:
        raw.driver_connection.backup(copy)
    finally:
        raw.close()
        engine.dispose()
    upgraded = sqlite_ddl_engine(creator=lambda: copy)
    with upgraded.begin() as conn:
        _to_head(conn, engine)
    return upgraded
