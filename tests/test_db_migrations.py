"""Schema revisions (issue 13.5): the Alembic scripts against the declared schema, the project's real old
databases (tests/fixtures_legacy.py) opened, upgraded and read through the API and the CLI, read-only
opens that never write, and concurrent openers of an old database."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO, open_concurrently
from fixtures_legacy import JOBS, METRICS_PER_JOB, PAPER, TABLE, load, schema_diff
from repro.db import Database, DatabaseError
from repro.db.migrate import HEAD, REVISIONS, alembic_config, sqlite_ddl_engine
from repro.db.migrations.legacy import identify
from repro.states import Divergence, Progress

LEGACY = ["0001", "0002"]


def version(path) -> list:
    with sqlite3.connect(path) as con:
        return con.execute("SELECT version_num FROM alembic_version").fetchall()


def rows(path) -> dict[str, list[dict]]:
    """Every row of every table: what an upgrade must keep."""
    with sqlite3.connect(path) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = {}
        for t in tables:
            cur = con.execute(f'SELECT * FROM "{t}"')
            names = [d[0] for d in cur.description]
            out[t] = [dict(zip(names, r)) for r in cur]
        return out


def projected(table_rows: list[dict], names) -> list[str]:
    return sorted(json.dumps({k: r[k] for k in names}, sort_keys=True) for r in table_rows)


def columns(path, table: str) -> set[str]:
    with sqlite3.connect(path) as con:
        return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}


def identify_file(con) -> str:
    from sqlalchemy import create_engine, inspect

    engine = create_engine("sqlite://", creator=lambda: con)
    with engine.connect() as conn:
        return identify(inspect(conn))


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_scripts_on_disk_are_the_revisions_migrate_knows():
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_current_head() == HEAD
    assert [s.revision for s in scripts.walk_revisions()] == list(reversed(REVISIONS))  # one line, no branches


def test_migrations_from_empty_equal_the_declared_schema(tmp_path):
    """0001..head on an empty database builds exactly what create_all builds for a new one."""
    from alembic import command

    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    engine = sqlite_ddl_engine(f"sqlite:///{migrated}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    engine.dispose()
    Database(f"sqlite:///{created}").dispose()
    for path in (migrated, created):
        assert version(path) == [(HEAD,)]
        assert schema_diff(f"sqlite:///{path}") == []


@pytest.mark.parametrize("revision", LEGACY)
@pytest.mark.parametrize("create", [True, False], ids=["open", "read-only-open"])
def test_a_legacy_database_is_identified_stamped_and_upgraded(tmp_path, revision, create):
    path = load(revision, tmp_path / "old.db")
    before = rows(path)
    with sqlite3.connect(path) as con:
        assert identify_file(con) == revision and "alembic_version" not in before
    db = Database(f"sqlite:///{path}", create=create)
    assert version(path) == [(HEAD,)] and schema_diff(f"sqlite:///{path}") == []
    with sqlite3.connect(path) as con:  # jobs was rebuilt (batch mode): the tables pointing at it still hold
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert {"progress_done", "progress_unit"} <= columns(path, "jobs") and "progress" not in columns(path, "jobs")
    assert {"engine", "threads", "diverged_value", "diverged_at"} <= columns(path, "runs")
    after = rows(path)
    for table, old in before.items():  # every old row kept with every old value (jobs.progress was empty)
        names = set(old[0]) - {"progress"} if old else set()
        assert projected(after[table], names) == projected(old, names), table
        assert len(after[table]) == len(old)
    jobs = db.jobs_by_state()
    assert len(jobs) == JOBS and {str(j.state) for j in jobs} == {"done"}
    results = db.results_for(j.config_key for j in jobs)
    assert len(results) == JOBS and all(len(r["metrics"]) == METRICS_PER_JOB for r in results)
    assert {r["how"]["engine"] for r in results} == {None}  # recorded before runs said how they ran
    db.dispose()


@pytest.mark.parametrize("revision", LEGACY)
def test_a_read_only_uri_reads_a_legacy_file_without_writing_it(tmp_path, revision):
    """``mode=ro``: upgraded in a copy in memory; the file keeps its bytes and its old schema."""
    path = load(revision, tmp_path / "old.db")
    digest = sha256(path)
    db = Database(f"sqlite:///file:{path}?mode=ro&uri=true", create=False)
    jobs = db.jobs_by_state()
    assert len(jobs) == JOBS and db.running() == []
    assert len(db.results_for(j.config_key for j in jobs)) == JOBS
    provenance = db.provenance_for(j.id for j in jobs)
    (run,) = provenance[jobs[0].id]["runs"]
    # 0001 recorded no threads; 0002 did (its profile runs left engine and precision empty)
    assert run["device"] == "cpu" and run["engine"] is None and run["threads"] == {"0001": None, "0002": 1}[revision]
    outcome = db.outcomes(j.id for j in jobs)[jobs[0].id]
    assert (outcome.state, outcome.error, outcome.divergence) == (jobs[0].state, None, None)
    db.dispose()
    assert sha256(path) == digest and "alembic_version" not in rows(path)


@pytest.mark.parametrize("revision", LEGACY)
def test_status_and_diff_read_a_legacy_database_read_only_then_upgraded(tmp_path, revision, cli):
    # a rollback-journal file (as an old sqlite3 copy would be): a read-only open cannot even switch it to WAL
    path = load(revision, tmp_path / "old.db", wal=False)
    digest, files = sha256(path), sorted(tmp_path.iterdir())
    for url, upgraded in ((f"sqlite:///file:{path}?mode=ro&uri=true", False), (f"sqlite:///{path}", True)):
        status = cli("status", "--format", "json", "--db", url)
        assert status.returncode == 0, status.stderr
        assert sorted((r["state"], r["kind"]) for r in json.loads(status.stdout)) == [("done", "profile")] * JOBS
        diff = cli("diff", f"{PAPER}/{TABLE}", "--format", "json", "--db", url)
        assert diff.returncode == 0, diff.stderr
        cells = json.loads(diff.stdout)
        assert len(cells) == JOBS and {c["status"] for c in cells} == {"reproduced"}
        assert all(c["ours"] == c["published"] for c in cells)  # the old rows' numbers, read through
        if not upgraded:
            assert sha256(path) == digest and sorted(tmp_path.iterdir()) == files  # nothing written, no -wal
    assert version(path) == [(HEAD,)]


def test_old_progress_and_divergence_sentences_become_typed_columns(tmp_path):
    """0003 reads the words an older worker stored (jobs.progress, a diverged run's error) into numbers."""
    path = load("0002", tmp_path / "old.db")
    with sqlite3.connect(path) as con:
        con.executemany("INSERT INTO jobs (id, config_key, kind, model, budget, spec, state, progress, created_at, "
                        "updated_at) VALUES (?, 'k', 'train', 'm', 'full', '{}', ?, ?, '2026-01-01', '2026-01-01')",
                        [("det", "running", "iteration 120/9000"), ("cls", "running", "epoch 7"),
                         ("odd", "running", "warming up"), ("nan", "diverged", None), ("inf", "diverged", None),
                         ("err", "diverged", None)])
        con.executemany("INSERT INTO runs (id, job_id, status, error, started_at, host, pid, device, versions) "
                        "VALUES (?, ?, ?, ?, '2026-01-01', 'h', 1, 'cpu', '{}')",
                        [(101, "det", "running", None), (102, "cls", "running", None), (103, "odd", "running", None),
                         (104, "nan", "diverged", "loss became nan at epoch 3"),
                         (105, "inf", "diverged", "loss became inf at iteration 120 (lr 0.01)"),
                         (106, "err", "diverged", "something else")])
    db = Database(f"sqlite:///{path}")
    running = {r["job"]: r["progress"] for r in db.running()}
    assert running == {"det": Progress(120, 9000, "iteration"), "cls": Progress(7, None, "epoch"), "odd": None}
    outcomes = db.outcomes(["nan", "inf", "err"])
    assert outcomes["nan"].divergence == Divergence("nan", "epoch", 3)
    assert outcomes["inf"].divergence == Divergence("inf", "iteration", 120, 0.01)
    err = outcomes["err"]  # words that say nothing typed stay words
    assert (err.state, err.error, err.divergence) == ("diverged", "something else", None)
    db.dispose()


def test_every_in_between_shape_the_old_upgrader_left_reaches_head(tmp_path):
    """Before Alembic, an upgrader added whatever was missing, so old databases hold in-between shapes: the
    project's results.db at be01574 is 0002 plus the 0003 columns with jobs.progress still there."""
    hand_upgraded = ["ALTER TABLE jobs ADD COLUMN progress_done INTEGER",
                     "ALTER TABLE jobs ADD COLUMN progress_total INTEGER",
                     "ALTER TABLE jobs ADD COLUMN progress_unit VARCHAR(16)",
                     *(f"ALTER TABLE runs ADD COLUMN {c}" for c in ("diverged_value VARCHAR(8)",
                                                                    "diverged_unit VARCHAR(16)",
                                                                  "diverged_at INTEGER", "diverged_lr FLOAT"))]
    shapes = {"be01574": ("0002", hand_upgraded, "0002"),  # (fixture, statements, identified as)
              "0002 without benchmarks": ("0002", ["DROP TABLE benchmarks"], "0001"),
              "0001 with runs.engine": ("0001", ["ALTER TABLE runs ADD COLUMN engine VARCHAR(16)"], "0001")}
    for name, (fixture, statements, identified) in shapes.items():
        path = load(fixture, tmp_path / f"{name}.db")
        with sqlite3.connect(path) as con:
            for statement in statements:
                con.execute(statement)
            assert identify_file(con) == identified, name
        Database(f"sqlite:///{path}").dispose()
        assert version(path) == [(HEAD,)] and schema_diff(f"sqlite:///{path}") == [], name
        assert "progress" not in columns(path, "jobs") and len(rows(path)["jobs"]) == JOBS, name


def test_six_concurrent_openers_of_a_legacy_sqlite_database(tmp_path):
    path = load("0001", tmp_path / "old.db")
    assert open_concurrently(f"sqlite:///{path}") == [0] * 6
    assert version(path) == [(HEAD,)] and schema_diff(f"sqlite:///{path}") == []
    assert len(rows(path)["jobs"]) == JOBS and len(rows(path)["metrics"]) == JOBS * METRICS_PER_JOB


def test_a_database_newer_than_this_code_is_one_line(tmp_path, cli):
    path = tmp_path / "new.db"
    Database(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE alembic_version SET version_num = '0099'")
    for create in (True, False):
        with pytest.raises(DatabaseError, match=r"has schema revision '0099', newer than this repro knows \(up to "):
            Database(f"sqlite:///{path}", create=create)
    out = cli("status", "--db", f"sqlite:///{path}")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "'0099'" in out.stderr


def test_an_up_to_date_database_opens_with_reads_only_and_without_alembic(tmp_path):
    """The common case stays cheap: a database at head costs a few reads; Alembic is not even imported."""
    path = tmp_path / "r.db"
    Database(f"sqlite:///{path}").dispose()
    code = f"""
import json, sys
from sqlalchemy import event
import repro.db.database as database

make, seen = database.make_engine, set()

def recording(url):
    engine = make(url)
    event.listen(engine, "before_cursor_execute", lambda conn, cur, statement, *a: seen.add(statement.split()[0]))
    return engine

database.make_engine = recording
database.Database("sqlite:///{path}").dispose()
print(json.dumps([sorted(seen), "alembic" in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [["SELECT"], False]


def test_a_read_only_open_creates_no_file_and_no_schema(tmp_path):
    with pytest.raises(DatabaseError, match="no database at .*missing.db"):
        Database(f"sqlite:///{tmp_path / 'missing.db'}", create=False)
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "empty.db"
    path.touch()
    Database(f"sqlite:///{path}", create=False).dispose()
    assert rows(path) == {}


def test_every_package_and_the_migration_scripts_ship():
    """pyproject lists packages one by one: a new subpackage (repro.db.migrations.versions) must be there."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "repro").rglob("__init__.py")}
    assert on_disk <= set(config["packages"]) and "repro.db.migrations.versions" in on_disk
    assert "script.py.mako" in config["package-data"]["repro.db.migrations"]


# --- workers across a schema upgrade: two revisions, this code's head and a newer one -------------------

NEXT = f"{int(HEAD) + 1:04d}"  # the revision a newer repro would add (any number above this code's head)
NEXT_SCRIPT = f'''"""A newer repro's revision (a test's): one column more.

Revision ID: {NEXT}
Revises: {HEAD}
"""
import sqlalchemy as sa
from alembic import op

revision = "{NEXT}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("newer_code_note", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("newer_code_note")
'''


@pytest.fixture
def newer_code(tmp_path, monkeypatch):
    """A context in which this process is a newer repro: its migrations hold one revision more (NEXT)."""
    import contextlib
    import shutil

    import repro.db.migrate as migrate

    scripts = tmp_path / "newer-migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / f"{NEXT}_newer.py").write_text(NEXT_SCRIPT)

    @contextlib.contextmanager
    def newer():
        with monkeypatch.context() as m:
            m.setattr(migrate, "MIGRATIONS", scripts)
            m.setattr(migrate, "REVISIONS", (*REVISIONS, NEXT))
            m.setattr(migrate, "HEAD", NEXT)
            yield migrate

    return newer


def _queued(url: str) -> Database:
    db = Database(url)
    db.add_jobs([{"id": "j1", "config_key": "k", "kind": "profile", "model": "m", "budget": "static", "seed": None,
                  "spec": {}}])
    return db


def _untouched(path) -> None:
    with sqlite3.connect(path) as con:
        assert con.execute("select state, owner from jobs").fetchall() == [("pending", None)]
        assert con.execute("select count(*) from runs").fetchone() == (0,)


def test_an_older_worker_stops_before_writing_to_a_database_upgraded_under_it(tmp_path, newer_code):
    import datetime as dt

    from repro.db import SchemaChanged
    from repro.db.schema import utcnow
    from repro.worker import Worker, WorkerOptions

    path = tmp_path / "r.db"
    url = f"sqlite:///{path}"
    old = _queued(url)  # this code, opened at its head
    worker = Worker(WorkerOptions(db_url=url, device="cpu"))
    with newer_code():
        Database(url).dispose()  # a newer repro opens it: Alembic upgrades it on open
    assert version(path) == [(NEXT,)] and "newer_code_note" in columns(path, "jobs")
    both = rf"now at schema revision '{NEXT}', but this repro opened it at '{HEAD}'.*a newer repro upgraded it"
    with pytest.raises(SchemaChanged, match=both):
        old.claim("j1", "host:1:x", utcnow() - dt.timedelta(seconds=60))
    with pytest.raises(SchemaChanged, match=both):
        worker.loop(["j1"])
    _untouched(path)
    assert len(str(SchemaChanged("x")).splitlines()) == 1


def test_a_newer_worker_upgrades_first_and_never_writes_to_an_older_schema(tmp_path, newer_code):
    import datetime as dt

    from alembic import command

    from repro.db import SchemaChanged
    from repro.db.schema import utcnow

    path = tmp_path / "r.db"
    url = f"sqlite:///{path}"
    _queued(url).dispose()  # an older database: this code's head
    with newer_code() as migrate:
        new = Database(url)  # opening upgrades it before anything is written
        assert version(path) == [(NEXT,)]
        with sqlite_ddl_engine(url).begin() as conn:  # the older schema put back (a restored copy, say)
            command.downgrade(migrate.alembic_config(conn), HEAD)
        assert version(path) == [(HEAD,)] and "newer_code_note" not in columns(path, "jobs")
        with pytest.raises(SchemaChanged, match=rf"now at schema revision '{HEAD}', but this repro opened it at "
                                                rf"'{NEXT}'.*an older schema was put back"):
            new.claim("j1", "host:1:x", utcnow() - dt.timedelta(seconds=60))
        _untouched(path)
        Database(url).dispose()  # reopened: upgraded again, and then it may write
        assert version(path) == [(NEXT,)]
        assert Database(url).claim("j1", "host:1:x", utcnow() - dt.timedelta(seconds=60))
