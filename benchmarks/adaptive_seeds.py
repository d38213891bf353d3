"""Operating characteristics of the seed rules: fixed 3 seeds, fixed 5, and adaptive 3..10, simulated.

Each simulated cell has a published value, a tolerance drawn uniformly from 0.3-0.5 points, a seed std
drawn uniformly from 0.1-0.5 points, and a true mean 0, 0.5, 1, 1.5, 2 or 4 tolerances away from the
published value (equally often, either side). Its seeds are normal draws around the true mean. Each rule
judges it with the code the campaign and the report use (``repro.compare.interval_verdict`` and
``repro.compare.stopping_rule``; claims are left out: every simulated cell stands alone).

What counts as wrong: a true mean inside the band (0 or 0.5 tolerances away) called ``differs``; a true mean
outside it (1.5, 2 or 4 tolerances) called ``reproduced``. A true mean exactly on the band's edge
(1 tolerance) is where both tests' error rates are attained: there either verdict counts as wrong, and only
``inconclusive`` is right. Rates are over all simulated cells.

    python benchmarks/adaptive_seeds.py            # the table (about a second)
    python benchmarks/adaptive_seeds.py --json     # {"fixed3": {...}, "fixed5": {...}, "adaptive": {...}}
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from repro.compare import (STOP_OPEN, VERDICT_DIFFERS, VERDICT_INCONCLUSIVE, VERDICT_REPRODUCED, interval_verdict,
                           stopping_rule)

DISTANCES = (0.0, 0.5, 1.0, 1.5, 2.0, 4.0)  # true mean - published, in tolerances
MIN_SEEDS, MAX_SEEDS = 3, 10


def draw(cells_per_distance: int, rng: np.random.Generator):
    """Per simulated cell: its distance (tolerances), tolerance, and MAX_SEEDS seed values (published at 0)."""
    distance = np.repeat(DISTANCES, cells_per_distance)
    m = distance.size
    tol = rng.uniform(0.3, 0.5, m)
    std = rng.uniform(0.1, 0.5, m)
    side = rng.choice([-1.0, 1.0], m)
    seeds = side[:, None] * distance[:, None] * tol[:, None] + std[:, None] * rng.standard_normal((m, MAX_SEEDS))
    return distance, tol, seeds


def _stats(seeds: np.ndarray, n: int):
    first = seeds[:, :n]
    return first.mean(axis=1), first.std(axis=1, ddof=1)


def fixed(seeds, tol, n: int):
    mean, std = _stats(seeds, n)
    verdict, _ = interval_verdict(mean, std, n, 0.0, tol)
    return verdict, np.full(len(seeds), n)


def adaptive(seeds, tol, lo: int = MIN_SEEDS, hi: int = MAX_SEEDS):
    """Each cell stops at its first look (n = lo..hi) whose stop code is not open."""
    m = len(seeds)
    verdict = np.full(m, VERDICT_INCONCLUSIVE)
    used = np.full(m, hi)
    open_ = np.ones(m, dtype=bool)
    for n in range(lo, hi + 1):
        mean, std = _stats(seeds, n)
        stop, v = stopping_rule(mean, std, n, 0.0, tol, lo, hi)
        now = open_ & (stop != STOP_OPEN)
        verdict[now], used[now] = v[now], n
        open_ &= ~now
    return verdict, used


def rates(distance, verdict, used) -> dict:
    inside, outside = distance <= 1.0, distance >= 1.0  # 1 tolerance: on the edge, both verdicts wrong
    return {"wrong_reproduced": float(np.mean(outside & (verdict == VERDICT_REPRODUCED))),
            "wrong_differs": float(np.mean(inside & (verdict == VERDICT_DIFFERS))),
            "inconclusive": float(np.mean(verdict == VERDICT_INCONCLUSIVE)),
            "mean_seeds": float(np.mean(used))}


def simulate(cells_per_distance: int = 20_000, seed: int = 0) -> dict:
    distance, tol, seeds = draw(cells_per_distance, np.random.default_rng(seed))
    out = {name: rates(distance, *rule) for name, rule in
           (("fixed3", fixed(seeds, tol, 3)), ("fixed5", fixed(seeds, tol, 5)), ("adaptive", adaptive(seeds, tol)))}
    out["by_distance"] = {name: {f"{d:g}": rates(distance[distance == d], v[distance == d], u[distance == d])
                                 for d in DISTANCES}
                          for name, (v, u) in (("fixed3", fixed(seeds, tol, 3)), ("fixed5", fixed(seeds, tol, 5)),
                                               ("adaptive", adaptive(seeds, tol)))}
    return out


def meets_target(result: dict) -> bool:
    """Adaptive: no higher wrong-verdict rates than fixed 5, with at most 70% of its mean seeds."""
    a, f = result["adaptive"], result["fixed5"]
    return (a["wrong_reproduced"] <= f["wrong_reproduced"] and a["wrong_differs"] <= f["wrong_differs"]
            and a["mean_seeds"] <= 0.7 * f["mean_seeds"])


def table(result: dict) -> str:
    names = {"fixed3": "fixed 3", "fixed5": "fixed 5", "adaptive": f"adaptive {MIN_SEEDS}..{MAX_SEEDS}"}
    lines = ["| rule | wrong reproduced | wrong differs | inconclusive | mean seeds |", "|---|---|---|---|---|"]
    for key, name in names.items():
        r = result[key]
        lines.append(f"| {name} | {r['wrong_reproduced']:.4f} | {r['wrong_differs']:.4f} | {r['inconclusive']:.3f} "
                     f"| {r['mean_seeds']:.2f} |")
    lines += ["", "By true distance from published (tolerances): reproduced / differs / inconclusive / mean seeds", "",
              "| rule | " + " | ".join(f"{d:g}" for d in DISTANCES) + " |", "|---|" + "---|" * len(DISTANCES)]
    for key, name in names.items():
        cells = []
        for d in DISTANCES:
            r = result["by_distance"][key][f"{d:g}"]
            rep = r["wrong_reproduced"] if d >= 1 else None
            dif = r["wrong_differs"] if d <= 1 else None
            cells.append(f"wrong R {_p(rep)}, wrong D {_p(dif)}, inc. {r['inconclusive']:.2f}, n {r['mean_seeds']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    verdict = "meets" if meets_target(result) else "MISSES"
    lines += ["", f"Target (adaptive: wrong rates <= fixed 5's, mean seeds <= 70% of fixed 5's): {verdict}"]
    return "\n".join(lines)


def _p(x):
    return "-" if x is None else f"{x:.4f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=20_000, help="simulated cells per distance")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = simulate(args.cells, args.seed)
    if args.json:
        print(json.dumps({k: result[k] for k in ("fixed3", "fixed5", "adaptive")}, indent=2))
    else:
        print(table(result))


if __name__ == "__main__":
    main()
