"""The registry and the data contract: names, options, errors, XDataset access, subsets, the CLI exit code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xairepro.data import DatasetInfo, TensorXDataset, XDataset, data_root, dataset_info, list_datasets, load
from xairepro.data.info import AUGMENTATIONS, TASKS
from xairepro.data.splits import carve, resolve_count, take_subset, three_way
from xairepro.errors import UsageError

REAL = ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "mnist-10k", "imagenette", "partimagenet", "ecg5000",
        "dsprites"]
BUNDLED = ["digits", "dsprites-gen", "ecg-gen", "shapes-seg"]


def test_listing_has_every_set_real_first():
    infos = list_datasets()
    names = [i.name for i in infos]
    assert sorted(names) == sorted(REAL + BUNDLED)
    assert all(not i.bundled for i in infos[:len(REAL)]) and all(i.bundled for i in infos[len(REAL):])
    for info in infos:
        assert isinstance(info, DatasetInfo) and info.task in TASKS and info.augmentation in AUGMENTATIONS
        assert len(info.class_names) == info.num_classes
        assert len(info.mean) == len(info.std) == info.channels and all(s > 0 for s in info.std)
        assert info.source and info.description
        if info.name != "partimagenet":  # its names come from the files' wnids
            assert len(set(info.class_names)) == info.num_classes
    with pytest.raises(dataclasses.FrozenInstanceError):
        infos[0].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("alias, name", [("CIFAR-10", "cifar10"), ("cifar_100", "cifar100"),
                                         ("FashionMNIST", "fashion-mnist"), ("Shapes Seg", "shapes-seg"),
                                         ("ECG5000", "ecg5000")])
def test_aliases(alias, name):
    assert dataset_info(alias).name == name


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UsageError) as info:
        load("cifar11")
    msg = str(info.value)
    assert "unknown data set 'cifar11'" in msg and "did you mean 'cifar10'" in msg
    assert all(n in msg for n in REAL + BUNDLED)
    with pytest.raises(UsageError, match="unknown data set"):
        dataset_info("imagenet")


def test_unknown_split_and_option_and_bad_seed():
    with pytest.raises(UsageError, match="unknown split 'validation'; valid splits: train, val, test"):
        load("digits", "validation")
    with pytest.raises(UsageError) as info:
        load("digits", "train", sise=28)
    assert "sise" in str(info.value) and "size=8" in str(info.value) and "subset=None" in str(info.value)
    with pytest.raises(UsageError, match="seed must be an int"):
        load("digits", "train", seed="0")


def test_unknown_name_exits_2_at_the_cli(capsys):
    from xairepro.cli import app, main

    @app.command("data-probe-for-test")
    def probe(name: str) -> None:
        load(name)

    try:
        assert main(["data-probe-for-test", "cifar11"]) == 2
    finally:
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "data-probe-for-test"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xairepro: error: unknown data set 'cifar11'")


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("XAIREPRO_DATA_DIR", raising=False)
    assert data_root() == Path.home() / ".cache" / "xairepro" / "data"
    monkeypatch.setenv("XAIREPRO_DATA_DIR", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"


# -- XDataset access ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits() -> TensorXDataset:
    return load("digits", "train", size=8)


def test_item_batch_and_tensors_agree(digits):
    assert isinstance(digits, XDataset) and isinstance(digits, TensorXDataset)
    x_all, y_all = digits.tensors()
    assert x_all.shape == (len(digits), 1, 8, 8) and x_all.dtype == torch.float32 and y_all.dtype == torch.int64
    assert torch.equal(y_all, digits.targets) and digits.class_names == digits.info.class_names
    x3, y3 = digits[3]
    assert isinstance(y3, int) and torch.equal(x3, x_all[3]) and y3 == int(y_all[3])
    assert torch.equal(digits[-1][0], x_all[-1])
    index = [5, 0, 5]
    for idx in (index, torch.tensor(index), np.array(index)):
        xb, yb = digits.batch(idx)
        assert torch.equal(xb, x_all[index]) and torch.equal(yb, y_all[index])
    assert torch.equal(digits.batch(slice(2, 9, 3))[0], x_all[2:9:3])
    mask = torch.zeros(len(digits), dtype=torch.bool)
    mask[[1, 4]] = True
    assert torch.equal(digits.batch(mask)[1], y_all[[1, 4]])
    assert digits.batch([], device="cpu")[0].shape == (0, 1, 8, 8)


def test_bad_indices(digits):
    with pytest.raises(IndexError, match="out of range"):
        digits[len(digits)]
    with pytest.raises(IndexError):
        digits.batch([0, -len(digits) - 1])
    with pytest.raises(IndexError, match="integers"):
        digits.batch(torch.tensor([0.5]))
    with pytest.raises(TypeError, match="ds.batch"):
        digits[[0, 1]]  # type: ignore[index]


def test_dataloader_yields_the_same_batches(digits):
    loader = torch.utils.data.DataLoader(digits, batch_size=7, shuffle=False)
    xb, yb = next(iter(loader))
    x, y = digits.batch(range(7))
    assert torch.equal(xb, x) and torch.equal(yb, y)


def test_returned_tensors_are_the_callers(digits):
    x, y = digits.tensors()
    x.zero_()
    y.zero_()
    again = load("digits", "train", size=8)  # cached source untouched
    assert float(again.tensors()[0].sum()) > 0 and int(again.targets.sum()) > 0


# -- subsets and split sizes ----------------------------------------------------------------------

def test_subset_is_a_seeded_part_of_the_split():
    full = load("digits", "train")
    sub = load("digits", "train", subset=100)
    assert len(sub) == 100 and set(sub.indices.tolist()) <= set(full.indices.tolist())
    assert torch.equal(sub.indices, load("digits", "train", subset=100).indices)
    assert not torch.equal(sub.indices, load("digits", "train", subset=100, seed=2).indices)
    assert len(load("digits", "test", subset=0.5)) == round(0.5 * len(load("digits", "test")))
    x, y = sub.tensors()
    xf, yf = full.tensors()
    pos = torch.searchsorted(full.indices, sub.indices)
    assert torch.equal(x, xf[pos]) and torch.equal(y, yf[pos])


@pytest.mark.parametrize("bad", [0, 100000, -1, 1.5, "10", True])
def test_bad_subset(bad):
    with pytest.raises(UsageError, match="subset"):
        load("digits", "test", subset=bad)


def test_splits_depend_on_the_seed_only():
    a, b, c = load("digits", "test"), load("digits", "test", seed=0), load("digits", "test", seed=1)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.tensors()[0], b.tensors()[0])
    assert len(a) == len(c) and not torch.equal(a.indices, c.indices)


def test_val_size_options():
    assert len(load("digits", "val", val_size=10)) == 10
    assert len(load("digits", "train", val_size=10)) == 1797 - 359 - 10
    with pytest.raises(UsageError, match="no val examples"):
        load("digits", "val", val_size=0)
    with pytest.raises(UsageError, match="val_size"):
        load("digits", "val", val_size=5000)
    with pytest.raises(UsageError, match="test_size"):
        load("digits", "test", test_size=2.5)


# -- split arithmetic (property-based) ------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), test=st.floats(0, 0.99), val=st.floats(0, 0.99), seed=st.integers(0, 2**31))
def test_three_way_is_a_partition_of_the_right_sizes(n, test, val, seed):
    train_idx, val_idx, test_idx = three_way(n, test, val, seed, "k")
    assert torch.equal(torch.cat([train_idx, val_idx, test_idx]).sort().values, torch.arange(n))
    n_test = round(test * n)
    assert len(test_idx) == n_test and len(val_idx) == round(val * (n - n_test))
    for part in (train_idx, val_idx, test_idx):
        assert torch.equal(part, part.sort().values)
    assert torch.equal(three_way(n, test, val, seed, "k")[1], val_idx)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), val=st.integers(0, 300), k=st.integers(1, 300), seed=st.integers(0, 2**31))
def test_carve_and_subset_sizes(n, val, k, seed):
    if val > n:
        with pytest.raises(UsageError):
            carve(n, val, seed, "k")
        return
    train_idx, val_idx = carve(n, val, seed, "k")
    assert len(val_idx) == val and torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(n))
    if train_idx.numel() and k <= train_idx.numel():
        sub = take_subset(train_idx, k, seed, "k")
        assert len(sub) == k and bool(torch.isin(sub, train_idx).all())
    assert resolve_count(0.5, n, "x") == round(0.5 * n)


# -- class names: the official label order, checked against independent lists ----------------------

def test_class_names_are_the_official_label_order():
    """Index i names label i: torchvision's own class lists where it has one, the official files' order else."""
    import torchvision.datasets as tvd

    digits = tuple(c.split(" - ")[1] for c in tvd.MNIST.classes)  # "0 - zero" ... "9 - nine"
    for name in ("mnist", "digits", "svhn"):  # SVHN: label 10 is read as 0, so label i is the digit i
        assert dataset_info(name).class_names == digits, name
    assert dataset_info("fashion-mnist").class_names == tuple(tvd.FashionMNIST.classes)
    # CIFAR-10 batches.meta label_names
    assert dataset_info("cifar10").class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                   "horse", "ship", "truck")
    # CIFAR-100 meta fine_label_names: 100 names in alphabetical order ("aquarium_fish" -> "aquarium fish")
    raw = [n.replace(" ", "_") for n in dataset_info("cifar100").class_names]
    assert len(set(raw)) == 100 and raw == sorted(raw)
    assert [raw[i] for i in (0, 1, 19, 29, 58, 99)] == ["apple", "aquarium_fish", "cattle", "dinosaur",
                                                        "pickup_truck", "worm"]
    # Imagenette: labels follow the sorted wnids (torchvision's find_classes), names are the ImageNet names
    from xairepro.data.class_names import IMAGENETTE_WNIDS

    table = getattr(tvd.Imagenette, "_WNID_TO_CLASS", None)
    if table is not None:
        assert IMAGENETTE_WNIDS == tuple(sorted(table))
        assert dataset_info("imagenette").class_names == tuple(table[w][0] for w in sorted(table))
