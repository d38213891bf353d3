"""End to end through the CLI into temporary databases: static tables, smoke training, report,
resume after SIGKILL, and concurrent invocations."""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, write_toy

# The training tests train the smallest network that proves their point: depth-8 CIFAR ResNets, plain and
# with CRA (81K/88K parameters; a ResNet-56 step costs ~10x as much on a CPU), on the 300-image fake
# CIFAR-100. The static cells stay the published ResNet-56 counts: "reproduced" is earned against the paper.
SMALL_TABLE = """\
table: table1
title: "Table 1"
columns:
  - {label: Params, metric: params}
  - {label: FLOPs, metric: macs}
  - {label: Error, metric: top1_err, also: [top5_err]}
defaults:
  recipe: tiny
rows:
  - {label: ResNet-56, model: resnet56_cifar, values: {Params: "858.87K", FLOPs: "126.57M"}}
  - {label: CRA-ResNet-56, model: cra_resnet56_cifar, values: {Params: "924.39K", FLOPs: "126.63M"}}
  - {label: ResNet-8, model: resnet_cifar, model_kwargs: {depth: 8}, values: {Error: "30.0"}}
  - {label: CRA-ResNet-8, model: resnet_cifar,
     model_kwargs: {depth: 8, attention: cra, attention_kwargs: {size: 8}}, values: {Error: "29.0"}}
"""


@pytest.fixture
def small_specs(tmp_path: Path) -> Path:
    return write_toy(tmp_path / "specs", table=SMALL_TABLE)


def db_rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def report_row(page: str, label: str) -> dict[tuple[str, str], str]:
    """One row of a report's Markdown table, by (column, field): ("Error", "status"), ("Error", "ours"), ...
    The header repeats "<column>: published | ours | Δ | status" for every column of the table."""
    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]

    lines = page.splitlines()
    (i,) = [i for i, line in enumerate(lines) if cells(line)[:1] == [label]]
    head = cells(next(line for line in reversed(lines[:i]) if line.startswith("| Row |")))
    row, column = {}, None
    for name, value in zip(head[1:], cells(lines[i])[1:]):
        if name.endswith(": published"):
            column, name = name.removesuffix(": published"), "published"
        row[column, name] = value
    return row


