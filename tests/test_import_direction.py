"""Module pairs that once imported each other (a circle, lazily closed inside a function) import in one
direction now: every import statement counts, at module level or inside a function."""
from __future__ import annotations

import ast

import pytest

from conftest import REPO


def imported(path) -> set[str]:
    """The modules a file imports, relative ones resolved to their dotted names, anywhere in the file."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1]).replace("models", "repro_models", 1) \
        if path.relative_to(REPO).parts[0] == "models" else ".".join(path.relative_to(REPO).parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            out |= {module} | {f"{module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("importer, imported_module, never_back", [
    ("models/registry.py", "repro_models.ecosystem", "repro_models.registry"),
    ("repro/data/loaders.py", "repro.data.imagenet_input", "repro.data.loaders"),
])
def test_each_pair_imports_in_one_direction(importer, imported_module, never_back):
    assert imported_module in imported(REPO / importer)
    back = REPO / (imported_module.replace("repro_models", "models", 1).replace(".", "/") + ".py")
    assert never_back not in imported(back), f"{back.name} imports {never_back}: a circle"
