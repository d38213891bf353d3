"""Against a real PostgreSQL server (issue 9, items 1-3 and 10)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, open_concurrently
from repro.db import Database, exists

from .helpers import env, rows, run_args, specs, start


def test_six_concurrent_openers_of_an_empty_database(postgres):
    url = postgres()
    assert open_concurrently(url) == [0] * 6  # before: UniqueViolation on pg_type in the losers
    assert exists(url)
    assert rows(url, "select count(*) from jobs") == [(0,)]


def test_dry_run_on_a_new_empty_database_creates_nothing(postgres, tmp_path):
    url = postgres()
    out = subprocess.run([sys.executable, "-m", "repro.cli", "run", "toy/table1", "--dry-run", "--format", "json",
                          "--specs-dir", str(specs(tmp_path / "specs")), "--db", url],
                         env=env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {r["state"] for r in json.loads(out.stdout)} == {"new"}
    assert not exists(url)
    assert rows(url, "select count(*) from information_schema.tables where table_schema = 'public'") == [(0,)]


def test_missing_database_and_refused_server_are_one_line(postgres):
    missing = postgres().rsplit("/", 1)[0] + "/no_such_db"
    assert not exists(missing)
    out = subprocess.run([sys.executable, "-m", "repro.cli", "status", "--db", missing], env=env(), cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    try:
        Database(missing)
    except Exception as e:
        assert type(e).__name__ == "DatabaseError" and "127.0.0.1" in str(e) and "no_such_db" in str(e)
    else:
        raise AssertionError("opening a missing database must fail")


def test_static_and_training_tables_two_invocations_of_two_workers(postgres, tmp_path, fake_cifar100):
    """Two `repro run --workers 2` at once on one PostgreSQL database: every job runs exactly once."""
    url = postgres()
    args = run_args(["stat/table1", "toy/table1"], specs(tmp_path / "specs"), url, fake_cifar100,
                    tmp_path / "ckpt", "--budget", "epochs-3", "--seeds", "2", "--workers", "2")
    procs = [start(args) for _ in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert rows(url, "select kind, state, count(*) from jobs group by kind, state order by kind") == \
        [("profile", "done", 2), ("train", "done", 2)]
    assert rows(url, "select count(*), count(distinct job_id) from runs where status = 'done'") == [(4, 4)]
    assert rows(url, "select job_id from runs group by job_id having count(*) > 1") == []
    assert rows(url, "select count(*) from curve_points") == [(6,)]
    assert rows(url, "select count(*) from metrics where name = 'params'") == [(2,)]


def test_six_concurrent_openers_upgrade_a_legacy_database_once(postgres, tmp_path):
    """The project's results.db of 41a8105 as an older repro left it on PostgreSQL (the 0001 tables, no
    alembic_version): six processes open it at once; the advisory lock lets one upgrade it, in one transaction."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from fixtures_legacy import JOBS, METRICS_PER_JOB, copy_rows, load, schema_diff
    from repro.db.migrate import HEAD, alembic_config

    url = postgres()
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
    copy_rows(load("0001", tmp_path / "old.db"), engine)
    engine.dispose()
    assert open_concurrently(url) == [0] * 6
    assert rows(url, "select version_num from alembic_version") == [(HEAD,)]
    assert schema_diff(url) == []
    assert rows(url, "select count(*) from information_schema.columns where table_name = 'jobs' "
                     "and column_name = 'progress'") == [(0,)]
    db = Database(url, create=False)
    results = db.results_for(j.config_key for j in db.jobs_by_state())
    assert len(results) == JOBS and all(len(r["metrics"]) == METRICS_PER_JOB for r in results)
    db.dispose()


def test_import_a_bundle_into_postgresql(postgres, tmp_path):
    """repro import into the server: idempotent, and a bad bundle changes nothing (issue 22)."""
    import shutil
    import zipfile

    url = postgres()
    local = tmp_path / "claims.db"
    shutil.copyfile(REPO / "results.db", local)
    bundle = tmp_path / "se-r.zip"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "repro.cli", *args], env=env(), cwd=REPO, capture_output=True,
                              text=True, timeout=300)

    assert cli("export", "se-r/table1", "-o", str(bundle), "--db", f"sqlite:///{local}").returncode == 0
    first = cli("import", str(bundle), "--db", url, "--label", "lab-a")
    assert first.returncode == 0, first.stderr
    assert rows(url, "select count(*) from jobs where state = 'done'") == [(6,)]
    assert rows(url, "select label from origins") == [("lab-a",)]
    assert cli("import", str(bundle), "--db", url).returncode == 0
    counts = "select (select count(*) from jobs), (select count(*) from runs), (select count(*) from metrics)"
    assert rows(url, counts) == [(6, 6, 18)]
    with zipfile.ZipFile(bundle) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("../escape", b"x")
    refused = cli("import", str(bad), "--db", url)
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
    assert rows(url, counts) == [(6, 6, 18)] and rows(url, "select count(*) from origins") == [(1,)]
    diff = json.loads(cli("diff", "se-r/table1", "--format", "json", "--db", url).stdout)
    assert [r["status"] for r in diff] == ["reproduced"] * 6 and diff[0]["origins"]["names"] == ["lab-a"]
