"""The GPU-hour estimate: cached counts, reused profile jobs, and measured throughput where it exists; a read
never builds a model (a configuration with no stored count is unknown), ``store_counts`` (the write) does.

Every database here is a temporary SQLite file; benchmark rows and cached counts are synthetic
(device ``cuda:SYNTHETIC TEST GPU``, round numbers), never measurements.
"""
from __future__ import annotations

import datetime as dt

import pytest

from repro import estimate as est
from repro.catalog import load_catalog
from repro.db import Database
from repro.expanded import expand
from repro.plan import config_key

SYNTHETIC_MACS = 10**9  # every model "costs" 1 GMAC forward in the synthetic cache
GPU = "cuda:SYNTHETIC TEST GPU"


@pytest.fixture()
def db(tmp_path):
    return Database(f"sqlite:///{tmp_path / 'e.db'}")


@pytest.fixture(scope="module")
def serp():
    catalog = load_catalog()
    return catalog, catalog.papers["se-r"]


def training_configs(paper) -> dict[str, dict]:
    return expand(paper).configs()


def fill_synthetic_cache(db, paper) -> None:
    rows = []
    for k, c in est.count_configs(paper).items():
        rows.append({"key": est.cache_key(k), "config_key": k, "code": est.code(),
                     "model": c["model"], "model_kwargs": c["model_kwargs"], "input_size": c["input_size"],
                     "counter_profile": c["counter_profile"], "macs": SYNTHETIC_MACS, "params": 1})
    db.put_model_counts(rows)


def no_build(cfg):
    raise AssertionError(f"built {cfg['model']}: the count should have come from the database")


def assumed_hours(configs) -> float:
    return sum(3 * SYNTHETIC_MACS * est.images_seen(c) for c in configs) / (60e12 * 3600)


def bench_row(key: str, cfg: dict, device: str, img_per_s: float) -> dict:
    return {"job_id": "synthetic", "config_key": key, "model": cfg["model"], "config": cfg, "device": device,
            "engine": "fast", "precision": "bf16", "compiled": False, "batch_size": 128, "steps": 20,
            "img_per_s": img_per_s, "ms_per_step": 128e3 / img_per_s, "peak_mem_mb": 1.0,
            "projected_hours": None, "git_commit": None}


def test_assumed_estimate_reads_cached_counts_without_building(db, serp, monkeypatch):
    catalog, paper = serp
    fill_synthetic_cache(db, paper)
    monkeypatch.setattr(est, "_count", no_build)
    e = est.estimate(paper, db)
    configs = training_configs(paper)
    assert (e.pending, e.assumed, e.measured) == (len(configs), len(configs), {})
    assert e.hours == pytest.approx(assumed_hours(configs.values()))
    assert "assumed throughput (60 TMAC/s), not measured on a GPU yet" in e.note


def test_estimate_switches_to_the_fastest_cuda_measurement(db, serp, monkeypatch):
    catalog, paper = serp
    fill_synthetic_cache(db, paper)
    monkeypatch.setattr(est, "_count", no_build)
    configs = training_configs(paper)
    (k1, c1), (k2, c2) = list(configs.items())[:2]
    db.put_benchmark(bench_row(k1, c1, GPU, 1000.0))
    db.put_benchmark(bench_row(k1, c1, GPU, 5000.0))  # a faster engine/precision on the same GPU wins
    db.put_benchmark(bench_row(k2, c2, "cpu (2 cores, 1 threads)", 1e9))  # CPU: not a GPU-hour, ignored
    e = est.estimate(paper, db)
    rest = [c for k, c in configs.items() if k != k1]
    assert (e.pending, e.assumed) == (len(configs), len(configs) - 1)
    assert e.measured == {GPU: [c1["model"]]}
    assert e.hours == pytest.approx(assumed_hours(rest) + est.images_seen(c1) / 5000.0 / 3600)
    assert f"measured on {GPU} (1: {c1['model']}) by repro bench for 1 of {len(configs)} configurations" in e.note
    assert f"the other {len(configs) - 1} assumed at 60 TMAC/s" in e.note


