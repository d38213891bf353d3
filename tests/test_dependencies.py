"""Jobs that build on jobs (issue 14): an upstream job's final weights are a content-addressed artifact, a
downstream job starts from them after its upstream is done (blocked until then), fails unrun when its
upstream fails or diverges, and a campaign killed mid-upstream ends with every job done once. Real worker
processes on a depth-8 CIFAR ResNet, a few seconds per job."""
from __future__ import annotations

import pytest

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

PAPER = """\
paper: dep
title: "Pretrain, then fine-tune"
authors: "Nobody"
source: none.txt
recipes:
  pre:
    dataset: cifar100
    epochs: {epochs}
    batch_size: 32
    lr: {lr}
    weight_decay: 5.0e-4
    augment: [random_crop_pad4, hflip, normalize]
  fine:
    dataset: cifar100
    epochs: 2
    batch_size: 32
    lr: 0.01
    weight_decay: 5.0e-4
    augment: [hflip, normalize]
"""
PRETRAIN = """\
table: table1
title: "Pretraining"
columns:
  - {label: Error, metric: top1_err}
defaults: {recipe: pre}
rows:
  - {label: ResNet-8, model: resnet_cifar, model_kwargs: {depth: 8}, values: {Error: "?"}}
"""
FINETUNE = """\
table: table2
title: "Fine-tuning"
columns:
  - {label: Error, metric: top1_err}
defaults: {recipe: fine}
rows:
  - {label: ResNet-8 pretrained, model: resnet_cifar, model_kwargs: {depth: 8},
     init_from: {table: table1, row: ResNet-8}, values: {Error: "?"}}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def specs(root: Path, lr: str = "0.05", epochs: int = 2) -> Path:
    d = root / "dep"
    d.mkdir(parents=True, exist_ok=True)
    (d / "paper.yaml").write_text(PAPER.format(lr=lr, epochs=epochs))
    (d / "table1.yaml").write_text(PRETRAIN)
    (d / "table2.yaml").write_text(FINETUNE)
    return root


def args(tmp: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "repro.cli", "run", "dep/table2", "--budget", "smoke", "--specs-dir",
            str(tmp / "specs"), "--db", f"sqlite:///{tmp / 'r.db'}", "--data-dir", str(data), "--checkpoint-dir",
            str(tmp / "ckpt"), *extra]


def q(db: Path, sql: str):
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def test_the_downstream_job_starts_from_its_upstreams_artifact(tmp_path, fake_cifar100):
    specs(tmp_path / "specs")
    dry = subprocess.run(args(tmp_path, fake_cifar100, "--dry-run", "--format", "json"), env=ENV, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    plan = {r["job"]: r for r in json.loads(dry.stdout)}
    (down,) = [r for r in plan.values() if r["upstream"]]
    (up,) = down["upstream"]
    assert plan[up]["cells"] == ["dep/table1/ResNet-8/Error"] and down["state"] == "blocked"
    first = subprocess.run(args(tmp_path, fake_cifar100), env=ENV, cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr
    db = tmp_path / "r.db"
    # the upstream ran first, to the end; the downstream started after it ended, from its artifact
    (up_end,), (down_start,) = q(db, f"select ended_at from runs where job_id = '{up}'"), \
        q(db, f"select started_at from runs where job_id = '{down['job']}'")
    assert up_end <= down_start
    ((sha, path, size),) = q(db, f"select sha256, path, size from artifacts where job_id = '{up}'")
    data = Path(path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha and len(data) == size and Path(path).name == f"{sha}.pt"
    assert Path(path).parent.parent == tmp_path / "artifacts"  # beside the checkpoints
    ((init,),) = q(db, f"select init_from from runs where job_id = '{down['job']}'")
    assert json.loads(init) == {"job": up, "sha256": sha, "path": path, "into": "model"}
    assert q(db, f"select value from metrics where job_id = '{down['job']}' and name = 'pretrained'") == [(1.0,)]
    assert not list((tmp_path / "ckpt").glob("*/*.pt"))  # the checkpoints went; the artifacts stay
    again = subprocess.run(args(tmp_path, fake_cifar100), env=ENV, cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "2 already done, 0 to run" in again.stdout
    assert q(db, "select count(*) from runs") == [(2,)]


def test_a_diverged_upstream_fails_its_downstream_unrun(tmp_path, fake_cifar100):
    specs(tmp_path / "specs", lr="1.0e+6")
    proc = subprocess.run(args(tmp_path, fake_cifar100), env=ENV, cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1
    db = tmp_path / "r.db"
    states = dict(q(db, "select upstream is null, state from jobs"))
    assert states == {1: "diverged", 0: "failed"}
    (up,) = [j for (j,) in q(db, "select id from jobs where upstream is null")]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(("failed ", "diverged "))]
    assert sorted(ln.split()[0] for ln in lines) == ["diverged", "failed"]
    assert any(ln.endswith(f"its upstream job {up} diverged: not run") for ln in lines), lines
    assert q(db, "select count(*) from runs") == [(1,)]  # the downstream never started
    # not retried while its upstream stays diverged (a diverged job is a result, retried only when asked)
    again = subprocess.run(args(tmp_path, fake_cifar100), env=ENV, cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert q(db, "select count(*) from runs") == [(1,)], again.stdout
    assert "its upstream job" in again.stderr and again.returncode == 1
    # the API shows the failure although nothing ran: one row, its state, no run (issue 24.5)
    from repro import api

    runs = api.runs(db=f"sqlite:///{db}", specs_dir=str(tmp_path / "specs"))
    assert sorted(zip(runs["state"], runs["run_id"].isna())) == [("diverged", False), ("failed", True)]


@pytest.mark.long
def test_a_worker_killed_mid_upstream_ends_with_every_job_done_once(tmp_path, fake_cifar100):
    """Two local workers; the one training the upstream job is SIGKILLed after its first epoch checkpoint.
    The survivor takes the upstream over, resumes it, then runs the downstream; a second invocation
    finishes whatever the first left. Every job ends done, with exactly one done attempt."""
    specs(tmp_path / "specs", epochs=4)
    db = tmp_path / "r.db"
    proc = subprocess.Popen(args(tmp_path, fake_cifar100, "--workers", "2"), env=ENV, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline:
        time.sleep(0.2)
        try:
            rows = q(db, "select r.pid from runs r join jobs j on j.id = r.job_id join checkpoints c on "
                         "c.run_id = r.id where j.upstream is null and r.status = 'running'")
        except sqlite3.OperationalError:  # the schema is not there yet
            rows = []
        victim = rows[0][0] if rows else None
    assert victim is not None, "the upstream job never wrote a checkpoint"
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert f"pid {victim}) killed by SIGKILL" in err, err
    rerun = subprocess.run(args(tmp_path, fake_cifar100), env=ENV, cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(s for (s,) in q(db, "select state from jobs")) == ["done", "done"]
    assert q(db, "select job_id, count(*) from runs where status = 'done' group by job_id having count(*) != 1") == []
    assert q(db, "select count(*) from runs where status = 'interrupted'") == [(1,)]
    assert q(db, "select count(*) from runs where resumed_from_epoch >= 1") == [(1,)]
    (up,) = [j for (j,) in q(db, "select id from jobs where upstream is null")]
    ((sha,),) = q(db, f"select sha256 from artifacts where job_id = '{up}'")
    assert json.loads(q(db, "select init_from from runs where init_from is not null")[0][0])["sha256"] == sha


def test_local_weights_are_checked_before_use(tmp_path, fake_cifar100):
    import repro_models
    import torch

    weights = tmp_path / "resnet8.pt"
    torch.save(repro_models.create("resnet_cifar", num_classes=100, depth=8).state_dict(), weights)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    root = specs(tmp_path / "specs")
    table = (root / "dep" / "table2.yaml")
    table.write_text(FINETUNE.replace("init_from: {table: table1, row: ResNet-8}",
                                      f"init_from: {{file: {weights}, sha256: '{'0' * 64}'}}"))
    bad = subprocess.run(args(tmp_path, fake_cifar100), env=ENV, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and "not the expected 0000000000000000" in bad.stderr, bad.stderr
    table.write_text(FINETUNE.replace("init_from: {table: table1, row: ResNet-8}",
                                      f"init_from: {{file: {weights}, sha256: '{sha}'}}"))
    good = subprocess.run(args(tmp_path, fake_cifar100), env=ENV, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert good.returncode == 0, good.stderr
    init = [json.loads(v) for (v,) in q(tmp_path / "r.db", "select init_from from runs where status = 'done'")]
    assert init == [{"file": str(weights), "sha256": sha, "path": str(weights), "into": "model"}]


def test_a_dry_run_shows_the_state_the_queue_gives_and_the_databases_answer(tmp_path):
    """One rule (``states.waiting_state``) for what the queue stores and what a dry run shows: a job the
    database holds shows its state there; one it does not yet shows the state it would be inserted with."""
    from types import SimpleNamespace

    from sqlalchemy import text

    from repro.campaign import plan_states
    from repro.db import Database
    from repro.states import JobState

    def job(jid, *upstream):
        return SimpleNamespace(id=jid, upstream=list(upstream))

    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    row = {"config_key": "k", "kind": "train", "model": "m", "budget": "smoke", "seed": 0, "spec": {}}
    db.add_jobs([{**row, "id": u} for u in ("up-done", "up-failed", "up-diverged", "up-pending")])
    with db.Session.begin() as s:
        s.execute(text("update jobs set state = substr(id, 4) where id like 'up-%'"))
    db.add_jobs([{**row, "id": "in-db-failed", "upstream": ["up-failed"]},
                 {**row, "id": "in-db-blocked", "upstream": ["up-pending"]}])
    planned = [job("in-db-failed", "up-failed"), job("in-db-blocked", "up-pending"), job("new-after-done", "up-done"),
               job("new-after-diverged", "up-done", "up-diverged"), job("new-waiting", "up-pending"),
               job("new-after-new", "new-waiting"), job("new-alone")]
    known = db.job_states(["up-done", "up-failed", "up-diverged", "up-pending", "in-db-failed", "in-db-blocked"])
    shown = plan_states(planned, known)
    assert shown == {"in-db-failed": JobState.FAILED, "in-db-blocked": JobState.BLOCKED, "new-after-done": "new",
                     "new-after-diverged": JobState.FAILED, "new-waiting": JobState.BLOCKED,
                     "new-after-new": JobState.BLOCKED, "new-alone": "new"}
    # the queue, given the same jobs, stores what the dry run showed (pending where it showed new)
    db.add_jobs([{**row, "id": j.id, "upstream": j.upstream} for j in planned])
    stored = db.job_states(j.id for j in planned)
    assert {j: ("new" if s == JobState.PENDING else s) for j, s in stored.items()} == shown


def test_an_ended_job_selects_only_the_blocked_jobs_that_wait_for_it(tmp_path):
    """``settle_downstream`` asks the database for the ended job's dependants, not for every blocked job."""
    from sqlalchemy import event, text

    from repro.db import Database
    from repro.db.queue import blocked_dependants, settle_downstream
    from repro.states import JobState

    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    row = {"config_key": "k", "kind": "train", "model": "m", "budget": "smoke", "seed": 0, "spec": {}}
    ups = ["a1", "a1b", "c_d", "c%d"]  # one id a prefix of another; LIKE's wildcards in ids
    db.add_jobs([{**row, "id": u} for u in ups])
    db.add_jobs([{**row, "id": "after-a1", "upstream": ["a1"]}, {**row, "id": "after-a1b", "upstream": ["a1b"]},
                 {**row, "id": "after-both", "upstream": ["a1b", "a1"]},
                 {**row, "id": "after-cxd", "upstream": ["cxd"]},
                 {**row, "id": "after-c_d", "upstream": ["c_d"]}, {**row, "id": "after-c%d", "upstream": ["c%d"]}])
    fetched = []
    event.listen(db.engine, "after_cursor_execute",
                 lambda conn, cur, statement, *a: fetched.append(statement) if "LIKE" in statement else None)
    with db.Session() as s:
        assert sorted(j for j, _ in blocked_dependants(s, "a1")) == ["after-a1", "after-both"]
        assert [j for j, _ in blocked_dependants(s, "c_d")] == ["after-c_d"]
        assert [j for j, _ in blocked_dependants(s, "c%d")] == ["after-c%d"]
        assert blocked_dependants(s, "a") == []
    assert len(fetched) == 4  # the database selected them
    with db.Session.begin() as s:  # a1 ends done: only its sole dependant becomes pending
        s.execute(text("update jobs set state = 'done' where id = 'a1'"))
        settle_downstream(s, "a1")
    assert db.job_states(["after-a1", "after-both", "after-a1b"]) == {
        "after-a1": JobState.PENDING, "after-both": JobState.BLOCKED, "after-a1b": JobState.BLOCKED}
