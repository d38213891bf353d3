"""Against a real single-node Slurm cluster and PostgreSQL (issue 9, items 4-6 and 10): submission
with GPUs following the plan, detach and status, scancel of a task mid-training, and a time-limit
warning (USR2) mid-training that requeues the task and resumes with identical numbers."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from .helpers import CURVE, env, rows, run_args, specs, start, wait_for


# A running attempt whose first epoch checkpoint is recorded (written after the epoch's curve point: a signal
# between the two would stop the attempt before it has an epoch to resume from, a legitimate resume from
# scratch that these tests do not mean to provoke)
AFTER_A_CHECKPOINT = ("select r.pid from runs r join checkpoints k on k.run_id = r.id "
                      "where r.status = 'running' limit 1")


def _slurm_args(targets, tmp_path, url, data, *extra):
    return run_args(targets, specs(tmp_path / "specs"), url, data, tmp_path / "ckpt", "--executor", "slurm",
                    "--device", "cpu", "--slurm-cpus", "1", "--log-dir", str(tmp_path / "logs"), *extra)


def _task_of(pid: int) -> str:
    """The Slurm job id of a worker process (root reads any process environment)."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"SLURM_JOB_ID="))


def test_two_tasks_detached_then_status(slurm, postgres, tmp_path, fake_cifar100):
    url = postgres()
    out = subprocess.run(_slurm_args(["stat/table1", "toy/table1"], tmp_path, url, fake_cifar100, "--workers", "2",
                                     "--seeds", "2", "--budget", "epochs-4", "--detach"),
                         env=env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # detached: it returned while the training jobs were still to run, and never followed the campaign
    assert rows(url, "select count(*) from jobs where kind = 'train' and state = 'done'") == [(0,)]
    assert "submitted 2 slurm task(s)" in out.stdout and "detached" in out.stdout
    assert not re.search(r"ran \d+ job\(s\)", out.stdout), out.stdout  # the summary of a followed campaign
    wait_for(url, "select job_id from curve_points")  # a training job is under way
    status = subprocess.run([sys.executable, "-m", "repro.cli", "status", "--db", url], env=env(), cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    if "running" in status.stdout.splitlines()[0]:  # still training when status looked
        running = status.stdout.split("running", 2)[2]  # the running table, after the counts line
        assert re.search(r"epoch [1-4] of 4", running), status.stdout
        assert socket.gethostname() in running and re.search(r"\d+:\d\d:\d\d", running)
    wait_for(url, "select 1 from (select count(*) n from jobs where state = 'done') d where n = 4", timeout=400)
    assert rows(url, "select count(*), count(distinct job_id) from runs where status = 'done'") == [(4, 4)]
    assert rows(url, "select count(*) from runs") == [(4,)]
    # both tasks worked (static jobs first, then one training job each is the usual split; at least 2 pids)
    assert rows(url, "select count(distinct pid) from runs")[0][0] == 2


def test_scancel_of_a_task_mid_training(slurm, postgres, tmp_path, fake_cifar100):
    url = postgres()
    driver = start(_slurm_args(["toy/table1"], tmp_path, url, fake_cifar100, "--workers", "2", "--seeds", "2",
                               "--budget", "epochs-4"))
    (pid,) = wait_for(url, AFTER_A_CHECKPOINT)[0]
    task = _task_of(pid)
    subprocess.run(["scancel", task], check=True)
    out, err = driver.communicate(timeout=400)
    assert driver.returncode == 0, err
    assert f"Slurm task {task} cancelled" in out + err
    assert "ran 2 jobs here; 0 finished by other workers; 0 failed, 0 diverged" in out
    assert rows(url, "select count(*) from jobs where state = 'done'") == [(2,)]
    assert rows(url, "select count(*), count(distinct job_id) from runs where status = 'done'") == [(2, 2)]
    # the cancelled attempt stopped at once on SIGTERM (Preempted, its own record of why), not at the SIGKILL
    # after KillWait: a killed worker writes nothing, and its attempt is closed later without an error
    ((status, error),) = rows(url, "select status, error from runs where pid = :pid", pid=pid)
    assert status == "interrupted" and "Preempted: stopped by SIGTERM" in error, (status, error)
    assert rows(url, "select count(*) from runs where resumed_from_epoch >= 1") == [(1,)]


def test_time_limit_warning_requeues_and_resumes_identically(slurm, postgres, tmp_path, fake_cifar100):
    url = postgres()
    args = _slurm_args(["toy/table1"], tmp_path, url, fake_cifar100, "--workers", "1", "--budget", "epochs-4")
    driver = start(args)
    (pid,) = wait_for(url, AFTER_A_CHECKPOINT)[0]
    task = _task_of(pid)
    # what Slurm sends --signal seconds before the time limit (and on preemption): USR2 to the task
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    out, err = driver.communicate(timeout=400)
    assert driver.returncode == 0, err
    assert "ran 1 job here; 0 finished by other workers; 0 failed, 0 diverged" in out
    shown = subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True).stdout
    assert "Restarts=1" in shown, shown  # the same task was requeued, not a new submission
    assert rows(url, "select status from runs order by id") == [("interrupted",), ("done",)]
    assert rows(url, "select count(*) from runs where resumed_from_epoch >= 1") == [(1,)]
    # an uninterrupted local run of the same job (same thread count) gives identical numbers
    clean = f"sqlite:///{tmp_path}/clean.db"
    ref = subprocess.run(run_args(["toy/table1"], tmp_path / "specs", clean, fake_cifar100, tmp_path / "ckpt2",
                                  "--budget", "epochs-4"), env=env(), cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr
    assert rows(url, CURVE) == rows(clean, CURVE) and len(rows(url, CURVE)) == 4
    q = "select name, value from metrics where name not like '%seconds%' order by name"  # wall time differs
    assert rows(url, q) == rows(clean, q)


def test_the_fixture_reaps_an_orphan_of_its_cluster(tmp_path):
    """Issue 25.5: a process the cluster left (a slurmstepd whose step was killed, daemonized: its parent is
    init, not slurmd) is found by the configuration in its environment and stopped; another cluster's is not."""
    import os

    from .conftest import cluster_processes, reap

    ours, theirs = tmp_path / "ours" / "slurm.conf", tmp_path / "theirs" / "slurm.conf"

    def orphan(conf: Path) -> int:  # sh starts sleep in the background and exits: sleep is an orphan
        out = subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                             env={**os.environ, "SLURM_CONF": str(conf)}, check=True)
        return int(out.stdout)

    mine, other = orphan(ours), orphan(theirs)
    try:
        assert cluster_processes(ours) == [mine]
        assert reap(ours, grace=2.0) == [mine]  # it returns once none is left
        assert cluster_processes(ours) == [] and cluster_processes(theirs) == [other]
    finally:
        reap(theirs, grace=0.5)
