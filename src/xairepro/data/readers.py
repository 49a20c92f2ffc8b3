"""Readers of the real image files: MNIST idx, CIFAR pickle batches, SVHN ``.mat``.

Each returns ``(images, labels)``: uint8 (N, C, H, W) and int64 (N,), straight from the files.
Malformed files raise :class:`UsageError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xairepro.data.files import open_maybe_gz
from xairepro.errors import UsageError

__all__ = ["read_idx", "idx_bytes", "read_mnist", "read_cifar_batches", "read_cifar_meta", "read_svhn"]

#: idx magic numbers: 0x00000803 (ubyte, 3 dims) for images, 0x00000801 (ubyte, 1 dim) for labels.
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


def read_idx(path: Path, expect_dims: int) -> np.ndarray:
    """An idx file (MNIST format, optionally gzipped) as a uint8 array of ``expect_dims`` dims."""
    with open_maybe_gz(path) as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UsageError(f"{path} is not an idx file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08 or ndim != expect_dims:
        raise UsageError(f"{path}: expected unsigned-byte idx data with {expect_dims} dims, "
                         f"got type 0x{dtype_code:02x} with {ndim} dims")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(dims))
    if len(data) - header != count:
        raise UsageError(f"{path}: header says {dims} ({count} bytes) but holds {len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array as idx bytes (what :func:`read_idx` reads): magic 0x0000 08 ndim, big-endian dims, data."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        raise UsageError(f"idx files here hold uint8 arrays of 1+ dims, got {array.dtype} with {array.ndim} dims")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def read_mnist(images_path: Path, labels_path: Path) -> tuple[Tensor, Tensor]:
    """MNIST/Fashion-MNIST idx pair -> uint8 (N, 1, 28, 28), int64 (N,)."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise UsageError(f"{images_path} holds {images.shape[0]} images but {labels_path} "
                         f"{labels.shape[0]} labels")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


#: dtype kinds a CIFAR array may have: bool, signed/unsigned integers, floats, complex, bytes, str.
_PLAIN_KINDS = "biufcSU"
#: numpy's array-rebuilding function (``numpy.core.multiarray._reconstruct``, moved to ``numpy._core`` in 2.0).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]


class _RefusedGlobal(Exception):
    pass


def _array(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise _RefusedGlobal(f"an array of type {getattr(subtype, '__name__', subtype)!r}")
    return _RECONSTRUCT(np.ndarray, shape, typecode)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.kind not in _PLAIN_KINDS:
        raise _RefusedGlobal(f"an array of dtype {dtype!s}")
    return dtype


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 writes for a ``bytes`` object into a protocol-2 pickle: ``_codecs.encode(s, 'latin1')``."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise _RefusedGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _array,
    ("numpy._core.multiarray", "_reconstruct"): _array,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}


class _CifarUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR batch holds: dicts, lists, strings, bytes, numbers and numpy arrays of plain
    dtypes.  Any other class or function a pickle names is refused before it is looked up, so a planted
    file cannot run code (``pickle.load`` would call whatever the file names)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _check_arrays(obj: Any) -> None:
    """Arrays set up by the pickle's state must still hold plain values (no object or structured dtype)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _PLAIN_KINDS or obj.dtype.hasobject:
            raise _RefusedGlobal(f"an array of dtype {obj.dtype!s}")
    elif isinstance(obj, dict):
        for value in obj.values():
            _check_arrays(value)
    elif isinstance(obj, list):
        for value in obj:
            _check_arrays(value)


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (files written by Python 2 or 3, str or bytes keys).

    Read with a restricted unpickler (see :class:`_CifarUnpickler`): a file that names anything else is a
    :class:`UsageError`, and nothing it names is imported or called.
    """
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(fh, encoding="latin1").load()
        _check_arrays(obj)
    except _RefusedGlobal as exc:
        raise UsageError(f"{path} is not a CIFAR batch: it asks for {exc}, which CIFAR batches never hold "
                         "(refused unread: a pickle can run code)") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UsageError(f"{path} is not a readable CIFAR pickle batch ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{path} does not hold a dict (CIFAR batches are dicts)")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar_batches(paths: Sequence[Path], label_key: str) -> tuple[Tensor, Tensor]:
    """CIFAR pickle batches (``data`` (N, 3072) uint8, ``labels``/``fine_labels``) -> (N, 3, 32, 32), (N,)."""
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        if "data" not in batch or label_key not in batch:
            raise UsageError(f"{path} lacks the keys 'data' and {label_key!r} (has: {', '.join(map(str, batch))})")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise UsageError(f"{path}: 'data' has shape {data.shape}, expected (N, 3072)")
        lab = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
        if lab.shape[0] != data.shape[0]:
            raise UsageError(f"{path}: {data.shape[0]} images but {lab.shape[0]} labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def read_cifar_meta(path: Path, key: str) -> list[str] | None:
    """Label names from a CIFAR meta file (``batches.meta`` / ``meta``), or ``None`` if absent/unreadable."""
    try:
        meta = _unpickle(path)
    except UsageError:
        return None
    names = meta.get(key)
    if names is None:
        return None
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def read_svhn(path: Path) -> tuple[Tensor, Tensor]:
    """SVHN cropped digits ``.mat`` (``X`` (32, 32, 3, N), ``y`` (N, 1) with 10 for '0') -> (N, 3, 32, 32), (N,)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path} is not a readable .mat file ({type(exc).__name__})") from None
    if "X" not in mat or "y" not in mat:
        raise UsageError(f"{path} lacks the variables 'X' and 'y'")
    x = np.asarray(mat["X"], dtype=np.uint8)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise UsageError(f"{path}: 'X' has shape {x.shape}, expected (32, 32, 3, N)")
    y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    y = np.where(y == 10, 0, y)  # SVHN stores the digit 0 as label 10
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))), torch.from_numpy(y)
