"""Two labs' runs of different seeds of one small trained table, exported and imported into a third database,
give the same `repro diff` as one database that ran every seed (trained for real: digits, smoke budget)."""
from __future__ import annotations

import pytest

import json
from pathlib import Path

from tests.conftest import TINY_TRAIN, repro, write_toy

PAPER = """\
paper: digitoy
title: "A toy paper on digits"
authors: "Nobody"
source: none.txt
tolerance: 0.5
recipes:
  tiny:
    dataset: digits
    epochs: 2
    batch_size: 32
    lr: 0.05
    weight_decay: 5.0e-4
    milestones: [1]
    gamma: 0.2
    augment: [normalize]
"""


def _specs(tmp_path: Path) -> Path:
    return write_toy(tmp_path / "specs", paper="digitoy", table=TINY_TRAIN, meta=PAPER)


def _run_seeds(specs: Path, db: Path, seeds: list[int]) -> None:
    """A campaign of only these seeds (what another lab's `repro run` of them stores)."""
    from repro import campaign
    from repro.options import CampaignOptions, ExecOptions

    opts = CampaignOptions(targets=("digitoy",), specs_dir=(str(specs),), db=f"sqlite:///{db}", budget="smoke",
                           seeds=max(seeds) + 1, device="cpu", threads=1, checkpoint_dir=str(db.parent / "ck"),
                           execution=ExecOptions(workers=1))
    planned = campaign.plan(opts)
    planned.jobs = [j for j in planned.jobs if j.seed in seeds]
    summary = campaign.run(campaign.register(planned, opts), opts)
    assert summary.ok and len(summary.outcomes) == len(seeds)


def _diff(specs: Path, db: Path) -> list[dict]:
    p = repro("diff", "digitoy", "--format", "json", "--specs-dir", str(specs), "--db", f"sqlite:///{db}")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.long
def test_two_origins_pool_as_one_database_of_every_seed(tmp_path):
    specs = _specs(tmp_path)
    lab_a, lab_b, both, merged = (tmp_path / n for n in ("a.db", "b.db", "both.db", "merged.db"))
    _run_seeds(specs, lab_a, [0])
    _run_seeds(specs, lab_b, [1])
    _run_seeds(specs, both, [0, 1])
    for lab, label in ((lab_a, "lab-a"), (lab_b, "lab-b")):
        out = tmp_path / f"{label}.zip"
        repro("export", "digitoy", "-o", str(out), "--specs-dir", str(specs), "--db", f"sqlite:///{lab}", check=True)
        p = repro("import", str(out), "--db", f"sqlite:///{merged}", "--label", label, check=True)
        assert "1 job(s), 1 run(s) added" in p.stdout
    ours, one = _diff(specs, merged), _diff(specs, both)
    origins = [r.pop("origins") for r in ours]  # the merged database also says who contributed
    assert ours == one and "origins" not in one[0]
    assert ours[0]["n"] == 2 and len(ours[0]["values"]) == 2
    assert origins[0]["n"] == 2 and origins[0]["names"] == ["lab-a", "lab-b"] and origins[0]["disagree"] == []
    before = merged.read_bytes()
    repro("import", str(tmp_path / "lab-a.zip"), "--db", f"sqlite:///{merged}", check=True)
    assert merged.read_bytes() == before
    assert [{k: v for k, v in r.items() if k != "origins"} for r in _diff(specs, merged)] == one
    # one origin alone: lab-b's seed only
    alone = _diff_args(specs, merged, "--origin", "lab-b")
    assert alone[0]["n"] == 1 and alone[0]["values"] == [one[0]["values"][1]]
    bad = repro("diff", "digitoy", "--origin", "nope", "--specs-dir", str(specs), "--db", f"sqlite:///{merged}")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --origin 'nope': no such origin")
    # lab-a's seed 0 into the database that ran it too: one sample still, its replica checked against it
    repro("import", str(tmp_path / "lab-a.zip"), "--db", f"sqlite:///{both}", "--label", "lab-a", check=True)
    again = _diff(specs, both)
    check = again[0].pop("origins")
    assert again == one
    assert check["names"] == ["here", "lab-a"] and check["same_job_gap"] == 0.0
    # verify re-trains when asked: one job, at its own (smoke) budget and seed, within the cell's seed spread
    url = f"sqlite:///{both}"
    p = repro("verify", "digitoy", "--specs-dir", str(specs), "--db", url, "--device", "cpu")
    assert p.returncode == 0
    assert p.stdout.strip() == "0 re-measured: 0 equal; 2 trained job(s) not re-run (--trained N re-runs N)"
    p = repro("verify", "digitoy", "--trained", "1", "--specs-dir", str(specs), "--db", url, "--device", "cpu")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1].startswith("1 re-measured: 1 ")
    import sqlite3

    with sqlite3.connect(both) as conn:
        job, seed = conn.execute("SELECT id, seed FROM jobs ORDER BY id LIMIT 1").fetchone()  # the one re-run
        conn.execute("UPDATE metrics SET value = 0.5 WHERE job_id = ? AND name = 'top1_err'", (job,))
    p = repro("verify", "digitoy", "--trained", "1", "--specs-dir", str(specs), "--db", url, "--device", "cpu")
    assert p.returncode == 1
    assert p.stdout.startswith(f"drift: job {job} (resnet_cifar, smoke, seed {seed}) "
                               f"top1_err: database 0.5, re-measured ")
    out = tmp_path / "reports"
    repro("report", "--paper", "digitoy", "--specs-dir", str(specs), "--db", f"sqlite:///{merged}", "--out", str(out),
          check=True)
    md = (out / "digitoy" / "README.md").read_text()
    assert "## Replication across origins" in md and "| table1 | ResNet-8 | Error | 2: lab-a, lab-b |" in md


def _diff_args(specs: Path, db: Path, *args: str) -> list[dict]:
    p = repro("diff", "digitoy", "--format", "json", "--specs-dir", str(specs), "--db", f"sqlite:///{db}", *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)
