"""The command line as a user meets it: bad input refused in one line before anything is written,
defaults that do not depend on the current directory, literal output, table | json | csv.

Everything runs the real CLI in a subprocess (the `cli` fixture). Most cases point --specs-dir at a
directory that does not exist: the expected error can then only come from a check made before the
specs are loaded.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, repro, write_toy

# the toy table with one cell printed as '-': a dash is not a cell, for `specs check` and the report
DASH_TABLE = """\
table: table1
title: "Table 1"
columns:
  - {label: Params, metric: params}
  - {label: FLOPs, metric: macs}
  - {label: Error, metric: top1_err}
defaults:
  recipe: tiny
rows:
  - {label: ResNet-56, model: resnet56_cifar, values: {Params: "858.87K", FLOPs: "126.57M", Error: "27.25"}}
  - {label: CRA-ResNet-56, model: cra_resnet56_cifar, values: {Params: "924.39K", FLOPs: "126.63M", Error: "-"}}
"""


def one_error_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["--db", "foo://"], "unknown database kind 'foo'"),
    (["--db", "not a url"], "is not a URL"),
    (["--db", "typo.db"], "a SQLite file is sqlite:///"),
    (["--db", "sqlite:////proc/x.db"], "directory /proc is not writable"),
    (["--db", "sqlite:////nonexistent-dir/x.db"], "directory /nonexistent-dir does not exist"),
    (["--db", "postgresql+pg8000://user:s3cret@localhost/db"], "pip install pg8000"),
    (["--executor", "k8s"], "unknown --executor 'k8s'"),
    (["--device", "tpu:7"], "'--device': 'tpu:7': use auto, cpu, cuda or cuda:N"),
    (["--device", "cuda:99"], "'--device': 'cuda:99'"),
    (["--workers", "0"], "'--workers'"),
    (["--workers", "-3"], "'--workers'"),
    (["--seeds", "0"], "--seeds '0'"),
    (["--epochs", "0"], "'--epochs'"),
    (["--format", "xml"], "'--format'"),
    (["--kind", "bake"], "'--kind'"),
    (["--budget", "huge"], "--budget 'huge' is unknown"),
])
def test_bad_run_input_is_one_line_before_anything(args, expected, tmp_path, cli):
    db = tmp_path / "r.db"
    full = ["--db", f"sqlite:///{db}", "--specs-dir", str(tmp_path / "no-specs"), *args]
    line = one_error_line(cli("run", "se-r/table1", *full, cwd=tmp_path, env={"PYTHONPATH": str(REPO)}))
    assert expected in line, line
    assert "no-specs" not in line, "checked only after loading specs"
    assert "s3cret" not in line, "a password is never printed"
    assert not db.exists() and list(tmp_path.iterdir()) == [], "nothing may be written"


def test_cuda_without_a_gpu_is_refused_before_any_job(tmp_path, cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    db = tmp_path / "r.db"
    line = one_error_line(cli("run", "se-r/table1", "--device", "cuda", "--db", f"sqlite:///{db}"))
    assert "no GPU visible" in line and not db.exists()


@pytest.fixture
def read_only_db(tmp_path):
    """An existing database this process cannot write: chmod for a normal user; root writes any
    file, so there the file is made immutable (chattr +i) or the test is skipped."""
    from repro.db import Database

    path = tmp_path / "ro.db"
    Database(f"sqlite:///{path}").dispose()
    before = path.read_bytes()
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield path
        path.chmod(0o644)
    else:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("running as root and chattr +i is not supported here")
        try:
            yield path
        finally:
            subprocess.run(["chattr", "-i", str(path)])
    assert path.read_bytes() == before


def test_read_only_database_is_refused_for_writing_but_readable(read_only_db, cli):
    url = f"sqlite:///{read_only_db}"
    line = one_error_line(cli("run", "se-r/table1", "--db", url, "--specs-dir", "/no-specs"))
    assert f"the database {read_only_db} is read-only" in line
    status = cli("status", "--db", url)
    assert status.returncode == 0 and "no jobs" in status.stdout, status.stderr


def test_read_only_commands_never_create_a_database(tmp_path, cli):
    db = tmp_path / "typo.db"
    for args in (["status"], ["report", "--out", str(tmp_path / "out")]):
        line = one_error_line(cli(*args, "--db", f"sqlite:///{db}"))
        assert line == f"error: no database at {db} (`repro run` creates it; or point --db/$REPRO_DB at one)"
    dry = cli("run", "se-r/table1", "--dry-run", "--db", f"sqlite:///{db}", "--format", "json")
    assert dry.returncode == 0 and len(json.loads(dry.stdout)) == 6
    assert "no database at" in dry.stderr and "every job is new" in dry.stderr
    assert list(tmp_path.iterdir()) == []


def test_not_a_results_database_is_one_line(tmp_path, cli):
    empty = tmp_path / "empty.db"
    empty.touch()  # what an older repro left behind
    line = one_error_line(cli("status", "--db", f"sqlite:///{empty}"))
    assert "is not a repro results database (no such table: jobs)" in line


def test_defaults_follow_the_project_root_not_the_current_directory(tmp_path, cli):
    here = cli("status", "--format", "json", cwd=REPO)
    elsewhere = cli("status", "--format", "json", cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert here.returncode == 0 and elsewhere.returncode == 0, elsewhere.stderr
    assert json.loads(elsewhere.stdout) == json.loads(here.stdout)
    assert list(tmp_path.iterdir()) == [], "status created something in the current directory"


# --- a toy database shared by the output tests ---------------------------------------------

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    specs = write_toy(root / "specs", table=DASH_TABLE)
    db = f"sqlite:///{root / 'r.db'}"
    proc = repro("run", "toy/table1", "--kind", "profile", "--specs-dir", str(specs), "--db", db, check=True)
    return {"root": root, "specs": str(specs), "db": db, "run": proc}


def test_brackets_are_printed_literally(toy, cli):
    assert "[budget static]" in toy["run"].stdout  # a plan of counts only: no training budget applies
    show = cli("models", "show", "resnet56_cifar", "--num-classes", "100", check=True)
    assert "[thop-0.1]" in show.stdout and show.stdout.rstrip().endswith("[thop-0.1]")  # the one default profile


def test_status_formats_agree(toy, cli):
    rows = json.loads(cli("status", "--db", toy["db"], "--format", "json", check=True).stdout)
    assert sorted((r["kind"], r["state"], r["model"]) for r in rows) == [
        ("profile", "done", "cra_resnet56_cifar"), ("profile", "done", "resnet56_cifar")]
    assert all(r["seed"] is None for r in rows)
    table = list(csv.DictReader(io.StringIO(cli("status", "--db", toy["db"], "--format", "csv", check=True).stdout)))
    assert [r["job"] for r in table] == [r["job"] for r in rows]
    text = cli("status", "--db", toy["db"], check=True).stdout
    assert text.splitlines()[0] == "2 done"


def test_specs_check_counts_cells_as_the_report_does(toy, cli):
    check = cli("specs", "check", "--specs-dir", toy["specs"], check=True)
    assert "toy: 1 spec file(s), 5 published cells, 1 printed as '-' (not cells): ok" in check.stdout
    [row] = json.loads(cli("specs", "check", "--specs-dir", toy["specs"], "--format", "json", check=True).stdout)
    assert row == {"paper": "toy", "spec_files": 1, "tables": 1, "figures": 0, "cells": 5, "dashes": 1,
                   "figure_numbers": 0, "uncertain": 0, "status": "ok"}
    out = toy["root"] / "reports"
    cli("report", "--specs-dir", toy["specs"], "--db", toy["db"], "--out", str(out), check=True)
    line = next(x for x in (out / "README.md").read_text().splitlines() if x.startswith("| [toy]"))
    assert line.split(" | ")[1:3] == ["1", "5"], line  # tables, cells


def test_models_and_dry_run_formats(toy, cli):
    listed = json.loads(cli("models", "list", "--specs-dir", toy["specs"], "--paper", "toy", "--format", "json",
                            check=True).stdout)
    assert {m["model"]: m["used by"] for m in listed} == {"cra_resnet56_cifar": ["toy"], "resnet56_cifar": ["toy"]}
    args = ["models", "show", "resnet56_cifar", "--num-classes", "100"]
    show = json.loads(cli(*args, "--json", check=True).stdout)
    assert show == json.loads(cli(*args, "--format", "json", check=True).stdout)
    assert isinstance(show["params"], int) and show["input_size"] == [1, 3, 32, 32]
    plan = cli("run", "toy/table1", "--dry-run", "--format", "csv", "--specs-dir", toy["specs"], "--db", toy["db"],
               check=True)
    rows = list(csv.DictReader(io.StringIO(plan.stdout)))
    assert sorted((r["kind"], r["state"]) for r in rows) == [("profile", "done"), ("profile", "done"), ("train", "new")]
    assert all(isinstance(json.loads(r["cells"]), list) for r in rows)


# --- what a Python user expects of a CLI ---------------------------------------------------

COMMANDS = [["run"], ["bench"], ["diff"], ["report"], ["status"], ["specs", "check"], ["models", "list"],
            ["models", "show"], ["models", "count"], ["data", "fake"], ["artifacts"], ["new"]]


def test_version_help_and_bare_invocations(cli):
    version = cli("--version", check=True).stdout.strip()
    assert re.fullmatch(r"repro \d+\.\d+\S*( \(git [0-9a-f]{7,}\))?", version), version
    for bare in ([], ["models"]):
        proc = cli(*bare)
        assert proc.returncode == 0 and proc.stdout.startswith("Usage:"), (bare, proc.stderr)
    assert "--install-completion" in cli("-h", check=True).stdout


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(cmd):
    """In-process (typer's runner on the same app object): help is pure parsing, and 16
    interpreter start-ups would cost more than the test is worth."""
    from typer.testing import CliRunner

    from repro.cli import app

    runner = CliRunner()
    short, long = runner.invoke(app, [*cmd, "-h"]), runner.invoke(app, [*cmd, "--help"])
    assert short.exit_code == 0 and short.output == long.output
    assert "<bool>" not in short.output, "flags are shown as flags"
    assert not re.search(r"<(list\[|str>|int>|float>|path>)", short.output), "values show a name, not a Python type"
    assert re.search(r"Examples?:\n  +repro ", short.output), "every command shows an example"


def test_unknown_command_and_option_are_one_line(cli):
    assert one_error_line(cli("nosuch")) == "error: No such command 'nosuch'."
    assert one_error_line(cli("status", "--bogus")) == "error: No such option: --bogus"


@pytest.mark.parametrize("args", [["-h"], ["status"], ["specs", "check", "--format", "json"]])
def test_a_closed_pipe_ends_quietly(args):
    """`repro ... | head`: the reader is gone before anything is written."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "repro.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert proc.returncode in (0, 1, 141)
