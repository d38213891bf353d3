"""Private servers for the integration tests: a PostgreSQL cluster from the installed server binaries and
a single-node Slurm cluster (munged, slurmctld, slurmd), each bound to 127.0.0.1 on free ports, living in a
temporary folder and stopped once this folder's tests are done (package scope, not the session's end: under
pytest -n their worker goes on with other tests afterwards, and the ~10 s shutdown overlaps the other
worker's). Skipped, with the reason, where a binary is missing (Debian: apt-get install postgresql slurmctld
slurmd slurm-client munge; `.ci/run` does it in CI). Under pytest -n this folder runs on one worker
(tests/conftest.py's scheduler): one server of each per run."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


# --- PostgreSQL ------------------------------------------------------------------------------

def _pg_bin() -> Path | None:
    found = (sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
             or ([shutil.which("pg_ctl")] if shutil.which("pg_ctl") else []))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="package")
def postgres():
    """A running server; yields a function returning the URL of a new, empty database."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
    pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install -e '.[postgres]'")
    # initdb refuses to run as root: run the server as the postgres user, in a folder it owns
    user = "postgres" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
    as_user = ["runuser", "-u", user, "--"] if IS_ROOT else []
    root = Path(tempfile.mkdtemp(prefix="repro-pg-"))
    if IS_ROOT:
        shutil.chown(root, user)
    data, port = root / "data", free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "repro", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                    "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=200 -c fsync=off",
                    "start"], check=True, capture_output=True)
    import psycopg

    admin = f"host=127.0.0.1 port={port} user=repro dbname=postgres"
    counter = iter(range(10_000))

    def new_database() -> str:
        name = f"repro_{next(counter)}"
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://repro@127.0.0.1:{port}/{name}"

    new_database.port = port
    try:
        yield new_database
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# --- Slurm -----------------------------------------------------------------------------------

SLURM_CONF = """\
ClusterName=repro-test
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# the main scheduling loop every 2 s (default 60): a requeued task becomes eligible after cred_expire + 1 s and
# starts at the next pass of the loop, not a minute later
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def cluster_processes(conf: Path) -> list[int]:
    """The processes this cluster started and left: every process but this one whose environment names its
    configuration (``SLURM_CONF``), as slurmd's, the slurmstepd it forks (daemonized: its parent is then
    init, not slurmd) and the tasks it starts inherit it."""
    marker = f"SLURM_CONF={conf}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def reap(conf: Path, grace: float = 5.0) -> list[int]:
    """Stop what is left of the cluster of ``conf`` (an orphaned slurmstepd after a killed step, its task):
    SIGTERM, then SIGKILL after ``grace`` seconds; returns the pids it found. Raises when one survives."""
    import signal

    found = cluster_processes(conf)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        left = cluster_processes(conf)
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while left and time.time() < deadline:
            time.sleep(0.1)
            left = cluster_processes(conf)
        if not left:
            return found
    raise RuntimeError(f"processes of the test Slurm cluster survived SIGKILL: {left}")


@pytest.fixture(scope="package")
def slurm():
    """A running single-node cluster; sets SLURM_CONF so that sbatch/squeue/scancel (and the CLI's
    subprocesses) talk to it. Yields the folder holding its configuration and logs."""
    binaries = {b: shutil.which(b) for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel",
                                             "scontrol")}
    missing = [b for b, p in binaries.items() if p is None]
    if missing:
        pytest.skip(f"Slurm/munge binaries missing ({', '.join(missing)}): "
                    f"apt-get install slurmctld slurmd slurm-client munge")
    if not IS_ROOT:
        pytest.skip("the private Slurm cluster needs root (slurmd starts tasks as their user)")
    root = Path(tempfile.mkdtemp(prefix="repro-slurm-"))
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir()
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    os.chmod(root / "munge", 0o700)
    sock = root / "munge" / "munge.socket"
    procs = []
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    try:
        subprocess.run([binaries["munged"], "--force", f"--socket={sock}", f"--key-file={key}",
                        f"--pid-file={root / 'munge' / 'munged.pid'}", f"--log-file={root / 'munge' / 'munged.log'}",
                        f"--seed-file={root / 'munge' / 'seed'}"], check=True, capture_output=True)
        cpus = max(2, os.cpu_count() or 2)
        (root / "slurm.conf").write_text(SLURM_CONF.format(
            ctld_port=free_port(), slurmd_port=free_port(), user="root", munge_socket=sock, root=root, cpus=cpus))
        procs.append(subprocess.Popen([binaries["slurmctld"], "-D", "-i", "-f", str(root / "slurm.conf")], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(root / "slurmctld.err", "w")))
        procs.append(subprocess.Popen([binaries["slurmd"], "-D", "-N", "localhost", "-f", str(root / "slurm.conf")],
                                      env=env, stdout=subprocess.DEVNULL, stderr=open(root / "slurmd.err", "w")))

        def node_idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return out.returncode == 0 and out.stdout.strip().startswith("idle")

        try:
            _wait(node_idle, 60, "the Slurm node")
        except RuntimeError as e:
            logs = "\n".join((root / f).read_text()[-1500:] for f in ("slurmctld.log", "slurmd.log", "slurmctld.err",
                                                                        "slurmd.err") if (root / f).exists())
            pytest.skip(f"{e}; logs:\n{logs}")
        old = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = env["SLURM_CONF"]
        try:
            yield root
        finally:
            subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True)
            if old is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = old
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        reap(root / "slurm.conf")  # what slurmd forked outlives it: a slurmstepd of a killed step, say
        pid = root / "munge" / "munged.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(root, ignore_errors=True)
