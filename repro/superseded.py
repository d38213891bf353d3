"""One sample per configuration and seed. A job's identity hashes its fully resolved description, so a
code version that spells a recipe or a model's options differently plans a new job for the same
configuration (``config_key``) and seed; both may be done. They are one sample, not two: the newest
code version's job (the one planned last) counts, and the cell's note says that an older one exists."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace


def newest_per_seed(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept, superseded): of the done jobs of one configuration (``Reads.results_for`` rows), the newest
    per (budget, seed), and the older ones it stands for."""
    newest: dict[tuple, dict] = {}
    superseded: list[dict] = []
    for r in sorted(results, key=lambda r: (r.get("created_at") or dt.datetime.min, r["job"])):
        key = (r["budget"], r["seed"])
        if key in newest:
            superseded.append(newest[key])
        newest[key] = r
    kept = set(map(id, newest.values()))
    return [r for r in results if id(r) in kept], superseded


def noting_older(row, superseded: list[dict]):
    """``row`` (a ``compare.Comparison``) with a note naming the older code versions' samples of its
    budget that its numbers leave out; ``row`` itself when there are none."""
    older = sorted((r for r in superseded if r["budget"] == row.budget),
                   key=lambda r: (r["seed"] is None, r["seed"] or 0, r["job"]))
    if not older:
        return row
    which = ", ".join(f"job {r['job'][:12]}" + (f" (seed {r['seed']})" if r["seed"] is not None else "")
                      for r in older)
    note = (f"an older code version's run of the same configuration and seed exists ({which}): "
            f"counted once, the newest")
    return replace(row, verdict_note=f"{row.verdict_note}; {note}" if row.verdict_note else note)
