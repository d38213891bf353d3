"""Real learning on real data, on a CPU: scikit-learn's 1,797 handwritten digits (upsampled to 32x32)
through the normal `repro run` path, with both engines. The fast engine must reach >= 90% on the held-out
450 images; the reference engine must learn too, and the two must agree within a few points."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import REPO

SPECS = REPO / "tests" / "specs"

pytest.importorskip("sklearn", reason="the digits dataset ships with scikit-learn (the dev extra)")


@pytest.mark.long
def test_both_engines_learn_real_digits(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = {}
    for engine in ("fast", "reference"):  # side by side: one core each
        procs[engine] = subprocess.Popen(
            [sys.executable, "-m", "repro.cli", "run", "digits/table1", "--specs-dir", str(SPECS), "--engine", engine,
             "--db", f"sqlite:///{tmp_path}/{engine}.db", "--checkpoint-dir", str(tmp_path / engine)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acc, curves = {}, {}
    for engine, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        with sqlite3.connect(tmp_path / f"{engine}.db") as con:
            acc[engine] = con.execute("select value from metrics where name = 'top1_acc'").fetchone()[0]
            curves[engine] = [e for (e,) in con.execute("select test_top1_err from curve_points order by epoch")]
            assert con.execute("select engine, precision from runs").fetchall() == [(engine, "fp32")]
    print(f"held-out top-1: fast {acc['fast']:.2f}%, reference {acc['reference']:.2f}%")
    assert acc["fast"] >= 90.0, acc
    assert acc["reference"] >= 85.0, acc
    assert abs(acc["fast"] - acc["reference"]) <= 4.0, acc
    for engine, errs in curves.items():  # it learned over the run, not by luck at the end
        assert len(errs) == 6 and errs[0] > errs[-1] + 20, (engine, errs)
