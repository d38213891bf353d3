"""The papers' side: papers, their table specs and every published cell, written as the specs say them
(upserted on their natural keys, so re-registering a corrected transcription replaces the old one).
"""
from __future__ import annotations

from typing import Iterable

from .connect import Store
from .schema import PaperRow, PublishedCell, TableRow


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
