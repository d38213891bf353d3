"""Malformed and hostile specs (issue 7, item 7): each one is a single line
``error: <file>: <field>: <message>`` on stderr, exit code 2, no database file, answered fast and small.

Every case goes through the real CLI twice, ``repro run toy/table1 --dry-run`` and ``repro specs check``.
Peak memory is bounded in every run, read from the child's own rusage. Bounds on CPU time (and the wall-time
guard against hangs) measure the machine as much as the code, so they are opt-in tests marked ``timing``
(``pytest -m timing``), which go through the same commands.

Model-option cases build the model on the meta device, which imports torch once (several CPU-seconds
on a cold cache); their second command is answered from the model-facts cache and bounded like the rest.
Cost, 2-core CPU: ~75 CLI subprocesses of ~0.6 CPU-s, plus ~8 CPU-s for each of the 6 cold model
builds (torch and torchvision imports): ~100 CPU-s in all, the price of testing through the real CLI.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, TOY_PAPER, TOY_TABLE, write_toy

CPU_LIMIT_S = 3.0  # per command, torch never imported
COLD_CPU_LIMIT_S = 60.0  # a model built on the meta device for the first time (imports torch, torchvision)
WALL_GUARD_S = 60.0  # a hang, not a slow machine
RSS_LIMIT_KB = 300_000  # torch-free CLI is ~60 MB; an alias bomb used to pass 3 GB


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    cpu: float
    wall: float
    maxrss_kb: int


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One model-facts cache for this module, warmed with the valid toy's models."""
    d = tmp_path_factory.mktemp("model-facts")
    warm = run_cli(d, "specs", "check", "--specs-dir", str(write_toy(tmp_path_factory.mktemp("specs"))))
    assert warm.rc == 0, warm.stderr
    return d


# Run the CLI from a small launcher that reports its child's rusage: a child forked straight from
# pytest would count pytest's own RSS (torch, once another test imported it) as its peak.
LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": proc.returncode, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}, f)
"""


def run_cli(cache: Path, *args: str) -> Result:
    """The real CLI in a subprocess, with its own CPU time and peak RSS."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1",
           "REPRO_CACHE_DIR": str(cache)}
    env.pop("REPRO_DB", None)
    with tempfile.TemporaryDirectory() as d:
        usage_file = Path(d) / "usage.json"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(usage_file), sys.executable, "-m", "repro.cli",
                               *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
        wall = time.monotonic() - t0
        usage = json.loads(usage_file.read_text())
    return Result(usage["rc"], proc.stdout, proc.stderr, usage["cpu"], wall, usage["maxrss_kb"])


def _row0(extra: str, model: str = "resnet56_cifar") -> str:
    """The toy table with its first row's model replaced (and options added)."""
    return TOY_TABLE.replace("model: resnet56_cifar,", f"model: {model}, {extra}")


def _sweep(set_path: str, model: str, n: int = 1) -> str:
    points = "\n".join(f'    - {{label: "p{i}", value: {i + 1}, published: "27.{i % 100:02d}"}}' for i in range(n))
    return f"""\
table: table1
title: "Sweep"
columns:
  - {{label: Error, metric: top1_err}}
defaults: {{recipe: tiny, model: {model}}}
sweep:
  label: "Swept"
  column: Error
  set: {set_path}
  points:
{points}
"""


def _recipe(old: str, new: str) -> str:
    assert old in TOY_PAPER
    return TOY_PAPER.replace(old, new)