def test_a_read_builds_nothing_and_says_unknown(db, serp, monkeypatch):
    catalog, paper = serp
    monkeypatch.setattr(est, "_count", no_build)
    configs = training_configs(paper)
    e = est.estimate(paper, db)  # an empty database: no profile job, no cached count
    assert (e.pending, e.assumed, e.hours, len(e.unknown)) == (len(configs), 0, 0.0, len(configs))
    assert e.hours_text == "unknown" and f"GPU-hours {len(configs)} unknown, left out" in e.note
    stored = dict(list(est.count_configs(paper).items())[:3])  # three counts cached, the rest unknown
    db.put_model_counts([{"key": est.cache_key(k), "config_key": k, "code": est.code(), "model": c["model"],
                          "model_kwargs": c["model_kwargs"], "input_size": c["input_size"],
                          "counter_profile": c["counter_profile"], "macs": SYNTHETIC_MACS, "params": 1}
                         for k, c in stored.items()])
    known = [cfg for cfg in configs.values()
             if config_key(est._count_config_of(cfg, paper.spec.counter_profile)) in stored]
    part = est.estimate(paper, db)
    assert (part.assumed, len(part.unknown)) == (len(known), len(configs) - len(known))
    assert part.hours == pytest.approx(assumed_hours(known))
    assert part.hours_text == f"≥ {part.hours:,.0f}" and f"= at least {part.hours:,.0f} GPU-hours; " in part.note


def test_counts_are_cached_once_and_profile_jobs_reused(db, monkeypatch):
    cfg = est.count_config("resnet56_cifar", {"num_classes": 10}, (1, 3, 32, 32), "thop-2001")
    key = config_key(cfg)
    assert est.forward_macs(db, {key: cfg}) == {}  # a read: nothing stored, nothing built
    assert est.store_counts(db, {key: cfg}) == 1
    assert est.forward_macs(db, {key: cfg}) == {key: 126_555_456}  # cra Table V's ResNet-56: 126.56M
    assert [r["macs"] for r in db.model_counts([est.cache_key(key)]).values()] == [126_555_456]
    monkeypatch.setattr(est, "_count", no_build)
    assert est.store_counts(db, {key: cfg}) == 0  # stored once per model-code version
    assert est.forward_macs(db, {key: cfg}) == {key: 126_555_456}

    # a done profile job of the same configuration (a static cell) is used as it is
    other = est.count_config("resnet110_cifar", {"num_classes": 10}, (1, 3, 32, 32), "thop-2001")
    other_key = config_key(other)
    db.add_jobs([{"id": "synthetic-profile", "config_key": other_key, "kind": "profile", "model": other["model"],
                  "budget": "static", "seed": None, "spec": other}])
    assert db.claim("synthetic-profile", "test", dt.datetime(2000, 1, 1))
    run = db.start_run("synthetic-profile", "test", host="test", pid=0, device="cpu", git_commit=None, git_dirty=None,
                       versions={})
    db.complete("synthetic-profile", run, "test", {"macs": (123.0, "thop-2001")})
    assert est.forward_macs(db, {other_key: other}) == {other_key: 123}



def test_the_report_index_shows_unknown_hours_without_building(db, serp, monkeypatch, tmp_path):
    from repro.compare import compare_paper
    from repro.report import _render_index

    catalog, paper = serp
    monkeypatch.setattr(est, "_count", no_build)
    index = _render_index(catalog, db, tmp_path, {"se-r": compare_paper(paper, db)}).read_text()
    row = next(line for line in index.splitlines() if line.startswith("| [se-r]"))
    assert row.endswith("| unknown |") and "unknown, left out: no MAC count stored" in index
    fill_synthetic_cache(db, paper)
    index = _render_index(catalog, db, tmp_path, {"se-r": compare_paper(paper, db)}).read_text()
    hours = assumed_hours(training_configs(paper).values())
    assert next(line for line in index.splitlines() if line.startswith("| [se-r]")).endswith(f"| {hours:,.0f} |")


def test_models_count_stores_what_the_report_reads(cli, toy_specs, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'counts.db'}"
    first = cli("models", "count", "toy/table1", "--specs-dir", str(toy_specs), "--db", url, check=True)
    assert first.stdout.strip().splitlines()[-1].startswith("2 training configuration(s): 2 counted, 0 already stored")
    catalog = load_catalog(toy_specs)
    db = Database(url, create=False)
    e = est.estimate(catalog.papers["toy"], db)
    assert (e.pending, e.assumed, e.unknown) == (2, 2, []) and e.hours > 0
    monkeypatch.setattr(est, "_count", no_build)  # what the command stored is what a later one finds
    assert est.store_counts(db, est.count_configs(catalog.papers["toy"])) == 0
