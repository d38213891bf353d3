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


# The folder that holds this package (the checkout, for an editable install): the one place it is computed.
CHECKOUT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The checkout this package runs from (the directory holding ``specs/``), whatever the current
    directory: ``repro status`` run from elsewhere must see the same database as from the repo.
    An installed copy outside a checkout has no such directory and falls back to the current one."""
    return CHECKOUT if (CHECKOUT / "specs").is_dir() else Path.cwd()


def resolve(what: str, explicit: str | os.PathLike | None = None) -> Path:
    """A default location: the option beats its environment variable beats ``<project root>/<name>``."""
    name, env = DEFAULTS[what]
    return Path(explicit or (env and os.environ.get(env)) or project_root() / name)


def db_url(explicit: str | None = None) -> str:
    """``--db`` beats ``$REPRO_DB`` beats ``sqlite:///<project root>/results.db``."""
    return explicit or os.environ.get("REPRO_DB") or f"sqlite:///{project_root() / DEFAULTS['db'][0]}"


def own_db(explicit: str | None, specs_dir=None) -> str | None:
    """``--db`` as given; without it (and without ``$REPRO_DB``), where papers from outside ``@builtin`` are
    stored: ``results.db`` in the first specs folder that is not this checkout's (``--specs-dir``, else
    ``$REPRO_SPECS``), so a user's paper never writes into the checkout's committed results.db; None (the
    checkout's database) when every specs folder is the built-in one."""
    if explicit or os.environ.get("REPRO_DB"):
        return explicit
    if isinstance(specs_dir, (str, os.PathLike)):
        specs_dir = [specs_dir]
    entries = list(specs_dir or []) or [e for e in os.environ.get("REPRO_SPECS", "").split(os.pathsep) if e]
    builtin = (CHECKOUT / "specs").resolve()
    for e in entries:
        if str(e) != "@builtin" and Path(e).expanduser().resolve() != builtin:
            return f"sqlite:///{Path(e).expanduser().resolve() / DEFAULTS['db'][0]}"
    return None
