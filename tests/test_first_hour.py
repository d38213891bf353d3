"""A paper's first hour (issue 24): units on columns, row and model selectors, the counter finder, ghost BN's
spec-time check, and the shared options of every command."""
from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from conftest import TOY_PAPER, write_toy

# ResNet-56 on CIFAR-100 counts 858,868 parameters and 126,566,976 MACs under thop-2001 (the toy table's
# "858.87K" and "126.57M"), the same numbers written without a suffix under a column with a unit
UNIT_TABLE = """\
table: table1
title: "Table 1"
columns:
  - {label: "Params (K)", metric: params, unit: K}
  - {label: "GFLOPs", metric: macs, unit: G}
rows:
  - {label: ResNet-56, model: resnet56_cifar, dataset: cifar100, values: {"Params (K)": "858.87", GFLOPs: "0.13"}}
"""
SUFFIX_TABLE = UNIT_TABLE.replace(', unit: K', '').replace(', unit: G', '').replace('"858.87"', '"858.87K"') \
    .replace('"0.13"', '"0.13G"')


def _specs(root: Path, table: str) -> Path:
    return write_toy(root / "specs", table=table)


def _diff(cli, specs: Path, db: Path) -> list[dict]:
    out = cli("diff", "toy/table1", "--format", "json", "--specs-dir", str(specs), "--db", f"sqlite:///{db}")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# --- units -------------------------------------------------------------------------------------------

def test_printed_values_read_in_the_columns_unit():
    from repro.specs import Printed

    assert Printed.parse("4.24", "G").base == pytest.approx(4.24e9)
    assert Printed.parse("4.24G", "G").base == pytest.approx(4.24e9)  # a suffix that agrees is allowed
    assert Printed.parse("4.24", 1e6).base == pytest.approx(4.24e6)  # a scale factor
    assert Printed.parse("4.24", "G").show(4.26) == "4.26"  # shown as printed: no suffix added
    assert Printed.parse("4.24", "G").rounds_to(4_261_431_296) == 4.26
    with pytest.raises(ValueError, match="disagrees with the column's unit 'G'"):
        Printed.parse("4.24M", "G")
    with pytest.raises(ValueError, match="disagrees"):
        Printed.parse("33.7%", "M")


def test_a_value_under_a_unit_column_reproduces_like_the_suffixed_one(tmp_path, cli):
    results = {}
    for name, table in (("unit", UNIT_TABLE), ("suffix", SUFFIX_TABLE)):
        specs, db = _specs(tmp_path / name, table), tmp_path / f"{name}.db"
        cli("run", "toy/table1", "--specs-dir", str(specs), "--db", f"sqlite:///{db}", check=True)
        results[name] = _diff(cli, specs, db)
    for rows in results.values():
        assert [r["status"] for r in rows] == ["reproduced", "reproduced"]
    assert [r["ours_exact"] for r in results["unit"]] == [r["ours_exact"] for r in results["suffix"]] \
        == [858_868, 126_566_976]
    assert [r["ours"] for r in results["unit"]] == [858.87, 0.13]
    assert [r["printed"] for r in results["unit"]] == ["858.87", "0.13"]  # kept exactly as printed


def test_a_count_without_a_unit_fails_specs_check_with_the_hint(tmp_path, cli):
    no_unit = UNIT_TABLE.replace(", unit: K", "").replace(", unit: G", "")
    specs = _specs(tmp_path, no_unit)
    out = cli("specs", "check", "--specs-dir", str(specs))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "did you mean a unit on the column?" in out.stderr
    assert "'858.87' reads as 858.87 params" in out.stderr


def test_a_suffix_that_disagrees_with_the_column_is_a_spec_error(tmp_path, cli):
    specs = _specs(tmp_path, UNIT_TABLE.replace('GFLOPs: "0.13"', 'GFLOPs: "126.57M"'))
    out = cli("specs", "check", "--specs-dir", str(specs))
    assert out.returncode == 2
    assert ("column 'GFLOPs': '126.57M' carries its own unit 'M', which disagrees with the column's unit 'G'"
            in out.stderr)


