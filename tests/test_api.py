"""The Python API (repro.api): DataFrames of cells, runs and curves, and campaigns as `repro run` runs them.

The acceptance check reads a copy of the project's results.db (never the file itself); the rest reads the
SYNTHETIC seed database of fixtures_seeds.py, written through the real Database API, plus synthetic curve
points written the same way."""
from __future__ import annotations

import datetime as dt
import json
import math
import shutil

import pandas as pd
import pytest

from conftest import REPO, write_toy
from fixtures_seeds import EXPECTED_STATUS, write_seed_fixture, write_seed_specs
from repro import api
from repro.db import Database, DatabaseError
from repro.comparison_records import DIFF_FIELDS


def same(frame_value, json_value) -> bool:
    """A frame cell against the JSON diff printed: None is NaN/<NA> in the frame, numbers compare exactly."""
    if json_value is None:
        return frame_value is None or (not isinstance(frame_value, (list, dict)) and pd.isna(frame_value))
    if isinstance(json_value, float) or isinstance(frame_value, float):
        return float(frame_value) == float(json_value)
    return frame_value == json_value


def test_cells_are_what_diff_json_prints_on_the_projects_results(cli, tmp_path):
    shutil.copy(REPO / "results.db", tmp_path / "results.db")
    url = f"sqlite:///{tmp_path / 'results.db'}"
    proc = cli("diff", "se-r", "--format", "json", "--db", url, check=True)
    printed = json.loads(proc.stdout)
    frame = api.cells(paper="se-r", db=url)
    assert len(frame) == len(printed) and list(frame.columns[:len(DIFF_FIELDS)]) == DIFF_FIELDS
    static = frame[frame.kind == "profile"]
    assert len(static) >= 12 and set(static.status) == {"reproduced"}  # se-r Tables 1-2, all measured
    for row, rec in zip(frame.to_dict("records"), printed):  # every cell, the static ones with numbers
        bad = {k: (row[k], rec[k]) for k in DIFF_FIELDS if not same(row[k], rec[k])}
        assert not bad, (rec["row"], rec["column"], bad)
    assert frame.loc[frame.kind == "profile", "ours"].notna().all() and frame.ours.dtype == "float64"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    specs = write_seed_specs(root / "specs")
    shutil.copy(REPO / "specs" / "se-r" / "figure3.yaml", specs / "se-r" / "figure3.yaml")
    url = f"sqlite:///{root}/seeds.db"
    written = write_seed_fixture(url, specs)
    return {"root": root, "specs": str(specs), "url": url, "written": written}


def test_cells_of_the_seed_database(seeds):
    frame = api.cells(db=seeds["url"], specs_dir=seeds["specs"])
    got = {f"{r.paper}/{r.table}/{r.row}/{r.column}": r.status for r in frame.itertuples()}
    assert got == EXPECTED_STATUS
    one = frame.set_index("cell").loc["se-r/table3/SE-ResNet34/Accuracy"]
    assert (one.n, one["values"], one.budget) == (3, [78.0, 78.3, 78.2], "full")
    assert one.ours == pytest.approx(78.1667, abs=1e-4) and one.ci_low < one.ours < one.ci_high
    assert len(one.jobs) == 3 and one.how == "fast/bf16 on synthetic (no training ran)"
    diverged = frame.set_index("cell").loc["se-r/table3/SE-R-ResNet101/Accuracy"]
    assert math.isnan(diverged.ours) and "epoch 37" in diverged.verdict_note  # never a number
    toy = api.cells(paper="toy", table="table1", db=seeds["url"], specs_dir=seeds["specs"])
    assert set(toy.paper) == {"toy"} and len(toy) == 6
    assert api.cells(table="table3", db=seeds["url"], specs_dir=seeds["specs"]).paper.unique().tolist() == ["se-r"]


def test_runs_carry_their_provenance_and_the_cells_they_serve(seeds):
    everything = api.runs(db=seeds["url"], specs_dir=seeds["specs"])
    assert len(everything) == len(seeds["written"]["jobs"]) == 29  # one attempt per job written
    assert set(everything.host) == {"synthetic"} and everything.started_at.dtype.kind == "M"
    by_job = everything.set_index("job")
    for w in seeds["written"]["jobs"]:
        row = by_job.loc[w["job"]]
        assert sorted(row.cells) == sorted(w["cells"])
        assert pd.isna(row.seed) if w["seed"] is None else row.seed == w["seed"]
    bad = everything[everything.status == "diverged"]
    assert len(bad) == 1 and bad.iloc[0].state == "diverged"
    assert (bad.iloc[0].diverged_value, bad.iloc[0].diverged_unit, bad.iloc[0].diverged_at) == ("nan", "epoch", 37)
    assert bad.iloc[0].cells == ["se-r/table3/SE-R-ResNet101/Accuracy"] and bad.iloc[0].paper == "se-r"
    trained = everything[everything.kind == "train"]
    assert set(trained.engine) == {"fast"} and set(trained.precision) == {"bf16"} and not trained.compiled.any()
    toy = api.runs(paper="toy", table="table1", db=seeds["url"], specs_dir=seeds["specs"])
    assert len(toy) == 11 and set(toy.table) == {"table1"} and set(toy.paper) == {"toy"}  # 10 trained, 1 profile


