"""repro verify, export/import bundles (good and bad), cite, diff --format latex, run on a read-only URI."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, repro

EXAMPLE_SPECS = REPO / "examples" / "simam" / "specs"


@pytest.fixture
def claims_db(tmp_path) -> Path:
    """A copy of the committed results.db (never the file itself)."""
    path = tmp_path / "claims.db"
    shutil.copyfile(REPO / "results.db", path)
    return path


def test_cite_prints_bibtex():
    p = repro("cite", "se-r", check=True)
    assert p.stdout.startswith("@misc{ye2021ser,\n")
    assert "title = {{Introduce the Result Into Self-Attention}}" in p.stdout
    assert "eprint = {2109.13860}" in p.stdout and p.stdout.rstrip().endswith("}")
    simam = repro("cite", "simam", "--specs-dir", str(EXAMPLE_SPECS), check=True).stdout
    assert "@inproceedings{yang2021simam," in simam and "pages = {11863--11874}" in simam
    bad = repro("cite", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: unknown paper")


def test_verify_passes_on_the_committed_results_and_fails_on_an_edited_copy(claims_db):
    url = f"sqlite:///{claims_db}"
    p = repro("verify", "se-r/table1", "se-r/table2", "--db", url)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "6 re-measured: 6 equal"
    with sqlite3.connect(claims_db) as conn:
        job, value = conn.execute("SELECT m.job_id, m.value FROM metrics m JOIN jobs j ON j.id = m.job_id "
                                  "WHERE j.model = 'se_resnet34' AND m.name = 'params'").fetchone()
        conn.execute("UPDATE metrics SET value = value + 1 WHERE job_id = ? AND name = 'params'", (job,))
    p = repro("verify", "se-r/table1", "--db", url)
    assert p.returncode == 1
    lines = p.stdout.strip().splitlines()
    assert lines[0] == (f"drift: job {job} (se_resnet34, static) params: database {value + 1!r}, "
                        f"re-measured {value!r}")
    assert lines[-1] == "6 re-measured: 5 equal, 1 drifted"


def test_run_on_a_read_only_uri_is_one_line(claims_db):
    before = claims_db.read_bytes()
    p = repro("run", "se-r/table1", "--db", f"sqlite:///file:{claims_db}?mode=ro&uri=true")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "read-only" in p.stderr
    assert claims_db.read_bytes() == before


def test_diff_latex_compiles(claims_db, tmp_path):
    p = repro("diff", "se-r/table1", "--format", "latex", "--db", f"sqlite:///{claims_db}")
    assert p.returncode == 0, p.stderr
    tex = p.stdout
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"SE-R-ResNet101 & 57.243M / 57.243M \checkmark \\" in tex
    assert r"\checkmark reproduced" in tex  # the footnote line explains each marker used
    from repro.latex import escape

    assert escape("a_b & 50% #1 $x ~ {y}") == r"a\_b \& 50\% \#1 \$x \textasciitilde{} \{y\}"
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (Debian: texlive-latex-base texlive-latex-recommended)")
    (tmp_path / "t.tex").write_text(tex)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


# --- bundles -----------------------------------------------------------------------------------

@pytest.fixture
def good_bundle(claims_db, tmp_path) -> Path:
    out = tmp_path / "se-r.zip"
    p = repro("export", "se-r/table1", "-o", str(out), "--db", f"sqlite:///{claims_db}")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("exported 6 job(s), 6 run(s), 18 metric(s)")
    return out


def test_bundle_is_readable_with_pandas_alone(good_bundle):
    code = ("import io, json, sys, zipfile, pandas as pd\n"
            f"z = zipfile.ZipFile({str(good_bundle)!r})\n"
            "m = json.loads(z.read('manifest.json'))\n"
            "jobs = pd.read_parquet(io.BytesIO(z.read('jobs.parquet')))\n"
            "metrics = pd.read_parquet(io.BytesIO(z.read('metrics.parquet')))\n"
            "assert not any(k.startswith('repro') for k in sys.modules)\n"
            "print(m['format'], m['format_version'], len(jobs), sorted(set(metrics.name)), "
            "int(metrics[metrics.name == 'params'].value.max()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True).stdout
    assert out.strip() == "repro-bundle 1 6 ['macs', 'params', 'params_mxnet'] 57242636"


def test_import_is_idempotent(good_bundle, tmp_path):
    target = tmp_path / "target.db"
    url = f"sqlite:///{target}"
    first = repro("import", str(good_bundle), "--db", url, "--label", "lab-a")
    assert first.returncode == 0, first.stderr
    assert "6 job(s), 6 run(s) added" in first.stdout
    before = target.read_bytes()
    again = repro("import", str(good_bundle), "--db", url, "--label", "lab-a")
    assert again.returncode == 0 and "imported before" in again.stdout
    assert target.read_bytes() == before
    diff = json.loads(repro("diff", "se-r/table1", "--format", "json", "--db", url, check=True).stdout)
    assert [r["status"] for r in diff] == ["reproduced"] * 6
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT label FROM origins").fetchall() == [("lab-a",)]
        assert conn.execute("SELECT count(*) FROM runs WHERE origin_id IS NOT NULL").fetchone() == (6,)


def _members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _resealed(path: Path, members: dict[str, bytes], extra: dict[str, bytes] | None = None) -> Path:
    """The members with a manifest whose checksums match them (a well-formed bundle with bad content)."""
    manifest = json.loads(members["manifest.json"])
    members = {**members, **(extra or {})}
    manifest["members"] = {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                           for n, d in members.items() if n != "manifest.json"}
    return _zip(path, {**members, "manifest.json": json.dumps(manifest).encode()})


def _edited_table(members: dict[str, bytes], table: str, edit) -> dict[str, bytes]:
    import pandas as pd

    frame = pd.read_parquet(io.BytesIO(members[f"{table}.parquet"]))
    edit(frame)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return {**members, f"{table}.parquet": buf.getvalue()}


def _bad_bundles(good: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (bad bundle, a word its error line must contain)."""
    raw, m = good.read_bytes(), _members(good)
    out: dict[str, tuple[Path, str]] = {}

    def put(name, path, word):
        out[name] = (path, word)

    (tmp / "truncated.zip").write_bytes(raw[: len(raw) // 2])
    put("truncated", tmp / "truncated.zip", "not a readable bundle")
    flipped = bytearray(raw)
    with zipfile.ZipFile(good) as z:  # inside the stored (compressed) bytes of metrics.parquet
        off = z.getinfo("metrics.parquet").header_offset
    at = off + 30 + int.from_bytes(raw[off + 26:off + 28], "little") + int.from_bytes(raw[off + 28:off + 30],
                                                                                      "little") + 10
    flipped[at] ^= 0xFF
    (tmp / "flipped.zip").write_bytes(bytes(flipped))
    put("flipped byte", tmp / "flipped.zip", "")
    manifest = json.loads(m["manifest.json"])
    manifest["members"]["metrics.parquet"]["sha256"] = "0" * 64
    put("wrong checksum", _zip(tmp / "checksum.zip", {**m, "manifest.json": json.dumps(manifest).encode()}), "SHA-256")
    manifest = json.loads(m["manifest.json"])
    manifest["format_version"] = 99
    put("unknown version", _zip(tmp / "version.zip", {**m, "manifest.json": json.dumps(manifest).encode()}),
        "format version 99")
    for name, member in (("zip-slip", "../../evil.parquet"), ("absolute", "/tmp/evil.parquet"),
                         ("dotdot", "artifacts/../../x")):
        put(name, _zip(tmp / f"{name}.zip", {**m, member: b"x"}), "escapes")
    put("zip bomb", _resealed(tmp / "bomb.zip", m, {"artifacts/" + "a" * 64: b"\0" * (8 * 2**20)}), "inflates")

    def nan(frame):
        frame.loc[0, "value"] = float("nan")

    def out_of_range(frame):
        frame.loc[0, "value"] = -5.0e30

    def injection(frame):
        frame.loc[0, "name"] = "params'); DROP TABLE jobs; --"

    def forged(frame):
        frame.loc[0, "id"] = "0123456789abcdef"

    put("nan", _resealed(tmp / "nan.zip", _edited_table(m, "metrics", nan)), "not finite")
    put("out of range", _resealed(tmp / "range.zip", _edited_table(m, "metrics", out_of_range)), "out of range")
    put("sql injection", _resealed(tmp / "inject.zip", _edited_table(m, "metrics", injection)), "not a metric name")
    put("forged job id", _resealed(tmp / "forged.zip", _edited_table(m, "jobs", forged)), "not the hash")
    return out


@pytest.mark.long
def test_each_bad_bundle_is_one_line_exit_2_and_writes_nothing(good_bundle, claims_db, tmp_path):
    """Into a database that holds results already: its bytes are the same after each refusal."""
    url = f"sqlite:///{claims_db}"
    repro("verify", "se-r/table1", "--db", url, check=True)  # opened once: at the schema's head, as a user's is
    before = claims_db.read_bytes()
    bad = _bad_bundles(good_bundle, tmp_path)
    assert len(bad) == 12
    for name, (path, word) in bad.items():
        p = repro("import", str(path), "--db", url, "--label", "x")
        assert p.returncode == 2, (name, p.stdout, p.stderr)
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: "), (name, p.stderr)
        assert word in p.stderr, (name, p.stderr)
        assert claims_db.read_bytes() == before, name


def test_bundle_with_artifacts_round_trips_and_checks_them(claims_db, tmp_path):
    """--with-artifacts: each file under its SHA-256, checked like every member; written content-addressed."""
    from repro import bundle
    from repro.db import Database
    from repro.db.imports import export_rows, write_artifacts

    db = Database(f"sqlite:///{claims_db}", create=False)
    try:
        with db.engine.connect() as conn:
            keys = {k for (k,) in conn.exec_driver_sql("SELECT config_key FROM jobs WHERE model = 'se_resnet34'")}
        tables, _ = export_rows(db, keys)
    finally:
        db.dispose()
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights" * 100)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    out = tmp_path / "b.zip"
    manifest = bundle.write(out, tables, papers=["se-r"], schema_revision="0005", repro_version="x", code_version=None,
                            artifacts={sha: weights}, artifact_rows=[])
    assert manifest["members"][f"artifacts/{sha}"] == {"size": 700, "sha256": sha}
    back = bundle.read(out)
    assert back.artifacts == {sha: weights.read_bytes()} and len(back.tables["jobs"]) == len(tables["jobs"]) > 0
    assert write_artifacts(back, tmp_path / "artifacts") == 1
    assert (tmp_path / "artifacts" / sha[:2] / f"{sha}.pt").read_bytes() == weights.read_bytes()
    members = _members(out)
    members[f"artifacts/{sha}"] = b"other bytes"
    with pytest.raises(bundle.BundleError, match="does not match its SHA-256"):
        bundle.read(_zip(tmp_path / "bad.zip", members))
