"""Shared fixtures: a toy paper spec, a tiny fake CIFAR-100, and a CLI runner; how pytest -n shares out the tests.

Tests never touch the repo's results.db: every database is a temporary SQLite file. Every test is isolated for
pytest-xdist: databases, data, checkpoints and caches live under its own tmp_path (each worker has its own
base temp), servers listen on ports the kernel picks, and tests/integration runs on a single worker.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"

TOY_PAPER = """\
paper: toy
title: "A toy paper"
authors: "Nobody"
source: none.txt
counter_profile: thop-2001
recipes:
  tiny:
    dataset: cifar100
    epochs: 4
    batch_size: 64
    lr: 0.05
    weight_decay: 5.0e-4
    milestones: [2, 3]
    gamma: 0.2
    warmup_epochs: 1
    augment: [random_crop_pad4, hflip, normalize]
"""

# A training table small enough to train a few epochs in seconds (a depth-8 CIFAR ResNet)
TINY_TRAIN = """\
table: table1
title: "Tiny training table"
columns:
  - {label: Error, metric: top1_err}
defaults:
  recipe: tiny
rows:
  - {label: ResNet-8, model: resnet_cifar, model_kwargs: {depth: 8}, values: {Error: "30.0"}}
"""

TOY_TABLE = """\
table: table1
title: "Table 1"
columns:
  - {label: Params, metric: params}
  - {label: FLOPs, metric: macs}
  - {label: Error, metric: top1_err, also: [top5_err]}
defaults:
  recipe: tiny
rows:
  - {label: ResNet-56, model: resnet56_cifar, values: {Params: "858.87K", FLOPs: "126.57M", Error: "27.25"}}
  - {label: CRA-ResNet-56, model: cra_resnet56_cifar, values: {Params: "924.39K", FLOPs: "126.63M", Error: "26.36"}}
"""


def write_toy(root: Path, paper: str = "toy", table: str = TOY_TABLE, meta: str = TOY_PAPER) -> Path:
    d = root / paper
    d.mkdir(parents=True, exist_ok=True)
    (d / "paper.yaml").write_text(meta.replace("paper: toy", f"paper: {paper}"))
    (d / "table1.yaml").write_text(textwrap.dedent(table))
    return root


@pytest.fixture
def toy_specs(tmp_path: Path) -> Path:
    return write_toy(tmp_path / "specs")


@pytest.fixture(scope="session")
def fake_cifar100(tmp_path_factory) -> Path:
    from repro.data.fakes import fake_cifar

    root = tmp_path_factory.mktemp("data")
    fake_cifar(root, 100, train=300, test=100)
    return root


def repro(*args: str, env: dict | None = None, check: bool = False, timeout: int = 600,
          cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, started as the installed `repro` command starts it (exit codes and
    stderr as a user sees them)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1",
                **(env or {})}
    if not env or "REPRO_DB" not in env:
        full_env.pop("REPRO_DB", None)
    proc = subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"repro {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def open_concurrently(url: str, n: int = 6) -> list[int | None]:
    """``n`` spawned processes that each open ``url`` at once (creating or upgrading its schema); their exit
    codes. The target is the class itself: the children import repro.db alone, not the test module (torch)."""
    import multiprocessing as mp

    from repro.db import Database

    procs = [mp.get_context("spawn").Process(target=Database, args=(url,)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return [p.exitcode for p in procs]


@pytest.fixture
def cli():
    return repro


# Work units under pytest -n that run whole on one worker; every other test is a unit of its own.
ONE_WORKER = (
    "tests/integration/",  # its fixtures start one PostgreSQL server and one Slurm cluster per worker that runs it
    "tests/test_html.py",  # its module fixture measures se-r's Tables 1-2 through the CLI (~25 CPU-s) per worker
    # module fixtures that cost seconds on every worker that runs one of the module's tests: an uninterrupted
    # training run (test_faults), exact counts of ten CIFAR networks (test_models_cmpe_se), a warm model-facts
    # cache (test_spec_faults), a profiled toy database (test_cli)
    "tests/test_faults.py",
    "tests/test_models_cmpe_se.py",
    "tests/test_spec_faults.py",
    "tests/test_cli.py",
)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long`` first (a stable sort, so the rest keep their order): under -n each is a work unit
    of its own, and one that starts last keeps one worker busy after the others have finished."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under ``pytest -n`` (xdist's default --dist load, or loadgroup): each ONE_WORKER folder or module is one
    work unit, every other test is a unit of its own. tests/integration on one worker means one PostgreSQL
    server and one Slurm cluster per run, not per worker (two one-node clusters would each offer the same cores
    to their tasks). The largest units start first.

    xdist's own loadgroup groups by an ``xdist_group`` mark that it appends to node ids, which pytest 9.2 no
    longer lets it do: the mark is silently ignored (pytest-xdist issue 1386). Grouping by path here
    needs neither; an explicit other --dist (loadfile, loadscope, worksteal, each) is left to xdist."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadGroupScheduling

    class OneWorkerUnits(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            unit = next((prefix for prefix in ONE_WORKER if nodeid.startswith(prefix)), None)
            return unit or super()._split_scope(nodeid)

    return OneWorkerUnits(config, log)
