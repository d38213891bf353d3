"""The papers' side: papers, their table specs and every published cell, written as the specs say them
(upserted on their natural keys, so re-registering a corrected transcription replaces the old one).
"""
from __future__ import annotations

from typing import Iterable

from .connect import Store
from sqlalchemy import select

from .schema import PaperRow, PublishedCell, SeedPlan, TableRow, utcnow


class Published(Store):
    def sync_published(self, papers: Iterable[dict], tables: Iterable[dict], cells: Iterable[dict]) -> None:
        with self.Session.begin() as s:
            for rows, model, keys in ((papers, PaperRow, ["slug"]), (tables, TableRow, ["paper", "name"]),
                                      (cells, PublishedCell, ["paper", "table_name", "section", "row", "column"])):
                by_fields: dict[tuple, list[dict]] = {}
                for row in rows:  # one statement per set of fields, executed for all its rows at once
                    by_fields.setdefault(tuple(row), []).append(row)
                for fields, batch in by_fields.items():
                    stmt = self._insert(model.__table__)
                    update = {k: stmt.excluded[k] for k in fields if k not in keys}
                    s.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update) if update
                              else stmt.on_conflict_do_nothing(), batch)

    def put_seed_plans(self, plans: dict[str, tuple[int, int]]) -> None:
        """Record the adaptive seed plan (MIN, MAX) of each configuration key; the newest plan wins."""
        if not plans:
            return
        now = utcnow()
        rows = [{"config_key": k, "min_seeds": lo, "max_seeds": hi, "updated_at": now} for k, (lo, hi) in plans.items()]
        with self.Session.begin() as s:
            stmt = self._insert(SeedPlan.__table__)
            s.execute(stmt.on_conflict_do_update(index_elements=["config_key"], set_={
                "min_seeds": stmt.excluded.min_seeds, "max_seeds": stmt.excluded.max_seeds,
                "updated_at": stmt.excluded.updated_at}), rows)

    def seed_plans(self) -> dict[str, tuple[int, int]]:
        """config key -> (MIN, MAX) of every configuration run with adaptive seeds."""
        with self.Session() as s:
            return {k: (lo, hi) for k, lo, hi in s.execute(
                select(SeedPlan.config_key, SeedPlan.min_seeds, SeedPlan.max_seeds))}
