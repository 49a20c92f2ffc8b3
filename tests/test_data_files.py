"""Loaders of the real image sets on tiny files written in the real formats (idx, CIFAR pickles, SVHN .mat)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from xairepro.data import load
from xairepro.data.class_names import CIFAR10_NAMES, CIFAR100_NAMES, DIGIT_NAMES, FASHION_MNIST_NAMES
from xairepro.data.files import clear_cache
from xairepro.errors import DataNotFoundError, UsageError


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


# -- writers of the real formats ----------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """idx: two zero bytes, type 0x08 (ubyte), ndim, big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def write_mnist(folder: Path, n_train: int, n_test: int, seed: int = 0, gz: bool = False):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
        out[prefix] = (images, labels)
    return out


def write_cifar10(folder: Path, per_batch: int, bytes_keys: bool = False, seed: int = 0):
    """data_batch_1..5 and test_batch: dicts with 'data' (N, 3072) uint8 and 'labels' list."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({k("batch_label"): k(name), k("labels"): labels, k("data"): data,
                         k("filenames"): [k(f"img{i}.png") for i in range(per_batch)]}, fh)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({k("label_names"): list(CIFAR10_NAMES), k("num_cases_per_batch"): per_batch}, fh)
    return batches


# -- MNIST / Fashion-MNIST ----------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_torchvision_layout(tmp_path, gz):
    files = write_mnist(tmp_path / "MNIST" / "raw", 40, 12, gz=gz)
    test = load("mnist", "test", tmp_path)
    x, y = test.tensors()
    images, labels = files["t10k"]
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, torch.from_numpy(images).float().unsqueeze(1) / 255)
    assert torch.equal(y, torch.from_numpy(labels.astype(np.int64)))
    assert test.class_names == DIGIT_NAMES and test.info.input_shape == (1, 28, 28)


def test_mnist_train_val_carve_out_partitions_training_files(tmp_path):
    files = write_mnist(tmp_path, 40, 12)  # plain files in the data folder
    train, val = load("mnist", "train", tmp_path, val_size=8), load("mnist", "val", tmp_path, val_size=8)
    assert len(train) == 32 and len(val) == 8
    both = torch.cat([train.indices, val.indices]).sort().values
    assert torch.equal(both, torch.arange(40))
    images, labels = files["train"]
    xv, yv = val.tensors()
    assert torch.equal(xv, torch.from_numpy(images[val.indices.numpy()]).float().unsqueeze(1) / 255)
    assert torch.equal(yv, torch.from_numpy(labels[val.indices.numpy()].astype(np.int64)))
    # same seed, same carve-out; another seed, another one
    assert torch.equal(load("mnist", "val", tmp_path, val_size=8).indices, val.indices)
    assert not torch.equal(load("mnist", "val", tmp_path, val_size=8, seed=1).indices, val.indices)
    # the default validation share is 5% of the training files
    assert len(load("mnist", "val", tmp_path)) == 2


def test_fashion_mnist_names_and_layout(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw", 20, 10, seed=3)
    ds = load("fashion-mnist", "test", tmp_path)
    assert len(ds) == 10 and ds.class_names == FASHION_MNIST_NAMES
    assert ds.class_names[9] == "Ankle boot" and ds.class_names[0] == "T-shirt/top"
    assert load("fmnist", "test", tmp_path).info.name == "fashion-mnist"


def test_bad_idx_magic_is_a_clear_error(tmp_path):
    write_mnist(tmp_path, 10, 5)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x08\x03" + b"\x00" * 20)
    with pytest.raises(UsageError, match="not an idx file"):
        load("mnist", "test", tmp_path)


def test_truncated_idx_is_a_clear_error(tmp_path):
    write_mnist(tmp_path, 10, 5)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(UsageError, match="header says"):
        load("mnist", "test", tmp_path)


# -- CIFAR --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_pickle_batches(tmp_path, bytes_keys):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=6, bytes_keys=bytes_keys)
    test = load("cifar10", "test", tmp_path)
    data, labels = batches["test_batch"]
    x, y = test.tensors()
    assert x.shape == (6, 3, 32, 32)
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32 x 32
    assert torch.equal(x[2, 1, 3, 4], torch.tensor(data[2, 1024 + 3 * 32 + 4] / 255, dtype=torch.float32))
    assert torch.equal(y, torch.tensor(labels))
    assert test.class_names == CIFAR10_NAMES and test.class_names[0] == "airplane"
    train = load("cifar10", "train", tmp_path, val_size=5)
    assert len(train) == 25 and len(load("cifar10", "val", tmp_path, val_size=5)) == 5
    # training files are data_batch_1..5 in order
    all_train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    xt, _ = train.batch([0])
    assert torch.equal(xt[0].flatten(), torch.from_numpy(all_train[int(train.indices[0])]).float() / 255)


def test_cifar10_default_split_sizes_are_the_studys(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=600)  # 3,000 training files
    assert len(load("cifar10", "val", tmp_path)) == 2500
    assert len(load("cifar10", "train", tmp_path)) == 500


def test_cifar100_fine_labels_and_meta_names(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 30), ("test", 10)):
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": rng.integers(0, 100, n).tolist(),
                         "coarse_labels": rng.integers(0, 20, n).tolist()}, fh)
    ds = load("cifar100", "test", tmp_path)
    assert ds.num_classes == 100 and ds.class_names == CIFAR100_NAMES  # built-in list without meta
    assert ds.class_names[1] == "aquarium fish" and ds.class_names[99] == "worm" and len(set(ds.class_names)) == 100
    meta = [f"name_{i:02d}" for i in range(100)]
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": meta, "coarse_label_names": []}, fh)
    clear_cache()
    ds = load("cifar100", "test", tmp_path)
    assert ds.class_names[7] == "name 07"  # from the meta file, in its order, "_" -> " "
    limited = load("cifar100", "train", tmp_path, val_size=5, subset=12)
    assert len(limited) == 12
    assert set(limited.indices.tolist()) <= set(load("cifar100", "train", tmp_path, val_size=5).indices.tolist())


def test_cifar_batch_without_labels_is_a_clear_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, per_batch=2)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8)}, fh)
    with pytest.raises(UsageError, match="lacks the keys"):
        load("cifar10", "test", tmp_path)


# -- SVHN ---------------------------------------------------------------------------------------

def test_svhn_mat_label_10_is_zero(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, 7), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9], [5], [3]], dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    ds = load("svhn", "test", tmp_path)
    images, labels = ds.tensors()
    assert labels.tolist() == [0, 1, 2, 0, 9, 5, 3]
    assert ds.class_names[0] == "zero" and ds.class_names[labels[4]] == "nine"
    assert images.shape == (7, 3, 32, 32)
    assert torch.equal(images[5, 2, 4, 6], torch.tensor(x[4, 6, 2, 5] / 255, dtype=torch.float32))


# -- missing files and downloads ----------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("mnist", "train-images-idx3-ubyte"), ("fashion-mnist", "train-images-idx3-ubyte"),
    ("cifar10", "data_batch_1"), ("cifar100", "train"), ("svhn", "train_32x32.mat"),
    ("imagenette", "imagenette2-160/train"), ("partimagenet", "PartImageNet/images"),
    ("ecg5000", "ECG5000_TRAIN"), ("dsprites", "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"),
])
def test_missing_set_names_files_and_source(tmp_path, name, expected):
    with pytest.raises(DataNotFoundError) as info:
        load(name, "train", tmp_path / "empty")
    msg = str(info.value)
    assert expected in msg and str(tmp_path / "empty") in msg and "http" in msg
    assert "\n" not in msg


def test_data_dir_from_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path / "MNIST" / "raw", 10, 4)
    monkeypatch.setenv("XAIREPRO_DATA_DIR", str(tmp_path))
    assert len(load("mnist", "test")) == 4


def test_download_calls_torchvision_then_loads(tmp_path, monkeypatch):
    import dataclasses

    import torchvision.datasets as tvd

    from xairepro.data.fetch import SPECS, Part

    calls = []

    def fake_mnist(root, train=True, download=False, **kw):
        calls.append((Path(root).parent, download))
        write_mnist(Path(root) / "MNIST" / "raw", 10, 4)

    monkeypatch.setattr(tvd, "MNIST", fake_mnist)  # the fetch verifies the sizes: shrink them to the fake files
    monkeypatch.setitem(SPECS, "mnist", dataclasses.replace(
        SPECS["mnist"], parts=(Part("train", (("val_size", 0),), 10), Part("test", (), 4))))
    with pytest.raises(DataNotFoundError):
        load("mnist", "test", tmp_path)  # no download unless asked
    assert calls == []
    ds = load("mnist", "test", tmp_path, download=True)
    assert len(ds) == 4 and calls == [(tmp_path, True)]  # into a staging folder inside the data folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST"]


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(root, **kw):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(DataNotFoundError, match="downloading CIFAR-10 .* failed \\(.*network unreachable\\)"):
        load("cifar10", "train", tmp_path, download=True)


def test_missing_set_hint_names_a_real_way_to_download(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load("mnist", "train", tmp_path)
    msg = str(info.value)
    assert "download=True" in msg and "--download" in msg  # the CLI flag of `xairepro train` and `reproduce`


def test_subset_of_the_official_test_files_depends_on_the_seed(tmp_path):
    write_mnist(tmp_path, 10, 40)
    a, b = load("mnist", "test", tmp_path, subset=10), load("mnist", "test", tmp_path, subset=10, seed=0)
    c = load("mnist", "test", tmp_path, subset=10, seed=1)
    assert len(a) == 10 and torch.equal(a.indices, b.indices)
    assert not torch.equal(a.indices, c.indices)  # the test files are fixed; the subset follows the seed
