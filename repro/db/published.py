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
                for row in rows:
                    stmt = self._insert(model.__table__).values(**row)
                    update_cols = {k: v for k, v in row.items() if k not in keys}
                    s.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update_cols)
                              if update_cols else stmt.on_conflict_do_nothing())