# name: (file holding the fault, its text: table1.yaml or paper.yaml, or bytes), the substrings the
# one error line must hold (the file, the field, the message), and whether a model gets built cold
TABLE, PAPER = "table1.yaml", "paper.yaml"
ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
CASES = {
    "duplicate-key-top": (TABLE, TOY_TABLE + 'title: "Table 1 again"\n', ["title: duplicate key (lines 2 and"]),
    "duplicate-key-in-row": (TABLE, _row0("model: resnet110_cifar,"), ["rows[0].model: duplicate key"]),
    "epochs-1e24": (PAPER, _recipe("epochs: 4", "epochs: 1e24"),
                    ["recipes.tiny.epochs: 1e+24 is out of range: allowed [0, 10000]"]),
    "epochs-too-many": (PAPER, _recipe("epochs: 4", "epochs: 20000"), ["recipes.tiny.epochs: 20000 is out of range"]),
    "lr-inf": (PAPER, _recipe("lr: 0.05", "lr: .inf"), ["recipes.tiny.lr: inf is out of range: allowed (0, 1e+06]"]),
    "lr-nan": (PAPER, _recipe("lr: 0.05", "lr: .nan"), ["recipes.tiny.lr: nan is out of range"]),
    "lr-negative": (PAPER, _recipe("lr: 0.05", "lr: -0.1"), ["recipes.tiny.lr: -0.1 is out of range"]),
    "batch-negative": (PAPER, _recipe("batch_size: 64", "batch_size: -64"),
                       ["recipes.tiny.batch_size: -64 is out of range: allowed [1, 65536]"]),
    "batch-zero": (PAPER, _recipe("batch_size: 64", "batch_size: 0"), ["recipes.tiny.batch_size: 0 is out of range"]),
    "weight-decay-negative": (PAPER, _recipe("weight_decay: 5.0e-4", "weight_decay: -1"),
                              ["recipes.tiny.weight_decay: -1 is out of range: allowed [0, 1]"]),
    "momentum-2": (PAPER, _recipe("epochs: 4", "epochs: 4\n    momentum: 2"),
                   ["recipes.tiny.momentum: 2 is out of range: allowed [0, 1]"]),
    "gamma-0": (PAPER, _recipe("gamma: 0.2", "gamma: 0"), ["recipes.tiny.gamma: 0 is out of range: allowed (0, 1]"]),
    "milestones-not-increasing": (PAPER, _recipe("milestones: [2, 3]", "milestones: [3, 2]"),
                                  ["recipes.tiny.milestones: [3, 2] must be strictly increasing"]),
    "milestones-past-schedule": (PAPER, _recipe("milestones: [2, 3]", "milestones: [2, 9]"),
                                 ["recipes.tiny.milestones: [2, 9] must lie within the schedule: allowed [1, 4]"]),
    "warmup-past-epochs": (PAPER, _recipe("warmup_epochs: 1", "warmup_epochs: 5"),
                           ["recipes.tiny.warmup_epochs: 5 is out of range: allowed [0, 4]"]),
    "mixup-alpha-negative": (PAPER, _recipe("epochs: 4", "epochs: 4\n    mixup_alpha: -0.5"),
                             ["recipes.tiny.mixup_alpha: -0.5 is out of range"]),
    "iterations-zero": (PAPER, _recipe("epochs: 4", "iterations: 0"),
                        ["recipes.tiny.iterations: 0 is out of range: allowed [1, 1e+07]"]),
    "unknown-augmentation": (PAPER, _recipe("[random_crop_pad4, hflip, normalize]", "[random_crop_pad4, cutout]"),
                             ["recipes.tiny.augment: unknown augmentation 'cutout'; known: random_crop_pad4"]),
    # issue 17's vocabulary: a value the chosen optimizer or schedule would ignore, a library range, min_lr > lr
    "momentum-for-adamw": (PAPER, _recipe("lr: 0.05", "lr: 0.05\n    optimizer: adamw\n    momentum: 0.8"),
                           ["recipes.tiny.momentum: does not belong to optimizer adamw"]),
    "milestones-for-cosine": (PAPER, _recipe("gamma: 0.2", "gamma: 0.2\n    schedule: cosine"),
                              ["recipes.tiny.gamma: does not belong to schedule cosine"]),
    "min-lr-above-lr": (PAPER, _recipe("milestones: [2, 3]\n    gamma: 0.2", "schedule: cosine\n    min_lr: 0.5"),
                        ["recipes.tiny.min_lr: 0.5 is above lr 0.05"]),
    "randaugment-magnitude": (PAPER, _recipe("[random_crop_pad4, hflip, normalize]",
                                             "[{randaugment: {num_ops: 2, magnitude: 31}}, normalize]"),
                              ["recipes.tiny.augment: randaugment.magnitude: 31 is out of range: allowed [0, 30]"]),
    "depth-not-6n+2": (TABLE, _row0("model_kwargs: {depth: 9},", model="resnet_cifar"),
                       ["'ResNet-56' / 'Params': model_kwargs: model 'resnet_cifar' rejects its options: "
                        "CIFAR ResNet depth must be 6n+2"], True),
    "reduction-negative": (TABLE, _row0("model_kwargs: {reduction: -4},", model="se_resnet56_cifar"),
                           ["model_kwargs: model 'se_resnet56_cifar' rejects its options"], True),
    "string-for-int": (TABLE, _row0("model_kwargs: {depth: fifty},", model="resnet_cifar"),
                       ["model_kwargs: model 'resnet_cifar' rejects its options"], True),
    "option-swallowed-by-kwargs": (TABLE, _row0("model_kwargs: {colour: 3},", model="resnet_cifar"),
                                   ["model_kwargs: model 'resnet_cifar' has no option 'colour'"], True),
    "sweep-set-unknown-option": (TABLE, _sweep("model_kwargs.colour", "resnet_cifar"),
                                 ["'p0' / 'Error': model_kwargs: model 'resnet_cifar' has no option 'colour'"], True),
    "sweep-set-unknown-train-option": (TABLE, _sweep("train.colour", "resnet56_cifar"),
                                       ["'p0' / 'Error': train: unknown option(s) ['colour']"]),
    "non-utf8": (TABLE, TOY_TABLE.encode().replace(b"Table 1", b"Table \xff\xfe1"),
                 ["line 2: not UTF-8 text (byte 0xff"]),
    "deep-list": (TABLE, "table: " + "[" * 20_000 + "]" * 20_000 + "\n", ["YAML syntax error"]),
    "deep-mapping": (TABLE, "table: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n", ["YAML syntax error"]),
    "deep-block-mapping": (TABLE, "".join("  " * i + "a:\n" for i in range(60)), ["nested deeper than 50 levels"]),
    "alias-bomb": (TABLE, ALIAS_BOMB, ["YAML nodes once aliases are expanded"]),
    "recursive-alias": (TABLE, "table: &r [*r]\n", ["nested deeper than 50 levels"]),
    "50-MB-file": (TABLE, lambda: TOY_TABLE + "#" + "x" * 50_000_000 + "\n", ["(file): 50,000,", "at most 1,000,000"]),
    "sweep-of-10^6-points": (TABLE, lambda: _sweep("model_kwargs.reduction", "se_resnet56_cifar", n=1_000_000),
                             ["(file):", "at most 1,000,000"]),
    "sweep-over-the-row-cap": (TABLE, _sweep("model_kwargs.reduction", "se_resnet56_cifar", n=2_000),
                               ["sweep.points: List should have at most 1000 items"]),
}


