"""Trained weights as artifacts: files addressed by their content, kept when a job's checkpoints go.

A finished training job's final weights are an artifact: ``<artifact dir>/<sha256[:2]>/<sha256>.pt``, written
atomically (temporary file, fsync, rename) and recorded in the database with the job, the run, the size and
the kind. Another job that starts from them (``init_from``) finds them by the upstream job, and loading checks
the bytes against the recorded SHA-256 before ``torch.load(weights_only=True)`` reads them: a damaged or
replaced file is refused, and no file runs code. Two jobs whose weights are byte-identical share one file.

The store is the file half; the database records which job made which artifact and which jobs or cells still
need it (``repro artifacts`` lists them and removes the ones nothing needs).
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from .hashing import file_sha256


class ArtifactError(Exception):
    """An artifact that is missing or whose bytes are not the recorded ones."""


@dataclass(frozen=True)
class Artifact:
    sha256: str
    path: str
    size: int
    kind: str = "weights"


def load_verified(path: str | os.PathLike, sha256: str) -> dict:
    """A weights file whose bytes hash to ``sha256``, read without running code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"weights file {path} does not exist")
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise ArtifactError(f"weights file {path} has SHA-256 {found[:16]}..., not the expected {sha256[:16]}...")
    import torch  # here, not at import: listing and removing artifacts never needs it

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class ArtifactStore:
    directory: Path

    def path_of(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / f"{sha256}.pt"

    def put(self, state: dict, kind: str = "weights") -> Artifact:
        """Write ``state`` (a state dict of tensors) under its content hash, atomically; the same bytes
        already there are kept as they are."""
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getbuffer()
        sha = hashlib.sha256(data).hexdigest()
        path = self.path_of(sha)
        if not (path.is_file() and path.stat().st_size == len(data) and file_sha256(path) == sha):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return Artifact(sha, str(path), len(data), kind)



def remove_file(artifact_path: str | os.PathLike) -> bool:
    path = Path(artifact_path)
    if not path.is_file():
        return False
    path.unlink()
    try:
        path.parent.rmdir()  # only when no other artifact shares the folder
    except OSError:
        pass
    return True


def inventory(database, catalog) -> list[dict]:
    """Every artifact of ``database`` with what starts from it (``needed_by``): a job of the database that
    names its job upstream, or a cell of the catalog's specs whose ``init_from`` names its configuration."""
    from .plan import upstream_configs
    from .specs import cell_key

    needed_configs = upstream_configs(catalog)
    rows = database.artifacts()
    for r in rows:
        r["cells"] = [cell_key(*c) for c in r["cells"]]  # named as plans, reports and the API name them
        if r["config_key"] in needed_configs:
            r["needed_by"] = r["needed_by"] + [needed_configs[r["config_key"]]]
    return rows


def remove_unneeded(database, rows: list[dict]) -> list[dict]:
    """Delete the file and the record of every artifact of ``rows`` that nothing needs; the ones removed."""
    gone = [r for r in rows if not r["needed_by"]]
    for r in gone:
        remove_file(r["path"])
        database.forget_artifact(r["id"])
    return gone
