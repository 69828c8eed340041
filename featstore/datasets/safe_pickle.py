"""Reading the pickles that datasets ship (CIFAR batches, revisited ground truth) without
running code from them.

A pickle names callables by module and name (GLOBAL / STACK_GLOBAL) and calls them while
loading; a crafted file names ``os.system``. :class:`SafeUnpickler` resolves a name only from
a fixed table of what those formats hold (builtin containers, numpy arrays, dtypes and
scalars) and never imports a module, so anything else is refused before it exists.
Every pickle featstore reads from a dataset goes through :func:`load_pickle`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from featstore.errors import DatasetError, UnsafePickleError, clip

__all__ = ["SafeUnpickler", "allowed_globals", "load_pickle", "loads_pickle"]


def _latin1_encode(text: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes (``encode(str, 'latin1')``), only."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "utf8"):
        raise pickle.UnpicklingError(
            "_codecs.encode is only allowed as protocol 2 uses it (a str and latin1)"
        )
    return text.encode(encoding, errors)


class _NdarrayType:
    """What ``numpy.ndarray`` resolves to: a marker :func:`_reconstruct` accepts as the
    array type, and not a callable, so a pickle cannot allocate arrays of any size."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


NDARRAY = _NdarrayType()
_SEED_BYTES = 64  # numpy pickles seed an array with shape (0,), then set its state


def _numpy_helpers() -> dict[str, Callable[..., Any]]:
    """numpy's own pickle helpers, from wherever this numpy keeps them (1.x: numpy.core, 2.x:
    numpy._core); both spellings are accepted since files written by either exist."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        """``_reconstruct`` for the plain array type and an empty seed only: the data come
        with the state (bounded by the file's size), never from a shape alone."""
        if subtype is not NDARRAY:
            raise pickle.UnpicklingError("_reconstruct is only allowed for numpy.ndarray")
        size = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.float64))
        if size > _SEED_BYTES:
            raise pickle.UnpicklingError(
                "_reconstruct asks for a seed array larger than numpy writes"
            )
        return cast(np.ndarray, multiarray._reconstruct(np.ndarray, shape, dtype))

    return {
        "multiarray._reconstruct": reconstruct,
        "multiarray.scalar": multiarray.scalar,
        "numeric._frombuffer": numeric._frombuffer,  # type: ignore[attr-defined]
    }


def allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object: everything a dataset pickle may name. No callable here
    allocates more than its (already unpickled) arguments hold."""
    table: dict[tuple[str, str], Any] = {}
    for module in ("builtins", "__builtin__"):  # __builtin__: Python 2 pickles
        for obj in (set, frozenset, complex):
            table[(module, obj.__name__)] = obj
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("_codecs", "encode")] = _latin1_encode
    table[("numpy", "ndarray")] = NDARRAY
    table[("numpy", "dtype")] = np.dtype
    for qualname, helper in _numpy_helpers().items():
        submodule, name = qualname.split(".")
        for package in ("numpy.core", "numpy._core"):
            table[(f"{package}.{submodule}", name)] = helper
    return table


_ALLOWED = allowed_globals()


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :func:`allowed_globals` and imports nothing.

    ``source`` names the file in the refusal, which is an :class:`UnsafePickleError`.
    """

    def __init__(self, file: Any, *, source: str, encoding: str = "ASCII") -> None:
        super().__init__(file, encoding=encoding, fix_imports=False)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"{self.source} is refused: its pickle asks for "
                f"{clip(repr(f'{module}.{name}'), 120)}, which is code, not data (featstore "
                "loads only containers, numbers, strings and numpy arrays from a pickle); "
                "use the official, untouched files"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self.source} is refused: its pickle refers to persistent objects, which a "
            "dataset file never holds; use the official, untouched files"
        )


def loads_pickle(data: bytes, *, source: str, what: str = "pickle", encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` safely; ``source`` and ``what`` name it in errors."""
    return _load(io.BytesIO(data), source, what, encoding)


def load_pickle(
    path: str | os.PathLike[str], *, what: str = "pickle", encoding: str = "ASCII"
) -> Any:
    """Unpickle the file at ``path`` safely.

    UnsafePickleError when it names anything but data; DatasetError when it is not a
    readable pickle; OSError (FileNotFoundError ...) from opening is left to the caller.
    """
    with open(path, "rb") as handle:
        return _load(handle, os.fspath(path), what, encoding)


def _load(handle: Any, source: str, what: str, encoding: str) -> Any:
    try:
        return SafeUnpickler(handle, source=source, encoding=encoding).load()
    except UnsafePickleError:
        raise
    except MemoryError:
        raise DatasetError(
            f"{source} is not a readable {what} (it does not fit in memory)"
        ) from None
    except Exception as exc:  # a damaged pickle fails in many ways
        reason = clip(f"{type(exc).__name__}: {exc}", 200)
        raise DatasetError(f"{source} is not a readable {what} ({reason})") from None
