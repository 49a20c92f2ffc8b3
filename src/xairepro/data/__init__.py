"""Data sets: registry, offline-first loaders, bundled and generated sets, transforms, splits.

    from xairepro.data import load, list_datasets, dataset_info
    train = load("cifar10", "train", data_dir="~/data", seed=0)     # 47,500 examples
    x, y = train.batch([0, 1, 2])                                   # float32 [0, 1], int64
    test = load("shapes-seg", "test", seed=0, size=32)              # generated, with .masks

Images are float32 (C, H, W) in [0, 1] (not normalised; ``info.mean``/``info.std`` are the
per-channel constants); series are (T, C). See ``docs/design.md`` for the contract.
"""

from xairepro.data.dataset import TensorXDataset, XDataset
from xairepro.data.files import DATA_DIR_ENV, data_root
from xairepro.data.info import DatasetInfo
from xairepro.data.licences import DataTerms, data_terms
from xairepro.data.registry import check_dataset_options, dataset_info, list_datasets, load, register_dataset
from xairepro.data.splits import SPLITS
from xairepro.data.transforms import (
    Compose,
    Normalize,
    RandomCropFlip,
    RandomResizedCropFlip,
    ResizeCenterCrop,
    default_train_transform,
)

__all__ = [
    "load", "list_datasets", "dataset_info", "check_dataset_options", "register_dataset", "DatasetInfo", "XDataset", "TensorXDataset",
    "SPLITS", "DATA_DIR_ENV", "data_root", "RandomCropFlip", "RandomResizedCropFlip", "ResizeCenterCrop",
    "Normalize", "Compose", "default_train_transform", "DataTerms", "data_terms",
]
