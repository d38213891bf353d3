"""The HTML report and the figures, on a temporary database: se-r's static Tables 1-2 measured by the real
CLI, plus clearly synthetic trained cells (three seeds of Table 3 at full budget, Table 4's SE-A rows at
the smoke budget) written through the Database API. One test opens the page in a real headless Chromium.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import event

from conftest import REPO, repro, write_toy
from repro import figures
from repro.catalog import load_catalog
from repro.compare import compare_paper
from repro.db import Database
from repro.html import render_html
from repro.plan import plan
from repro.report import render

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PROVENANCE = dict(host="fixture-host", device="synthetic-gpu", git_commit="abc1234def", git_dirty=True,
                  engine="fast", precision="bf16", compiled=True, threads=8)
EPOCHS = 6


def write_trained(db: Database, catalog, paper, table: str, seeds: int, budget: str, rows: set[str] | None = None):
    """Synthetic finished training jobs: metrics, a run with full provenance, and an EPOCHS-point curve."""
    rng = random.Random(f"{table}-{budget}")
    jobs = [j for j in plan(catalog, [(paper, table)], budget=budget, seeds=seeds)
            if rows is None or any(c.split("/")[2] in rows for c in j.cells)]
    db.add_jobs(j.row() for j in jobs)
    for j in jobs:
        assert db.claim(j.id, "fixture", stale_before=dt.datetime(2000, 1, 1))
        run = db.start_run(j.id, "fixture", pid=1, versions={"synthetic": "yes"}, **PROVENANCE)
        err = 21.0 - (1.0 if "se_r" in j.model else 0.0) + rng.gauss(0, 0.3)
        for epoch in range(1, EPOCHS + 1):
            decay = math.exp(-3 * epoch / EPOCHS)
            db.put_curve_point(j.id, run, "fixture", dict(epoch=epoch, train_loss=4 * decay, train_top1_err=70 * decay,
                                               train_top5_err=30 * decay, test_top1_err=err + 50 * decay,
                                               test_top5_err=err / 4 + 20 * decay, lr=0.1, seconds=1.0))
        # the curve's lowest test error is its last epoch's: best and final agree (se-r is judged on best)
        db.complete(j.id, run, "fixture", {"top1_err": (err, None), "top1_acc": (100 - err, None),
                                           "top5_err": (err / 4, None), "top5_acc": (100 - err / 4, None),
                                           "best_top1_err": (err, None), "best_top5_err": (err / 4, None)})
    return jobs


def curve_from_runs(runs: dict[str, list[dict]], metrics) -> figures.Curve:
    """What the database's curve summary should hold, computed from every seed's points in memory."""
    by_epoch: dict[int, list[dict]] = {}
    for points in runs.values():
        for p in points:
            by_epoch.setdefault(p["epoch"], []).append(p)
    rows = []
    for epoch in sorted(e for e, ps in by_epoch.items() if len(ps) == len(runs)):
        row = {"epoch": epoch}
        for m in metrics:
            values = [p[m] for p in by_epoch[epoch]]
            row.update({f"{m}_mean": sum(values) / len(values), f"{m}_min": min(values), f"{m}_max": max(values)})
        rows.append(row)
    return figures.Curve(len(runs), rows)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A rendered se-r report (Markdown, figures, HTML) over the synthetic database."""
    root = tmp_path_factory.mktemp("html")
    url = f"sqlite:///{root / 'r.db'}"
    repro("run", "se-r/table1", "se-r/table2", "--db", url, check=True)
    catalog = load_catalog()
    paper = catalog.papers["se-r"]
    db = Database(url)
    write_trained(db, catalog, paper, "table3", seeds=3, budget="full")
    write_trained(db, catalog, paper, "table4", seeds=1, budget="smoke",
                  rows={"SE-A-ResNet34", "SE-A-ResNet50", "SE-A-ResNet101"})
    out = root / "reports"
    written = render(catalog, db, out, ["se-r"])
    return {"root": root, "db": db, "catalog": catalog, "paper": paper, "out": out, "written": written,
            "rows": compare_paper(paper, db)}


