"""ECG5000 in the four UCR formats, and the generated ``ecg-gen`` beats."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from xairepro.data import load
from xairepro.data.ecg import ABNORMAL_KINDS, generate_ecg
from xairepro.data.fetch import SPECS, Part
from xairepro.data.files import clear_cache
from xairepro.data.ucr import read_ucr
from xairepro.errors import UsageError


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def series(n: int, length: int = 140, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, length)).round(5), rng.integers(1, 6, n)


def write_txt(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """UCR 2015 text: label then values, whitespace separated, labels written as floats."""
    path.write_text("".join(f"  {lab:.7e}" + "".join(f"  {v:.7e}" for v in row) + "\n" for row, lab in zip(x, y)))


def write_tsv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    path.write_text("".join(f"{lab}\t" + "\t".join(repr(float(v)) for v in row) + "\n" for row, lab in zip(x, y)))


def write_ts(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """sktime .ts: header, @data, comma-separated values, ':' then the class label."""
    head = ("# ECG5000 test file\n@problemName ECG5000\n@timeStamps false\n@missing false\n@univariate true\n"
            f"@equalLength true\n@seriesLength {x.shape[1]}\n@classLabel true 1 2 3 4 5\n@data\n")
    path.write_text(head + "".join(",".join(repr(float(v)) for v in row) + f":{lab}\n" for row, lab in zip(x, y)))


def write_arff(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    head = "% ECG5000\n@relation ECG5000\n" + "".join(f"@attribute att{i} numeric\n" for i in range(x.shape[1]))
    head += "@attribute target {1,2,3,4,5}\n\n@data\n"
    path.write_text(head + "".join(",".join(repr(float(v)) for v in row) + f",{lab}\n" for row, lab in zip(x, y)))


WRITERS = {".txt": write_txt, ".tsv": write_tsv, ".ts": write_ts, ".arff": write_arff}


@pytest.mark.parametrize("ext", list(WRITERS))
def test_ucr_formats_read_identically(tmp_path, ext):
    x, y = series(6, length=12)
    path = tmp_path / f"ECG5000_TRAIN{ext}"
    WRITERS[ext](path, x, y)
    values, labels = read_ucr(path)
    assert values.shape == (6, 12, 1) and values.dtype == np.float32
    np.testing.assert_allclose(values[..., 0], x, rtol=1e-6)
    assert labels == [str(v) for v in y]


def test_ts_multivariate_and_missing_values(tmp_path):
    path = tmp_path / "multi.ts"
    path.write_text("@problemName m\n@univariate false\n@classLabel true a b\n@data\n"
                    "1,2,3:4,5,?:a\n7,8,9:10,11,12:b\n")
    values, labels = read_ucr(path)
    assert values.shape == (2, 3, 2) and labels == ["a", "b"]
    assert values[0, :, 1][:2].tolist() == [4.0, 5.0] and np.isnan(values[0, 2, 1])


def test_ucr_malformed_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1 0.5 0.25\n2 0.5\n")
    with pytest.raises(UsageError, match="same number of values"):
        read_ucr(path)


def write_ecg5000(folder: Path, ext: str, n_train: int = 10, n_test: int = 40):
    folder.mkdir(parents=True, exist_ok=True)
    xtr, ytr = series(n_train, seed=1)
    xte, yte = series(n_test, seed=2)
    WRITERS[ext](folder / f"ECG5000_TRAIN{ext}", xtr, ytr)
    WRITERS[ext](folder / f"ECG5000_TEST{ext}", xte, yte)
    return np.concatenate([xtr, xte]), np.concatenate([ytr, yte])


@pytest.mark.parametrize("ext", list(WRITERS))
def test_ecg5000_pooled_and_resplit(tmp_path, ext):
    x, y = write_ecg5000(tmp_path / "ECG5000", ext)
    splits = {s: load("ecg5000", s, tmp_path) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [38, 2, 10]  # 20% test, 5% of the rest val
    assert torch.equal(torch.cat([d.indices for d in splits.values()]).sort().values, torch.arange(50))
    test = splits["test"]
    xs, ys = test.tensors()
    assert xs.shape == (10, 140, 1) and test.info.input_shape == (140, 1)
    np.testing.assert_allclose(xs[..., 0].numpy(), x[test.indices.numpy()], rtol=1e-6)
    assert torch.equal(ys, torch.from_numpy((y[test.indices.numpy()] != 1).astype(np.int64)))  # label 1 = normal
    assert test.class_names == ("normal", "abnormal")


def test_ecg5000_five_classes_and_plain_folder(tmp_path):
    x, y = write_ecg5000(tmp_path, ".tsv")  # files directly in the data folder
    ds = load("ecg5000", "train", tmp_path, binary=False, test_size=0.0, val_size=0)
    assert len(ds) == 50 and ds.num_classes == 5
    assert torch.equal(ds.targets, torch.from_numpy(y - 1))
    assert ds.class_names[0] == "normal"


def test_ecg5000_the_studys_4000_1000(tmp_path):
    write_ecg5000(tmp_path / "ECG5000", ".txt", n_train=500, n_test=4500)
    assert len(load("ecg5000", "test", tmp_path)) == 1000
    assert len(load("ecg5000", "train", tmp_path)) + len(load("ecg5000", "val", tmp_path)) == 4000


def test_ecg5000_bad_label_is_a_clear_error(tmp_path):
    x, _ = series(3)
    write_txt(tmp_path / "ECG5000_TRAIN.txt", x, np.array([1, 7, 2]))
    write_txt(tmp_path / "ECG5000_TEST.txt", x, np.array([1, 1, 2]))
    with pytest.raises(UsageError, match="labels must be 1..5"):
        load("ecg5000", "train", tmp_path)


def test_ecg5000_download_fetches_the_ucr_zip(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    urls = []

    def fake(url, download_root, extract_root=None, **kw):
        urls.append(url)
        write_ecg5000(Path(extract_root), ".ts")

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake)
    monkeypatch.setitem(SPECS, "ecg5000", dataclasses.replace(  # the fetch verifies the size: the fake's 50
        SPECS["ecg5000"], parts=(Part("test", (("binary", False), ("test_size", 50)), 50),)))
    assert len(load("ecg5000", "test", tmp_path, download=True)) == 10
    assert urls == ["https://www.timeseriesclassification.com/aeon-toolkit/ECG5000.zip"]


# -- ecg-gen --------------------------------------------------------------------------------------

def test_ecg_gen_sizes_classes_and_normalisation():
    splits = {s: load("ecg-gen", s, n=1000) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [760, 40, 200]
    x, y, kind = generate_ecg(1000, seed=0)
    assert x.shape == (1000, 140, 1) and x.dtype == torch.float32
    assert int((y == 0).sum()) == round(0.5838 * 1000)  # ECG5000's share of normal beats
    assert torch.equal(kind == 0, y == 0) and set(kind[y == 1].tolist()) == set(range(1, len(ABNORMAL_KINDS) + 1))
    torch.testing.assert_close(x.mean(1), torch.zeros(1000, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(1), torch.ones(1000, 1), atol=1e-5, rtol=0)
    ds = splits["test"]
    xs, ys = ds.tensors()
    assert torch.equal(xs, x[ds.indices]) and torch.equal(ys, y[ds.indices])
    assert torch.equal(ds.kinds, kind[ds.indices])


def test_ecg_gen_is_seeded():
    a, b = load("ecg-gen", "train", n=200, seed=3), load("ecg-gen", "train", n=200, seed=3)
    assert torch.equal(a.tensors()[0], b.tensors()[0]) and torch.equal(a.indices, b.indices)
    c = load("ecg-gen", "train", n=200, seed=4)
    assert not torch.equal(generate_ecg(200, 3)[0], generate_ecg(200, 4)[0])
    assert not torch.equal(a.indices, c.indices)


def test_ecg_gen_normal_beat_has_its_r_peak_where_the_model_puts_it():
    x, y, kind = generate_ecg(300, seed=0)
    peak = x[y == 0, :, 0].argmax(1).float() / 139  # R wave at 0.36 of the beat, +-shift and rate
    assert ((peak - 0.36).abs() < 0.06).float().mean() > 0.95
    wide = x[kind == 4, :, 0]  # wide QRS: the main peak is wider than in normal beats
    def width(b):
        return (b > b.max(1, keepdim=True).values / 2).sum(1).float().mean()
    assert width(wide) > 1.8 * width(x[y == 0, :, 0])


def test_ecg_gen_is_learnable_but_not_trivial():
    x, y, _ = generate_ecg(1200, seed=0)
    feats = torch.cat([x[..., 0].double(), torch.ones(1200, 1, dtype=torch.float64)], 1)
    target = (2 * y - 1).double()[:, None]
    w = torch.linalg.lstsq(feats[:900], target[:900], driver="gelsd").solution  # linear least-squares classifier
    acc = float((((feats[900:] @ w)[:, 0] > 0).long() == y[900:]).double().mean())
    assert 0.8 <= acc < 1.0  # a linear model on raw samples separates most beats, not all
    majority = max(float((y[900:] == 0).double().mean()), float((y[900:] == 1).double().mean()))
    assert acc > majority + 0.2


def test_ecg_gen_bad_option():
    with pytest.raises(UsageError, match="n \\(number of beats\\)"):
        load("ecg-gen", "train", n=3)
