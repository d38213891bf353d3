"""Executors and workers without GPUs or Slurm: device assignment, Slurm parameters, threads, the lease
and takeover across hosts, database existence and connection errors, and a local pool that loses one
worker to SIGKILL (issue 7.1; issue 9 items 2-4, 7-9)."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import REPO, TINY_TRAIN, open_concurrently, write_toy
from repro import executor as ex
from repro.db import Database, DatabaseError, exists, utcnow
from repro.states import Progress
from repro.progress import eta_seconds, running_jobs
from repro.worker import Worker, WorkerOptions, resolve_threads



def test_worker_i_uses_gpu_i_mod_g():
    assert ex.assign_devices(5, 2, "auto") == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert ex.assign_devices(3, 4, "cuda") == ["cuda:0", "cuda:1", "cuda:2"]
    assert ex.assign_devices(2, 4, "cuda:3") == ["cuda:3", "cuda:3"]  # explicit device wins
    assert ex.assign_devices(2, 0, "auto") == ["auto", "auto"]  # no GPU: the CPU path
    assert ex.assign_devices(2, 4, "cpu") == ["cpu", "cpu"]
    # one process per GPU by default, K per GPU when packing, one without GPUs
    assert ex.default_workers(4, 1, "auto") == 4
    assert ex.default_workers(2, 4, "cuda") == 8
    assert ex.default_workers(0, 4, "auto") == 1
    assert ex.default_workers(8, 1, "cpu") == 1
    # packing K=2 on 2 GPUs: each GPU gets exactly 2 workers
    devices = ex.assign_devices(ex.default_workers(2, 2, "auto"), 2, "auto")
    assert sorted(devices) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert ex.pool_threads(2, 16) == 8 and ex.pool_threads(4, 2) == 1


def test_slurm_gpus_follow_the_plan_and_options_reach_sbatch():
    static = ex.slurm_parameters(ex.SlurmOptions(), needs_gpu=False)
    assert "gpus_per_node" not in static  # a CPU partition rejects any GPU request
    assert ex.slurm_parameters(ex.SlurmOptions(), needs_gpu=True)["gpus_per_node"] == 1
    assert "gpus_per_node" not in ex.slurm_parameters(ex.SlurmOptions(gpus=0), needs_gpu=True)
    assert ex.slurm_parameters(ex.SlurmOptions(gpus=4), needs_gpu=False)["gpus_per_node"] == 4
    opts = ex.SlurmOptions(partition="gpu", cpus_per_task=8, mem="32G", account="proj", qos="long",
                           constraint="h100", timeout_min=90,
                           extra=ex.parse_slurm_opts(["--exclude=node7", "mail-type=END", "exclusive"]))
    p = ex.slurm_parameters(opts, needs_gpu=True)
    assert (p["slurm_partition"], p["cpus_per_task"], p["slurm_mem"], p["slurm_account"], p["slurm_qos"],
            p["slurm_constraint"], p["timeout_min"]) == ("gpu", 8, "32G", "proj", "long", "h100", 90)
    assert p["slurm_additional_parameters"] == {"exclude": "node7", "mail-type": "END", "exclusive": True}
    with pytest.raises(ex.ExecError, match="KEY=VALUE"):
        ex.parse_slurm_opts(["=3"])
    # submitit writes these flags into the batch script
    from submitit.slurm.slurm import _make_sbatch_string

    script = _make_sbatch_string(command="x", folder="/tmp/logs", partition="gpu", mem="32G",
                                 additional_parameters=p["slurm_additional_parameters"])
    assert "#SBATCH --exclude=node7" in script and "#SBATCH --exclusive" in script and "gpus" not in script


def test_submitit_accepts_every_slurm_parameter(tmp_path):
    """submitit's own check of the keywords slurm_parameters produces (an unknown one raises). It builds a
    Slurm executor only where ``srun`` is installed, so this part skips elsewhere, saying why."""
    import submitit

    if shutil.which("srun") is None:
        pytest.skip("srun not found: submitit builds a Slurm executor only where the Slurm client is "
                    "installed (apt-get install slurm-client)")
    opts = ex.SlurmOptions(partition="gpu", cpus_per_task=8, mem="32G", account="proj", qos="long",
                           constraint="h100", timeout_min=90,
                           extra=ex.parse_slurm_opts(["--exclude=node7", "mail-type=END", "exclusive"]))
    for needs_gpu in (True, False):
        executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm", slurm_max_num_timeout=10_000)
        executor.update_parameters(**ex.slurm_parameters(opts, needs_gpu=needs_gpu))
        params = executor._executor.parameters
        assert (params["partition"], params["cpus_per_task"], params["mem"], params["account"]) == \
            ("gpu", 8, "32G", "proj")
        assert params.get("gpus_per_node") == (1 if needs_gpu else None)
        assert params["additional_parameters"] == {"exclude": "node7", "mail-type": "END", "exclusive": True}


def test_threads_follow_the_slurm_task_cpus(monkeypatch):
    for var in ("REPRO_THREADS", "SLURM_CPUS_PER_TASK", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    opts = WorkerOptions(db_url="sqlite://")
    assert resolve_threads(opts) is None  # torch's default outside Slurm
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    assert resolve_threads(opts) == 1  # Slurm allocated one CPU when the task did not ask for more
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert resolve_threads(opts) == 6
    monkeypatch.setenv("REPRO_THREADS", "3")
    assert resolve_threads(opts) == 3
    assert resolve_threads(WorkerOptions(db_url="sqlite://", threads=2)) == 2


def _seed_job(db: Database, job_id: str = "j1") -> None:
    db.add_jobs([{"id": job_id, "config_key": "k", "kind": "profile", "model": "m", "budget": "static",
                  "seed": None, "spec": {}}])


def test_lease_takeover_across_two_host_names(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/r.db"
    _seed_job(Database(url))
    monkeypatch.setenv("REPRO_HOSTNAME", "node-a")
    a = Worker(WorkerOptions(db_url=url, device="cpu", lease_seconds=60))
    assert a.owner.startswith("node-a:") and a.try_claim("j1")
    monkeypatch.setenv("REPRO_HOSTNAME", "node-b")
    b = Worker(WorkerOptions(db_url=url, device="cpu", lease_seconds=60))
    # node-a's owner is alive as far as node-b can tell (another host: no pid check), lease fresh
    assert not b.try_claim("j1")
    with sqlite3.connect(tmp_path / "r.db") as con:  # node-a stops beating: 59 s, then 61 s ago
        con.execute("update jobs set heartbeat_at = ?", (utcnow() - dt.timedelta(seconds=59),))
    assert not b.try_claim("j1")
    with sqlite3.connect(tmp_path / "r.db") as con:
        con.execute("update jobs set heartbeat_at = ?", (utcnow() - dt.timedelta(seconds=61),))
    assert b.try_claim("j1")
    assert a.db.get_job("j1").owner == b.owner
    # the default lease (180 s) would not have let it go yet
    c = Worker(WorkerOptions(db_url=url, device="cpu"))
    with sqlite3.connect(tmp_path / "r.db") as con:
        con.execute("update jobs set heartbeat_at = ?", (utcnow() - dt.timedelta(seconds=120),))
    assert not c.try_claim("j1")


def test_dead_owner_on_this_host_is_taken_over_at_once(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/r.db"
    db = Database(url)
    _seed_job(db)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    monkeypatch.setenv("REPRO_HOSTNAME", "node-c")
    assert db.claim("j1", f"node-c:{dead.pid}:deadbeef", utcnow())
    assert Worker(WorkerOptions(db_url=url, device="cpu")).try_claim("j1")


def test_an_error_after_losing_the_lease_is_a_lost_lease_not_a_failure(tmp_path, monkeypatch):
    """A worker stopped long enough to be taken over resumes mid-job; the new owner has meanwhile cleaned
    the job's checkpoint directory, so its next file operation fails. That attempt ends as lost-lease and
    the job stays the new owner's; an error while the lease is still held stays a failure."""
    from repro import worker as wk

    url = f"sqlite:///{tmp_path}/r.db"
    db = Database(url)
    _seed_job(db, "j1")
    _seed_job(db, "j2")
    a = Worker(WorkerOptions(db_url=url, device="cpu", lease_seconds=60, checkpoint_dir=str(tmp_path / "ck")))

    def taken_over_then_fails(spec):
        with sqlite3.connect(tmp_path / "r.db") as con:
            con.execute("update jobs set owner = 'node-z:1:cafe' where id = 'j1'")
        raise FileNotFoundError("the checkpoint's temporary file is gone")

    monkeypatch.setattr(wk, "run_profile", taken_over_then_fails)
    report = a.loop(["j1"], wait_for_others=False)
    assert report.lost == ["j1"] and "j1" not in report.failed
    job = db.get_job("j1")
    assert job.owner == "node-z:1:cafe" and job.state == "running"
    with sqlite3.connect(tmp_path / "r.db") as con:
        (status, error), = con.execute("select status, error from runs where job_id = 'j1'").fetchall()
    assert status == "lost-lease" and "after losing the lease" in error and "FileNotFoundError" in error

    monkeypatch.setattr(wk, "run_profile", lambda spec: 1 / 0)
    report = a.loop(["j2"], wait_for_others=False)
    assert "ZeroDivisionError" in report.failed["j2"].error and db.get_job("j2").state == "failed"