def expected_cells(rows, table: str) -> int:
    return sum(1 for r in rows if table in (None, r.table) and r.status != "not-printed")


def test_pages_written_with_every_cell_and_its_provenance(site):
    page = site["out"] / "se-r" / "index.html"
    assert page in site["written"] and site["out"] / "index.html" in site["written"]
    html = page.read_text()
    tables = dict(re.findall(r'<table class="report" data-table="(\w+)" data-cells="(\d+)">', html))
    segments = re.split(r'<table class="report" data-table="\w+"', html)[1:]  # one per table, in order
    for (table, n), segment in zip(tables.items(), segments):
        assert int(n) == expected_cells(site["rows"], table) == segment.count('<td class="cell"'), table
    assert len(tables) == 11 and sum(map(int, tables.values())) == expected_cells(site["rows"], None)
    # self-contained: nothing fetched from outside the file (figures inline); the one outside address is the
    # link to the paper from its citation, followed by a reader, never fetched
    outside = re.findall(r'(?:src|href)="((?:https?:|//|figures/)[^"]*)"', html)
    assert outside == ["https://arxiv.org/abs/2109.13860"], outside
    assert html.count('src="data:image/png;base64,') == 4  # Figs. 3-5 and the overview
    # Table 3's trained cells carry the runs' provenance and the assumptions in force
    t3 = html[html.index('data-table="table3"'):html.index('data-table="table4"')]
    for text in ("fixture-host", "synthetic-gpu", "fast", "bf16", "abc1234def"[:10], "dirty", "nesterov",
                 "recipe cifar100"):
        assert text in t3, text
    assert t3.count("fixture-host") == 18  # 6 cells x 3 seeds, one run each


def test_html_provenance_is_one_query_and_loads_no_curves(site):
    statements = []
    engine = site["db"].engine

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        render_html(site["catalog"], site["db"], site["out"], {"se-r": site["rows"]})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # provenance (by job id) is one query; diverged_for (by configuration) is another kind
    assert sum("FROM jobs LEFT OUTER JOIN runs" in s and "jobs.id IN" in s for s in statements) == 1
    assert not any("curve_points" in s for s in statements)