@pytest.mark.long
def test_se_r_tables_1_2_reproduce_through_a_local_pool(cli, tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    cli("run", "se-r/table1", "se-r/table2", "--workers", "2", "--db", url, check=True)
    # the two tables' 12 cells are 6 jobs (shared cells run once); two spawned processes claim them from one
    # queue and every job runs once (one process may finish all of them before the other has imported torch)
    assert db_rows(tmp_path / "r.db", "select count(*), count(distinct job_id) from runs") == [(6, 6)]
    assert db_rows(tmp_path / "r.db", "select count(distinct pid) from runs")[0][0] in (1, 2)
    assert db_rows(tmp_path / "r.db",
                   "select count(*) from metrics where name = 'macs' and detail = 'thop-2004'") == [(6,)]
    rows = json.loads(cli("diff", "se-r/table1", "se-r/table2", "--db", url, "--format", "json", check=True).stdout)
    assert len(rows) == 12
    assert all(r["status"] == "reproduced" for r in rows), [r for r in rows if r["status"] != "reproduced"]
    by = {(r["table"], r["row"]): r for r in rows}
    assert by[("table1", "SE-ResNet34")]["ours_exact"] == 21_655_420
    assert by[("table1", "SE-R-ResNet101")]["ours"] == 57.243
    assert by[("table2", "SE-ResNet101")]["published"] == 2.538
    assert by[("table2", "SE-ResNet101")]["detail"] == "thop-2004"
    assert {r["budget"] for r in rows} == {"static"}
    # re-running skips finished work
    again = cli("run", "se-r/table1", "--db", url, check=True)
    assert "6 already done, 0 to run" in again.stdout
    assert db_rows(tmp_path / "r.db", "select count(*) from runs")[0][0] == 6


def test_smoke_run_is_labelled_and_never_a_reproduction(cli, tmp_path, small_specs, fake_cifar100):
    url = f"sqlite:///{tmp_path}/r.db"
    common = ["--specs-dir", str(small_specs), "--db", url]
    cli("run", "toy/table1", "--budget", "smoke", "--data-dir", str(fake_cifar100),
        "--checkpoint-dir", str(tmp_path / "ckpt"), *common, check=True)
    rows = json.loads(cli("diff", "toy/table1", "--format", "json", *common, check=True).stdout)
    train = [r for r in rows if r["metric"] == "top1_err"]
    assert sorted(r["row"] for r in train) == ["CRA-ResNet-8", "ResNet-8"]
    assert all(r["budget"] == "smoke" and r["status"] == "not-comparable" and r["n"] == 1 for r in train)
    assert all(0.0 <= r["ours"] <= 100.0 and 0.0 <= r["also"]["top5_err"] <= r["ours"] for r in train)
    static = [r for r in rows if r["metric"] != "top1_err"]
    assert len(static) == 4 and all(r["status"] == "reproduced" for r in static), static
    # epochs of curve points = smoke epochs, one per job
    assert db_rows(tmp_path / "r.db", "select job_id, count(*) from curve_points group by job_id")[0][1] == 2
    out = tmp_path / "reports"
    cli("report", "--paper", "toy", "--out", str(out), *common, check=True)
    page = (out / "toy" / "README.md").read_text()
    # the cells themselves, not words that every report's legend holds anyway
    for label in ("ResNet-56", "CRA-ResNet-56"):
        row = report_row(page, label)
        assert row["Params", "status"] == row["FLOPs", "status"] == "reproduced", row
        assert row["Error", "status"] == row["Error", "ours"] == "", row
    for label in ("ResNet-8", "CRA-ResNet-8"):
        row = report_row(page, label)
        assert row["Error", "status"] == "not comparable" and row["Error", "Δ"] == "", row
        assert re.match(r"\d+\.\d\d \(n=1, smoke; top5_err \d+\.\d\d[;)]", row["Error", "ours"]), row
        assert row["Params", "status"] == "", row
    assert report_row(page, "ResNet-8")["Error", "published"] == "30.0"
    assert (out / "toy" / "figures" / "ours_vs_published.png").stat().st_size > 1000
    # a regression gate ignores short budgets, but fails on static cells that differ
    assert cli("diff", "toy/table1", "--fail-over", "0.001", *common).returncode == 0


def test_pending_cells_are_never_zero(cli, tmp_path):
    from repro.db import Database

    url = f"sqlite:///{tmp_path}/r.db"
    Database(url).dispose()  # an empty results database: read-only commands refuse a missing one
    rows = json.loads(cli("diff", "se-r/table3", "--db", url, "--format", "json", check=True).stdout)
    assert len(rows) == 6 and all(r["status"] == "pending" and r["ours"] is None for r in rows)


def _run_args(specs, url, data, ckpt):
    return [sys.executable, "-m", "repro.cli", "run", "toy/table1", "--kind", "train", "--budget", "epochs-3",
            "--specs-dir", str(specs), "--db", url, "--data-dir", str(data), "--checkpoint-dir", str(ckpt)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.long
def test_sigkill_resumes_from_checkpoint_with_identical_results(tmp_path, small_specs, fake_cifar100, cli):
    db = tmp_path / "killed.db"
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(_run_args(small_specs, f"sqlite:///{db}", fake_cifar100, ckpt), env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # killed within ~0.05 s of the first checkpoint the database recorded (a file it has not recorded yet
    # is never trusted: a kill in that window restarts the job from scratch, a different path)
    deadline, recorded = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None and not recorded:
        try:
            recorded = db.exists() and db_rows(db, "select count(*) from checkpoints")[0][0]
        except sqlite3.OperationalError:  # the schema is not there yet
            pass
        time.sleep(0.05)
    assert recorded and list(ckpt.glob("*/*.pt")), "no checkpoint was written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert db_rows(db, "select count(*) from jobs where state = 'running'")[0][0] >= 1
    resumed = subprocess.run(_run_args(small_specs, f"sqlite:///{db}", fake_cifar100, ckpt), env=ENV, cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    clean = tmp_path / "clean.db"
    subprocess.run(_run_args(small_specs, f"sqlite:///{clean}", fake_cifar100, tmp_path / "ckpt2"), env=ENV,
                   cwd=REPO, check=True, capture_output=True, timeout=600)
    q = "select job_id, name, value from metrics where name in ('top1_err', 'top5_err') order by job_id, name"
    assert db_rows(db, q) == db_rows(clean, q)
    qc = "select job_id, epoch, train_loss, test_top1_err from curve_points order by job_id, epoch"
    assert db_rows(db, qc) == db_rows(clean, qc)
    # no duplicated job, metric or curve rows; the killed attempt is recorded as interrupted
    assert db_rows(db, "select count(*) from jobs") == [(2,)]
    assert db_rows(db, "select count(*) from curve_points") == [(6,)]
    statuses = sorted(s for (s,) in db_rows(db, "select status from runs"))
    assert statuses.count("done") == 2 and statuses.count("interrupted") == 1
    assert db_rows(db, "select count(*) from runs where resumed_from_epoch >= 1") == [(1,)]


def _ran_here(stdout: str) -> tuple[int, int]:
    """(ran here, finished by other workers) from an invocation's summary line; (0, 0) when it found every
    job done at registration (no line)."""
    m = re.search(r"^ran (\d+) jobs? here; (\d+) finished by other workers; 0 failed, 0 diverged$", stdout, re.M)
    if m is None:
        assert re.search(r"^2 job\(s\) planned, 2 already done, 0 to run", stdout, re.M), stdout
        return 0, 0
    return int(m[1]), int(m[2])


@pytest.mark.long
def test_two_concurrent_invocations_run_each_job_once(tmp_path, small_specs, fake_cifar100):
    db = tmp_path / "r.db"
    args = _run_args(small_specs, f"sqlite:///{db}", fake_cifar100, tmp_path / "ckpt")
    args[args.index("epochs-3")] = "smoke"
    procs = [subprocess.Popen(args, env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    # each invocation counts what its own workers ran: together, every job once (not 3 x 2)
    counts = [_ran_here(out) for out, _ in outs]
    assert sum(here for here, _ in counts) == 2, outs
    for (here, others), (out, _) in zip(counts, outs):
        todo = int(re.search(r"(\d+) to run", out)[1])
        assert here + others == todo, out
    assert db_rows(db, "select count(*) from jobs") == [(2,)]
    assert db_rows(db, "select job_id, count(*) from runs group by job_id having count(*) > 1") == []
    assert db_rows(db, "select count(*) from runs where status = 'done'") == [(2,)]
    assert db_rows(db, "select count(*) from jobs where state = 'done'") == [(2,)]


def test_submitit_executor_runs_the_same_worker_loop(cli, tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    proc = cli("run", "se-r/table1", "--executor", "submitit-local", "--workers", "1", "--db", url, check=True,
               cwd=tmp_path)
    assert "submitted 1 local task(s)" in proc.stdout
    assert db_rows(tmp_path / "r.db", "select count(*) from jobs where state = 'done'") == [(6,)]


def test_missing_data_is_one_clear_line_and_static_cells_still_run(cli, tmp_path, toy_specs):
    url = f"sqlite:///{tmp_path}/r.db"
    proc = cli("run", "toy/table1", "--specs-dir", str(toy_specs), "--db", url, "--data-dir", str(tmp_path / "none"))
    assert proc.returncode == 1
    assert proc.stderr.count("not run: 2 job(s) need cifar100 not found under") == 1
    assert f"repro data fake cifar100 {tmp_path / 'none'}" in proc.stderr
    assert db_rows(tmp_path / "r.db", "select kind, state, count(*) from jobs group by kind, state") == [
        ("profile", "done", 2), ("train", "pending", 2)]
