"""Fault injection: bad checkpoints, foreign checkpoints, divergence, a frozen worker that lost its
lease, hostile pickles. Each scenario is small (a depth-8 CIFAR ResNet on 96 fake images, 3 epochs)
and asserts on what the database and the files hold afterwards."""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO

FAULT_PAPER = """\
paper: faults
title: "Fault injection"
authors: "Nobody"
source: none.txt
recipes:
  tiny:
    dataset: cifar10
    epochs: 3
    batch_size: 32
    lr: {lr}
    weight_decay: 5.0e-4
    milestones: [2]
    augment: [random_crop_pad4, hflip, normalize]
"""
FAULT_TABLE = """\
table: table1
title: "Table 1"
columns:
  - {label: Error, metric: top1_err}
defaults: {recipe: tiny}
rows:
  - {label: ResNet-8, model: resnet_cifar, model_kwargs: {depth: 8}, values: {Error: "?"}}
"""


def make_specs(root: Path, lr: str = "0.05") -> Path:
    d = root / "faults"
    d.mkdir(parents=True, exist_ok=True)
    (d / "paper.yaml").write_text(FAULT_PAPER.format(lr=lr))
    (d / "table1.yaml").write_text(FAULT_TABLE)
    return root


@pytest.fixture(scope="module")
def tiny_cifar10(tmp_path_factory) -> Path:
    from repro.data.fakes import fake_cifar

    root = tmp_path_factory.mktemp("c10")
    fake_cifar(root, 10, train=96, test=32)
    return root


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_args(specs: Path, db: Path, data: Path, ckpt: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "repro.cli", "run", "faults/table1", "--kind", "train", "--specs-dir", str(specs),
            "--db", f"sqlite:///{db}", "--data-dir", str(data), "--checkpoint-dir", str(ckpt), *extra]


def run(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), env={**ENV, **(env or {})}, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def q(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


METRICS = "select name, value from metrics where name in ('top1_err', 'top5_err') order by name"
CURVE = "select epoch, train_loss, test_top1_err from curve_points order by epoch"


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_cifar10):
    """An uninterrupted run: the numbers every recovery must end with."""
    tmp = tmp_path_factory.mktemp("clean")
    specs, db = make_specs(tmp / "specs"), tmp / "clean.db"
    proc = run(*run_args(specs, db, tiny_cifar10, tmp / "ckpt"))
    assert proc.returncode == 0, proc.stderr
    return {"metrics": q(db, METRICS), "curve": q(db, CURVE), "specs": specs, "db": db, "ckpt": tmp / "ckpt"}


def interrupted(tmp: Path, specs: Path, data: Path, epochs_done: int = 2) -> tuple[Path, Path]:
    """A job stopped (SIGKILL) once ``epochs_done`` checkpoints are recorded in the database."""
    db, ckpt = tmp / "r.db", tmp / "ckpt"
    proc = subprocess.Popen(run_args(specs, db, data, ckpt), env=ENV, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline, recorded = time.time() + 600, 0
    while time.time() < deadline and proc.poll() is None:
        try:
            recorded = q(db, "select count(*) from checkpoints")[0][0]
            if recorded >= epochs_done:
                break
        except sqlite3.OperationalError:  # the schema is not there yet
            pass
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert recorded >= epochs_done, f"only {recorded} checkpoint(s) recorded before the deadline"
    assert q(db, "select state from jobs") == [("running",)]
    return db, ckpt


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_checkpoint_is_moved_aside_and_the_job_resumes_from_the_previous_one(
        tmp_path, tiny_cifar10, clean, damage):
    specs = make_specs(tmp_path / "specs")
    db, ckpt = interrupted(tmp_path, specs, tiny_cifar10, epochs_done=2)
    (path, step), = q(db, "select path, step from checkpoints order by step desc limit 1")
    newest = Path(path)
    data = newest.read_bytes()
    newest.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(4096)}[damage])
    (newest.parent / "stale.pt.tmp4242").write_bytes(b"half a write")
    again = run(*run_args(specs, db, tiny_cifar10, ckpt))
    assert again.returncode == 0, again.stderr
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning: checkpoint")]
    assert len(warnings) == 1 and str(newest) in warnings[0], again.stderr
    assert q(db, "select resumed_from_epoch from runs where status = 'done'") == [(step - 1,)]
    assert q(db, METRICS) == clean["metrics"] and q(db, CURVE) == clean["curve"]
    assert not newest.parent.exists()  # a finished job's checkpoints (and the stale temp file) are gone


