"""Finding and importing plugins (the mechanism; ``repro.plugins`` is what a plugin imports).

Sources, in this order: entry points of the group ``repro.plugins`` (installed packages), the files of
``$REPRO_PLUGINS`` and ``--plugins`` (``Plugin.file``), and each paper's ``plugins:`` list (the catalog
loads those with the paper). Each file is imported once per process under a private module name, so a
user's ``eca.py`` never collides with another module of that name. What each plugin registered is
attributed to it (``repro_models.registry.ORIGIN``), and its fingerprint (file SHA-256, or the package's
name and version) goes into every run's provenance, into the identity of jobs whose model it provides,
and into the model-count cache key.

Every problem is one ``PluginError`` line naming the plugin and the cause: a file that does not exist,
that fails to import, or that registers a name already taken (built-in or another plugin's).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .specs import SpecError

GROUP = "repro.plugins"


class PluginError(SpecError):
    """A plugin that cannot be used, in one line (a spec problem as far as a command is concerned)."""


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: a file (``path`` and ``sha256``) or an entry point (``package`` and ``version``)."""

    name: str
    path: str | None = None
    sha256: str | None = None
    package: str | None = None
    version: str | None = None

    @property
    def fingerprint(self) -> str:
        return f"sha256:{self.sha256}" if self.sha256 else f"{self.package}=={self.version}"


_LOADED: dict[str, Plugin] = {}  # by resolved path or entry-point name: once per process


def generation() -> int:
    """Changes whenever a plugin is loaded (what caches keyed by the loaded plugins compare)."""
    return len(_LOADED)


def fingerprint() -> str:
    """One hash of every plugin loaded in this process (what the model-count cache key includes)."""
    return hashlib.sha256("\n".join(sorted(p.fingerprint for p in _LOADED.values())).encode()).hexdigest()[:16]


def provenance() -> dict[str, str]:
    """``{plugin: fingerprint}`` for a run's provenance."""
    return {p.name: p.fingerprint for p in _LOADED.values()}


def fingerprint_of(origin: str) -> str | None:
    """The fingerprint of the plugin an origin label (``plugin eca.py``) names; None for a built-in."""
    if not origin.startswith("plugin "):
        return None
    name = origin[len("plugin "):]
    return next((p.fingerprint for p in _LOADED.values() if p.name == name), None)


def from_env() -> list[str]:
    """The files of ``$REPRO_PLUGINS`` (separated like PATH)."""
    return [p for p in os.environ.get("REPRO_PLUGINS", "").split(os.pathsep) if p]


def load_file(path: str | os.PathLike, *, label: str | None = None) -> Plugin:
    """Import a plugin file once; what it registers is attributed to it. ``label`` names it in messages
    (default: the path as given)."""
    from repro_models.registry import AlreadyRegistered, registering_as

    shown = label or str(path)
    resolved = Path(path).expanduser().resolve()
    key = str(resolved)
    if key in _LOADED:
        return _LOADED[key]
    if not resolved.is_file():
        raise PluginError(f"plugin {shown}: no such file")
    data = resolved.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    module_name = f"repro_plugin_{resolved.stem}_{digest[:12]}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(module_name, None, origin=str(resolved)))
    module.__file__ = str(resolved)
    sys.modules[module_name] = module  # classes defined in it pickle by this name in this process
    try:
        with registering_as(f"plugin {resolved.name}"):
            # the very bytes hashed above run (not a second read of the file), and no __pycache__ is
            # written into the user's paper folder
            exec(compile(data, str(resolved), "exec"), module.__dict__)
    except AlreadyRegistered as e:
        del sys.modules[module_name]
        raise PluginError(f"plugin {shown}: registers {e.kind} {e.name!r}, which already exists "
                          f"({e.first})") from None
    except BaseException as e:  # SyntaxError, ImportError, anything its top level raises
        del sys.modules[module_name]
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise PluginError(f"plugin {shown}: fails to import: {_last_line(e)}") from None
    plugin = _LOADED[key] = Plugin(resolved.name, path=key, sha256=digest)
    return plugin


def load_entry_points() -> list[Plugin]:
    """Every installed package's ``repro.plugins`` entry point, imported once."""
    out = []
    points = metadata.entry_points(group=GROUP)
    if not points:  # the registry imports torch and every model: not when there is nothing to load
        return out
    from repro_models.registry import AlreadyRegistered, registering_as

    for ep in points:
        key = f"entry point {ep.name}"
        if key in _LOADED:
            out.append(_LOADED[key])
            continue
        dist = ep.dist
        package, version = (dist.metadata["Name"], dist.version) if dist is not None else (ep.value, "unknown")
        try:
            with registering_as(f"plugin {package}"):
                ep.load()
        except AlreadyRegistered as e:
            raise PluginError(f"plugin {package} (entry point {ep.name}): registers {e.kind} {e.name!r}, which "
                              f"already exists ({e.first})") from None
        except Exception as e:
            raise PluginError(f"plugin {package} (entry point {ep.name}): fails to import: {_last_line(e)}") from None
        out.append(_LOADED.setdefault(key, Plugin(package, package=package, version=version)))
    return out


def load_all(files: list[str] | tuple[str, ...] = ()) -> list[Plugin]:
    """Entry points, ``$REPRO_PLUGINS`` and ``files``: what every process that reads a registry calls."""
    return load_entry_points() + [load_file(f) for f in [*from_env(), *files]]


def _last_line(e: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()
    return " ".join(text[-1].split()) if text else type(e).__name__
