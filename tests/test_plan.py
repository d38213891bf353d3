"""Planning: job identity is the resolved job, shared cells run once, dry-run reports it."""
from __future__ import annotations

import json

import pytest

from repro.plan import apply_budget, job_hash, plan, resolve_targets
from repro.specs import JobRecipe
from repro.catalog import load_catalog

from conftest import SPECS, write_toy

CATALOG = load_catalog(SPECS)


def dry_run(cli, tmp_path, *targets):
    proc = cli("run", *targets, "--dry-run", "--format", "json", "--db", f"sqlite:///{tmp_path}/r.db")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "r.db").exists(), "a dry run must not create the database"
    return json.loads(proc.stdout)


@pytest.mark.parametrize("targets, expected", [(["se-r/table3"], 6), (["se-r/table3", "se-r/table4"], 9),
                                               (["se-r"], 34), (["table3", "--paper", "se-r"], 6)])
def test_se_r_training_job_counts(cli, tmp_path, targets, expected):
    jobs = dry_run(cli, tmp_path, *targets)
    train = [j for j in jobs if j["kind"] == "train"]
    assert len(train) == expected
    assert {"job", "kind", "model", "seed", "cells", "state"} <= set(train[0])
    assert all(j["state"] == "new" and j["seed"] == 0 for j in train)


def test_shared_cells_are_one_job():
    p = CATALOG.papers["se-r"]
    jobs = plan(CATALOG, resolve_targets(CATALOG, ["se-r"]))
    se50 = [j for j in jobs if j.model == "se_resnet50" and j.kind == "train"]
    assert len(se50) == 1
    assert sorted(c.split("/")[1] for c in se50[0].cells) == ["table11", "table3", "table4", "table8"]
    se34 = [j for j in jobs if j.model == "se_resnet34" and j.kind == "train"]
    assert len(se34) == 1 and any("0, 0(SE-ResNet)" in c for c in se34[0].cells)
    # Table 5's 0.7 point and Table 10's r = 8 are SE-R-ResNet50 of Table 3: defaults are filled in
    main = [j for j in jobs if any(c == "se-r/table3/SE-R-ResNet50/Accuracy" for c in j.cells)][0]
    assert "se-r/table5/0.7/Accuracy" in main.cells and "se-r/table10/8/Accuracy" in main.cells
    assert main.spec["model_kwargs"]["aux_dropout"] == 0.7 and main.spec["model_kwargs"]["reduction"] == 8
    assert p.spec.recipes["cifar100"].nesterov is True


def test_seeds_budget_and_hash():
    targets = resolve_targets(CATALOG, ["se-r/table3"])
    three = plan(CATALOG, targets, seeds=3)
    assert len(three) == 18 and sorted({j.seed for j in three}) == [0, 1, 2]
    smoke = plan(CATALOG, targets, budget="smoke")
    full = plan(CATALOG, targets)
    assert {j.id for j in smoke}.isdisjoint({j.id for j in full})
    assert [j.config_key for j in smoke] == [j.config_key for j in full]
    assert all(j.id == job_hash(j.spec) for j in full)
    assert plan(CATALOG, targets)[0].id == full[0].id  # stable


def test_budget_scales_the_schedule():
    r = JobRecipe(name="cifar100", **CATALOG.papers["se-r"].spec.recipes["cifar100"].model_dump())
    assert apply_budget(r, "full") == r
    e20 = apply_budget(r, "epochs-20")
    assert (e20.epochs, e20.milestones, e20.total_epochs) == (20, [6, 12, 16], 20)
    smoke = apply_budget(r, "smoke")
    assert (smoke.epochs, smoke.train_images, smoke.test_images) == (2, 256, 256)
    assert "train_images" not in r.job_dict() and smoke.job_dict()["train_images"] == 256


def test_dry_run_table_lists_cells(cli, tmp_path):
    proc = cli("run", "se-r/table1", "--dry-run", "--db", f"sqlite:///{tmp_path}/r.db")
    assert proc.returncode == 0
    assert "se-r: 1 spec(s), 6 job(s) (6 profile), 0 done" in proc.stdout


def test_a_campaign_reads_only_the_papers_its_targets_name(cli, tmp_path):
    """A broken spec of another paper does not stop a campaign of this one (it is never parsed); a bare table
    name reads every paper that has that table, and a report or check of all papers still names the fault."""
    root = write_toy(tmp_path / "specs")
    write_toy(root, paper="broken")
    (root / "broken" / "table1.yaml").write_text("table: table1\ntitle: [unclosed\n")
    db = ["--db", f"sqlite:///{tmp_path}/r.db", "--specs-dir", str(root)]
    ok = cli("run", "toy/table1", "--dry-run", "--format", "json", *db)
    assert ok.returncode == 0, ok.stderr
    assert {j["kind"] for j in json.loads(ok.stdout)} == {"profile", "train"}
    for args in (["run", "table1", "--dry-run", *db], ["specs", "check", "--specs-dir", str(root)]):
        bad = cli(*args)
        assert bad.returncode == 2 and "broken/table1.yaml" in bad.stderr, (args, bad.stderr)
    unknown = cli("run", "nope/table1", "--dry-run", *db)
    assert unknown.returncode == 2 and "unknown paper 'nope'; known: broken, toy" in unknown.stderr


def test_cmpe_se_table5_wrn16_8_fold_columns_are_one_job():
    """Issue 14.7: WRN-16-8's (n = 20, m = C/10) cells build its default fold (16, C/8) and the (16, C/8)
    cells name it: one network, one job per dataset, serving both cells (not two runs of the same model)."""
    jobs = plan(CATALOG, resolve_targets(CATALOG, ["cmpe-se/table5"]))
    wrn16 = [j for j in jobs if j.model == "cmpe_se_wrn16_8"]
    assert len(wrn16) == 4  # (32, C/16) and the shared default, on CIFAR-10 and CIFAR-100
    shared = [j for j in wrn16 if len(j.cells) == 2]
    assert len(shared) == 2 and all(j.spec["model_kwargs"]["fold_n"] == 16 for j in shared)
    for j in shared:
        assert sorted("(n = 20, m = C/10)" in c for c in j.cells) == [False, True]
        assert sorted("(n = 16, m = C/8)" in c for c in j.cells) == [False, True]