def test_all_checkpoints_bad_restarts_from_scratch_never_fails_forever(tmp_path, tiny_cifar10, clean):
    specs = make_specs(tmp_path / "specs")
    db, ckpt = interrupted(tmp_path, specs, tiny_cifar10, epochs_done=2)
    for (path,) in q(db, "select path from checkpoints"):
        if Path(path).exists():
            Path(path).write_bytes(b"")
    again = run(*run_args(specs, db, tiny_cifar10, ckpt))
    assert again.returncode == 0, again.stderr
    assert q(db, "select resumed_from_epoch from runs where status = 'done'") == [(None,)]
    assert q(db, METRICS) == clean["metrics"]


def test_checkpoints_of_another_database_are_never_trusted(tmp_path, tiny_cifar10, clean):
    # the same job id in a fresh database, with a checkpoint directory full of another database's files
    specs = make_specs(tmp_path / "specs")
    first, fresh, ckpt = tmp_path / "first.db", tmp_path / "fresh.db", tmp_path / "ckpt"
    assert run(*run_args(specs, first, tiny_cifar10, ckpt, "--keep-checkpoints")).returncode == 0
    kept = sorted(ckpt.glob("*/*.pt"))
    assert len(kept) == 2  # the newest and the previous of the finished attempt
    proc = run(*run_args(specs, fresh, tiny_cifar10, ckpt))
    assert proc.returncode == 0, proc.stderr
    assert "did not record" in proc.stderr and "never trusted" in proc.stderr
    assert q(fresh, "select resumed_from_epoch from runs") == [(None,)]
    assert len(q(fresh, CURVE)) == 3  # it trained: every epoch has its curve point
    assert q(fresh, "select value > 0 from metrics where name = 'train_seconds'") == [(1,)]
    assert q(fresh, METRICS) == clean["metrics"]
    assert all(p.exists() for p in kept)  # the other database's files are left alone


def test_a_divergent_job_ends_diverged_stores_no_nan_and_is_not_retried(tmp_path, tiny_cifar10):
    specs = make_specs(tmp_path / "specs", lr="1.0e+6")
    db, ckpt = tmp_path / "r.db", tmp_path / "ckpt"
    proc = run(*run_args(specs, db, tiny_cifar10, ckpt))
    assert proc.returncode == 1
    found = re.search(r"loss became (nan|inf) at epoch (\d)", proc.stderr)
    assert found and "Traceback" not in proc.stderr, proc.stderr
    epoch = int(found.group(2))
    assert q(db, "select state from jobs") == [("diverged",)]
    # where it diverged is stored as columns (a state and numbers), never as a sentence to parse back
    assert q(db, "select status, error, diverged_value, diverged_unit, diverged_at from runs") == \
        [("diverged", None, found.group(1), "epoch", epoch)]
    assert q(db, "select count(*) from metrics") == [(0,)]
    # the epochs before it finished normally; none after, and no NaN anywhere
    assert q(db, "select count(*) from curve_points") == [(epoch - 1,)]
    assert q(db, "select count(*) from curve_points where train_loss is null or train_loss != train_loss") == [(0,)]
    again = run(*run_args(specs, db, tiny_cifar10, ckpt))
    assert again.returncode == 0 and "1 already done (1 diverged; --retry-failed runs them again)" in again.stdout
    assert q(db, "select count(*) from runs") == [(1,)]
    retried = run(*run_args(specs, db, tiny_cifar10, ckpt, "--retry-failed"))
    assert retried.returncode == 1 and q(db, "select count(*) from runs") == [(2,)]


def test_a_diverged_job_reads_the_same_with_one_or_two_workers(tmp_path, tiny_cifar10):
    """Issue 13.1: the in-process worker and the local pool report the same typed outcome, so the same
    diverged job prints the same line (it was `diverged <job>: ...` with one, `failed <job>: diverged: ...` with
    two)."""
    specs = make_specs(tmp_path / "specs", lr="1.0e+6")
    lines = {}
    for workers in ("1", "2"):
        db = tmp_path / f"r{workers}.db"
        proc = run(*run_args(specs, db, tiny_cifar10, tmp_path / f"ckpt{workers}", "--workers", workers))
        assert proc.returncode == 1, proc.stderr
        lines[workers] = [ln for ln in proc.stderr.splitlines() if ln.startswith(("diverged ", "failed "))]
        assert q(db, "select state from jobs") == [("diverged",)]
    assert len(lines["1"]) == 1 and lines["1"] == lines["2"], lines
    assert re.fullmatch(r"diverged [0-9a-f]{16}: loss became (nan|inf) at epoch \d", lines["1"][0])


