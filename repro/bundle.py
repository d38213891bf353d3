"""Bundles: a database's results for some targets in one self-describing file (``repro export``), read back
and checked before anything is written (``repro import``, which ``repro.db.imports`` merges).

A bundle is a zip file:

- ``manifest.json``: ``format`` ("repro-bundle"), ``format_version``, the schema revision, repro's version and
  the code version (git commit) that exported it, the papers, when and on which host, and for every other
  member its size and SHA-256;
- ``jobs.parquet`` (the job definitions: id, config key, kind, model, budget, seed, spec as JSON),
  ``runs.parquet`` (the run that measured each job, with its provenance: host, device, engine, precision,
  git commit, package versions, ...), ``metrics.parquet``, ``curve_points.parquet``: Parquet, read by pandas
  alone (``pandas.read_parquet``); JSON-valued columns are JSON text;
- with ``--with-artifacts``, ``artifacts.parquet`` and each kept artifact as ``artifacts/<sha256>``.

Reading checks, in this order and before a byte is unpacked to disk: the file is a zip; every member name is
plain (no absolute path, no ``..``, no backslash) and expected; every member's declared size is under the
limits; the manifest's format and version are known; each member's SHA-256 is the manifest's; the tables
have their columns and types; every value is finite and in its range, every id and name well formed; each
job id is the hash of its definition. Any failure is one ``BundleError`` line.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import re
import socket
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

FORMAT = "repro-bundle"
FORMAT_VERSION = 1
TABLES = ("jobs", "runs", "metrics", "curve_points")
MAX_TABLE_BYTES = 256 * 2**20  # one Parquet member, unpacked
MAX_ARTIFACT_BYTES = 8 * 2**30
MAX_MANIFEST_BYTES = 4 * 2**20
MAX_RATIO = 200  # unpacked / packed: a member that inflates more is a zip bomb

HEX16 = re.compile(r"^[0-9a-f]{16}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BUDGET = re.compile(r"^(full|smoke|static|epochs-\d{1,6})$")
KINDS = ("profile", "train", "detect")
MAX_COUNT = 1e15  # parameters, MACs
PERCENT = {"top1_err", "top5_err", "top1_acc", "top5_acc", "best_top1_err", "best_top5_err", "map", "map50",
           "map75"}

JOB_COLUMNS = ("id", "config_key", "kind", "model", "budget", "seed", "spec", "upstream")
RUN_COLUMNS = ("run_id", "job_id", "status", "started_at", "ended_at", "host", "pid", "device", "git_commit",
               "git_dirty", "versions", "resumed_from_epoch", "engine", "precision", "compiled", "threads", "data",
               "init_from")
METRIC_COLUMNS = ("job_id", "run_id", "name", "value", "detail")
CURVE_COLUMNS = ("job_id", "run_id", "epoch", "train_loss", "train_top1_err", "train_top5_err", "test_top1_err",
                 "test_top5_err", "lr", "seconds")
JSON_COLUMNS = {"jobs": ("spec", "upstream"), "runs": ("versions", "data", "init_from")}


class BundleError(Exception):
    """A bundle that cannot be imported, in one line."""


@dataclass
class Bundle:
    """A checked bundle: its manifest, its tables as lists of dicts (JSON columns decoded), its artifacts'
    bytes by SHA-256, and the SHA-256 of the whole file (its identity as an origin)."""

    sha256: str
    manifest: dict
    tables: dict[str, list[dict]]
    artifacts: dict[str, bytes]


# --- writing ---------------------------------------------------------------------------------

def _parquet(rows: list[dict], columns: tuple[str, ...], json_cols: tuple[str, ...] = ()) -> bytes:
    import pandas as pd

    frame = pd.DataFrame([{c: (json.dumps(r.get(c), sort_keys=True) if c in json_cols else r.get(c)) for c in columns}
                          for r in rows], columns=list(columns))
    out = io.BytesIO()
    frame.to_parquet(out, engine="pyarrow", index=False)
    return out.getvalue()


def write(path: Path, tables: dict[str, list[dict]], *, papers: list[str], schema_revision: str, repro_version: str,
          code_version: str | None, artifacts: dict[str, Path] | None = None, artifact_rows: list[dict] | None = None,
          ) -> dict:
    """Write a bundle; the manifest it wrote. ``artifacts``: SHA-256 -> file."""
    members: dict[str, bytes] = {
        "jobs.parquet": _parquet(tables["jobs"], JOB_COLUMNS, JSON_COLUMNS["jobs"]),
        "runs.parquet": _parquet(tables["runs"], RUN_COLUMNS, JSON_COLUMNS["runs"]),
        "metrics.parquet": _parquet(tables["metrics"], METRIC_COLUMNS),
        "curve_points.parquet": _parquet(tables["curve_points"], CURVE_COLUMNS)}
    if artifacts is not None:
        members["artifacts.parquet"] = _parquet(artifact_rows or [], ("job_id", "run_id", "kind", "sha256", "size"))
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "schema_revision": schema_revision,
                "repro_version": repro_version, "code_version": code_version, "papers": sorted(papers),
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "host": socket.gethostname(), "counts": {t: len(tables[t]) for t in TABLES},
                "members": {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                            for name, data in members.items()}}
    for sha, file in (artifacts or {}).items():
        manifest["members"][f"artifacts/{sha}"] = {"size": Path(file).stat().st_size, "sha256": sha}
    tmp = Path(path).with_name(Path(path).name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        for name, data in members.items():
            z.writestr(name, data)
        for sha, file in (artifacts or {}).items():
            z.write(file, f"artifacts/{sha}")
    tmp.replace(path)  # a bundle appears whole or not at all
    return manifest


# --- reading and checking --------------------------------------------------------------------

def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return (bool(name) and "\\" not in name and not p.is_absolute() and ".." not in p.parts and ":" not in name
            and "\x00" not in name)


def _limit(name: str) -> int:
    if name == "manifest.json":
        return MAX_MANIFEST_BYTES
    return MAX_ARTIFACT_BYTES if name.startswith("artifacts/") else MAX_TABLE_BYTES


def _expected(name: str) -> bool:
    return (name == "manifest.json" or name in {f"{t}.parquet" for t in TABLES + ("artifacts",)}
            or (name.startswith("artifacts/") and bool(HEX64.match(name[len("artifacts/"):]))))


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, reading at most its limit (a header that lies about the size stops there)."""
    limit = _limit(info.filename)
    with z.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"member {info.filename!r} unpacks to more than {limit:,} bytes")
    return data


