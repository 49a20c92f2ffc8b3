"""Heartbeats: the real ECG5000 (UCR files) and ``ecg-gen``, beats from a parametric P-QRS-T model.

Series are (T, C) = (140, 1) float32. ECG5000's UCR TRAIN (500) and TEST (4,500) files are pooled
and re-split by ``seed`` as the label-free study did (4,000 / 1,000; validation carved from the
4,000). Label 1 is normal; with ``binary=True`` (default) labels are normal=0 / abnormal=1.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from xairepro.data.class_names import ECG5000_NAMES, ECG_BINARY_NAMES
from xairepro.data.dataset import ArraySource, TensorXDataset
from xairepro.data.fetch import ECG5000_URL, downloader
from xairepro.data.files import cached, locate, memo, missing_error
from xairepro.data.info import DatasetInfo
from xairepro.data.registry import LoadRequest, register_dataset
from xairepro.data.ucr import UCR_EXTENSIONS, read_ucr
from xairepro.errors import DataNotFoundError, UsageError
from xairepro.utils import derive_seed, make_generator

__all__ = ["ECG_LENGTH", "NORMAL_FRACTION", "ABNORMAL_KINDS", "generate_ecg"]

ECG_LENGTH = 140
#: Share of normal beats in ECG5000 (2,919 of 5,000).
NORMAL_FRACTION = 2919 / 5000

#: Abnormal beat kinds of ``ecg-gen`` (kind 0 is normal).
ABNORMAL_KINDS = ("ST elevation", "ST depression", "inverted T", "wide QRS", "premature QRS")

# Normal beat: (centre, width, amplitude) of the P, Q, R, S, T Gaussians on a beat of unit length.
_WAVES = torch.tensor([[0.20, 0.025, 0.15],
                       [0.33, 0.010, -0.12],
                       [0.36, 0.012, 1.00],
                       [0.39, 0.012, -0.25],
                       [0.62, 0.045, 0.30]])
_P, _Q, _R, _S, _T = range(5)


def _uniform(g: torch.Generator, n: int, low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def generate_ecg(n: int, seed: int, length: int = ECG_LENGTH,
                 normal_fraction: float = NORMAL_FRACTION) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` synthetic heartbeats -> (x (n, length, 1) float32 z-normalised, label (n,), kind (n,)).

    x(t) = sum_k a_k exp(-(t - mu_k)^2 / (2 s_k^2)) + A sin(2 pi f t + phi) + noise, per beat:
    rate r ~ U(0.85, 1.15) stretches P and T about R, gain ~ U(0.8, 1.2), wave jitter +-15%,
    baseline wander A ~ U(0, 0.08), white noise s ~ U(0.005, 0.03). Abnormal beats (label 1,
    ``kind`` 1..5 = ``ABNORMAL_KINDS``) change the morphology. round(normal_fraction * n) are normal.
    Each series is z-normalised like the UCR files.
    """
    g = make_generator(derive_seed(seed, "ecg-gen"))
    n_normal = int(round(normal_fraction * n))
    label = torch.cat([torch.zeros(n_normal, dtype=torch.long), torch.ones(n - n_normal, dtype=torch.long)])
    label = label[torch.randperm(n, generator=g)]
    kind = torch.where(label == 1, torch.randint(1, len(ABNORMAL_KINDS) + 1, (n,), generator=g), 0)

    waves = _WAVES.to(torch.float64).expand(n, 5, 3).clone()
    mu, sd, amp = waves[..., 0], waves[..., 1], waves[..., 2]
    rate = _uniform(g, n, 0.85, 1.15)
    mu = mu[:, _R:_R + 1] + (mu - mu[:, _R:_R + 1]) * rate[:, None] + _uniform(g, n, -0.03, 0.03)[:, None]
    sd = sd * torch.where(torch.arange(5) == _T, rate[:, None], torch.ones(1, dtype=torch.float64))
    amp = amp * _uniform(g, n, 0.8, 1.2)[:, None] * (0.85 + 0.3 * torch.rand(n, 5, generator=g, dtype=torch.float64))

    t = torch.linspace(0.0, 1.0, length, dtype=torch.float64)
    st = torch.zeros(n, length, dtype=torch.float64)
    height = _uniform(g, n, 0.15, 0.3)
    qrs = slice(_Q, _S + 1)
    # 1, 2: ST segment raised / lowered (flat-topped bump between S and T)
    centre, half = (mu[:, _S] + mu[:, _T]) / 2, (mu[:, _T] - mu[:, _S]) / 2
    bump = torch.exp(-(((t[None] - centre[:, None]) / half[:, None]) ** 4))
    st = st + torch.where((kind == 1)[:, None], height[:, None] * bump, 0.0)
    st = st - torch.where((kind == 2)[:, None], height[:, None] * bump, 0.0)
    # 3: inverted T wave
    amp[:, _T] = torch.where(kind == 3, -amp[:, _T] * _uniform(g, n, 0.6, 1.2), amp[:, _T])
    # 4: wide QRS without P wave, T opposite to R (ventricular beat)
    wide = (kind == 4)[:, None]
    sd[:, qrs] = torch.where(wide, sd[:, qrs] * _uniform(g, n, 2.5, 3.5)[:, None], sd[:, qrs])
    amp[:, _P] = torch.where(kind == 4, 0.0, amp[:, _P])
    amp[:, _T] = torch.where(kind == 4, -amp[:, _T].abs() * 1.2, amp[:, _T])
    # 5: premature QRS (and T), weak P wave
    early = torch.where(kind == 5, _uniform(g, n, 0.06, 0.12), 0.0)
    mu[:, _Q:] = mu[:, _Q:] - early[:, None]
    amp[:, _P] = torch.where(kind == 5, amp[:, _P] * _uniform(g, n, 0.0, 0.3), amp[:, _P])

    beat = (amp[..., None] * torch.exp(-((t[None, None] - mu[..., None]) ** 2) / (2 * sd[..., None] ** 2))).sum(1)
    wander = _uniform(g, n, 0.0, 0.08)[:, None] * torch.sin(
        2 * math.pi * _uniform(g, n, 0.2, 0.8)[:, None] * t[None] + _uniform(g, n, 0.0, 2 * math.pi)[:, None])
    noise = _uniform(g, n, 0.005, 0.03)[:, None] * torch.randn(n, length, generator=g, dtype=torch.float64)
    x = beat + st + wander + noise
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    return x.to(torch.float32).unsqueeze(-1), label, kind


