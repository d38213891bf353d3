"""CIFAR pickles are read without running code: what the format holds loads (our fakes, a file laid out as
the real Python 2 files are, other protocols), anything else is refused before it is called."""
from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from repro.data import readers as data, safe_pickle
from repro.data.datasets import DataError


def py2_pickle(obj) -> bytes:
    """``obj`` as Python 2's cPickle writes it at protocol 2, as the official CIFAR files were written: str
    as SHORT_BINSTRING/BINSTRING (Python 3 reads them with encoding latin1), numpy arrays through
    ``numpy.core.multiarray._reconstruct`` and a BUILD of (1, shape, dtype, fortran, raw bytes as str)."""
    out = bytearray(b"\x80\x02")

    def string(s: bytes):
        out.extend(b"U" + bytes([len(s)]) + s if len(s) < 256 else b"T" + struct.pack("<i", len(s)) + s)

    def emit(o):
        if isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"K" + bytes([o]) if 0 <= o < 256 else b"M" + struct.pack("<H", o) if 0 <= o < 65536
                       else b"J" + struct.pack("<i", o))
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, str):
            string(o.encode("latin1"))
        elif isinstance(o, bytes):
            string(o)
        elif isinstance(o, tuple):
            if 1 <= len(o) <= 3:
                for v in o:
                    emit(v)
                out.extend(b"\x85\x86\x87"[len(o) - 1:len(o)])
            else:
                out.extend(b"(")
                for v in o:
                    emit(v)
                out.extend(b"t")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            emit((0,))
            emit(b"b")
            out.extend(b"\x87R")
            out.extend(b"(K\x01")
            emit(o.shape)
            out.extend(b"cnumpy\ndtype\n")
            emit(("u1", 0, 1))
            out.extend(b"R")
            emit((3, "|", None, None, None, -1, -1, 0))
            out.extend(b"b\x89")
            emit(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    return bytes(out + b".")


def _real_layout_cifar10(root, n=50, seed=0):
    """A CIFAR-10 folder whose files are laid out byte for byte as the official ones (Python 2 pickles)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        entry = {"batch_label": f"training batch {i + 1} of 5", "labels": [int(v) for v in rng.integers(0, 10, n)],
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "filenames": [f"img_{i}_{k}.png" for k in range(n)]}
        (folder / name).write_bytes(py2_pickle(entry))
        batches[name] = entry
    (folder / "batches.meta").write_bytes(py2_pickle({"num_cases_per_batch": n, "num_vis": 3072,
                                                      "label_names": [f"class{k}" for k in range(10)]}))
    return batches


def test_a_file_laid_out_like_the_real_cifar_loads_as_the_unrestricted_pickle_reads_it(tmp_path):
    batches = _real_layout_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    # the emitter is faithful: plain pickle (what torchvision calls) reads it as written
    with open(path, "rb") as f:
        plain = pickle.load(f, encoding="latin1")
    assert np.array_equal(plain["data"], batches["data_batch_1"]["data"])
    safe = safe_pickle.load(path)
    assert safe.keys() == plain.keys() and safe["labels"] == plain["labels"] and safe["filenames"] == plain["filenames"]
    assert safe["data"].dtype == np.uint8 and np.array_equal(safe["data"], plain["data"])
    (xtr, ytr), (xte, yte) = data.arrays("cifar10", tmp_path, train_split=["train"])
    expected = np.concatenate([batches[f"data_batch_{k}"]["data"] for k in range(1, 6)])
    assert torch.equal(xtr, torch.from_numpy(expected.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()))
    assert ytr.tolist() == sum((batches[f"data_batch_{k}"]["labels"] for k in range(1, 6)), [])
    assert len(xte) == 50


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_our_fakes_and_every_protocol_load(tmp_path, protocol):
    """fake_cifar's files (Python 3, numpy 2 names) load, and the same content at protocols 2 (bytes via
    _codecs.encode) and 5 (numpy's _frombuffer), with numpy scalars, loads equal."""
    folder = data.fake_cifar(tmp_path, 100, train=20, test=10)
    assert data.load("cifar100", tmp_path, augment=[], train_split=["train"])[0][0][0].shape == (3, 32, 32)
    entry = {"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "labels": [np.int64(3), 4], "raw": b"\x00\xff",
             "name": "x", "shape": (2, 6), "scale": 0.5}
    (folder / "other").write_bytes(pickle.dumps(entry, protocol=protocol))
    loaded = safe_pickle.load(folder / "other")
    assert np.array_equal(loaded["data"], entry["data"]) and loaded["labels"] == [3, 4] and loaded["raw"] == b"\x00\xff"
    assert loaded["shape"] == (2, 6) and loaded["scale"] == 0.5


class Hostile:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _hostile_payloads(marker):
    return {"os.system": Hostile(os.system, f"touch {marker}"),
            "builtins.exec": Hostile(exec, f"open({str(marker)!r}, 'w').close()")}


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
@pytest.mark.parametrize("victim", ["data_batch_1", "batches.meta"])
def test_a_hostile_cifar_file_runs_no_code_and_is_refused(tmp_path, kind, victim):
    data.fake_cifar(tmp_path, 10, train=50, test=10)
    marker = tmp_path / "pwned"
    payload = _hostile_payloads(marker)[kind]
    hostile = pickle.dumps({"data": payload, "labels": [0]}, protocol=2)
    path = tmp_path / "cifar-10-batches-py" / victim
    path.write_bytes(hostile)
    with open(path, "rb") as f:  # the file is genuinely hostile: the unrestricted unpickler runs it
        pickle.load(f, encoding="latin1")
    assert marker.exists()
    marker.unlink()
    for read in (lambda: data.load("cifar10", tmp_path, augment=[], train_split=["train"]),
                 lambda: data.arrays("cifar10", tmp_path, train_split=["train"])):
        with pytest.raises(DataError, match=rf"{victim}: refused to read: the pickle asks for (posix\.system|"
                                            rf"(__builtin__|builtins)\.exec)"):
            read()
        assert not marker.exists()


@pytest.mark.parametrize("obj, match", [
    (np.array([1, "x"], dtype=object), "asks for|Python objects"),  # object arrays carry arbitrary objects
    (np.ma.masked_array([1, 2]), "numpy.ma"),  # another numpy class
    (torch.zeros(2), "torch"),
    ({1, 2}, "builtin_*.set"),  # protocol 2 names Python 3's builtins __builtin__
])
def test_anything_the_format_does_not_hold_is_refused(tmp_path, obj, match):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": obj}, protocol=2))
    with pytest.raises(DataError, match=match):
        safe_pickle.load(path)


def test_codecs_encode_admits_latin1_only(tmp_path):
    path = tmp_path / "batch"
    text = pickle.dumps(b"\x00\xff", protocol=2).replace(b"latin1", b"rot_13")
    path.write_bytes(text)
    with pytest.raises(DataError, match="only latin1"):
        safe_pickle.load(path)


def test_a_truncated_file_is_one_clear_error(tmp_path):
    folder = data.fake_cifar(tmp_path, 10, train=50, test=10)
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:100])
    with pytest.raises(DataError, match="test_batch: not a readable dataset pickle"):
        data.load("cifar10", tmp_path, augment=[], train_split=["train"])