def write_curves(url: str, specs: str, epochs: int = 4) -> list[str]:
    """Synthetic per-epoch points for the two jobs behind se-r Fig. 3 (seed 0 of each cell), written through
    the Database API into a copy of the seed database."""
    from repro.catalog import load_catalog
    from repro.plan import plan

    catalog = load_catalog(specs)
    jobs = [j for j in plan(catalog, [(catalog.papers["se-r"], "table3")], seeds=1)
            if any(c.endswith("ResNet34/Accuracy") for c in j.cells)]
    db = Database(url)
    for j in jobs:
        db.add_jobs([{**j.row(), "id": f"curve-{j.id}", "seed": 7, "spec": {**j.spec, "seed": 7}}])
        assert db.claim(f"curve-{j.id}", "api-test", dt.datetime(2000, 1, 1))
        run = db.start_run(f"curve-{j.id}", "api-test", host="synthetic", pid=0, device="synthetic", versions={})
        for epoch in range(1, epochs + 1):
            db.put_curve_point(f"curve-{j.id}", run, "api-test", dict(
                epoch=epoch, train_loss=1.0 / epoch, train_top1_err=50.0 / epoch, train_top5_err=20.0 / epoch,
                test_top1_err=30.0 + 10.0 / epoch, test_top5_err=10.0 + 1.0 / epoch, lr=0.1, seconds=2.0))
    db.dispose()
    return [f"curve-{j.id}" for j in jobs]


def test_curves_per_epoch_with_the_cells_they_serve(seeds, tmp_path):
    shutil.copy(seeds["root"] / "seeds.db", tmp_path / "c.db")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    jobs = write_curves(url, seeds["specs"])
    points = api.curves(paper="se-r", table="figure3", db=url, specs_dir=seeds["specs"])
    assert sorted(points.job.unique()) == sorted(jobs) and len(points) == 2 * 4
    assert points.groupby("job").epoch.apply(list).tolist() == [[1, 2, 3, 4]] * 2
    first = points[points.epoch == 2].iloc[0]
    assert (first.test_top1_err, first.train_loss, first.seed, first.table) == (35.0, 0.5, 7, "table3")
    assert first.cells[0].startswith("se-r/table3/SE-") and first.cells[0].endswith("ResNet34/Accuracy")
    assert len(api.curves(paper="toy", db=url, specs_dir=seeds["specs"])) == 0


def test_readers_never_create_a_database_and_use_the_default_one(seeds, tmp_path, monkeypatch):
    missing = tmp_path / "nope.db"
    with pytest.raises(DatabaseError, match="no database at"):
        api.cells(db=f"sqlite:///{missing}", specs_dir=seeds["specs"])
    assert not missing.exists()
    monkeypatch.setenv("REPRO_DB", seeds["url"])  # as every command: --db, else $REPRO_DB, else results.db
    assert len(api.runs(specs_dir=seeds["specs"])) == 29
    # a paper from outside @builtin reads (and writes) the database beside it, never the checkout's
    monkeypatch.delenv("REPRO_DB")
    own = tmp_path / "own-specs"
    write_toy(own)
    with pytest.raises(DatabaseError, match=f"no database at {own.resolve() / 'results.db'}"):
        api.cells(paper="toy", specs_dir=str(own))


def test_run_is_repro_run(cli, tmp_path):
    specs = write_toy(tmp_path / "specs")
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with pytest.raises(TypeError, match="unknown campaign option"):
        api.run("toy/table1", specs_dir=str(specs), db=url, workers=2)
    summary = api.run("toy/table1", specs_dir=str(specs), db=url, kinds={"profile"}, threads=1)
    assert summary.ok and len(summary.outcomes) == 2
    frame = api.outcomes(summary)
    assert list(frame.state) == ["done", "done"] and frame.ran.all() and list(frame.before) == ["new", "new"]
    again = api.outcomes(api.run(["toy/table1"], specs_dir=str(specs), db=url, kinds=["profile"]))
    assert not again.ran.any() and list(again.before) == ["done", "done"]
    assert list(again.state) == ["done", "done"] and list(again.ok) == [True, True]  # already done: done, ok
    cli("run", "toy/table1", "--kind", "profile", "--specs-dir", str(specs), "--db", f"sqlite:///{tmp_path / 'cli.db'}",
        check=True)
    ours = api.cells(paper="toy", db=url, specs_dir=str(specs))
    theirs = api.cells(paper="toy", db=f"sqlite:///{tmp_path / 'cli.db'}", specs_dir=str(specs))
    assert list(ours.jobs) == list(theirs.jobs) and ours.ours.equals(theirs.ours)  # same jobs, same numbers