# -- ECG5000 ----------------------------------------------------------------------------------------

def _find_ecg5000(req: LoadRequest) -> tuple[Path, Path]:
    r = req.root
    candidates = [r / "ECG5000", r / "UCRArchive_2018" / "ECG5000", r / "Univariate_ts" / "ECG5000",
                  r / "Univariate_arff" / "ECG5000", r / "ecg5000", r]

    def search() -> tuple[Path, Path] | None:
        for ext in UCR_EXTENSIONS:
            found = locate(candidates, [f"ECG5000_TRAIN{ext}", f"ECG5000_TEST{ext}"])
            if found:
                return found[f"ECG5000_TRAIN{ext}"], found[f"ECG5000_TEST{ext}"]
        return None

    found = search()
    if found is None and req.download:
        try:
            downloader(req.name)(r)
        except DataNotFoundError as exc:
            raise DataNotFoundError(f"{exc}; or get {ECG5000_URL} and unzip it into {r / 'ECG5000'}") from None
        found = search()
    if found is None:
        raise missing_error("ECG5000", ["ECG5000_TRAIN and ECG5000_TEST as .ts, .tsv, .txt or .arff"],
                            candidates, ECG5000_URL, downloadable=True)
    return found


def _read_ecg5000(train: Path, test: Path) -> tuple[Tensor, Tensor]:
    xs, labels = [], []
    for path in (train, test):
        x, lab = read_ucr(path)
        xs.append(x)
        labels += lab
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise UsageError(f"{train} and {test} hold series of different shapes {xs[0].shape[1:]} / {xs[1].shape[1:]}")
    valid = {str(i) for i in range(1, 6)}
    bad = sorted(set(labels) - valid)
    if bad:
        raise UsageError(f"ECG5000 labels must be 1..5, found {', '.join(bad[:5])}")
    return torch.from_numpy(np.concatenate(xs)), torch.tensor([int(v) for v in labels])


def build_ecg5000(req: LoadRequest) -> TensorXDataset:
    binary = req.option("binary")
    if not isinstance(binary, bool):
        raise UsageError(f"binary must be true or false, got {binary!r}")
    train, test = _find_ecg5000(req)
    x, raw = cached(req.name, [train, test], lambda: _read_ecg5000(train, test))
    targets = (raw != 1).long() if binary else raw - 1
    info = req.info.replace(input_shape=tuple(x.shape[1:]))
    if not binary:
        info = info.replace(num_classes=5, class_names=ECG5000_NAMES)
    return TensorXDataset(info, req.split, req.pool_indices(len(raw)), targets, ArraySource(x))


# -- ecg-gen ----------------------------------------------------------------------------------------

def build_ecg_gen(req: LoadRequest) -> TensorXDataset:
    n = req.option("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise UsageError(f"n (number of beats) must be an int >= 10, got {n!r}")
    x, label, kind = memo((req.name, n, req.seed), lambda: generate_ecg(n, req.seed))
    ds = TensorXDataset(req.info, req.split, req.pool_indices(n), label, ArraySource(x))
    ds.kinds = kind.index_select(0, ds.indices)  # 0 = normal, 1..5 = ABNORMAL_KINDS
    return ds


def _register() -> None:
    register_dataset(DatasetInfo(
        name="ecg5000", task="series", input_shape=(ECG_LENGTH, 1), num_classes=2, class_names=ECG_BINARY_NAMES,
        mean=(0.0,), std=(1.0,), bundled=False, source=ECG5000_URL,
        description="ECG5000 heartbeats (UCR, z-normalised, length 140): TRAIN+TEST pooled, split 4,000 / 1,000 "
                    "by seed, val = 5% of the 4,000; binary normal/abnormal (binary=False: the 5 UCR classes)",
        options=(("binary", True), ("test_size", 0.2), ("val_size", 0.05))), build_ecg5000)
    register_dataset(DatasetInfo(
        name="ecg-gen", task="series", input_shape=(ECG_LENGTH, 1), num_classes=2, class_names=ECG_BINARY_NAMES,
        mean=(0.0,), std=(1.0,), bundled=True, source="generated (parametric P-QRS-T beat model)",
        description="ECG5000-like beats from Gaussian P-QRS-T waves with varied rate, amplitude, baseline wander "
                    "and noise; 58% normal, abnormal = ST elevation/depression, inverted T, wide or premature QRS; "
                    "z-normalised per beat; n=5000 split 4,000 / 1,000, val = 5% of the 4,000",
        options=(("n", 5000), ("test_size", 0.2), ("val_size", 0.05))), build_ecg_gen, aliases=("ecggen",))


_register()