def _write(root: Path, where: str, text) -> Path:
    specs = write_toy(root)
    path = specs / "toy" / where
    text = text() if callable(text) else text  # the 50 MB ones are built only for their own test
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def answer(case: str, root: Path, cache: Path) -> tuple[Path, Path, list[Result]]:
    """The spec file holding the case's fault, the database path, and both commands' answers."""
    where, text, *_ = CASES[case]
    path = _write(root / "specs", where, text)
    db = root / "r.db"
    return path, db, [run_cli(cache, "run", "toy/table1", "--dry-run", "--specs-dir", str(root / "specs"),
                              "--db", f"sqlite:///{db}"),
                      run_cli(cache, "specs", "check", "--specs-dir", str(root / "specs"))]


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_spec_is_one_line_exit_2_nothing_written(case, tmp_path, cache_dir):
    _, _, expected, *cold = CASES[case]
    path, db, results = answer(case, tmp_path, cache_dir)
    for r in results:
        lines = r.stderr.splitlines()
        assert r.rc == 2, (r.rc, r.stdout[-500:], r.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), r.stderr[-2000:]
        assert all(e in lines[0] for e in expected), lines[0]
        assert len(lines[0]) < 400, lines[0]  # one readable line, not a dump of the input
        if not cold:
            assert r.maxrss_kb < RSS_LIMIT_KB, f"{r.maxrss_kb} KB"
    assert results[0].stderr == results[1].stderr
    assert not db.exists()


@pytest.mark.timing
@pytest.mark.parametrize("case", list(CASES))
def test_malformed_spec_is_answered_within_cpu_bounds(case, tmp_path, cache_dir):
    _, _, _, *cold = CASES[case]
    _, _, results = answer(case, tmp_path, cache_dir)
    for i, r in enumerate(results):
        assert r.rc == 2, r.stderr[-2000:]
        assert r.wall < WALL_GUARD_S
        limit = COLD_CPU_LIMIT_S if (cold and i == 0) else CPU_LIMIT_S  # the 2nd answers from the cache
        assert r.cpu < limit, f"{r.cpu:.2f} CPU-s"


def _plan_args(tmp_path: Path) -> tuple[Path, Path, tuple[str, ...]]:
    specs = write_toy(tmp_path / "specs")
    db = tmp_path / "r.db"
    return specs, db, ("run", "toy/table1", "--dry-run", "--format", "json", "--specs-dir", str(specs),
                       "--db", f"sqlite:///{db}")


