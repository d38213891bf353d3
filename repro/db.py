"""The results database (SQLAlchemy 2.x). The schema is documented here and only here.

Tables
------
papers            one row per paper spec (slug, title, authors, source text file).
spec_tables       one row per table/figure spec (paper, name, title, caption, kind).
published_cells   every number the paper prints, as printed (``printed``) and parsed (``value``
                  in the printed unit), with metric, flags (uncertain / not_reproducible / cited)
                  and ``config_key``: the job configuration that produces it (NULL when cited).
jobs              one row per fully resolved job; ``id`` is the hash of the job (model, kwargs,
                  dataset, recipe, budget, seed), ``config_key`` the hash without budget and seed
                  (what a published cell points at). ``state``: a ``repro.states.JobState``
                  (diverged: the loss became nan/inf, a result, not retried unless asked).
                  ``owner``/``heartbeat_at`` implement claiming: a worker takes a job with one
                  conditional UPDATE, so two processes never run the same job. While it runs,
                  ``progress_done`` of ``progress_total`` ``progress_unit`` (epoch | iteration).
runs              every attempt at a job: status (a ``repro.states.RunStatus``), error (a failure's
                  exception line, for people), where a diverged attempt diverged (``diverged_value``
                  nan | inf at ``diverged_unit`` ``diverged_at``, with ``diverged_lr``), start/end,
                  host, pid, device, git commit and dirty flag, package versions, the epoch it
                  resumed from; how the job ran: ``engine`` (fast | reference), ``precision``
                  (bf16 | fp32), ``compiled``, CPU ``threads``.
checkpoints       every checkpoint file an attempt wrote (job, run, path, SHA-256, epoch or iteration):
                  only a file this database recorded, with the same bytes, is ever resumed.
metrics           final numbers of a job (name, value in base units, detail such as the counter
                  profile or parameter convention); one row per (job, name).
benchmarks        throughput measured by ``repro bench``: job config, model, device name, engine,
                  precision, compiled, batch size, steps, images/s, ms/step, peak memory, projected
                  hours of the full recipe, when, git commit. The GPU-hour estimate uses these.
model_counts      a cache of counts by model configuration: ``config_key`` is the hash of the
                  profile-job configuration {model, kwargs, input size, counter profile} (equal to a
                  profile job's ``config_key``), ``code`` a hash of the model and counting source, ``key``
                  the hash of both (so a model fix is a cache miss); macs and params. The GPU-hour
                  estimate fills and reads it instead of building every model on every report.
curve_points      per-epoch training curve of a job: train loss, train/test top-1/top-5 error,
                  lr, seconds; one row per (job, epoch), rewritten if an epoch is redone after a
                  resume.

SQLite is opened in WAL mode with a busy timeout so that several local worker processes can
write safely; any other SQLAlchemy URL (PostgreSQL: ``postgresql+psycopg://...``) works too.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any, Iterable

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Enum, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint, create_engine, event, func, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from .paths import db_url
from .states import Divergence, JobState, Progress, RunStatus


def _state_type(enum: type) -> Enum:
    """A state column: VARCHAR holding the enum's value (no native enum, no constraint, so an older
    database's column is the same type), read back as the enum."""
    return Enum(enum, native_enum=False, create_constraint=False, length=16, validate_strings=True,
                values_callable=lambda e: [m.value for m in e])


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class PaperRow(Base):
    __tablename__ = "papers"
    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    authors: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(256))


