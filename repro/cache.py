"""The user's cache folder and the one way files are written into it, shared by the caches of model facts
(``repro.modelcheck``), dataset mean/std (``repro.data.channel_stats``) and compiled report templates
(``repro.html``). A cache that cannot be written (read-only home, full disk) only costs speed."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """``$REPRO_CACHE_DIR``, else the platform's user cache folder for ``repro``."""
    explicit = os.environ.get("REPRO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_cache_dir("repro"))


def write_json_atomically(path: Path, data: dict) -> bool:
    """Write-then-rename into a cache folder: a concurrent reader sees the old file or the new one, never
    half of one; False when it cannot be written (a cache that cannot be written only costs speed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, sort_keys=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True
    except OSError:
        return False