def test_lease_option_is_checked(tmp_path, toy_specs, cli):
    out = cli("run", "toy/table1", "--kind", "profile", "--lease-seconds", "5", "--specs-dir", str(toy_specs),
              "--db", f"sqlite:///{tmp_path}/r.db")
    assert out.returncode == 2 and out.stderr.strip() == \
        "error: --lease-seconds must be at least 60 (3 heartbeats), got 5"


def test_exists_never_creates(tmp_path):
    path = tmp_path / "r.db"
    assert not exists(f"sqlite:///{path}") and not path.exists()
    path.touch()  # a file without the schema is no database of ours
    assert not exists(f"sqlite:///{path}")
    Database(f"sqlite:///{path}")
    assert exists(f"sqlite:///{path}")
    assert not exists("sqlite://")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_failures_are_one_line(cli):
    port = _free_port()  # nothing listens there
    out = cli("status", "--db", f"postgresql+psycopg://u:secret@127.0.0.1:{port}/x")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot connect to postgresql at 127.0.0.1:{port}/x")
    assert "refused" in lines[0] and "secret" not in lines[0]
    with pytest.raises(DatabaseError, match=r"no module 'pg8000'.*pip install pg8000"):
        Database("postgresql+pg8000://u@127.0.0.1/x")
    with pytest.raises(DatabaseError, match="is not a URL"):
        Database("not a url")


