"""The SHA-256 of a file, read in chunks: how artifacts (``repro.artifacts``) and training checkpoints
(``repro.train.checkpoints``) check that the bytes on disk are the recorded ones."""
from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