def read(path: Path) -> Bundle:
    """The bundle at ``path``, checked (see the module's docstring); ``BundleError`` otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror or e}") from None
    sha = hashlib.sha256(raw).hexdigest()
    try:
        z = zipfile.ZipFile(io.BytesIO(raw))
        infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise BundleError(f"{path} is not a readable bundle (a zip file): {e}") from None
    names = [i.filename for i in infos]
    for info in infos:  # every check on names and sizes comes before a byte is unpacked
        if not _safe_name(info.filename):
            raise BundleError(f"member path {info.filename!r} escapes the bundle (absolute, '..' or backslash)")
        if not _expected(info.filename):
            raise BundleError(f"unexpected member {info.filename!r} in the bundle")
        if info.file_size > _limit(info.filename):
            raise BundleError(f"member {info.filename!r} declares {info.file_size:,} bytes unpacked, over the limit of "
                              f"{_limit(info.filename):,}")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 2**20:
            raise BundleError(f"member {info.filename!r} inflates {info.file_size / info.compress_size:.0f}-fold "
                              f"(a zip bomb?)")
    if len(set(names)) != len(names):
        raise BundleError("the bundle names a member twice")
    if "manifest.json" not in names:
        raise BundleError("the bundle has no manifest.json")
    try:
        data = {i.filename: _read_member(z, i) for i in infos}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:  # a CRC, a damaged or truncated stream
        raise BundleError(f"{path}: a member is damaged: {e}") from None
    manifest = _manifest(data["manifest.json"])
    declared = manifest["members"]
    for name in names:
        if name == "manifest.json":
            continue
        if name not in declared:
            raise BundleError(f"member {name!r} is not listed in the manifest")
        if hashlib.sha256(data[name]).hexdigest() != declared[name].get("sha256"):
            raise BundleError(f"member {name!r} does not match its SHA-256 in the manifest")
    missing = [n for n in declared if n not in data]
    if missing:
        raise BundleError(f"the manifest lists {missing[0]!r}, which the bundle lacks")
    tables = {t: _table(t, data.get(f"{t}.parquet")) for t in TABLES}
    check(tables)
    artifacts = {n[len("artifacts/"):]: b for n, b in data.items() if n.startswith("artifacts/")}
    return Bundle(sha, manifest, tables, artifacts)


def _manifest(raw: bytes) -> dict:
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"manifest.json is not JSON: {e}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(f"manifest.json is not a {FORMAT} manifest")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"bundle format version {m.get('format_version')!r} is unknown (this repro reads "
                          f"{FORMAT_VERSION}): a newer repro wrote it")
    if not isinstance(m.get("members"), dict):
        raise BundleError("manifest.json lists no members")
    for key in ("label", "host", "repro_version", "code_version", "schema_revision"):
        if m.get(key) is not None and (not isinstance(m[key], str) or len(m[key]) > 128):
            raise BundleError(f"manifest.json: {key} is not a short string")
    return m


def _table(name: str, raw: bytes | None) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if raw is None:
        raise BundleError(f"the bundle has no {name}.parquet")
    try:
        frame = pq.read_table(pa.BufferReader(raw)).to_pandas()
    except Exception as e:  # pyarrow's errors have no common base: any unreadable file is one line
        raise BundleError(f"{name}.parquet is not readable Parquet: {str(e).splitlines()[0][:200]}") from None
    wanted = {"jobs": JOB_COLUMNS, "runs": RUN_COLUMNS, "metrics": METRIC_COLUMNS, "curve_points": CURVE_COLUMNS}[name]
    lacking = [c for c in wanted if c not in frame.columns]
    if lacking:
        raise BundleError(f"{name}.parquet lacks column {lacking[0]!r}")
    rows = frame[list(wanted)].astype(object).where(frame[list(wanted)].notna(), None).to_dict("records")
    for r in rows:
        for c in JSON_COLUMNS.get(name, ()):
            try:
                r[c] = json.loads(r[c]) if isinstance(r[c], str) else None
            except json.JSONDecodeError:
                raise BundleError(f"{name}.parquet: {c} is not JSON") from None
    return rows


def _fail(table: str, row: dict, what: str) -> BundleError:
    key = row.get("id") or row.get("job_id")
    shown = key if isinstance(key, str) and HEX16.match(key) else "?"
    return BundleError(f"{table}.parquet, job {shown}: {what}")


def _number(v, lo: float, hi: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _text(v, n: int) -> bool:
    return isinstance(v, str) and len(v) <= n and "\x00" not in v


def check(tables: dict[str, list[dict]]) -> None:
    """Every row well formed and in range, every job id the hash of its definition; ``BundleError``."""
    from .plan import job_hash

    jobs = {}
    for j in tables["jobs"]:
        if not (isinstance(j["id"], str) and HEX16.match(j["id"])):
            raise _fail("jobs", j, f"id {str(j['id'])[:40]!r} is not a job id (16 hex digits)")
        if not (isinstance(j["config_key"], str) and HEX16.match(j["config_key"])):
            raise _fail("jobs", j, "config_key is not 16 hex digits")
        if j["kind"] not in KINDS or not _text(j["model"], 128) or not (isinstance(j["budget"], str)
                                                                       and BUDGET.match(j["budget"])):
            raise _fail("jobs", j, "kind, model or budget out of range")
        if j["seed"] is not None and not (_number(j["seed"], 0, 2**31 - 1) and float(j["seed"]).is_integer()):
            raise _fail("jobs", j, f"seed {j['seed']!r} out of range")
        if not isinstance(j["spec"], dict):
            raise _fail("jobs", j, "spec is not a job definition")
        if job_hash(j["spec"]) != j["id"]:
            raise _fail("jobs", j, "id is not the hash of its definition (a forged or edited job)")
        if j["upstream"] is not None and not (isinstance(j["upstream"], list)
                                              and all(isinstance(u, str) and HEX16.match(u) for u in j["upstream"])):
            raise _fail("jobs", j, "upstream is not a list of job ids")
        jobs[j["id"]] = j
    runs = {}
    for r in tables["runs"]:
        if r["job_id"] not in jobs:
            raise _fail("runs", r, "a run of a job the bundle does not define")
        if not _number(r["run_id"], 0, 2**62) or r["status"] != "done":
            raise _fail("runs", r, "run id or status out of range")
        for c in ("host", "device", "engine", "precision", "git_commit"):
            if r[c] is not None and not _text(r[c], 256):
                raise _fail("runs", r, f"{c} is not a short string")
        if not _number(r["pid"], 0, 2**31):
            raise _fail("runs", r, "pid out of range")
        for c in ("started_at", "ended_at"):
            if r[c] is not None and not hasattr(r[c], "year"):
                raise _fail("runs", r, f"{c} is not a time")
        runs[r["run_id"]] = r
    for m in tables["metrics"]:
        if m["job_id"] not in jobs or m["run_id"] not in runs or runs[m["run_id"]]["job_id"] != m["job_id"]:
            raise _fail("metrics", m, "a metric of a job or run the bundle does not define")
        if not (isinstance(m["name"], str) and NAME.match(m["name"])):
            raise _fail("metrics", m, f"metric name {str(m['name'])[:40]!r} is not a metric name")
        hi = 100.0 if m["name"] in PERCENT else MAX_COUNT
        if not _number(m["value"], -MAX_COUNT if m["name"] not in PERCENT else 0.0, hi):
            raise _fail("metrics", m, f"{m['name']} = {m['value']!r} is not finite or out of range")
        if m["detail"] is not None and not _text(m["detail"], 128):
            raise _fail("metrics", m, "detail is not a short string")
    for p in tables["curve_points"]:
        if p["job_id"] not in jobs or p["run_id"] not in runs:
            raise _fail("curve_points", p, "a point of a job or run the bundle does not define")
        if not _number(p["epoch"], 0, 10_000_000):
            raise _fail("curve_points", p, "epoch out of range")
        for c in CURVE_COLUMNS[3:]:
            hi = 100.0 if c.endswith("_err") else MAX_COUNT
            if not _number(p[c], 0.0, hi):
                raise _fail("curve_points", p, f"{c} = {p[c]!r} is not finite or out of range")
