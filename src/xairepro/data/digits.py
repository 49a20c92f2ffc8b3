"""``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (bundled with scikit-learn, no network).

Values are the 0..16 counts divided by 16, optionally resized bilinearly to 28 or 32 px (an
MNIST stand-in). Splits by ``seed``: 20% test (359), validation 5% of the rest (72), train 1,366.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xairepro.data.class_names import DIGIT_NAMES
from xairepro.data.dataset import ArraySource, TensorXDataset
from xairepro.data.files import memo
from xairepro.data.info import DatasetInfo
from xairepro.data.registry import LoadRequest, register_dataset
from xairepro.errors import UsageError

SIZES = (8, 28, 32)
# Pixel mean/std of all 1,797 images at 8 px (values / 16); resizing changes them by < 0.01.
DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)


def digit_images(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as float32 (N, 1, size, size) in [0, 1] and int64 labels (N,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images).to(torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return x, torch.from_numpy(data.target).to(torch.long)


def build_digits(req: LoadRequest) -> TensorXDataset:
    size = req.option("size")
    if size not in SIZES or isinstance(size, bool):
        raise UsageError(f"size must be one of {', '.join(map(str, SIZES))}, got {size!r}")
    x, y = memo((req.name, size), lambda: digit_images(size))
    info = req.info.replace(input_shape=(1, size, size))
    return TensorXDataset(info, req.split, req.pool_indices(len(y)), y, ArraySource(x))


register_dataset(DatasetInfo(
    name="digits", task="classification", input_shape=(1, 8, 8), num_classes=10, class_names=DIGIT_NAMES,
    mean=DIGITS_MEAN, std=DIGITS_STD, bundled=True, source="scikit-learn load_digits (bundled, UCI optical digits)",
    description="1,797 real 8x8 digits (values/16), size=8|28|32 (bilinear); 359 test, 72 val, 1,366 train by seed",
    options=(("size", 8), ("test_size", 0.2), ("val_size", 0.05))), build_digits)