def test_six_concurrent_openers_of_an_empty_sqlite_database(tmp_path):
    url = f"sqlite:///{tmp_path}/new.db"
    assert open_concurrently(url) == [0] * 6
    assert exists(url)


def test_eta_from_this_attempts_pace():
    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    now = start + dt.timedelta(minutes=10)
    assert eta_seconds(start, now, 5, None, 20) == pytest.approx(1800)  # 2 min/epoch, 15 left
    assert eta_seconds(start, now, 12, 10, 20) == pytest.approx(2400)  # resumed at 10: 5 min/epoch
    assert eta_seconds(start, now, 10, 10, 20) is None  # no epoch done in this attempt yet
    rows = running_jobs([{"job": "j", "kind": "train", "model": "m",
                          "spec": {"recipe": {"name": "r", "dataset": "cifar10", "epochs": 20,
                                                                         "batch_size": 8, "lr": 0.1,
                                                                         "weight_decay": 0}},
                          "owner": "h:1:x", "progress": Progress(5, 20, "epoch"), "heartbeat_at": now,
                          "host": "gpu3", "pid": 7, "started_at": start, "resumed_from_epoch": None}], now=now)
    assert rows[0].progress == Progress(5, 20, "epoch") and str(rows[0].progress) == "epoch 5 of 20"
    assert rows[0].eta_s == pytest.approx(1800) and rows[0].host == "gpu3"


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.long
def test_one_killed_worker_does_not_hang_the_pool(tmp_path, fake_cifar100):
    """Issue 7.1. About a minute on a shared 2-core CPU: two real training jobs, one worker killed."""
    specs = write_toy(tmp_path / "specs", table=TINY_TRAIN)
    db = tmp_path / "r.db"
    args = [sys.executable, "-m", "repro.cli", "run", "toy/table1", "--budget", "epochs-3", "--seeds", "2",
            "--workers", "2", "--specs-dir", str(specs), "--db", f"sqlite:///{db}", "--data-dir",
            str(fake_cifar100), "--checkpoint-dir", str(tmp_path / "ckpt")]
    proc = subprocess.Popen(args, env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.time() + 240
    while victim is None and time.time() < deadline:
        time.sleep(0.3)
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    rows = con.execute("select pid from runs where status = 'running'").fetchall()
            except sqlite3.OperationalError:  # schema still being created
                rows = []
            victim = rows[0][0] if rows else None
    assert victim is not None, "no worker started a job"
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)  # before the fix this waited forever
    assert proc.returncode == 0, err
    assert f"pid {victim}) killed by SIGKILL" in err
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from jobs where state = 'done'").fetchone() == (2,)
        assert con.execute("select count(*) from runs where status = 'done'").fetchone() == (2,)
        assert con.execute("select count(*) from curve_points").fetchone() == (6,)
    assert "ran 2 jobs here; 0 finished by other workers; 0 failed, 0 diverged" in out


def test_waiting_for_other_workers_looks_again_soon_then_at_the_poll_pace():
    from itertools import islice

    from repro.worker import backoff

    assert list(islice(backoff(2.0), 7)) == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert list(islice(backoff(1.0, start=1.0), 3)) == [1.0, 1.0, 1.0]  # Slurm: squeue at a steady pace
    assert list(islice(backoff(0.05), 2)) == [0.05, 0.05]  # never longer than the pace asked for
