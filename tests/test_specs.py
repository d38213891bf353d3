"""Every spec loads and expands; every kind of spec error is one line, exit code 2, no DB."""
from __future__ import annotations

import json

import pytest

from repro.plan import cell_config, plan, resolve_targets
from repro.catalog import load_catalog
from repro.specs import Printed, table_cells

from conftest import SPECS, TOY_TABLE, write_toy

CATALOG = load_catalog(SPECS)
TABLES = [(p, t) for p in CATALOG.papers for t in CATALOG.papers[p].tables]


@pytest.mark.parametrize("paper, table", TABLES, ids=[f"{p}/{t}" for p, t in TABLES])
def test_every_spec_loads_and_expands(paper, table):
    p = CATALOG.papers[paper]
    spec = p.tables[table]
    cells = table_cells(p, spec)
    if spec.kind == "table":
        assert cells, "a table spec without published cells"
    for cell in cells:
        if cell.published.value not in ("-", "?"):
            assert Printed.parse(cell.published.value).text == cell.published.value
        cfg = cell_config(p, cell)
        assert (cfg is None) == bool(cell.cited or cell.published.value == "-")
    plan(CATALOG, [(p, table)])


def test_printed_numbers_keep_their_digits():
    assert Printed.parse("26.00").decimals == 2
    p = Printed.parse("21.655M")
    assert (p.value, p.decimals, p.suffix, p.base) == (21.655, 3, "M", 21_655_000.0)
    assert p.rounds_to(21_655_420) == 21.655
    assert Printed.parse("853.02K").rounds_to(853_018) == 853.02
    with pytest.raises(ValueError):
        Printed.parse("about 9.6%")


BAD = {
    "yaml-syntax": ("table: table1\ncolumns: [oops\n", "YAML syntax error"),
    "unknown-key": (TOY_TABLE + "colour: blue\n", "colour: unknown key"),
    "unknown-model": (TOY_TABLE.replace("model: resnet56_cifar", "model: resnet9000"), "unknown model 'resnet9000'"),
    "missing-value": (TOY_TABLE.replace('Error: "27.25"', "Error: "), "missing published value"),
    "wrong-type": (TOY_TABLE.replace('Error: "27.25"', "Error: [27.25]"), "expected a number as printed"),
    "wrong-type-field": (TOY_TABLE.replace("title: \"Table 1\"", "title: [1, 2]"),
                         "title: Input should be a valid string"),
    "unknown-metric": (TOY_TABLE.replace("metric: top1_err", "metric: top1_error"), "unknown metric 'top1_error'"),
    "unknown-model-option": (TOY_TABLE.replace("model: resnet56_cifar,",
                                               "model: resnet56_cifar, model_kwargs: {depth: 3},"),
                             "has no option 'depth'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_spec_errors_are_one_line_exit_2_and_write_nothing(case, tmp_path, cli):
    text, expected = BAD[case]
    specs = write_toy(tmp_path / "specs", table=text)
    db = tmp_path / "r.db"
    proc = cli("run", "toy/table1", "--specs-dir", str(specs), "--db", f"sqlite:///{db}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "table1.yaml" in lines[0] and expected in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert not db.exists()
    check = cli("specs", "check", "--specs-dir", str(specs))
    assert check.returncode == 2 and check.stderr.strip() == lines[0]


def test_specs_dir_from_environment(tmp_path, cli):
    specs = write_toy(tmp_path / "specs")
    proc = cli("specs", "check", env={"REPRO_SPECS": str(specs)})
    assert proc.returncode == 0, proc.stderr
    assert "toy: 1 spec file(s), 6 published cells: ok" in proc.stdout


def test_repo_specs_check_passes(cli):
    proc = cli("specs", "check")
    assert proc.returncode == 0, proc.stderr
    assert "se-r: 14 spec file(s)" in proc.stdout


def test_bare_table_name_in_several_papers_is_an_error(tmp_path, cli):
    specs = write_toy(tmp_path / "specs")
    write_toy(specs, paper="other")
    proc = cli("run", "table1", "--dry-run", "--specs-dir", str(specs), "--db", f"sqlite:///{tmp_path}/r.db")
    assert proc.returncode == 2
    assert "exists in several papers: other/table1, toy/table1" in proc.stderr
    ok = cli("run", "table1", "--paper", "toy", "--dry-run", "--format", "json", "--specs-dir", str(specs),
             "--db", f"sqlite:///{tmp_path}/r.db")
    assert ok.returncode == 0, ok.stderr
    jobs = json.loads(ok.stdout)
    assert sorted(j["kind"] for j in jobs) == ["profile", "profile", "train", "train"]


def test_resolve_targets_whole_paper():
    resolved = resolve_targets(CATALOG, ["se-r"])
    assert {t for _, t in resolved} == set(CATALOG.papers["se-r"].tables)
    with pytest.raises(Exception, match="unknown table"):
        resolve_targets(CATALOG, ["se-r/table99"])


PAPERS_DIR = SPECS.parent.parent / "shared" / "papers"


@pytest.mark.skipif(not PAPERS_DIR.is_dir(), reason="../shared/papers is not beside this checkout")
@pytest.mark.parametrize("paper", sorted(CATALOG.papers))
def test_every_published_value_is_printed_in_the_paper(paper):
    """A transcription guard: each value, as written in the spec, occurs verbatim in the paper text."""
    p = CATALOG.papers[paper]
    text = (PAPERS_DIR / p.spec.source).read_text()
    missing = [(t, c.row, c.column, c.published.value) for t, spec in p.tables.items()
               for c in table_cells(p, spec) if c.published.value not in ("-", "?") and c.published.value not in text]
    assert not missing