def test_spec_text_is_escaped(tmp_path):
    table = ('table: table1\ntitle: "Table 1 <i>x</i>"\ncaption: "<script>alert(1)</script> & co"\n'
             'defaults: {dataset: cifar100}\ncolumns:\n  - {label: Params, metric: params}\nrows:\n'
             '  - {label: "<b>ResNet-56</b>", model: resnet56_cifar, values: {Params: "858.87K"}}\n')
    catalog = load_catalog(write_toy(tmp_path / "specs", table=table))
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    rows = compare_paper(catalog.papers["toy"], db)
    render_html(catalog, db, tmp_path / "out", {"toy": rows})
    html = (tmp_path / "out" / "toy" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html and "<script>alert" not in html
    assert "&lt;b&gt;ResNet-56&lt;/b&gt;" in html and 'data-status="pending"' in html
    # a status this renderer does not know yet (compare.py may add some) is shown and filterable, not dropped
    import dataclasses

    render_html(catalog, db, tmp_path / "out", {"toy": [dataclasses.replace(rows[0], status="brand-new")]})
    html = (tmp_path / "out" / "toy" / "index.html").read_text()
    assert 'class="status-filter" value="brand-new"' in html and '<td class="cell" data-status="brand-new"' in html


def test_ours_vs_published_names_every_point_inside_the_figure(site):
    rows = site["rows"]
    fig = figures.ours_vs_published_figure(site["paper"], rows)
    measured = [r for r in rows if r.ours is not None and r.published is not None]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    names, boxes = [], []
    for ax in fig.axes:
        for tick in ax.get_yticklabels():
            names.append(tick.get_text())
            boxes.append(tick.get_window_extent(renderer))
    assert sorted(names) == sorted(figures.cell_name(r, site["paper"]) for r in measured)
    assert "T5 Dropout ratio 0.7 · Accuracy" in names or any(n.startswith("T5 ") and "ratio" in n for n in names)
    W, H = fig.canvas.get_width_height()
    for box in boxes:  # labels stay inside the image ...
        assert box.x0 >= 0 and box.x1 <= W and box.y0 >= 0 and box.y1 <= H
    ordered = sorted(boxes, key=lambda b: b.y0)
    for a, b in zip(ordered, ordered[1:]):  # ... and never overprint each other
        assert a.y1 <= b.y0 + 0.5
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "short budget (hollow)" in legend and "not-comparable" in legend
    hollow = [line for ax in fig.axes for line in ax.get_lines() if line.get_markerfacecolor() == "white"]
    assert hollow and sum(len(line.get_xdata()) for line in hollow) == 3  # the three smoke SE-A cells
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_curve_figures_follow_the_papers_layout(site, tmp_path):
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    paper = site["paper"]
    fig = figures.curve_figure(paper, paper.tables["figure3"], figures.curve_series(paper, paper.tables["figure3"],
                                                                                    site["db"]))
    (ax,) = fig.axes  # one panel: test error per epoch, SE-ResNet34 orange, SE-R-ResNet34 blue (caption)
    lines = ax.get_lines()
    assert [mcolors.to_hex(line.get_color()) for line in lines] == [mcolors.to_hex("tab:orange"),
                                                                    mcolors.to_hex("tab:blue")]
    assert list(lines[0].get_xdata()) == list(range(1, EPOCHS + 1))
    assert all(float(t).is_integer() for t in ax.get_xticks())  # whole epochs
    assert ax.get_ylabel() == "test top-1 error (%)" and "n=3" in ax.get_legend().get_texts()[0].get_text()
    plt.close(fig)
    # cra Fig. 6: training and test error of three models, two panels
    cra = site["catalog"].papers["cra"]
    points = [{"epoch": e, "train_top1_err": 50.0 / e, "test_top1_err": 30 + 20.0 / e, "train_loss": 1.0}
              for e in range(1, 4)]
    series = [(label, "full", curve_from_runs({label: points}, ("train_top1_err", "test_top1_err")))
              for label in ("ResNet-110", "SE-ResNet-110", "CRA-ResNet-110")]
    fig = figures.curve_figure(cra, cra.tables["figure6"], series)
    assert [ax.get_ylabel() for ax in fig.axes] == ["training top-1 error (%)", "test top-1 error (%)"]
    assert all(len(ax.get_lines()) == 3 for ax in fig.axes)
    plt.close(fig)
    # nothing measured: no figure, and a stale file of the same name is removed
    stale = tmp_path / "figure6.png"
    stale.write_bytes(b"old")
    assert figures.curves(cra, cra.tables["figure6"], site["db"], tmp_path) is None and not stale.exists()


def test_figures_are_redrawn_only_when_what_they_draw_changes(site, tmp_path, monkeypatch):
    import dataclasses

    paper, rows = site["paper"], site["rows"]
    drawn = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path, key: drawn.append(path.name) or save(fig, path, key))
    path = figures.ours_vs_published(paper, rows, tmp_path)
    curves = figures.curves(paper, paper.tables["figure3"], site["db"], tmp_path)
    assert drawn == ["ours_vs_published.png", "figure3.png"]
    first = path.read_bytes()
    assert figures.ours_vs_published(paper, rows, tmp_path) == path  # same inputs: the file is kept as it is
    assert figures.curves(paper, paper.tables["figure3"], site["db"], tmp_path) == curves
    assert len(drawn) == 2 and path.read_bytes() == first
    i = next(i for i, r in enumerate(rows) if r.ours is not None and r.published is not None)
    changed = rows[:i] + [dataclasses.replace(rows[i], ours=rows[i].ours + 1)] + rows[i + 1:]
    figures.ours_vs_published(paper, changed, tmp_path)  # one number moved: drawn again
    assert drawn[2:] == ["ours_vs_published.png"]
    path.write_bytes(first[:200])  # a damaged file is drawn again, never trusted
    figures.ours_vs_published(paper, changed, tmp_path)
    assert drawn[3:] == ["ours_vs_published.png"] and path.stat().st_size > 1000


