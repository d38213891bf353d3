"""Reading the CIFAR python pickles without running code from them.

The CIFAR-10/100 "python version" files are pickles of dicts holding a uint8 numpy array, lists of ints,
and strings (written by Python 2's cPickle, protocol 2, so Python 3 reads them with ``encoding="latin1"``).
torchvision reads them with ``pickle.load``, which calls whatever a file names: a file crafted with
``__reduce__`` runs any code when it is opened. ``load`` admits only what the format holds:

- containers and scalars (dict, list, tuple, str, bytes, int, float, bool, None): pickle builds these
  itself, without importing anything;
- numpy arrays and dtypes: ``numpy.core.multiarray._reconstruct`` (``numpy._core`` since numpy 2) with
  ``numpy.ndarray``, and ``numpy.dtype``; the real files need exactly these three;
- what other writers of the same content emit: ``numpy.core.multiarray.scalar`` (numpy scalars, e.g. labels
  that are ``np.int64``), ``numpy.core.numeric._frombuffer`` (arrays under protocol 5), and
  ``_codecs.encode(text, "latin1")`` (how Python 3 writes ``bytes`` under protocol 2).

Everything else is refused with a ``DataError`` naming the global, before anything is called. Object
arrays (which would carry arbitrary Python objects) are refused too, and the result is walked once to
check that it holds nothing but the types above.
"""
from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

from .datasets import DataError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric

_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}
PLAIN = (dict, list, tuple, str, bytes, int, float, bool, type(None))


def _reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"_reconstruct of {cls!r}: only numpy.ndarray is admitted")
    return _multiarray._reconstruct(cls, shape, dtype)


def _dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"dtype {dtype}: arrays of Python objects are not admitted")
    return dtype


def _scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"scalar of dtype {dtype!r}: only numeric numpy scalars are admitted")
    return _multiarray.scalar(dtype, *args)


def _frombuffer(buffer, dtype, shape, order):
    return _numeric._frombuffer(buffer, _dtype(dtype), shape, order)


def _encode(text, encoding="utf-8"):
    # Python 3 writes bytes under protocol 2 as _codecs.encode(<latin1 text>, "latin1")
    if not isinstance(text, str) or encoding not in _LATIN1:
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}: only latin1 bytes are admitted")
    return codecs.encode(text, "latin1")


ADMITTED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class Refused(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals are the ``ADMITTED`` table's (no import, no other callable)."""

    def find_class(self, module: str, name: str):
        try:
            return ADMITTED[(module, name)]
        except KeyError:
            raise Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise Refused(f"persistent id {pid!r}")


def _check(obj, depth: int = 0) -> None:
    """The loaded value holds only plain containers, scalars and non-object numpy arrays."""
    if depth > 100:
        raise pickle.UnpicklingError("nested more than 100 levels")
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("an array of Python objects")
        return
    if type(obj) not in PLAIN:  # exact types: nothing here can build a subclass
        raise pickle.UnpicklingError(f"a {type(obj).__name__}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check(k, depth + 1)
            _check(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check(v, depth + 1)


def load(path: str | Path, encoding: str = "latin1"):
    """The pickle at ``path``, read without running code from it (``DataError`` otherwise)."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding=encoding).load()
        _check(obj)
        return obj
    except Refused as e:
        raise DataError(f"{path}: refused to read: the pickle asks for {e}, which a dataset file of this format "
                        f"never holds (only numpy arrays, lists, dicts, strings, bytes and numbers are read). "
                        f"It is not the dataset's file, or it was tampered with: replace it with the "
                        f"original") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{path}: not a readable dataset pickle ({type(e).__name__}: {e}); "
                        f"replace it with the original file") from None
