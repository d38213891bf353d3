"""README.md's module map (its Layout table) names every module of the library, in the row of its package."""
from __future__ import annotations

import re

from conftest import REPO

ROWS = ("repro/", "repro/cli/", "repro/db/", "repro/train/", "repro/data/", "models/")


def layout_rows() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Layout"):]
    section = section[:section.index("\n## ", 1)]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w/]+)` \| (.*) \|$", section, re.M)}


def test_every_module_is_in_the_readme_module_map():
    rows = layout_rows()
    assert set(ROWS) <= set(rows), f"rows missing from the Layout table: {set(ROWS) - set(rows)}"
    missing = [f"{row}{path.name}" for row in ROWS for path in sorted((REPO / row).glob("*.py"))
               if path.name != "__init__.py" and f"`{path.name}`" not in rows[row]]
    assert not missing, f"modules the README's Layout table leaves out: {missing}"
    # and no row names a module that is not there (a stale name after a move)
    stale = [f"{row}{name}" for row in ROWS for name in re.findall(r"`([\w]+\.py)`", rows[row])
             if not (REPO / row / name).exists() and not list((REPO / row).glob(f"*/{name}"))]
    assert not stale, f"the Layout table names modules that do not exist: {stale}"
