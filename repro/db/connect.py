"""Reaching a database: the URL (parsed, its driver importable, a SQLite file checked without creating it),
the engine (SQLite in WAL mode with a busy timeout, so several local worker processes write safely), and
failures as one ``DatabaseError`` line that names where and why, never the password.

``Store`` is what every concern of ``Database`` stands on: the engine, its sessions, the dialect's INSERT
with ON CONFLICT. Any SQLAlchemy URL works; SQLite and PostgreSQL (``postgresql+psycopg://...``) are tested.
"""
from __future__ import annotations

import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from ..paths import db_url


class DatabaseError(Exception):
    """A database that cannot be reached or used, in one line the CLI prints as ``error: ...``."""


def safe_url(url: str) -> str:
    """``url`` for printing: the password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def where(url) -> str:
    """Where a URL points, for messages (never the password)."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}" if url.database not in (None, "", ":memory:") else "in-memory SQLite"
    host = url.host or "localhost (socket)"
    return f"{url.get_backend_name()} at {host}{f':{url.port}' if url.port else ''}/{url.database or ''}"


def cause(e: BaseException) -> str:
    """The driver's own words, first meaningful line, whitespace collapsed."""
    orig = getattr(e, "orig", None) or e
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    text = " ".join(lines[:2]) if lines else type(orig).__name__
    return " ".join(text.split())


def parse_url(raw: str):
    """``raw`` as a SQLAlchemy URL whose driver is importable, or one ``DatabaseError`` saying why.

    SQLite's URI form (``sqlite:///file:PATH?mode=ro&uri=true``) is supported: PATH is then the file."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(raw)
    except ArgumentError:
        raise DatabaseError(f"database URL {raw!r} is not a URL (a SQLite file is sqlite:///path/to/file.db; "
                            f"PostgreSQL postgresql+psycopg://user@host/db)") from None
    shown = url.render_as_string(hide_password=True)
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise DatabaseError(f"database URL {shown}: unknown database kind {url.drivername!r} (use sqlite:///PATH "
                            f"or postgresql+psycopg://...)") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        module = getattr(e, "name", None) or url.get_driver_name()
        fix = ("pip install -e '.[postgres]' (the postgres extra)" if module.startswith("psycopg")
               else f"pip install {module}")
        raise DatabaseError(f"database URL {shown}: driver {url.get_driver_name()!r} is not installed "
                            f"(no module {module!r}): {fix}") from None
    return url


def sqlite_path(url) -> str | None:
    """The file a SQLite URL points at (None: in memory, or not SQLite); the URI form's ``file:`` path too."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    db = url.database
    if url.query.get("uri") in ("true", "1") and db.startswith("file:"):
        from urllib.parse import unquote

        db = unquote(db[len("file:"):])
        return None if db in ("", ":memory:") else db
    return db


def read_only_uri(url) -> bool:
    """A SQLite URI that opens the file read-only (``mode=ro`` or ``immutable=1``): nothing may be written."""
    return url.get_backend_name() == "sqlite" and (url.query.get("mode") == "ro" or url.query.get("immutable") == "1")


def check_url(explicit: str | None = None, *, write: bool, must_exist: bool = True) -> str:
    """The database URL (``explicit``, ``$REPRO_DB`` or the default), checked without creating anything:
    parsed, its driver importable, and for SQLite the file writable (its folder too: WAL mode adds files
    beside it) or, for reading, present and readable. Returns the URL; ``DatabaseError`` otherwise."""
    raw = db_url(explicit)
    url = parse_url(raw)
    path = sqlite_path(url)
    if write and read_only_uri(url):  # writing through mode=ro fails mid-way, as an 80-line traceback
        raise DatabaseError(f"database URL {raw if url.password is None else safe_url(raw)} opens the file read-only "
                            f"(mode=ro or immutable=1): this command writes; drop the read-only query to write")
    if path is not None:
        _check_sqlite_file(path, write=write, must_exist=must_exist)
    return raw


def missing_file(path) -> None:
    """A SQLite file that must be there to be read: ``DatabaseError`` when it is not (nothing created)."""
    if not os.path.exists(path):
        raise DatabaseError(f"no database at {path} (running a campaign creates it)")


def _check_sqlite_file(name: str, *, write: bool, must_exist: bool) -> None:
    import tempfile
    from pathlib import Path

    path = Path(name)
    if not path.exists():
        if not write:
            if must_exist:
                missing_file(path)
            return
        if not path.parent.is_dir():
            raise DatabaseError(f"cannot create the database {path}: directory {path.parent} does not exist")
    try:  # opening is not creating: O_RDWR on an existing file, an unnamed temporary file in the directory
        os.close(os.open(path, os.O_RDWR if write else os.O_RDONLY))
    except FileNotFoundError:
        pass
    except OSError as e:
        raise DatabaseError(f"the database {path} is {'read-only' if write else 'unreadable'} ({e.strerror})") from None
    if write:
        try:
            tempfile.TemporaryFile(dir=path.parent).close()
        except OSError as e:
            raise DatabaseError(f"cannot write the database {path}: directory {path.parent} is not writable "
                                f"({e.strerror})") from None


def sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=60000")  # first: switching to WAL waits for a concurrent opener too
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _read_only_pragmas(dbapi_conn, _record) -> None:
    """A read-only URI: switching to WAL is a write ('attempt to write a readonly database'); read as is."""
    dbapi_conn.execute("PRAGMA busy_timeout=60000")


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url``; a bad URL or a missing driver is a ``DatabaseError``."""
    parsed = parse_url(db_url(url))
    engine = create_engine(parsed, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _read_only_pragmas if read_only_uri(parsed) else sqlite_pragmas)
    return engine


def exists(url: str | None = None) -> bool:
    """Whether ``url`` holds a repro database (a jobs table), without creating anything: a SQLite
    file that is absent, or a server database without the table (or without the database), is no."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import OperationalError

    engine = make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            path = sqlite_path(engine.url)
            if path is None or not os.path.exists(path):
                return False
        try:
            with engine.connect() as conn:
                return inspect(conn).has_table("jobs")
        except OperationalError as e:
            if "does not exist" in str(e.orig):  # PostgreSQL: the database itself is not there yet
                return False
            raise DatabaseError(f"cannot connect to {where(engine.url)}: {cause(e)}") from None
    finally:
        engine.dispose()


class Store:
    """The engine and sessions every concern's methods use (``Database`` sets them when it opens)."""

    engine: Engine
    Session: sessionmaker

    def dispose(self) -> None:
        self.engine.dispose()

    def _insert(self, table):
        """INSERT with the dialect's ON CONFLICT clauses (``on_conflict_do_update/_nothing``)."""
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover - other backends: plain insert, caller handles conflicts
            from sqlalchemy import insert
        return insert(table)
