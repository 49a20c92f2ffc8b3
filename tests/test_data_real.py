"""The real loaders on the real files (``make data`` fetches them): marked ``realdata``, deselected by default.

Run with ``make test-realdata`` (or ``pytest -m realdata``; ``XAIREPRO_DATA_DIR`` picks the data folder).
The sizes and class counts are the published ones (issue 17), written here independently of the fetch
module's record; the checksums are the record's.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from xairepro.data import data_root, load
from xairepro.data.fetch import verify
from xairepro.data.files import clear_cache
from xairepro.errors import DataNotFoundError

pytestmark = pytest.mark.realdata


def _present(name: str) -> None:
    try:
        load(name, "test", data_root())
    except DataNotFoundError:
        pytest.skip(f"{name} is not in {data_root()}: run `make data` (or xairepro data fetch {name})")


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def test_fashion_mnist_real_files():
    _present("fashion-mnist")
    assert all("sha256" in line for line in verify("fashion-mnist"))
    train, test = load("fashion-mnist", "train", val_size=0), load("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert torch.bincount(train.targets).tolist() == [6000] * 10
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    x, _ = test.batch(slice(0, 100))
    assert x.shape == (100, 1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert train.class_names[9] == "Ankle boot"


def test_ecg5000_real_files_per_file_counts_and_study_split():
    _present("ecg5000")
    assert all("sha256" in line for line in verify("ecg5000"))
    from xairepro.data.ecg import _find_ecg5000  # noqa: PLC2701 - the loader's own file lookup
    from xairepro.data.registry import LoadRequest, dataset_info
    from xairepro.data.ucr import read_ucr

    req = LoadRequest(dataset_info("ecg5000"), "test", data_root(), 0, False, {})
    counts = []
    for path in _find_ecg5000(req):
        x, labels = read_ucr(path)
        assert x.shape[1:] == (140, 1)
        counts.append([Counter(labels)[str(c)] for c in range(1, 6)])
    assert counts == [[292, 177, 10, 19, 2], [2627, 1590, 86, 175, 22]]
    sizes = [len(load("ecg5000", s)) for s in ("train", "val", "test")]
    assert sizes == [3800, 200, 1000]


def test_mnist_10k_real_files():
    _present("mnist-10k")
    assert all("sha256" in line for line in verify("mnist-10k"))
    pool = load("mnist-10k", "test", test_size=10000)
    assert torch.bincount(pool.targets).tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    splits = {s: load("mnist-10k", s, seed=3) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [7600, 400, 2000]
    x, _ = pool.tensors()
    assert abs(float(x.mean()) - 0.1311) < 1e-4 and abs(float(x.std()) - 0.3087) < 1e-4