def test_plan_over_the_job_cap_is_one_line_and_max_jobs_raises_it(tmp_path, cache_dir):
    specs, db, base = _plan_args(tmp_path)
    huge = run_cli(cache_dir, *base, "--seeds", "1000000000")  # 2 trained cells x 10^9 seeds
    assert huge.rc == 2 and huge.maxrss_kb < RSS_LIMIT_KB, (huge.stderr, huge.maxrss_kb)
    assert huge.stderr.splitlines() == [
        f"error: {specs / 'toy' / 'table1.yaml'}: (plan): more than 5,000 jobs planned by this invocation "
        "(1000000000 seed(s) per cell); --max-jobs N raises the cap"]
    capped = run_cli(cache_dir, *base, "--max-jobs", "3")  # the toy plans 2 profile + 2 train jobs
    assert capped.rc == 2 and "more than 3 jobs" in capped.stderr
    ok = run_cli(cache_dir, *base, "--max-jobs", "4")
    assert ok.rc == 0, ok.stderr
    assert ok.stdout.count('"job"') == 4
    assert not db.exists()


@pytest.mark.timing
def test_plan_over_the_job_cap_is_answered_within_cpu_bounds(tmp_path, cache_dir):
    _, _, base = _plan_args(tmp_path)
    huge = run_cli(cache_dir, *base, "--seeds", "1000000000")
    assert huge.rc == 2 and huge.cpu < CPU_LIMIT_S and huge.wall < WALL_GUARD_S, (huge.stderr, huge.cpu)


def test_model_options_through_kwargs_are_accepted_when_real(tmp_path, cache_dir):
    """The other side of the check: an option that the backbone behind ``**kwargs`` does take passes,
    and changes the job (resnet_cifar depth 20 is not the default depth 56)."""
    specs = write_toy(tmp_path / "specs", table=_row0("model_kwargs: {depth: 20},", model="resnet_cifar"))
    args = ("run", "toy/table1", "--dry-run", "--format", "json", "--specs-dir", str(specs),
            "--db", f"sqlite:///{tmp_path}/r.db")
    r = run_cli(cache_dir, *args)
    assert r.rc == 0, r.stderr
    assert sorted(j["model"] for j in __import__("json").loads(r.stdout)).count("resnet_cifar") == 2


def test_warm_spec_loading_imports_no_torch_and_a_garbled_cache_is_rebuilt(tmp_path):
    """Loading specs from a warm model-facts cache never imports torch (the 1-CPU-s start-up of
    issue 8.6); a garbled cache file is ignored and rewritten, never trusted."""
    specs = write_toy(tmp_path / "specs")
    cache = tmp_path / "cache"
    probe = ("import sys; from repro.catalog import load_catalog; c = load_catalog(sys.argv[1]); "
             "print(len(c.papers['toy'].tables), 'torch' in sys.modules)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REPRO_CACHE_DIR": str(cache)}

    def load() -> list[str]:
        proc = subprocess.run([sys.executable, "-c", probe, str(specs)], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert load() == ["1", "True"]  # cold: the models are built on the meta device, torch is needed
    assert load() == ["1", "False"]
    (cache_file,) = cache.glob("model-facts-*.json")
    version = cache_file.stem.rsplit("-", 1)[1]
    # the right version but a wrong type: ``"resnet56_cifar" in "..."`` would be a substring test
    cache_file.write_text('{"version": "' + version + '", "models": "resnet56_cifar cra_resnet56_cifar", '
                          '"profiles": [], "options": {}}')
    assert load() == ["1", "True"]
    assert load() == ["1", "False"]


@pytest.mark.timing
def test_repo_specs_check_under_one_cpu_second_warm(tmp_path):
    """Issue 8.6: `repro specs check` of all four papers from a warm cache (2-core CPU: ~0.65 CPU-s).
    A cache of its own, warmed by the first check (a cold build of every model, ~30 CPU-s): the user's
    cache could be rewritten by a concurrent process between the two checks."""
    cache = tmp_path / "cache"
    assert run_cli(cache, "specs", "check").rc == 0
    r = run_cli(cache, "specs", "check")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "4 paper(s), 506 cells: ok"  # as the report counts them
    assert r.cpu < 1.5, f"{r.cpu:.2f} CPU-s"  # 1 s measured target, with headroom for a slower runner


@pytest.mark.parametrize("text, expected", [
    ("table: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested deeper than"),
    ("a: 1\nb: {c: 2, c: 3}\n", "b.c: duplicate key (lines 2 and 2)"),
    ("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n"
                                             for i in range(8)), "YAML nodes once aliases are expanded"),
])
def test_pure_python_loader_is_as_strict(text, expected, tmp_path, monkeypatch):
    """Without libyaml, PyYAML's own SafeLoader goes through the same checks (it recurses per nesting
    level, so deep nesting ends as RecursionError, reported as one line too)."""
    import yaml

    from repro import catalog
    from repro.specs import SpecError

    monkeypatch.setattr(catalog, "_Loader", yaml.SafeLoader)
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"^" + str(path) + ": .*") as e:
        catalog._load_yaml(path)
    assert expected in str(e.value)