def test_a_count_off_by_a_power_of_1000_says_unit(tmp_path, cli):
    # a column whose unit is wrong (M where the paper printed thousands): ours is a 1000th of the published reading
    specs = _specs(tmp_path, UNIT_TABLE.replace("unit: K", "unit: M"))
    db = tmp_path / "r.db"
    cli("run", "toy/table1", "--specs-dir", str(specs), "--db", f"sqlite:///{db}", check=True)
    rows = {r["column"]: r for r in _diff(cli, specs, db)}
    assert rows["Params (K)"]["status"] == "differs" and rows["Params (K)"]["unit_off"] == -1
    assert rows["GFLOPs"]["unit_off"] is None
    table = cli("diff", "toy/table1", "--specs-dir", str(specs), "--db", f"sqlite:///{db}").stdout
    assert "differs (unit?)" in table


def test_units_off_only_for_powers_of_1000():
    from repro.compare import units_off

    assert units_off(4_261_431_296, 4.24) == 3
    assert units_off(4.26e6, 4.24e9) == -1
    assert units_off(4.26e9, 4.24e9) is None and units_off(2e9, 4.24e6) is None


# --- selectors ---------------------------------------------------------------------------------------

def _plan(cli, *args) -> list[dict]:
    out = cli("run", *args, "--dry-run", "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_row_target_plans_that_rows_jobs_only(tmp_path, cli, toy_specs):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    whole = _plan(cli, "toy/table1", "--budget", "smoke", "--specs-dir", str(toy_specs), "--db", db)
    row = _plan(cli, "toy/table1/CRA-ResNet-56", "--budget", "smoke", "--specs-dir", str(toy_specs), "--db", db)
    assert len(whole) == 4 and len(row) == 2
    assert {j["model"] for j in row} == {"cra_resnet56_cifar"}
    assert {j["job"] for j in row} <= {j["job"] for j in whole}  # the same jobs, not new ones
    by_model = _plan(cli, "toy", "--model", "resnet56_cifar", "--specs-dir", str(toy_specs), "--db", db)
    assert {j["model"] for j in by_model} == {"resnet56_cifar"} and len(by_model) == 2


def test_a_smoke_run_of_one_row_runs_only_its_jobs(tmp_path, cli, toy_specs, fake_cifar100):
    db = tmp_path / "r.db"
    out = cli("run", "toy/table1/ResNet-56", "--budget", "smoke", "--specs-dir", str(toy_specs),
              "--db", f"sqlite:///{db}", "--data-dir", str(fake_cifar100), "--checkpoint-dir", str(tmp_path / "ck"))
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(db) as con:
        jobs = con.execute("select model, kind, state from jobs").fetchall()
    assert sorted(jobs) == [("resnet56_cifar", "profile", "done"), ("resnet56_cifar", "train", "done")]


def test_an_unknown_row_or_model_is_one_line_listing_the_known_ones(tmp_path, cli, toy_specs):
    out = cli("run", "toy/table1/ResNet-110", "--dry-run", "--specs-dir", str(toy_specs))
    assert out.returncode == 2 and out.stderr == \
        "error: unknown row 'ResNet-110' in toy/table1; known: ResNet-56, CRA-ResNet-56\n"
    out = cli("diff", "toy/table1", "--model", "nope", "--specs-dir", str(toy_specs), "--db", "sqlite:///x.db")
    assert out.returncode == 2 and "--model 'nope': no selected cell uses it; models there: cra_resnet56_cifar, " \
        "resnet56_cifar" in out.stderr


def test_diff_of_a_row_shows_that_row(tmp_path, cli, toy_specs):
    db = tmp_path / "r.db"
    cli("run", "toy", "--kind", "profile", "--specs-dir", str(toy_specs), "--db", f"sqlite:///{db}", check=True)
    out = cli("diff", "toy/table1/CRA-ResNet-56", "--format", "json", "--specs-dir", str(toy_specs),
              "--db", f"sqlite:///{db}")
    rows = json.loads(out.stdout)
    assert {r["row"] for r in rows} == {"CRA-ResNet-56"} and len(rows) == 3


def test_select_is_reusable_and_keeps_whole_tables_named_beside_a_row(toy_specs):
    from repro.catalog import load_catalog
    from repro.plan import select

    catalog = load_catalog([toy_specs])
    one = select(catalog, ["toy/table1/ResNet-56"])
    assert one.keeps("toy/table1/ResNet-56/Params") and not one.keeps("toy/table1/CRA-ResNet-56/Params")
    both = select(catalog, ["toy/table1/ResNet-56", "toy/table1"])
    assert both.keeps("toy/table1/CRA-ResNet-56/Params")
    assert select(catalog, ["toy"]).cells is None


# --- the counter finder ------------------------------------------------------------------------------

def test_explain_counts_every_way_with_one_build_per_model(toy_specs, monkeypatch):
    from repro import explain
    from repro.catalog import load_catalog

    builds = []

    def counting_build(model, kwargs):
        builds.append(model)
        return explain.build(model, kwargs)

    paper = load_catalog([toy_specs]).papers["toy"]
    ex = explain.explain_table(paper, "table1", builder=counting_build)
    assert sorted(builds) == ["cra_resnet56_cifar", "resnet56_cifar"] and ex.builds == 2
    params = {c.row: c for c in ex.cells if c.metric == "params"}
    macs = {c.row: c for c in ex.cells if c.metric == "macs"}
    assert params["ResNet-56"].counts["torch"] == 858_868 and params["ResNet-56"].matches == ["torch"]
    assert params["ResNet-56"].counts["mxnet"] > 858_868  # BN running statistics counted
    assert macs["ResNet-56"].used == "thop-2001" and "thop-2001" in macs["ResNet-56"].matches
    assert set(macs["ResNet-56"].counts) == {"thop-2001", "thop-2004", "thop-0.1"}
    assert ex.suggested_profile() == "thop-2001"


def test_specs_explain_cli_names_the_profile_the_spec_uses(cli, toy_specs):
    out = cli("specs", "explain", "toy/table1", "--specs-dir", str(toy_specs), "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert all(r["spec reproduces"] for r in rows) and {r["spec uses"] for r in rows} == {"torch", "thop-2001"}
    text = cli("specs", "explain", "toy/table1", "--specs-dir", str(toy_specs)).stdout
    assert "suggested: counter_profile: thop-2001" in text and "2 model build(s)" in text


def test_models_show_profile_all_and_list_search(cli):
    out = cli("models", "show", "resnet56_cifar", "--num-classes", "100", "--profile", "all", "--format", "json")
    rows = {(r["count"], r["way"]): r["value"] for r in json.loads(out.stdout)}
    assert rows[("params", "plain")] == 858_868 and rows[("macs", "thop-2001")] == 126_566_976
    assert len(rows) == 5
    out = cli("models", "list", "--search", "skresnet*", "--format", "json")
    names = [r["model"] for r in json.loads(out.stdout)]
    assert "timm/skresnet18" in names and all("skresnet" in n for n in names)


# --- ghost BN: a layer with no ghost form, before anything runs ---------------------------------------

SYNC_PLUGIN = """\
from torch import nn
from repro.plugins import register_model


@register_model("sync_bn_net")
def sync_bn_net(num_classes=100):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))
"""


def test_no_ghost_form_is_one_line_at_specs_check_and_dry_run(tmp_path, cli):
    meta = TOY_PAPER.replace("    epochs: 4\n", "    epochs: 4\n    bn_batch: 32\n") + "plugins: [sync.py]\n"
    table = textwrap.dedent("""\
        table: table1
        title: "T"
        columns: [{label: Error, metric: top1_err}]
        defaults: {recipe: tiny}
        rows: [{label: Net, model: sync_bn_net, values: {Error: "30.0"}}]
        """)
    specs = write_toy(tmp_path / "specs", table=table, meta=meta)
    (specs / "toy" / "sync.py").write_text(SYNC_PLUGIN)
    for args in (("specs", "check"), ("run", "toy", "--dry-run")):
        out = cli(*args, "--specs-dir", str(specs), "--db", f"sqlite:///{tmp_path / 'r.db'}") if args[0] == "run" \
            else cli(*args, "--specs-dir", str(specs))
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert "bn_batch: model 'sync_bn_net': layer 1 is a SyncBatchNorm, which has no ghost form" in out.stderr
    assert not (tmp_path / "r.db").exists()


# --- promises kept -----------------------------------------------------------------------------------

def _commands():
    import typer.main

    from repro.cli import app

    def walk(c, path=()):
        if hasattr(c, "commands"):
            for name, sub in c.commands.items():
                yield from walk(sub, path + (name,))
        else:
            yield path, c

    return list(walk(typer.main.get_command(app)))


# a command that reads or writes a database takes --db; every command but `new` reads specs
DB_COMMANDS = {("run",), ("bench",), ("diff",), ("report",), ("status",), ("artifacts",), ("models", "count")}


def test_every_commands_help_shows_the_shared_options():
    """In-process (typer's runner): help is pure parsing, as in test_cli's help test."""
    from typer.testing import CliRunner

    from repro.cli import app

    commands = _commands()
    assert len(commands) >= 14
    missing = []
    for path, _ in commands:
        # writes a paper; reads args.yaml; reads a bundle: no spec
        if path in (("new",), ("recipe", "from-timm"), ("import",)):
            continue
        out = CliRunner().invoke(app, [*path, "--help"])
        assert out.exit_code == 0, out.output
        wanted = ["--specs-dir", "--plugins", "-h, --help"] + (["--db"] if path in DB_COMMANDS else [])
        missing += [f"{' '.join(path)} {opt}" for opt in wanted if opt not in out.output]
    assert missing == []


def test_a_paper_from_a_folder_of_its_own_is_stored_beside_it(tmp_path, cli, toy_specs, monkeypatch):
    from repro.paths import CHECKOUT, own_db

    monkeypatch.delenv("REPRO_DB", raising=False)
    monkeypatch.delenv("REPRO_SPECS", raising=False)
    assert own_db(None, ["@builtin", str(toy_specs)]) == f"sqlite:///{toy_specs.resolve() / 'results.db'}"
    assert own_db(None, ["@builtin"]) is None and own_db(None, [str(CHECKOUT / "specs")]) is None
    assert own_db("sqlite:///x.db", [str(toy_specs)]) == "sqlite:///x.db"
    before = (CHECKOUT / "results.db").stat().st_mtime_ns if (CHECKOUT / "results.db").exists() else None
    out = cli("run", "toy", "--kind", "profile", "--specs-dir", "@builtin", "--specs-dir", str(toy_specs))
    assert out.returncode == 0, out.stderr
    assert (toy_specs / "results.db").exists()
    after = (CHECKOUT / "results.db").stat().st_mtime_ns if (CHECKOUT / "results.db").exists() else None
    assert before == after
    assert cli("status", "--specs-dir", str(toy_specs)).stdout.startswith("2 done")


def test_one_default_counter_profile():
    from repro.scaffold import PAPER_YAML
    from repro.specs import DEFAULT_COUNTER_PROFILE, PaperSpec

    assert PaperSpec(paper="p", title="t", authors="a", source="s").counter_profile == DEFAULT_COUNTER_PROFILE
    assert f"counter_profile: {DEFAULT_COUNTER_PROFILE}" in PAPER_YAML.format(slug="p", slug_py="p",
                                                                            profile=DEFAULT_COUNTER_PROFILE)


def test_short_budgets_get_a_panel_of_their_own(toy_specs):
    from repro import figures
    from repro.catalog import load_catalog
    from repro.compare import Comparison

    paper = load_catalog([toy_specs]).papers["toy"]

    def cell(row, budget, ours):
        return Comparison(paper="toy", table="table1", section=None, row=row, column="Error", metric="top1_err",
                          printed="27.25", published=27.25, ours=ours, ours_exact=ours, std=None, n=1,
                          delta=ours - 27.25, budget=budget, status="inconclusive", detail=None, uncertain=None,
                          reason=None, config_key=None, jobs=[])

    fig = figures.ours_vs_published_figure(paper,
                                           [cell("ResNet-56", "full", 27.5), cell("CRA-ResNet-56", "smoke", 80.0)])
    axes = fig.get_axes()
    assert len(axes) == 2 and "short budgets" in axes[1].get_title()
    assert axes[0].get_xlim()[1] < 10  # the full result's axis is not stretched to the smoke run's +52.75