def test_nan_is_never_stored(tmp_path):
    from repro.db import Database

    db = Database(f"sqlite:///{tmp_path}/r.db")
    with pytest.raises(ValueError, match="non-finite train_loss"):
        db.put_curve_point("job", 1, "me", {"epoch": 1, "train_loss": float("nan")})
    with pytest.raises(ValueError, match="non-finite top1_err"):
        db.complete("job", 1, "me", {"top1_err": (float("inf"), None)})


def freeze_outside_a_transaction(pid: int, db: Path) -> None:
    """SIGSTOP the worker at a moment it holds no SQLite write lock: a process frozen inside a write
    transaction blocks every writer (SQLite's rule, and PostgreSQL's for the rows it locked) until it
    wakes, which is not the scenario; its transactions last milliseconds, so retry until one misses."""
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        try:
            with sqlite3.connect(db, timeout=0.2, isolation_level=None) as con:
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
    raise AssertionError("the worker always held a write lock")


def test_a_frozen_worker_that_lost_its_lease_writes_nothing_more(tmp_path, tiny_cifar10, clean):
    specs = make_specs(tmp_path / "specs")
    db, ckpt = tmp_path / "r.db", tmp_path / "ckpt"
    lease = {"REPRO_LEASE_SECONDS": "2", "REPRO_HEARTBEAT_SECONDS": "0.5"}
    frozen = subprocess.Popen(run_args(specs, db, tiny_cifar10, ckpt), env={**ENV, **lease}, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            if q(db, "select count(*) from curve_points")[0][0] >= 1:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    freeze_outside_a_transaction(frozen.pid, db)
    try:
        time.sleep(3)  # past the lease: the frozen worker's heartbeat goes stale
        # another host's worker (so the pid check cannot short-cut the lease) takes over and finishes
        takeover = run(*run_args(specs, db, tiny_cifar10, ckpt), env=lease)
        assert takeover.returncode == 0, takeover.stderr
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    out, err = frozen.communicate(timeout=240)
    (job,), = q(db, "select id from jobs")
    assert f"lost the lease on job {job} to another worker" in err, err
    statuses = sorted(s for (s,) in q(db, "select status from runs"))
    assert statuses == ["done", "lost-lease"], statuses
    (done_run, resumed), = q(db, "select id, resumed_from_epoch from runs where status = 'done'")
    (lost_run,), = q(db, "select id from runs where status = 'lost-lease'")
    # the frozen worker's rows are only those it wrote while it still held the job
    assert all(epoch <= (resumed or 0) for (epoch,) in q(db,
                                                         f"select epoch from curve_points where run_id = {lost_run}"))
    assert q(db, "select distinct run_id from metrics") == [(done_run,)]
    assert q(db, f"select count(*) from checkpoints where run_id = {lost_run} and step > {resumed or 0}") == [(0,)]
    assert q(db, METRICS) == clean["metrics"] and q(db, CURVE) == clean["curve"]
    assert q(db, "select state from jobs") == [("done",)]


class Hostile:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PWNED']}",))


def test_a_hostile_checkpoint_runs_no_code(tmp_path, tiny_cifar10, clean, monkeypatch):
    specs = make_specs(tmp_path / "specs")
    db, ckpt = interrupted(tmp_path, specs, tiny_cifar10, epochs_done=1)
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(marker))
    (path,), = q(db, "select path from checkpoints order by step desc limit 1")
    payload = pickle.dumps({"model": Hostile()})
    Path(path).write_bytes(payload)
    import hashlib

    # even a file the database vouches for (same checksum) is loaded with weights_only=True
    with sqlite3.connect(db) as con:
        con.execute("update checkpoints set sha256 = ? where path = ?", (hashlib.sha256(payload).hexdigest(), path))
    proc = run(*run_args(specs, db, tiny_cifar10, ckpt), env={"PWNED": str(marker)})
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert "unreadable" in proc.stderr
    assert q(db, METRICS) == clean["metrics"]


def test_a_hostile_backbone_checkpoint_runs_no_code(tmp_path, monkeypatch):
    import repro_models as models
    from repro.train.detect import load_backbone

    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(marker))
    bad = tmp_path / "backbone.pt"
    bad.write_bytes(pickle.dumps({"model": Hostile()}))
    with pytest.raises(Exception):
        load_backbone(models.create("retinanet_resnet50"), bad)
    assert not marker.exists()


def test_own_checkpoints_load_with_weights_only(tmp_path):
    from repro.train.checkpoints import CheckpointStore, rng_state, safe_load, set_rng_state

    store = CheckpointStore(tmp_path / "job")
    state = {"model": torch.nn.Linear(2, 2).state_dict(), "rng": rng_state(), "history": [{"epoch": 1, "x": 0.5}]}
    store.save(state, 1)
    loaded = safe_load(store.known[0].path)
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])
    assert json.dumps(loaded["history"]) == json.dumps(state["history"])
