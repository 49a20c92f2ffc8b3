"""File-based image sets decoded lazily with PIL: Imagenette (160 px) and PartImageNet (+ masks).

Each image is decoded on access: RGB, short side resized to ``resize`` (default ``image_size``),
centre-cropped to ``image_size`` x ``image_size``, so batches stack. These sets have no
``tensors()``: the engine reads them through a DataLoader (``ds[i]``), and batched train
augmentations (``RandomCropFlip``, ``RandomResizedCropFlip``) run on the device afterwards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from xairepro.data.class_names import IMAGENETTE_NAMES, IMAGENETTE_WNIDS, imagenet_name
from xairepro.data.dataset import ImageFileSource, MaskFileSource, XDataset
from xairepro.data.files import missing_error
from xairepro.data.info import DatasetInfo
from xairepro.data.registry import LoadRequest, register_dataset
from xairepro.errors import DataNotFoundError, UsageError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz (https://github.com/fastai/imagenette)"
PARTIMAGENET_URL = "https://github.com/TACJu/PartImageNet (Google Drive / Baidu links in its README)"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
_WNID = re.compile(r"n\d{8}")


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files under ``folder`` sorted by path (case-insensitive extensions)."""
    if not folder.is_dir():
        return []
    if recursive:
        out = [Path(d) / f for d, _, fs in os.walk(folder) for f in fs if f.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        out = [p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(out)


def _check_size(req: LoadRequest) -> tuple[int, int]:
    size, resize = req.option("image_size"), req.option("resize")
    if not isinstance(size, int) or size < 8:
        raise UsageError(f"image_size must be an int >= 8, got {size!r}")
    resize = size if resize is None else resize
    if not isinstance(resize, int) or resize < size:
        raise UsageError(f"resize (short side before the centre crop) must be an int >= image_size={size}, "
                         f"got {resize!r}")
    return size, resize


# -- Imagenette -----------------------------------------------------------------------------------

def _imagenette_root(req: LoadRequest) -> Path:
    r = req.root
    candidates = [r / "imagenette2-160", r / "imagenette" / "imagenette2-160", r]

    def ok(c: Path) -> bool:
        return (c / "train").is_dir() and (c / "val").is_dir()

    found = next((c for c in candidates if ok(c)), None)
    if found is None and req.download:
        from torchvision.datasets import Imagenette

        try:
            req.root.mkdir(parents=True, exist_ok=True)
            Imagenette(str(req.root), size="160px", download=True)
        except Exception as exc:  # noqa: BLE001 - network/archive failures become one clear line
            raise DataNotFoundError(f"downloading Imagenette into {req.root} failed ({type(exc).__name__}); "
                                    f"get {IMAGENETTE_URL}") from None
        found = next((c for c in candidates if ok(c)), None)
    if found is None:
        raise missing_error("Imagenette", ["imagenette2-160/train/<wnid>/*.JPEG", "imagenette2-160/val/<wnid>/*.JPEG"],
                            candidates, IMAGENETTE_URL, downloadable=True)
    return found


def build_imagenette(req: LoadRequest) -> XDataset:
    size, resize = _check_size(req)
    folder = _imagenette_root(req) / ("val" if req.split == "test" else "train")
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in IMAGENETTE_WNIDS)
    if unknown:
        raise UsageError(f"{folder} holds folders that are not Imagenette classes: {', '.join(unknown[:5])}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(IMAGENETTE_WNIDS):
        files = _images_in(folder / wnid)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise UsageError(f"{folder} holds no images in <wnid>/ folders")
    idx = req.official_indices(len(paths))
    info = req.info.replace(input_shape=(3, size, size))
    return XDataset(info, req.split, idx, torch.tensor(labels), ImageFileSource(paths, size, resize), files=paths)


# -- PartImageNet ---------------------------------------------------------------------------------

def _partimagenet_root(req: LoadRequest) -> Path:
    r = req.root
    candidates = [r / "PartImageNet", r / "partimagenet" / "PartImageNet", r / "partimagenet", r]
    found = next((c for c in candidates if (c / "images").is_dir() and (c / "annotations").is_dir()), None)
    if found is None:
        raise missing_error("PartImageNet", ["PartImageNet/images/{train,val,test}/*.JPEG",
                                             "PartImageNet/annotations/{train,val,test}/*.png"],
                            candidates, PARTIMAGENET_URL, downloadable=False)
    return found


def _wnid_of(path: Path) -> str:
    if _WNID.fullmatch(path.parent.name):
        return path.parent.name
    m = _WNID.match(path.name)
    if m is None:
        raise UsageError(f"cannot tell the ImageNet class of {path} (expected a name like n01440764_123.JPEG)")
    return m.group(0)


def _partimagenet_files(root: Path) -> dict[str, list[tuple[Path, Path, str]]]:
    """Per official split: (image, annotation PNG, wnid) for every image that has its annotation."""
    out: dict[str, list[tuple[Path, Path, str]]] = {}
    for split in ("train", "val", "test"):
        rows = []
        for img in _images_in(root / "images" / split, recursive=True):
            ann = root / "annotations" / split / f"{img.stem}.png"
            if not ann.is_file():
                ann = root / "annotations" / split / img.parent.name / f"{img.stem}.png"
            if ann.is_file():
                rows.append((img, ann, _wnid_of(img)))
        out[split] = rows
    return out


def build_partimagenet(req: LoadRequest) -> XDataset:
    size, resize = _check_size(req)
    mode, background = req.option("split_mode"), req.option("background")
    if mode not in ("pooled", "official"):
        raise UsageError(f"split_mode must be 'pooled' or 'official', got {mode!r}")
    root = _partimagenet_root(req)
    files = _partimagenet_files(root)
    wnids = sorted({w for rows in files.values() for _, _, w in rows})
    if not wnids:
        raise UsageError(f"{root} holds no images with annotation PNGs under images/<split>/ and annotations/<split>/")
    label_of = {w: i for i, w in enumerate(wnids)}
    if mode == "official":
        rows = files[req.split]
        if not rows:
            raise UsageError(f"{root} has no annotated images in the official {req.split} split")
        idx = req.finish(torch.arange(len(rows)))
    else:
        rows = files["train"] + files["val"] + files["test"]
        idx = req.pool_indices(len(rows))
    images = [r[0] for r in rows]
    labels = torch.tensor([label_of[r[2]] for r in rows])
    info = req.info.replace(input_shape=(3, size, size), num_classes=len(wnids),
                            class_names=tuple(imagenet_name(w) for w in wnids))
    return XDataset(info, req.split, idx, labels, ImageFileSource(images, size, resize),
                    masks=MaskFileSource([r[1] for r in rows], size, resize, background), files=images)


def _register() -> None:
    register_dataset(DatasetInfo(
        name="imagenette", task="classification", input_shape=(3, 160, 160), num_classes=10,
        class_names=IMAGENETTE_NAMES, mean=IMAGENET_MEAN, std=IMAGENET_STD, bundled=False, source=IMAGENETTE_URL,
        augmentation="crop-flip",
        description="Imagenette 160 px (imagenette2-160): 8,994 train / 475 val carved from the 9,469 train "
                    "files / 3,925 test (the val folder); decoded lazily, centre-cropped to image_size",
        options=(("val_size", 475), ("image_size", 160), ("resize", None))), build_imagenette)
    register_dataset(DatasetInfo(
        name="partimagenet", task="segmentation", input_shape=(3, 224, 224), num_classes=158,
        class_names=tuple(f"class {i}" for i in range(158)), mean=IMAGENET_MEAN, std=IMAGENET_STD, bundled=False,
        source=PARTIMAGENET_URL, augmentation="resized-crop-flip",
        description="PartImageNet images with part masks (every part = foreground); its official splits have "
                    "disjoint classes, so by default all 158 classes are pooled and split 80/10/10 by seed",
        options=(("split_mode", "pooled"), ("test_size", 0.1), ("val_size", 0.1), ("image_size", 224),
                 ("resize", None), ("background", 40))), build_partimagenet)


_register()
