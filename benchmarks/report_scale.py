"""How long `repro report` takes over a campaign-sized database: a SYNTHETIC SQLite file with ~10,000
done runs (every training cell of the four papers x enough seeds) and 200 curve points each, written
with bulk inserts (no training runs; the numbers are random). Prints the seconds of each phase.

    python benchmarks/report_scale.py [--runs 10000] [--points 200] [--keep DIR]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert


def build(url: str, runs: int, points: int) -> int:
    from repro.catalog import load_catalog
    from repro.db import CurvePoint, Database, Job, Metric, Run, utcnow
    from repro.plan import plan, published_rows, resolve_targets

    catalog = load_catalog()
    targets = resolve_targets(catalog, list(catalog.papers))
    per_seed = len(plan(catalog, targets, kinds={"train"}))
    seeds = -(-runs // per_seed)
    jobs = plan(catalog, targets, seeds=seeds, kinds={"train"}, max_jobs=10 * runs)[:runs]
    db = Database(url)
    db.sync_published(*published_rows(catalog, targets))
    rng, now = random.Random(0), utcnow()
    with db.engine.begin() as con:
        con.execute(insert(Job.__table__), [{**j.row(), "state": "done", "created_at": now, "updated_at": now}
                                            for j in jobs])
        con.execute(insert(Run.__table__), [
            {"id": i + 1, "job_id": j.id, "status": "done", "started_at": now, "ended_at": now, "host": "synthetic",
             "pid": 0, "device": "synthetic", "versions": {}, "engine": "fast", "precision": "bf16", "compiled": False,
             "threads": 1} for i, j in enumerate(jobs)])
        metrics = []
        for i, j in enumerate(jobs):
            err = rng.uniform(5, 30)
            for name, value in (("top1_err", err), ("top1_acc", 100 - err), ("top5_err", err / 4),
                                ("top5_acc", 100 - err / 4), ("map", rng.uniform(30, 40))):
                metrics.append({"job_id": j.id, "run_id": i + 1, "name": name, "value": value, "detail": None})
        con.execute(insert(Metric.__table__), metrics)
        batch = []
        for i, j in enumerate(jobs):
            for e in range(1, points + 1):
                batch.append({"job_id": j.id, "run_id": i + 1, "epoch": e, "train_loss": 1.0, "train_top1_err": 10.0,
                              "train_top5_err": 2.0, "test_top1_err": 20.0, "test_top5_err": 5.0, "lr": 0.1,
                              "seconds": 1.0})
            if len(batch) >= 200_000:
                con.execute(insert(CurvePoint.__table__), batch)
                batch = []
        if batch:
            con.execute(insert(CurvePoint.__table__), batch)
    db.dispose()
    return len(jobs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp())
    tmp.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp}/synthetic_10k.db"
    t0 = time.perf_counter()
    n = build(url, args.runs, args.points)
    print(f"wrote {n} synthetic done runs x {args.points} curve points in {time.perf_counter() - t0:.1f} s -> {url}")

    t0 = time.perf_counter()
    import jinja2  # noqa: F401  the libraries a report uses, imported once per process: timed on their own
    import matplotlib.pyplot  # noqa: F401
    import PIL.Image  # noqa: F401
    import scipy.stats  # noqa: F401

    from repro.catalog import load_catalog
    from repro.compare import compare_paper
    from repro.db import Database
    from repro.report import render
    print(f"imports (SQLAlchemy, pydantic, scipy.stats, matplotlib, Jinja2, Pillow): {time.perf_counter() - t0:.2f} s")

    catalog, db = load_catalog(), Database(url, create=False)
    t0 = time.perf_counter()
    rows = {slug: compare_paper(p, db) for slug, p in catalog.papers.items()}
    t_query = time.perf_counter() - t0
    print(f"compare_paper (queries + verdicts), all 4 papers: {t_query:.2f} s, "
          f"{sum(len(r) for r in rows.values())} cells")
    for label in ("first: every figure drawn, every model's MACs counted once and cached",
                  "again: counts cached in the database, figures up to date (their inputs unchanged)"):
        t0 = time.perf_counter()
        render(catalog, db, tmp / "reports", list(catalog.papers))
        print(f"render (queries, verdicts, Markdown, HTML, figures, GPU-hour estimate), all 4 papers, {label}: "
              f"{time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
