"""Checkpoint files a job can trust: written atomically, hashed, recorded by the database, loaded safely.

A checkpoint belongs to one attempt of one job in one database. Each attempt writes its files under
``<checkpoint_dir>/<job id>/`` with its own random token in the name, so a stale worker (one that lost
its lease) or another database never overwrites them. The database records every file written (path,
SHA-256, epoch) through ``on_saved``; on resume only files the database recorded, whose bytes still hash
to the recorded value, are candidates, newest first. A corrupt, truncated or empty file is moved aside
with one warning naming it, and the next good one is used, or training starts from scratch: a job never
fails forever on a bad file. Files are read with ``torch.load(weights_only=True)``, so a hostile pickle
placed at a checkpoint path runs no code; RNG states are stored as tensors and plain types for that.

Each attempt keeps its last two files (the newest and the one before, in case the newest is damaged);
a finished job's directory is removed unless ``--keep-checkpoints``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..hashing import file_sha256
from ..events import log

KEEP = 2  # files per attempt: the newest and the previous good one


@dataclass(frozen=True)
class Recorded:
    path: str
    sha256: str
    step: int  # epochs (classification) or iterations (detection) done when it was written


def safe_load(path: str | os.PathLike) -> dict:
    """``torch.load`` that cannot execute code (``weights_only=True``), onto the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


# --- RNG states as tensors and plain types (loadable with weights_only=True) ---------------

def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": {"version": version, "internal": list(internal), "gauss": gauss}}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# --- the store -------------------------------------------------------------------------------

@dataclass
class CheckpointStore:
    """Where one attempt at one job saves, and what it may resume from.

    ``known``: the files the database recorded for this job (any earlier attempt), newest first.
    ``on_saved(recorded)``: records a new file; when it raises (the job is no longer ours, say), the file
    just written is removed again and the error propagates.
    """

    directory: Path
    known: list[Recorded] = field(default_factory=list)
    on_saved: Callable[[Recorded], None] | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    written: list[Path] = field(default_factory=list)

    def clean_stale(self) -> None:
        """Temporary files of writers that were killed mid-write."""
        for tmp in self.directory.glob("*.tmp*"):
            tmp.unlink(missing_ok=True)

    def load(self) -> dict | None:
        """The newest trusted checkpoint's state, or None (start from scratch)."""
        self.clean_stale()
        for rec in sorted(self.known, key=lambda r: r.step, reverse=True):
            path = Path(rec.path)
            if not path.exists():
                continue
            problem = None
            try:
                if file_sha256(path) != rec.sha256:
                    problem = "its contents differ from what this database recorded"
                else:
                    return safe_load(path)
            except Exception as e:  # truncated, empty, not a checkpoint, or a pickle that wants code
                problem = f"unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
            aside = path.with_name(path.name + f".bad-{int(time.time())}")
            os.replace(path, aside)
            log.warning(f"checkpoint {path} {problem}: moved to {aside.name}; trying an older one")
        untrusted = [p for p in self.directory.glob("*.pt") if str(p) not in {r.path for r in self.known}]
        if untrusted:
            log.warning(f"ignoring {len(untrusted)} checkpoint file(s) in {self.directory} that this database did not "
                 f"record (another database's, or placed there): never trusted as a result")
        return None

    def save(self, state: dict, step: int) -> None:
        """Write atomically (temporary file, fsync, rename), hash while writing, record, rotate."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.token}-{step:06d}.pt"
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getbuffer()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        rec = Recorded(str(path), hashlib.sha256(data).hexdigest(), step)
        if self.on_saved is not None:
            try:
                self.on_saved(rec)
            except BaseException:  # not recorded: a file nobody may resume from
                path.unlink(missing_ok=True)
                raise
        self.known.insert(0, rec)
        self.written.append(path)
        for old in self.written[:-KEEP]:
            old.unlink(missing_ok=True)
        self.written = self.written[-KEEP:]

    def remove_all(self) -> None:
        """A finished job's checkpoints (kept with --keep-checkpoints): the files this database recorded
        and the ones moved aside; another database's files in the same folder stay."""
        for path in {Path(r.path) for r in self.known} | set(self.written) | set(self.directory.glob("*.pt.bad-*")):
            path.unlink(missing_ok=True)
        self.clean_stale()
        with contextlib.suppress(OSError):
            self.directory.rmdir()  # only when nothing else is left in it