class TableRow(Base):
    __tablename__ = "spec_tables"
    __table_args__ = (UniqueConstraint("paper", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paper: Mapped[str] = mapped_column(ForeignKey("papers.slug"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text, nullable=True)


class PublishedCell(Base):
    __tablename__ = "published_cells"
    __table_args__ = (UniqueConstraint("paper", "table_name", "section", "row", "column"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paper: Mapped[str] = mapped_column(String(64), index=True)
    table_name: Mapped[str] = mapped_column(String(64))
    section: Mapped[str] = mapped_column(String(128), default="")
    row: Mapped[str] = mapped_column(String(256))
    column: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(32))
    printed: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    uncertain: Mapped[str | None] = mapped_column(Text, nullable=True)
    not_reproducible: Mapped[str | None] = mapped_column(Text, nullable=True)
    cited: Mapped[str | None] = mapped_column(Text, nullable=True)
    config_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    budget: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spec: Mapped[dict] = mapped_column(JSON)
    state: Mapped[JobState] = mapped_column(_state_type(JobState), default=JobState.PENDING, index=True)
    owner: Mapped[str | None] = mapped_column(String(256), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    progress_done: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_unit: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    status: Mapped[RunStatus] = mapped_column(_state_type(RunStatus))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    diverged_value: Mapped[str | None] = mapped_column(String(8), nullable=True)
    diverged_unit: Mapped[str | None] = mapped_column(String(16), nullable=True)
    diverged_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    diverged_lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(128))
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    versions: Mapped[dict] = mapped_column(JSON)
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    engine: Mapped[str | None] = mapped_column(String(16), nullable=True)
    precision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    compiled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    threads: Mapped[int | None] = mapped_column(Integer, nullable=True)


class CheckpointRow(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Benchmark(Base):
    __tablename__ = "benchmarks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict] = mapped_column(JSON)
    device: Mapped[str] = mapped_column(String(128))
    engine: Mapped[str] = mapped_column(String(16))
    precision: Mapped[str] = mapped_column(String(16))
    compiled: Mapped[bool] = mapped_column(Boolean, default=False)
    batch_size: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    img_per_s: Mapped[float] = mapped_column(Float)
    ms_per_step: Mapped[float] = mapped_column(Float)
    peak_mem_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    projected_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("job_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    name: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    detail: Mapped[str | None] = mapped_column(String(128), nullable=True)


class CurvePoint(Base):
    __tablename__ = "curve_points"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    train_top1_err: Mapped[float] = mapped_column(Float)
    train_top5_err: Mapped[float] = mapped_column(Float)
    test_top1_err: Mapped[float] = mapped_column(Float)
    test_top5_err: Mapped[float] = mapped_column(Float)
    lr: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _finite(values: dict[str, float], what: str) -> None:
    """NaN is never stored as a metric (PostgreSQL would keep it; SQLite turns it into NULL)."""
    import math

    bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"refusing to store non-finite {', '.join(bad)} in the {what}")


_NO_PROGRESS = {"progress_done": None, "progress_total": None, "progress_unit": None}


def _divergence(value, unit, at, lr) -> Divergence | None:
    return Divergence(value, unit, at, lr) if value is not None else None


class LeaseLost(Exception):
    """This worker no longer owns the job: another worker took it over; stop writing at once."""


class DatabaseError(Exception):
    """A database that cannot be reached or used, in one line the CLI prints as ``error: ...``."""


# Any fixed 64-bit key: every repro process creating a schema on the same PostgreSQL database
# takes this lock, so create_all never runs twice at once there.
_SCHEMA_LOCK_KEY = 0x7265_7072_6F00  # "repro"


def safe_url(url: str) -> str:
    """``url`` for printing: the password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _where(url) -> str:
    """Where a URL points, for messages (never the password)."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}" if url.database not in (None, "", ":memory:") else "in-memory SQLite"
    host = url.host or "localhost (socket)"
    return f"{url.get_backend_name()} at {host}{f':{url.port}' if url.port else ''}/{url.database or ''}"


def _cause(e: BaseException) -> str:
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


def check_url(explicit: str | None = None, *, write: bool, must_exist: bool = True) -> str:
    """The database URL (``explicit``, ``$REPRO_DB`` or the default), checked without creating anything:
    parsed, its driver importable, and for SQLite the file writable (its folder too: WAL mode adds files
    beside it) or, for reading, present and readable. Returns the URL; ``DatabaseError`` otherwise."""
    raw = db_url(explicit)
    url = parse_url(raw)
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path, write=write and url.query.get("mode") != "ro", must_exist=must_exist)
    return raw


def _check_sqlite_file(name: str, *, write: bool, must_exist: bool) -> None:
    import tempfile
    from pathlib import Path

    path = Path(name)
    if not path.exists():
        if not write:
            if must_exist:
                raise DatabaseError(f"no database at {path} (running a campaign creates it)")
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


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url``; a bad URL or a missing driver is a ``DatabaseError``."""
    parsed = parse_url(db_url(url))
    engine = create_engine(parsed, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
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
            raise DatabaseError(f"cannot connect to {_where(engine.url)}: {_cause(e)}") from None
    finally:
        engine.dispose()


class Database:
    """Thin access layer; the trainer never sees it (it reports through callbacks).

    Opening checks the connection once, so an unreachable server, a wrong password or a missing
    driver is one ``DatabaseError`` naming the host and the cause, not a traceback mid-run."""

    def __init__(self, url: str | None = None, *, create: bool = True):
        from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

        self.url = db_url(url)
        self.engine: Engine = make_engine(self.url)
        try:
            if create:
                self._create_schema()
            else:
                with self.engine.connect():
                    pass
                self._upgrade_existing()
        except DBAPIError as e:
            self.engine.dispose()
            verb = "connect to" if isinstance(e, (OperationalError, InterfaceError)) else "create the schema in"
            raise DatabaseError(f"cannot {verb} {_where(self.engine.url)}: {_cause(e)}") from None
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    def _create_schema(self, attempts: int = 10) -> None:
        """``create_all`` checks then creates, so two processes opening a new database at once can both
        see no table. PostgreSQL: an advisory lock held for the transaction serialises them (the loser
        then finds the tables). SQLite has no such lock; its loser gets 'already exists' and checks again."""
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError, ProgrammingError

        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
                Base.metadata.create_all(conn)
                self._add_new_columns(conn)
            return
        for attempt in range(attempts):
            try:
                Base.metadata.create_all(self.engine)
                with self.engine.begin() as conn:
                    self._add_new_columns(conn)
                return
            except (OperationalError, ProgrammingError) as e:
                # another process is creating the same schema: its tables appear, or it holds the lock
                racing = ("already exists", "duplicate column", "locked", "schema has changed")
                if not any(r in str(e) for r in racing) or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _upgrade_existing(self) -> None:
        """A read-only open of a database made by an older version: add the tables and (nullable,
        provenance) columns added since, if it is a repro database at all; never create a file."""
        from sqlalchemy import inspect
        from sqlalchemy.exc import SQLAlchemyError

        path = sqlite_path(self.engine.url)
        try:
            if (path is None or os.path.exists(path)) and inspect(self.engine).has_table("jobs"):
                self._create_schema()
        except SQLAlchemyError:  # read-only file or no rights: the reader copes with what is there
            pass

    @staticmethod
    def _add_new_columns(conn) -> None:
        """A database made by an older version lacks columns added since (all nullable, provenance):
        add them, so old results stay readable and new runs record everything. Nothing is dropped."""
        from sqlalchemy import inspect, text

        insp = inspect(conn)
        tables = set(insp.get_table_names())
        for table in Base.metadata.sorted_tables:
            if table.name not in tables:  # a table new since then: create_all makes it, a reader skips it
                continue
            have = {c["name"] for c in insp.get_columns(table.name)}
            missing = [c for c in table.columns if c.name not in have and c.nullable]
            for col in missing:
                kind = col.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}'))

    def dispose(self) -> None:
        self.engine.dispose()

    def _insert(self, table):
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover - other backends: plain insert, caller handles conflicts
            from sqlalchemy import insert
        return insert(table)

    # --- specs -------------------------------------------------------------------------
    def sync_published(self, papers: Iterable[dict], tables: Iterable[dict], cells: Iterable[dict]) -> None:
        with self.Session.begin() as s:
            for rows, model, keys in ((papers, PaperRow, ["slug"]), (tables, TableRow, ["paper", "name"]),
                                      (cells, PublishedCell, ["paper", "table_name", "section", "row", "column"])):
                for row in rows:
                    stmt = self._insert(model.__table__).values(**row)
                    update_cols = {k: v for k, v in row.items() if k not in keys}
                    s.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update_cols)
                              if update_cols else stmt.on_conflict_do_nothing())

    # --- jobs ---------------------------------------------------------------------------
    def add_jobs(self, jobs: Iterable[dict]) -> None:
        """Insert planned jobs; jobs already known (same hash) are left as they are."""
        with self.Session.begin() as s:
            for job in jobs:
                s.execute(self._insert(Job.__table__).values(**job, state=JobState.PENDING).on_conflict_do_nothing())

    def job_states(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        out: dict[str, str] = {}
        with self.Session() as s:
            for i in range(0, len(ids), 500):
                for jid, state in s.execute(select(Job.id, Job.state).where(Job.id.in_(ids[i:i + 500]))):
                    out[jid] = state
        return out

    def get_job(self, job_id: str) -> Job | None:
        with self.Session() as s:
            return s.get(Job, job_id)

    def reset_failed(self, ids: Iterable[str], diverged: bool = False) -> int:
        """Make failed jobs claimable again (a new ``repro run`` retries what failed before); diverged
        jobs only when asked (``--retry-failed``): a diverged loss is a result of the recipe."""
        ids = list(ids)
        states = [JobState.FAILED, JobState.DIVERGED] if diverged else [JobState.FAILED]
        n = 0
        with self.Session.begin() as s:
            for i in range(0, len(ids), 500):
                n += s.execute(update(Job).where(Job.id.in_(ids[i:i + 500]), Job.state.in_(states))
                               .values(state=JobState.PENDING, owner=None)).rowcount
        return n

    def claim(self, job_id: str, owner: str, stale_before: dt.datetime) -> bool:
        """Atomically take a job: pending, or running under an owner whose lease went stale."""
        now = utcnow()
        with self.Session.begin() as s:
            res = s.execute(update(Job).where(Job.id == job_id).where(
                (Job.state == JobState.PENDING) | ((Job.state == JobState.RUNNING) & (Job.heartbeat_at < stale_before))
            ).values(state=JobState.RUNNING, owner=owner, heartbeat_at=now, updated_at=now))
            return res.rowcount == 1

    def reclaim_dead(self, job_id: str, dead_owner: str, owner: str) -> bool:
        """Take over a running job whose owner (same host) is known to be dead."""
        now = utcnow()
        with self.Session.begin() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING, Job.owner == dead_owner)
                            .values(owner=owner, heartbeat_at=now, updated_at=now))
            return res.rowcount == 1

    def heartbeat(self, job_id: str, owner: str, progress: Progress | None = None) -> bool:
        """Refresh the lease; False when the job is no longer ours (another worker took it over)."""
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if progress is not None:
            values.update(progress_done=progress.done, progress_total=progress.total, progress_unit=progress.unit)
        with self.Session.begin() as s:
            return s.execute(update(Job).where(Job.id == job_id, Job.owner == owner, Job.state == JobState.RUNNING)
                             .values(**values)).rowcount == 1

    @staticmethod
    def _own(s, job_id: str, owner: str) -> None:
        """Fencing: inside a write transaction, confirm we still hold the job, or raise ``LeaseLost``.
        The UPDATE takes the row (PostgreSQL) or database (SQLite) write lock, so nobody can take the
        job over between this check and the commit of the write that follows it."""
        hit = s.execute(update(Job).where(Job.id == job_id, Job.owner == owner, Job.state == JobState.RUNNING)
                        .values(heartbeat_at=utcnow())).rowcount
        if hit != 1:
            raise LeaseLost(f"lost the lease on job {job_id} to another worker")

    def holds(self, job_id: str, owner: str) -> bool:
        """Whether ``owner`` still holds the job (running, and its owner): a read, no lease renewal."""
        with self.engine.connect() as s:
            return s.execute(select(Job.id).where(Job.id == job_id, Job.owner == owner,
                                                  Job.state == JobState.RUNNING)).first() is not None

    def finish_job(self, job_id: str, owner: str, state: JobState) -> bool:
        """Release a job we own with its new state; False when it is no longer ours."""
        with self.Session.begin() as s:
            return s.execute(update(Job).where(Job.id == job_id, Job.owner == owner)
                             .values(state=state, updated_at=utcnow(), **_NO_PROGRESS)).rowcount == 1

    # --- runs and results (every write of a job's results is fenced by ownership) ---------
    def start_run(self, job_id: str, owner: str, **provenance) -> int:
        with self.Session.begin() as s:
            self._own(s, job_id, owner)
            # an attempt left 'running' by a killed process is closed as interrupted
            s.execute(update(Run).where(Run.job_id == job_id, Run.status == RunStatus.RUNNING)
                      .values(status=RunStatus.INTERRUPTED, ended_at=utcnow()))
            run = Run(job_id=job_id, status=RunStatus.RUNNING, started_at=utcnow(), **provenance)
            s.add(run)
            s.flush()
            return run.id

    def end_run(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        """Close our own attempt's row (the job row is released by ``finish_job``/``complete``). A worker
        that lost its lease may find its row already closed as interrupted by the new owner: it says why."""
        open_states = [RunStatus.RUNNING, RunStatus.INTERRUPTED] if status == RunStatus.LOST_LEASE else [RunStatus.RUNNING]
        with self.Session.begin() as s:
            s.execute(update(Run).where(Run.id == run_id, Run.status.in_(open_states))
                      .values(status=status, error=error, ended_at=utcnow()))

    def set_resumed(self, job_id: str, run_id: int, owner: str, epoch: int) -> None:
        with self.Session.begin() as s:
            self._own(s, job_id, owner)
            s.execute(update(Run).where(Run.id == run_id).values(resumed_from_epoch=epoch))

    def put_curve_point(self, job_id: str, run_id: int, owner: str, point: dict[str, float]) -> None:
        _finite(point, f"curve point of job {job_id}")
        with self.Session.begin() as s:
            self._own(s, job_id, owner)
            stmt = self._insert(CurvePoint.__table__).values(job_id=job_id, run_id=run_id, **point)
            s.execute(stmt.on_conflict_do_update(index_elements=["job_id", "epoch"],
                                                 set_={**{k: v for k, v in point.items() if k != "epoch"},
                                                       "run_id": run_id}))

    def put_checkpoint(self, job_id: str, run_id: int, owner: str, path: str, sha256: str, step: int) -> None:
        with self.Session.begin() as s:
            self._own(s, job_id, owner)
            s.add(CheckpointRow(job_id=job_id, run_id=run_id, path=path, sha256=sha256, step=step,
                                created_at=utcnow()))

    def checkpoints_for(self, job_id: str) -> list[tuple[str, str, int]]:
        """(path, sha256, step) of every checkpoint this database recorded for the job, newest first."""
        with self.Session() as s:
            q = (select(CheckpointRow.path, CheckpointRow.sha256, CheckpointRow.step)
                 .where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.step.desc(), CheckpointRow.id.desc()))
            return [tuple(r) for r in s.execute(q)]

    def complete(self, job_id: str, run_id: int, owner: str, metrics: dict[str, tuple[float, str | None]],
                 divergence: Divergence | None = None) -> None:
        """The end of an attempt, in one fenced transaction: metrics, the run's status, the job's state
        (done, or diverged where ``divergence`` says). Raises ``LeaseLost`` (and writes nothing) when the
        job is no longer ours."""
        state = JobState.DONE if divergence is None else JobState.DIVERGED
        where = {} if divergence is None else {"diverged_value": divergence.value, "diverged_unit": divergence.unit,
                                                "diverged_at": divergence.at, "diverged_lr": divergence.lr}
        _finite({k: v for k, (v, _) in metrics.items()}, f"metrics of job {job_id}")
        with self.Session.begin() as s:
            self._own(s, job_id, owner)
            for name, (value, detail) in metrics.items():
                stmt = self._insert(Metric.__table__).values(job_id=job_id, run_id=run_id, name=name,
                                                             value=float(value), detail=detail)
                s.execute(stmt.on_conflict_do_update(index_elements=["job_id", "name"],
                                                     set_={"value": float(value), "detail": detail, "run_id": run_id}))
            s.execute(update(Run).where(Run.id == run_id).values(status=RunStatus(state.value), ended_at=utcnow(),
                                                                 **where))
            s.execute(update(Job).where(Job.id == job_id).values(state=state, updated_at=utcnow(), **_NO_PROGRESS))

    # --- queries for reports ------------------------------------------------------------
    def results_for(self, config_keys: Iterable[str]) -> list[dict]:
        """Done jobs of these configurations with their metrics (one dict per job) and how the run
        that measured them ran (``how``: engine, precision, compiled, device). One query per 500 keys;
        job specs are not loaded."""
        keys = list(set(config_keys))
        out: dict[str, dict] = {}
        cols = (Job.id, Job.config_key, Job.budget, Job.seed, Job.kind, Metric.name, Metric.value, Metric.detail,
                Run.engine, Run.precision, Run.compiled, Run.device)
        with self.engine.connect() as s:  # Core rows, no ORM loading: a campaign has 10^5 metric rows
            for i in range(0, len(keys), 500):
                q = (select(*cols).join(Metric, Metric.job_id == Job.id).join(Run, Run.id == Metric.run_id)
                     .where(Job.config_key.in_(keys[i:i + 500]), Job.state == JobState.DONE))
                for jid, key, budget, seed, kind, name, value, detail, engine, precision, compiled, device in s.execute(q).all():
                    d = out.setdefault(jid, {"job": jid, "config_key": key, "budget": budget, "seed": seed, "kind": kind,
                                             "metrics": {}, "details": {},
                                             "how": {"engine": engine, "precision": precision, "compiled": compiled,
                                                     "device": device}})
                    d["metrics"][name] = value
                    d["details"][name] = detail
        return list(out.values())

    def done_configs(self, config_keys: Iterable[str], budget: str) -> set[str]:
        """The configurations among these with at least one done job of ``budget`` (no metrics read)."""
        keys, out = list(set(config_keys)), set()
        with self.engine.connect() as s:
            for i in range(0, len(keys), 500):
                q = (select(Job.config_key).distinct()
                     .where(Job.config_key.in_(keys[i:i + 500]), Job.state == JobState.DONE, Job.budget == budget))
                out.update(s.scalars(q))
        return out

    def curve_summary(self, job_ids: Iterable[str], metrics: Iterable[str]) -> list[dict]:
        """Per epoch that every one of these jobs has reached: the mean, min and max of each curve
        metric over the jobs (``<metric>_mean/_min/_max``), aggregated in the database: a figure of
        a thousand seeds reads a few hundred rows, never every point."""
        ids, names = sorted(set(job_ids)), list(metrics)
        if not ids:
            return []
        cols = [agg(getattr(CurvePoint, m)).label(f"{m}_{what}") for m in names
                for what, agg in (("mean", func.avg), ("min", func.min), ("max", func.max))]
        q = (select(CurvePoint.epoch, *cols).where(CurvePoint.job_id.in_(ids)).group_by(CurvePoint.epoch)
             .having(func.count() == len(ids)).order_by(CurvePoint.epoch))
        with self.engine.connect() as s:
            return [dict(row._mapping) for row in s.execute(q)]

    def diverged_for(self, config_keys: Iterable[str]) -> list[dict]:
        """Diverged jobs of these configurations, each with where its last attempt diverged
        (``divergence``, a ``Divergence``; None for a database written before it was stored, whose
        run ``error`` then says it in words): a result to show, never a number (``results_for`` skips them)."""
        keys = list(set(config_keys))
        out: dict[str, dict] = {}
        cols = (Job.id, Job.config_key, Job.budget, Job.seed, Job.kind, Run.error, Run.diverged_value,
                Run.diverged_unit, Run.diverged_at, Run.diverged_lr)
        with self.engine.connect() as s:
            for i in range(0, len(keys), 500):
                q = (select(*cols).outerjoin(Run, Run.job_id == Job.id)
                     .where(Job.config_key.in_(keys[i:i + 500]), Job.state == JobState.DIVERGED).order_by(Job.id, Run.id))
                for jid, key, budget, seed, kind, error, value, unit, at, lr in s.execute(q):
                    # ordered by run id: the last attempt wins
                    out[jid] = {"job": jid, "config_key": key, "budget": budget, "seed": seed, "kind": kind,
                                "error": error, "divergence": _divergence(value, unit, at, lr)}
        return list(out.values())

    def provenance_for(self, job_ids: Iterable[str]) -> dict[str, dict]:
        """Each job's seed, budget, state and every run with how it ran: one query for a whole report
        (chunked only to stay under SQLite's bound-parameter limit)."""
        ids = sorted(set(job_ids))
        cols = ("id", "status", "device", "engine", "precision", "compiled", "threads", "git_commit", "git_dirty",
                "host", "started_at", "ended_at", "resumed_from_epoch")
        # a database made before a column existed has no such column (no migration adds it): read it as NULL
        from sqlalchemy import inspect, null

        present = {c["name"] for c in inspect(self.engine).get_columns("runs")}
        out: dict[str, dict] = {}
        with self.engine.connect() as s:
            for i in range(0, len(ids), 500):
                q = (select(Job.id, Job.seed, Job.budget, Job.state,
                            *(getattr(Run, c) if c in present else null().label(c) for c in cols))
                     .outerjoin(Run, Run.job_id == Job.id).where(Job.id.in_(ids[i:i + 500]))
                     .order_by(Job.id, Run.id))
                for jid, seed, budget, state, *run in s.execute(q).all():
                    d = out.setdefault(jid, {"job": jid, "seed": seed, "budget": budget, "state": state, "runs": []})
                    if run[0] is not None:
                        d["runs"].append(dict(zip(cols, run)))
        return out

    # --- benchmarks -----------------------------------------------------------------------
    def put_benchmark(self, row: dict) -> None:
        with self.Session.begin() as s:
            s.add(Benchmark(created_at=utcnow(), **row))

    def benchmarks(self) -> list[dict]:
        """Every measurement, newest first (callers pick the one they trust for a configuration)."""
        cols = [c.name for c in Benchmark.__table__.columns]
        with self.Session() as s:
            return [{c: getattr(b, c) for c in cols}
                    for b in s.scalars(select(Benchmark).order_by(Benchmark.created_at.desc(), Benchmark.id.desc()))]

    def jobs_by_state(self) -> list[Job]:
        with self.Session() as s:
            return list(s.scalars(select(Job).order_by(Job.state, Job.kind, Job.model)))


    # --- campaign follow-up (executors and ``repro status``) ----------------------------
    def outcomes(self, ids: Iterable[str]) -> dict[str, tuple[JobState, str | None, Divergence | None]]:
        """Each job's state with why its latest attempt ended as it did: the error of a failure, where a
        divergence happened (what executors summarise, typed)."""
        ids = list(ids)
        out: dict[str, tuple] = {}
        cols = (Job.id, Job.state, Run.error, Run.diverged_value, Run.diverged_unit, Run.diverged_at, Run.diverged_lr)
        with self.engine.connect() as s:
            for i in range(0, len(ids), 500):
                q = (select(*cols).outerjoin(Run, Run.job_id == Job.id).where(Job.id.in_(ids[i:i + 500]))
                     .order_by(Job.id, Run.id))
                for jid, state, error, *where in s.execute(q):
                    _, old_error, old_where = out.get(jid, (None, None, None))
                    # ordered by run id: the latest attempt that says something wins
                    out[jid] = (state, error or old_error, _divergence(*where) or old_where)
        return out

    def running(self) -> list[dict]:
        """Running jobs with their current attempt: host, pid, start, resumed epoch, progress, lease."""
        with self.Session() as s:
            q = (select(Job, Run).join(Run, Run.job_id == Job.id)
                 .where(Job.state == JobState.RUNNING, Run.status == RunStatus.RUNNING).order_by(Job.id, Run.id))
            out: dict[str, dict] = {}
            for job, run in s.execute(q):
                out[job.id] = {"job": job.id, "kind": job.kind, "model": job.model, "spec": job.spec,
                               "owner": job.owner, "heartbeat_at": job.heartbeat_at,
                               "progress": (Progress(job.progress_done, job.progress_total, job.progress_unit)
                                            if job.progress_unit else None),
                               "host": run.host, "pid": run.pid, "started_at": run.started_at,
                               "resumed_from_epoch": run.resumed_from_epoch, "last_epoch": None}
            # the curve is written at each epoch's end; the heartbeat's progress lags by up to a beat
            if out:
                q = (select(CurvePoint.job_id, func.max(CurvePoint.epoch)).where(CurvePoint.job_id.in_(list(out)))
                     .group_by(CurvePoint.job_id))
                for jid, epoch in s.execute(q):
                    out[jid]["last_epoch"] = epoch
            return list(out.values())

    # --- model counts cache ---------------------------------------------------------------
    def model_counts(self, keys: Iterable[str]) -> dict[str, dict]:
        """Cached counts of these configuration keys (missing keys are absent)."""
        keys = list(set(keys))
        cols = [c.name for c in ModelCount.__table__.columns]
        out: dict[str, dict] = {}
        with self.Session() as s:
            for i in range(0, len(keys), 500):
                for row in s.scalars(select(ModelCount).where(ModelCount.key.in_(keys[i:i + 500]))):
                    out[row.key] = {c: getattr(row, c) for c in cols}
        return out

    def put_model_counts(self, rows: Iterable[dict]) -> None:
        """Store counts; a key already cached keeps its row (the key includes the code's hash)."""
        with self.Session.begin() as s:
            for row in rows:
                s.execute(self._insert(ModelCount.__table__).values(created_at=utcnow(), **row)
                          .on_conflict_do_nothing())


class ModelCount(Base):
    __tablename__ = "model_counts"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    code: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    model_kwargs: Mapped[dict] = mapped_column(JSON)
    input_size: Mapped[list] = mapped_column(JSON)
    counter_profile: Mapped[str] = mapped_column(String(32))
    macs: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