def test_the_databases_curve_summary_equals_the_seeds_averaged_in_memory(site):
    """Figures read per-epoch aggregates computed by SQL (mean, min, max over seeds); the same numbers as
    averaging every seed's points in Python, and epochs that not every seed reached are left out."""
    from sqlalchemy import select

    from repro.db import CurvePoint

    db, metrics = site["db"], ("train_top1_err", "test_top1_err")
    jobs = [r["job"] for r in site["db"].results_for([r.config_key for r in site["rows"] if r.table == "table3"])
            if r["kind"] == "train"][:3]
    with db.Session() as s:
        runs = {j: [{"epoch": p.epoch, **{m: getattr(p, m) for m in metrics}}
                    for p in s.scalars(select(CurvePoint).where(CurvePoint.job_id == j).order_by(CurvePoint.epoch))]
                for j in jobs}
    want = curve_from_runs(runs, metrics).points
    got = db.curve_summary(jobs, metrics)
    assert len(jobs) == 3 and [p["epoch"] for p in got] == list(range(1, EPOCHS + 1))
    for a, b in zip(got, want):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-9) for k in a)
    assert got[0]["test_top1_err_min"] < got[0]["test_top1_err_mean"] < got[0]["test_top1_err_max"]
    runs[jobs[0]] = runs[jobs[0]][:4]  # a seed still running: only the epochs all seeds reached
    assert [p["epoch"] for p in curve_from_runs(runs, metrics).points] == [1, 2, 3, 4]


