"""Where the project's defaults live (database, specs, data, checkpoints, reports).

One table so that every command resolves a default the same way. Kept free of heavy imports
(no SQLAlchemy, no torch): commands that only read specs must start in well under a second.
"""
from __future__ import annotations

import os
from pathlib import Path

# Where each default lives under the project root, and the variable that overrides it.
DEFAULTS = {"db": ("results.db", "REPRO_DB"), "specs": ("specs", "REPRO_SPECS"), "data": ("data", "REPRO_DATA"),
            "checkpoints": ("checkpoints", None), "reports": ("reports", None), "artifacts": ("artifacts", None)}


def project_root() -> Path:
    """The checkout this package runs from (the directory holding ``specs/``), whatever the current
    directory: ``repro status`` run from elsewhere must see the same database as from the repo.
    An installed copy outside a checkout has no such directory and falls back to the current one."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "specs").is_dir() else Path.cwd()


def resolve(what: str, explicit: str | os.PathLike | None = None) -> Path:
    """A default location: the option beats its environment variable beats ``<project root>/<name>``."""
    name, env = DEFAULTS[what]
    return Path(explicit or (env and os.environ.get(env)) or project_root() / name)


def db_url(explicit: str | None = None) -> str:
    """``--db`` beats ``$REPRO_DB`` beats ``sqlite:///<project root>/results.db``."""
    return explicit or os.environ.get("REPRO_DB") or f"sqlite:///{project_root() / DEFAULTS['db'][0]}"
