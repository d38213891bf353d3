"""What the spec checks need to know about the model code, without importing torch every time.

Checking a spec means asking the model registry: is this model known, which counter profiles
exist, and does the model accept these options (answered by building it on the meta device).
Importing torch, torchvision and the registry alone costs 3-6 CPU-seconds, and building the
~155 distinct model configurations of our specs on the meta device another ~30 on 2 cores, so
the answers are kept in a small JSON file under the user's cache directory (``$REPRO_CACHE_DIR``
overrides it), keyed by a hash of the model code (``models/**.py``, ``repro/counting.py``) and
the torch version. A warm cache answers everything without importing torch; any edit to the
model code starts a new file. Failures are cached too: they are just as deterministic.

A cache that cannot be written (read-only home, full disk) only costs speed, never correctness.
"""
from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from .cache import cache_dir, write_json_atomically
from .paths import CHECKOUT as ROOT  # noqa: E402
SOURCES = ("models", "repro/counting.py")


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    h = hashlib.sha256()
    files = []
    for src in SOURCES:
        p = ROOT / src
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else []
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    for dist in ("torch", "torchvision", "thop", "timm"):
        try:
            h.update(f"{dist}=={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            pass
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _version(plugins_loaded: int) -> str:
    from .plugin_loader import fingerprint

    return hashlib.sha256(f"{_code_hash()} plugins {fingerprint()}".encode()).hexdigest()[:16]


def code_version() -> str:
    """A hash of everything whose answers the cache holds: the model code, the torch, timm and thop builds,
    and the plugins loaded in this process (an edited plugin is a new version: never stale counts)."""
    from .plugin_loader import generation

    return _version(generation())


class ModelFacts:
    """Known models, counter profiles and checked option sets, for one version of the model code."""

    def __init__(self, path: Path | None = None):
        self.version = code_version()
        self.path = path or cache_dir() / f"model-facts-{self.version}.json"
        self._dirty = False
        data: dict[str, Any] = {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            pass  # no cache yet, or a torn/garbled one: rebuild it
        if not (isinstance(data, dict) and data.get("version") == self.version
                and isinstance(data.get("models"), list) and isinstance(data.get("profiles"), list)
                and isinstance(data.get("options"), dict)):
            data = {}  # another code version, or a file someone edited: trust none of it
        self.models: list[str] | None = data.get("models")
        self.profiles: list[str] | None = data.get("profiles")
        self.origins: dict[str, str] = data.get("origins") or {}  # "model x" / "attention x" -> plugin (not built-in)
        self.options: dict[str, dict] = data.get("options") or {}

    def _registry(self) -> None:
        """Import the model code (torch included): only on a cache miss."""
        import repro_models as models
        from .counting import PROFILES

        if self.models is None:
            from repro_models.registry import ORIGIN

            self.models, self.profiles = models.available(), list(PROFILES)
            self.origins = {f"{kind} {name}": o for (kind, name), o in ORIGIN.items() if o != "built-in"}
            self._dirty = True

    def is_known(self, model: str) -> bool:
        if "/" in model:  # timm/<name>, torchvision/<name>: asked of the library once, then cached
            key = f"known {model}"
            if key not in self.options:
                from repro_models.registry import is_known

                self.options[key] = {"ok": is_known(model)}
                self._dirty = True
            return self.options[key]["ok"]
        if self.models is None:
            self._registry()
        return model in self.models

    def origin(self, model: str) -> str:
        """Where ``model`` comes from, the one rule (listings and job identities both ask here): timm or
        torchvision (``library/<name>``), ``plugin <file>`` (what registered it as a model or backbone), or
        built-in."""
        if "/" in model:
            return model.split("/")[0]
        if self.models is None:
            self._registry()
        return self.origins.get(f"model {model}") or self.origins.get(f"backbone {model}") or "built-in"

    def attention_origin(self, attention: str) -> str:
        if self.models is None:
            self._registry()
        return self.origins.get(f"attention {attention}", "built-in")

    def profile_names(self) -> list[str]:
        if self.profiles is None:
            self._registry()
        return self.profiles

    def resolve(self, model: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``repro_models.registry.validated_kwargs``: the resolved options (defaults filled in, as hashed
        into job ids), or ``ValueError`` when the model rejects them; built once per configuration."""
        key = f"{model} {json.dumps(kwargs, sort_keys=True, default=repr)}"
        hit = self.options.get(key)
        if hit is None:
            self._registry()
            from repro_models.registry import validated_kwargs

            try:
                hit = {"ok": validated_kwargs(model, **kwargs)}
            except ValueError as e:
                hit = {"error": str(e)}
            self.options[key] = hit
            self._dirty = True
        if "error" in hit:
            raise ValueError(hit["error"])
        return dict(hit["ok"])

    def no_ghost_form(self, model: str, kwargs: dict[str, Any]) -> str | None:
        """Why ``bn_batch`` cannot apply to this model (its first BatchNorm layer with no ghost form, named
        with its type: ``repro_models.ghost_bn.no_ghost_form``), or None; built on the meta device once."""
        key = f"ghost {model} {json.dumps(kwargs, sort_keys=True, default=repr)}"
        if key not in self.options:
            self._registry()
            import torch

            import repro_models as models
            from repro_models.ghost_bn import no_ghost_form

            with torch.device("meta"):
                found = no_ghost_form(models.create(model, **kwargs))
            self.options[key] = {"ok": None if found is None else
                                 f"layer {found[0]} is a {found[1]}, which has no ghost form: {found[2]}"}
            self._dirty = True
        return self.options[key]["ok"]

    def save(self) -> None:
        if not self._dirty:
            return
        data = {"version": self.version, "models": self.models, "profiles": self.profiles, "options": self.options,
                "origins": self.origins}
        if write_json_atomically(self.path, data):  # an unwritable cache only costs speed on the next run
            self._dirty = False


_FACTS: ModelFacts | None = None


def facts() -> ModelFacts:
    """The process-wide facts (one cache file read per process, another when plugins were loaded since)."""
    global _FACTS
    if _FACTS is None or _FACTS.version != code_version():
        if _FACTS is not None:
            _FACTS.save()
        _FACTS = ModelFacts()
    return _FACTS