def _browser():
    """A headless system Chromium through Selenium, or a skip saying what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not exe.exists():
            pytest.skip(f"{exe} not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="repro-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    return driver, profile


def test_report_in_a_real_browser(site, tmp_path):
    from selenium.webdriver.common.by import By

    driver, profile = _browser()
    try:
        driver.get((site["out"] / "se-r" / "index.html").resolve().as_uri())
        # every table shows one cell per printed number
        for table in ("table1", "table2", "table3", "table4", "table5", "table6"):
            cells = driver.find_elements(By.CSS_SELECTOR, f'table[data-table="{table}"] td.cell')
            assert len(cells) == expected_cells(site["rows"], table), table
            assert all(c.is_displayed() for c in cells)

        # sorting: Table 1's parameter column, ascending then descending (pending/empty cells would go last)
        def column(table, col):
            rows = driver.find_elements(By.CSS_SELECTOR, f'table[data-table="{table}"] tr.datarow')
            return [(r.find_element(By.CSS_SELECTOR, "th").text,
                     float(r.find_elements(By.CSS_SELECTOR, "td.cell")[col].get_attribute("data-sort")))
                    for r in rows]

        header = driver.find_element(By.CSS_SELECTOR, 'table[data-table="table1"] thead th[data-col="1"]')
        before = column("table1", 0)
        header.click()
        up = column("table1", 0)
        assert [v for _, v in up] == sorted(v for _, v in before) and up[0][0] == "SE-ResNet34"
        assert header.get_attribute("aria-sort") == "ascending"
        header.click()
        down = column("table1", 0)
        assert down == up[::-1] and down[0][0] == "SE-R-ResNet101"
        # sorting by the row label (text) puts the rows in alphabetical order
        driver.find_element(By.CSS_SELECTOR, 'table[data-table="table3"] thead th[data-col="0"]').click()
        labels = [r.text for r in driver.find_elements(By.CSS_SELECTOR, 'table[data-table="table3"] tr.datarow > th')]
        assert labels == sorted(labels, key=str.lower) and len(labels) == 6

        # filtering: keep one status; every other cell is hidden, rows without that status disappear
        boxes = driver.find_elements(By.CSS_SELECTOR, "input.status-filter")
        statuses = [b.get_attribute("value") for b in boxes]
        assert {"reproduced", "pending", "not-comparable"} <= set(statuses)
        keep = "not-comparable"
        for b in boxes:
            if b.get_attribute("value") != keep:
                b.click()
        cells = driver.find_elements(By.CSS_SELECTOR, "td.cell")
        shown = [c for c in cells if c.is_displayed()]
        assert len(shown) == sum(1 for r in site["rows"] if r.status == keep) == 3
        assert all(c.get_attribute("data-status") == keep for c in shown)
        rows = [r for r in driver.find_elements(By.CSS_SELECTOR, 'table[data-table="table1"] tr.datarow')]
        assert rows and not any(r.is_displayed() for r in rows)
        for b in boxes:
            if not b.is_selected():
                b.click()
        assert all(c.is_displayed() for c in driver.find_elements(By.CSS_SELECTOR, "td.cell"))

        # expanding a trained cell shows its provenance
        cell = driver.find_element(By.CSS_SELECTOR, 'table[data-table="table3"] td.cell')
        body = cell.find_element(By.CSS_SELECTOR, "details.prov .body")
        assert not body.is_displayed()
        cell.find_element(By.CSS_SELECTOR, "details.prov summary").click()
        assert body.is_displayed()
        text = body.text
        for fact in ("synthetic-gpu", "fast", "bf16", "abc1234def", "dirty", "fixture-host", "nesterov"):
            assert fact in text, fact
        assert len(body.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")) == 3  # three seeds

        # the figures are inline images that decoded
        images = driver.find_elements(By.CSS_SELECTOR, "figure img")
        assert len(images) == 4 and all(driver.execute_script("return arguments[0].naturalWidth", i) > 100
                                        for i in images)
        shot = tmp_path / "screenshot.png"
        driver.get((site["out"] / "se-r" / "index.html").resolve().as_uri() + "#table3")
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        driver.get((site["out"] / "index.html").resolve().as_uri())
        assert driver.find_element(By.LINK_TEXT, "se-r").get_attribute("href").endswith("se-r/index.html")
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_readmes_screenshot_is_the_real_report(tmp_path):
    """The picture README.md shows: cra Table V of the report over the project's own results (a copy of
    results.db), one not-reproducible FLOPs cell's provenance expanded. Regenerate it with
    ``REPRO_SCREENSHOT=reports/screenshot.png python -m pytest tests/test_html.py -k readme``."""
    from selenium.webdriver.common.by import By

    shutil.copy(REPO / "results.db", tmp_path / "results.db")
    catalog = load_catalog()
    render(catalog, Database(f"sqlite:///{tmp_path / 'results.db'}", create=False), tmp_path / "reports", ["cra"])
    driver, profile = _browser()
    try:
        driver.get((tmp_path / "reports" / "cra" / "index.html").resolve().as_uri())
        table = driver.find_element(By.CSS_SELECTOR, 'table[data-table="table5"]')
        cell = table.find_element(By.CSS_SELECTOR, 'td.cell[data-status="not-reproducible"]')
        cell.find_element(By.CSS_SELECTOR, "details.prov summary").click()
        body = cell.find_element(By.CSS_SELECTOR, "details.prov .body")
        assert body.is_displayed() and "thop-2001" in body.text and "why not reproducible" in body.text
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)  # the cell, expanded
        shot = tmp_path / "screenshot.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    if os.environ.get("REPRO_SCREENSHOT"):
        shutil.copy(shot, os.environ["REPRO_SCREENSHOT"])
