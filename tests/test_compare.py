"""Cell verdicts from seeds, diverged cells, `repro diff` (summary, gates, --against, numbers as numbers)
and Markdown safety, on the SYNTHETIC seed database of fixtures_seeds.py (never results.db).

The CLI tests run 4 subprocesses (about 8 s of CPU each, mostly importing torch): one module-scoped
database and spec tree serve them all."""
from __future__ import annotations

import json
import math
import shutil
import sqlite3

import pytest

from fixtures_seeds import EXPECTED_STATUS, write_seed_fixture, write_seed_specs
from repro.compare import SeedStats, seed_stats, seed_verdict


# --- the rule, alone ------------------------------------------------------------------------

def test_seed_stats_is_the_student_t_interval():
    s = seed_stats([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    assert s.sem == pytest.approx(1 / math.sqrt(3))
    assert (s.ci_low, s.ci_high) == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-4)  # t(0.975, 2) = 4.3027
    one = seed_stats([5.0])
    assert one.std is None and one.ci_low is None


@pytest.mark.parametrize("values, published, status", [
    ([78.1, 78.2, 78.15], 78.12, "reproduced"),  # 95% interval [78.03, 78.27] inside 77.62..78.62
    ([78.6, 78.64, 78.62], 78.12, "inconclusive"),  # mean 0.50 away, on the band's edge: the interval crosses it
    ([78.0, 78.9, 78.2], 78.12, "inconclusive"),  # mean 0.25 inside, but the interval [77.19, 79.54] crosses 78.62
    ([78.0], 78.3, "inconclusive"),  # one seed, even within the tolerance: no spread to judge by (symmetric)
    ([79.0], 78.0, "inconclusive"),  # one seed outside: no spread to judge by
    ([76.0, 76.2, 76.1], 78.22, "differs"),
    ([77.2, 78.8, 77.6], 78.54, "inconclusive"),  # interval [75.8, 79.9] reaches the band
    ([77.0, 77.0], 78.0, "differs"),  # no spread at all: the interval is the mean
])
def test_seed_verdict(values, published, status):
    got, note = seed_verdict(seed_stats(values), published, 0.5)
    assert got == status, note


def test_differs_says_how_many_standard_errors():
    s = SeedStats(3, 76.1, 0.1, 0.1 / math.sqrt(3), 75.85, 76.35)
    status, note = seed_verdict(s, 78.22, 0.5)
    assert status == "differs" and "36.7 standard errors" in note


# --- the synthetic seed database ---------------------------------------------------------------

@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    specs = write_seed_specs(root / "specs")
    url = f"sqlite:///{root}/synthetic_seeds.db"
    written = write_seed_fixture(url, specs)
    return {"root": root, "specs": specs, "url": url, "written": written,
            "args": ["--specs-dir", str(specs), "--db", url]}


def test_fixture_writes_through_the_real_schema(seeds):
    db = seeds["root"] / "synthetic_seeds.db"
    with sqlite3.connect(db) as con:
        states = dict(con.execute("select state, count(*) from jobs group by state").fetchall())
        errors = con.execute("select diverged_value, diverged_unit, diverged_at from runs "
                             "where status = 'diverged'").fetchall()
    assert states == {"done": 28, "diverged": 1}  # se-r 17 (+1 diverged), toy 10 trained + 1 profile
    assert errors == [("nan", "epoch", 37)]


def test_verdicts_through_compare_paper(seeds):
    from repro.catalog import load_catalog
    from repro.compare import compare_paper
    from repro.db import Database

    catalog = load_catalog(seeds["specs"])
    db = Database(seeds["url"], create=False)
    rows = [r for slug, t in (("se-r", "table3"), ("toy", "table1"))
            for r in compare_paper(catalog.papers[slug], db, [t])]
    got = {f"{r.paper}/{r.table}/{r.row}/{r.column}": r for r in rows}
    assert {k: r.status for k, r in got.items()} == EXPECTED_STATUS
    diverged = got["se-r/table3/SE-R-ResNet101/Accuracy"]
    assert diverged.ours is None and diverged.delta is None  # never a number
    assert "1 of 3 seed(s) diverged" in diverged.verdict_note and "epoch 37" in diverged.verdict_note
    ok = got["se-r/table3/SE-ResNet34/Accuracy"]
    assert ok.n == 3 and ok.ours == pytest.approx(78.1667, abs=1e-4) and ok.std == pytest.approx(0.152753, abs=1e-6)
    assert ok.ci_low < ok.ours < ok.ci_high and ok.values == [78.0, 78.3, 78.2]


def test_diff_json_summary_and_gates(cli, seeds):
    proc = cli("diff", "se-r/table3", "toy/table1", "--format", "json", "--fail-over", "0.5", "--fail-on-pending",
               *seeds["args"])
    assert proc.returncode == 1, proc.stderr
    rows = json.loads(proc.stdout)
    assert {f"{r['paper']}/{r['table']}/{r['row']}/{r['column']}": r["status"] for r in rows} == EXPECTED_STATUS
    by = {(r["table"], r["row"], r["column"]): r for r in rows}
    cra = by[("table1", "CRA-ResNet-56", "Error")]
    assert cra["ours"] == 28.1 and cra["std"] == 0.1 and cra["n"] == 3  # numbers as numbers, not 28.0999...
    assert "28.09999" not in proc.stdout and "0.0999999" not in proc.stdout
    count = by[("table1", "ResNet-56", "Params")]
    assert count["ours"] == 858.87 and count["ours_exact"] == 858870 and '"ours_exact": 858870,' in proc.stdout
    assert by[("table3", "SE-R-ResNet101", "Accuracy")]["ours"] is None
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "5 reproduced, 3 differs, 2 inconclusive, 1 diverged, 1 pending"
    assert any(line.startswith("regression: toy/table1 CRA-ResNet-56 / Error: ours 28.1 vs 26.36") for line in lines)
    assert "diverged: se-r/table3 SE-R-ResNet101 / Accuracy: 1 of 3 seed(s) diverged (seed 2: loss became nan at " \
        "epoch 37)" in lines
    assert lines[-1] == "fail-on-pending: 1 cell(s) pending"


def test_fail_over_on_an_all_pending_table_says_so(cli, seeds, tmp_path):
    from repro.db import Database

    Database(f"sqlite:///{tmp_path}/empty.db").dispose()  # a results database with nothing measured yet
    proc = cli("diff", "toy/table1", "--fail-over", "1", "--specs-dir", str(seeds["specs"]),
               "--db", f"sqlite:///{tmp_path}/empty.db")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "6 pending"  # table format: the summary on stdout
    assert "fail-over: no comparable cell (6 of 6 pending" in proc.stderr


def test_against_compares_two_databases(cli, seeds, tmp_path):
    other = tmp_path / "other.db"
    shutil.copy(seeds["root"] / "synthetic_seeds.db", other)
    with sqlite3.connect(other) as con:  # the "old code" measured ResNet-56 0.3 points worse, one fewer param
        con.execute("update metrics set value = value + 0.3 where name = 'top1_err' and job_id in "
                    "(select id from jobs where model = 'resnet56_cifar')")
        con.execute("update metrics set value = value - 1 where name = 'params'")
        # what it recorded as published: one number transcribed differently then, one cell of another
        # configuration then (a model fix since), one cell it never recorded (added to the spec since)
        cell = "table_name = 'table1' and row = '{}' and \"column\" = '{}'"
        con.execute("update published_cells set printed = '27.52' where " + cell.format("ResNet-56", "Error"))
        con.execute("update published_cells set config_key = 'oldconfig' where " + cell.format("CRA-ResNet-56",
                                                                                               "Error"))
        con.execute("delete from published_cells where " + cell.format("ResNet-110", "Error"))
    proc = cli("diff", "toy/table1", "--against", f"sqlite:///{other}", "--fail-over", "0.2", "--format", "json",
               *seeds["args"])
    assert proc.returncode == 1, proc.stderr
    by = {(r["row"], r["column"]): r for r in json.loads(proc.stdout)}
    assert by[("ResNet-56", "Error")]["change"] == -0.3
    assert by[("ResNet-56", "Params")]["change"] == 0.001  # printed unit (K): one parameter shows
    assert by[("CRA-ResNet-56", "Error")]["change"] == 0
    assert "against: 5 cell(s) in both, 2 changed, 0 changed status" in proc.stderr
    changed = {k for k, r in by.items() if r["transcription_changed"]}
    assert changed == {("ResNet-56", "Error")} and by[("ResNet-56", "Error")]["against_printed"] == "27.52"
    assert by[("ResNet-56", "Params")]["against_printed"] == "858.87K"
    assert {k for k, r in by.items() if r["configuration_changed"]} == {("CRA-ResNet-56", "Error")}
    assert {k for k, r in by.items() if r["new_cell"]} == {("ResNet-110", "Error")}
    assert ("transcription: toy/table1 ResNet-56 / Error: published 27.25 here, 27.52 in --against" in
            proc.stderr.splitlines())
    assert ("1 published number(s) transcribed differently there, 1 cell(s) pointing at another configuration "
            "there, 1 cell(s) added to the specs since") in proc.stderr
    assert "regression: toy/table1 ResNet-56 / Error: 27.2 vs 27.5 in --against (change -0.3 > 0.2)" in proc.stderr
    assert "Params" not in proc.stderr.split("regression:", 1)[1].split("\n")[0]


# --- Markdown safety (issue 7.10) --------------------------------------------------------------

EVIL_PAPER = """\
paper: evil
title: "<script>alert(1)</script>"
authors: "A <b>bold</b> | author"
source: none.txt
findings: ["<iframe src=x></iframe> found"]
recipes:
  tiny: {dataset: cifar100, epochs: 4, batch_size: 64, lr: 0.05, weight_decay: 5.0e-4}
"""
EVIL_TABLE = """\
table: table1
title: "<script>alert(2)</script>"
caption: "<img src=x onerror=alert(1)>"
columns:
  - {label: "Err|or", metric: top1_err}
defaults: {recipe: tiny}
rows:
  - {label: "ResNet | 56", model: resnet56_cifar, values: {"Err|or": "27.25"}}
assumptions:
  - {id: "x<y", text: "<a href=javascript:alert(1)>click</a>"}
"""


def test_report_escapes_spec_text_and_opens_with_the_scorecard(cli, seeds):
    from conftest import write_toy

    write_toy(seeds["specs"], paper="evil", table=EVIL_TABLE, meta=EVIL_PAPER)
    out = seeds["root"] / "reports"
    cli("report", "--paper", "evil", "--paper", "toy", "--paper", "se-r", "--out", str(out), *seeds["args"],
        check=True)
    page = (out / "evil" / "README.md").read_text()
    for raw in ("<script>", "<img", "<iframe", "<a href", "<b>"):
        assert raw not in page
    assert "# &lt;script&gt;alert(1)&lt;/script&gt;" in page and "*&lt;img src=x onerror=alert(1)&gt;*" in page
    row = next(line for line in page.splitlines() if line.startswith("| ResNet"))
    assert row.startswith("| ResNet \\| 56 |") and row.replace("\\|", "").count("|") == 6  # label + 4 cells
    head = next(line for line in page.splitlines() if line.startswith("| Row |"))
    assert "Err\\|or: published" in head
    toy = (out / "toy" / "README.md").read_text()
    assert toy.index("## Claims scorecard") < toy.index("## Table 1")
    assert "reversed" in toy and "not significant" in toy and "How verdicts are decided" in toy
    assert "the interval lies entirely outside the band" in toy  # the legend quotes the rule
    assert "Bonferroni correction over the K planned looks" in toy  # and the adaptive seeds' stopping rule
    assert "27.20 ± 0.10 (n=3, 95% CI 26.95–27.45, full" in toy
    se_r = (out / "se-r" / "README.md").read_text()
    assert "holds, smaller" in se_r
    assert "diverged (full): 1 of 3 seed(s) diverged (seed 2: loss became nan at epoch 37)" in se_r
    assert "inconclusive: 95% interval [75.80, 79.94] crosses an edge of published ±0.5" in se_r


EPOCH_PAPER = """\
paper: epochs
title: "Which epoch"
authors: "Nobody"
source: none.txt
report_epoch: {paper_epoch}
recipes:
  pre:
    dataset: cifar10
    epochs: 4
    batch_size: 32
    lr: 0.1
    weight_decay: 5.0e-4
  tune:
    dataset: cifar10
    epochs: 4
    batch_size: 32
    lr: 0.01
    weight_decay: 5.0e-4
"""
EPOCH_TABLE = """\
table: table1
title: "Table 1"
columns:
  - {label: Error, metric: top1_err, tolerance: 0.3}
rows:
  - {label: ResNet-8, model: resnet_cifar, model_kwargs: {depth: 8}, recipe: pre, values: {Error: "27.0"}}
  - {label: ResNet-14 tuned, model: resnet_cifar, model_kwargs: {depth: 14}, recipe: tune,
     init_from: {table: table1, row: ResNet-8}, values: {Error: "26.0"}}
"""


def _write_full_budget(url: str, catalog, results: dict[str, dict[str, float]]) -> None:
    """Done full-budget jobs of the epochs paper, each with these metrics (by depth)."""
    from repro.db import Database, utcnow
    from repro.plan import plan, resolve_targets

    db = Database(url)
    jobs = plan(catalog, resolve_targets(catalog, ["epochs/table1"]), seeds=2)
    db.add_jobs({**j.row(), "upstream": j.upstream} for j in jobs)
    for j in jobs:
        assert db.claim(j.id, "me", utcnow())
        run = db.start_run(j.id, "me", host="h", pid=1, device="synthetic", versions={})
        metrics = results[j.spec["model_kwargs"]["depth"]]
        db.complete(j.id, run, "me", {k: (v + (j.seed * 0.01 if k.endswith("err") else 0), None)
                                      for k, v in metrics.items()})
    db.dispose()


@pytest.mark.parametrize("epoch,status", [("final", "differs"), ("best", "reproduced")])
def test_report_epoch_best_changes_the_number_a_cell_is_judged_on(epoch, status, tmp_path):
    """Issue 14.5: the same two seeds (final 30.0/30.01, best 27.0/27.01) against a printed 27.0 +- 0.3."""
    from repro.catalog import load_catalog
    from repro.compare import compare_paper
    from repro.db import Database

    d = tmp_path / "specs" / "epochs"
    d.mkdir(parents=True)
    (d / "paper.yaml").write_text(EPOCH_PAPER.format(paper_epoch=epoch))
    (d / "table1.yaml").write_text(EPOCH_TABLE)
    catalog = load_catalog(tmp_path / "specs")
    url = f"sqlite:///{tmp_path}/r.db"
    _write_full_budget(url, catalog, {8: {"top1_err": 30.0, "best_top1_err": 27.0},
                                      14: {"top1_err": 26.0, "best_top1_err": 26.0, "pretrained": 1.0}})
    rows = {r.row: r for r in compare_paper(catalog.papers["epochs"], Database(url, create=False))}
    plain = rows["ResNet-8"]
    assert plain.report_epoch == epoch and plain.status == status
    assert plain.ours == pytest.approx(30.005 if epoch == "final" else 27.005)


def test_a_cell_trained_without_the_weights_its_spec_requires_is_not_comparable(tmp_path):
    """Issue 14.4: a downstream cell (init_from) whose runs did not start from the upstream weights
    (pretrained 0, or no such record) is never judged as a reproduction, whatever its number."""
    from repro.catalog import load_catalog
    from repro.compare import compare_paper
    from repro.db import Database

    d = tmp_path / "specs" / "epochs"
    d.mkdir(parents=True)
    (d / "paper.yaml").write_text(EPOCH_PAPER.format(paper_epoch="final"))
    (d / "table1.yaml").write_text(EPOCH_TABLE)
    catalog = load_catalog(tmp_path / "specs")
    for pretrained, status in ((0.0, "not-comparable"), (1.0, "reproduced")):
        url = f"sqlite:///{tmp_path}/r{int(pretrained)}.db"
        _write_full_budget(url, catalog, {8: {"top1_err": 27.0},
                                          14: {"top1_err": 26.0, "pretrained": pretrained}})
        tuned = {r.row: r for r in compare_paper(catalog.papers["epochs"], Database(url, create=False))}[
            "ResNet-14 tuned"]
        assert tuned.status == status and tuned.ours == pytest.approx(26.005)
        if status == "not-comparable":
            assert "did not start from the weights the spec requires (init_from table1 row 'ResNet-8')" in \
                tuned.verdict_note


def test_one_sample_per_configuration_and_seed_across_job_identities(tmp_path):
    """Issue 25.3: a code version that spelled a job differently left a done job of the same configuration
    and seed: one sample, the newest code version's (planned last), and the cell's note says an older exists."""
    import datetime as dt

    from repro.catalog import load_catalog
    from repro.compare import compare_paper
    from repro.db import Database, utcnow
    from repro.plan import plan, resolve_targets

    d = tmp_path / "specs" / "epochs"
    d.mkdir(parents=True)
    (d / "paper.yaml").write_text(EPOCH_PAPER.format(paper_epoch="final"))
    (d / "table1.yaml").write_text(EPOCH_TABLE)
    catalog = load_catalog(tmp_path / "specs")
    url = f"sqlite:///{tmp_path}/r.db"
    _write_full_budget(url, catalog, {8: {"top1_err": 27.0}, 14: {"top1_err": 26.0, "pretrained": 1.0}})
    db = Database(url)
    (seed0,) = [j for j in plan(catalog, resolve_targets(catalog, ["epochs/table1"]), seeds=2)
                if j.seed == 0 and j.spec["model_kwargs"]["depth"] == 8]
    old = f"older-{seed0.id[:20]}"  # the same configuration and seed under an older code version's identity
    db.add_jobs([{**seed0.row(), "id": old, "spec": {**seed0.spec, "spelled": "differently"}}])
    with db.Session.begin() as s:
        from repro.db import Job

        s.get(Job, old).created_at = utcnow() - dt.timedelta(days=30)
    assert db.claim(old, "me", utcnow())
    db.complete(old, db.start_run(old, "me", host="h", pid=1, device="synthetic", versions={}), "me",
                {"top1_err": (40.0, None)})
    row = {r.row: r for r in compare_paper(catalog.papers["epochs"], Database(url, create=False))}["ResNet-8"]
    assert row.n == 2 and row.values == [27.0, 27.01] and row.ours == pytest.approx(27.005)
    assert old not in row.jobs and seed0.id in row.jobs
    assert row.status == "reproduced"
    assert f"an older code version's run of the same configuration and seed exists (job {old[:12]} (seed 0))" \
        in row.verdict_note
    tuned = {r.row: r for r in compare_paper(catalog.papers["epochs"], Database(url, create=False))}["ResNet-14 tuned"]
    assert tuned.n == 2 and "older code version" not in (tuned.verdict_note or "")
