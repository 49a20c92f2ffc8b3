"""Readers of the UCR/UEA time-series formats: ``.txt`` (whitespace), ``.tsv``, ``.ts`` (sktime), ``.arff``.

Each returns ``(x, labels)``: float32 (N, T, C) and the class labels as strings, in file order.
Missing values (``?``/``NaN``) become NaN. Malformed files raise :class:`UsageError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xairepro.errors import UsageError

__all__ = ["UCR_EXTENSIONS", "read_ucr"]

UCR_EXTENSIONS = (".ts", ".tsv", ".txt", ".arff")


def _float(token: str, path: Path) -> float:
    token = token.strip()
    if token in ("?", "", "NaN", "nan"):
        return float("nan")
    try:
        return float(token)
    except ValueError:
        raise UsageError(f"{path}: {token!r} is not a number") from None


def _label_first(path: Path, delimiter: str | None) -> tuple[np.ndarray, list[str]]:
    """UCR text layout: one series per line, the class label first, then T values."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            tokens = line.split(delimiter) if delimiter else line.split()
            rows.append(tokens)
    if not rows:
        raise UsageError(f"{path} holds no series")
    length = len(rows[0])
    if length < 2 or any(len(r) != length for r in rows):
        raise UsageError(f"{path}: every line needs a label and the same number of values")
    labels = [_canonical_label(r[0]) for r in rows]
    values = np.array([[_float(t, path) for t in r[1:]] for r in rows], dtype=np.float32)
    return values[:, :, None], labels


def _canonical_label(token: str) -> str:
    """'1', '1.0' and '1.0000000e+00' all name class 1; other labels stay as written."""
    token = token.strip().strip("'\"")
    try:
        value = float(token)
    except ValueError:
        return token
    return str(int(value)) if value.is_integer() else token


def _read_ts(path: Path) -> tuple[np.ndarray, list[str]]:
    """sktime ``.ts``: ``@`` header lines, then ``@data``; rows are ``dim1:dim2:...:label`` with comma values."""
    has_labels, in_data = True, False
    series: list[list[list[float]]] = []
    labels: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                low = line.lower()
                if low.startswith("@classlabel"):
                    has_labels = len(low.split()) > 1 and low.split()[1] == "true"
                elif low.startswith("@data"):
                    in_data = True
                continue
            parts = line.split(":")
            if has_labels:
                labels.append(_canonical_label(parts[-1]))
                parts = parts[:-1]
            series.append([[_float(t, path) for t in p.split(",")] for p in parts])
    if not in_data or not series:
        raise UsageError(f"{path} is not a .ts file with an @data section and series")
    if not has_labels:
        raise UsageError(f"{path} has no class labels (@classLabel false)")
    lengths = {len(d) for s in series for d in s}
    dims = {len(s) for s in series}
    if len(lengths) != 1 or len(dims) != 1:
        raise UsageError(f"{path}: series of unequal length or dimension are not supported")
    return np.asarray(series, dtype=np.float32).transpose(0, 2, 1), labels


def _read_arff(path: Path) -> tuple[np.ndarray, list[str]]:
    """Univariate ``.arff``: numeric attributes then the class attribute last, rows after ``@data``."""
    in_data = False
    values, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("%"):
                continue
            if not in_data:
                if line.lower().startswith("@data"):
                    in_data = True
                continue
            tokens = line.split(",")
            labels.append(_canonical_label(tokens[-1]))
            values.append([_float(t, path) for t in tokens[:-1]])
    if not values:
        raise UsageError(f"{path} is not an .arff file with an @data section and rows")
    if len({len(v) for v in values}) != 1:
        raise UsageError(f"{path}: rows of unequal length are not supported")
    return np.asarray(values, dtype=np.float32)[:, :, None], labels


def read_ucr(path: Path) -> tuple[np.ndarray, list[str]]:
    """A UCR/UEA file as ``(x (N, T, C) float32, labels)``; the format follows the file's extension."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _label_first(path, None)
    if suffix == ".tsv":
        return _label_first(path, "\t")
    if suffix == ".ts":
        return _read_ts(path)
    if suffix == ".arff":
        return _read_arff(path)
    raise UsageError(f"{path}: unknown time-series format (expected one of {', '.join(UCR_EXTENSIONS)})")
