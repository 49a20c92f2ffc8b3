"""Imagenette and PartImageNet folders (JPEG/PNG files) and the official dSprites ``.npz``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xairepro.data import load
from xairepro.data.class_names import IMAGENETTE_NAMES, IMAGENETTE_WNIDS
from xairepro.data.dsprites import DSPRITES_FILE, read_dsprites
from xairepro.data.files import clear_cache
from xairepro.errors import UsageError


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def class_colour(label: int) -> tuple[int, int, int]:
    return (20 * label + 10, 240 - 20 * label, 128)


def write_imagenette(root: Path, per_class: dict[str, int], classes=(0, 3, 9)) -> Path:
    """imagenette2-160/{train,val}/<wnid>/*.JPEG, one flat colour per class, non-square sizes."""
    base = root / "imagenette2-160"
    for split, n in per_class.items():
        for label in classes:
            folder = base / split / IMAGENETTE_WNIDS[label]
            folder.mkdir(parents=True)
            for k in range(n):
                size = (213, 160) if k % 2 == 0 else (160, 240)
                Image.new("RGB", size, class_colour(label)).save(folder / f"{IMAGENETTE_WNIDS[label]}_{k}.JPEG",
                                                                  quality=95)
    return base


def test_imagenette_folders_labels_follow_sorted_wnids(tmp_path):
    write_imagenette(tmp_path, {"train": 4, "val": 2})
    test = load("imagenette", "test", tmp_path, image_size=32)
    assert len(test) == 6 and test.info.input_shape == (3, 32, 32)
    assert test.class_names == IMAGENETTE_NAMES and test.class_names[9] == "parachute"
    for i in range(len(test)):
        x, y = test[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        expected = torch.tensor(class_colour(y), dtype=torch.float32) / 255
        assert torch.allclose(x.mean((1, 2)), expected, atol=4 / 255)  # the file in folder wnid[y] is class y
        assert test.files[i].parent.name == IMAGENETTE_WNIDS[y]
    assert not hasattr(test, "tensors")  # file-backed: the engine uses ds[i] through a DataLoader
    xb, yb = test.batch([0, 5])
    assert xb.shape == (2, 3, 32, 32) and yb.tolist() == [test[0][1], test[5][1]]


def test_imagenette_val_carved_from_train_folder(tmp_path):
    write_imagenette(tmp_path, {"train": 10, "val": 1})
    train, val = load("imagenette", "train", tmp_path, val_size=5), load("imagenette", "val", tmp_path, val_size=5)
    assert len(train) == 25 and len(val) == 5
    assert not set(train.files) & set(val.files)
    assert all("/train/" in str(p) for p in val.files)
    assert load("imagenette", "val", tmp_path, val_size=5, seed=1).files != val.files


def test_imagenette_resize_then_centre_crop(tmp_path):
    folder = tmp_path / "imagenette2-160" / "train" / IMAGENETTE_WNIDS[0]
    folder.mkdir(parents=True)
    (tmp_path / "imagenette2-160" / "val").mkdir()
    stripes = np.zeros((40, 120, 3), np.uint8)  # 120 wide x 40 high: red | green | blue thirds
    stripes[:, :40, 0] = stripes[:, 40:80, 1] = stripes[:, 80:, 2] = 255
    Image.fromarray(stripes).save(folder / "a.png")
    x, _ = load("imagenette", "train", tmp_path, val_size=0, image_size=40)[0]
    assert x.shape == (3, 40, 40)
    assert torch.equal(x, torch.tensor([0.0, 1.0, 0.0])[:, None, None].expand(3, 40, 40))  # the centre third
    x, _ = load("imagenette", "train", tmp_path, val_size=0, image_size=20)[0]  # short side 40 -> 20, width 60
    assert x.shape == (3, 20, 20) and torch.allclose(x[1, :, 2:-2], torch.ones(20, 16))


def test_imagenette_stray_folder_is_a_clear_error(tmp_path):
    base = write_imagenette(tmp_path, {"train": 1, "val": 1})
    (base / "val" / "cats").mkdir()
    with pytest.raises(UsageError, match="not Imagenette classes: cats"):
        load("imagenette", "test", tmp_path)


def test_imagenette_download_uses_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    seen = []

    def fake(root, size="full", download=False, **kw):
        seen.append((size, download))
        write_imagenette(Path(root), {"train": 1, "val": 1}, classes=(2,))

    monkeypatch.setattr(tvd, "Imagenette", fake)
    assert len(load("imagenette", "test", tmp_path, download=True, image_size=16)) == 1
    assert seen == [("160px", True)]


# -- PartImageNet ---------------------------------------------------------------------------------

PART_WNIDS = ("n02690373", "n01440764", "n02085620")  # airliner, tench, Chihuahua (not sorted)


def write_partimagenet(root: Path, per_split: dict[str, int], size=(32, 32)) -> dict[str, list[np.ndarray]]:
    """PartImageNet/images/<split>/<wnid>_<k>.JPEG + annotations/<split>/<wnid>_<k>.png (40 = background)."""
    base = root / "PartImageNet"
    masks: dict[str, list[np.ndarray]] = {}
    rng = np.random.default_rng(0)
    for split, n in per_split.items():
        (base / "images" / split).mkdir(parents=True)
        (base / "annotations" / split).mkdir(parents=True)
        for k in range(n):
            wnid = PART_WNIDS[k % 3]
            w, h = size
            ann = np.full((h, w), 40, np.uint8)
            top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
            ann[top:top + h // 3, left:left + w // 3] = 3  # two parts, both foreground
            ann[top + h // 3: top + h // 2, left:left + w // 4] = 0
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 2] = 255
            img[ann != 40] = (255, 0, 0)
            Image.fromarray(img).save(base / "images" / split / f"{wnid}_{k}.JPEG", quality=98)
            Image.fromarray(ann, mode="L").save(base / "annotations" / split / f"{wnid}_{k}.png")
            masks.setdefault(split, []).append(ann != 40)
    return masks


def test_partimagenet_masks_every_part_is_foreground(tmp_path):
    truth = write_partimagenet(tmp_path, {"train": 6, "val": 3, "test": 3})
    ds = load("partimagenet", "train", tmp_path, split_mode="official", image_size=32)
    assert ds.info.task == "segmentation" and len(ds) == 6
    masks = ds.masks
    assert masks.shape == (6, 32, 32) and masks.dtype == torch.bool
    for i, path in enumerate(ds.files):
        k = int(path.stem.split("_")[1])
        assert torch.equal(masks[i], torch.from_numpy(truth["train"][k]))
        x, _ = ds[i]
        red = x[0] > x[2]  # red object pixels sit under the mask (JPEG blurs the edges a little)
        assert (red == masks[i]).float().mean() > 0.95
    assert torch.equal(ds.batch_masks([1, 2]), masks[1:3])


def test_partimagenet_class_names_follow_sorted_wnids(tmp_path):
    write_partimagenet(tmp_path, {"train": 6, "val": 0, "test": 3})
    ds = load("partimagenet", "test", tmp_path, split_mode="official", image_size=32)
    assert ds.num_classes == 3 and ds.class_names == ("tench", "Chihuahua", "airliner")  # sorted wnids
    for i, path in enumerate(ds.files):
        wnid = path.name.split("_")[0]
        assert ds.class_names[int(ds.targets[i])] == {"n01440764": "tench", "n02085620": "Chihuahua",
                                                      "n02690373": "airliner"}[wnid]


def test_partimagenet_pooled_split_and_resized_masks(tmp_path):
    write_partimagenet(tmp_path, {"train": 12, "val": 4, "test": 4}, size=(64, 48))
    splits = {s: load("partimagenet", s, tmp_path, image_size=24) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert len({p for d in splits.values() for p in d.files}) == 20
    ds = splits["train"]
    x, _ = ds.batch(slice(None))
    m = ds.masks
    assert x.shape == (16, 3, 24, 24) and m.shape == (16, 24, 24)
    grow = lambda t: torch.nn.functional.max_pool2d(t.float()[:, None], 3, 1, 1)[:, 0] > 0  # noqa: E731
    inner, outer = ~grow(~m), ~grow(m)  # one pixel away from the boundary the image and mask agree
    for t in (inner, outer):  # the crop's own border is next to pixels we cannot see
        t[:, [0, -1], :] = False
        t[:, :, [0, -1]] = False
    assert inner.any() and (x[:, 0][inner] > x[:, 2][inner] + 0.2).all()
    assert outer.any() and (x[:, 2][outer] > x[:, 0][outer] + 0.2).all()


def test_partimagenet_bad_split_mode(tmp_path):
    write_partimagenet(tmp_path, {"train": 3, "val": 0, "test": 0})
    with pytest.raises(UsageError, match="split_mode must be"):
        load("partimagenet", "train", tmp_path, split_mode="mixed")


# -- dSprites npz ---------------------------------------------------------------------------------

def write_dsprites(path: Path, n: int, compressed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    imgs = (rng.random((n, 64, 64)) < 0.1).astype(np.uint8)
    classes = np.stack([np.zeros(n), rng.integers(0, 3, n), rng.integers(0, 6, n), rng.integers(0, 40, n),
                        rng.integers(0, 32, n), rng.integers(0, 32, n)], 1).astype(np.int64)
    values = classes.astype(np.float64) / np.array([1, 1, 10, 6, 31, 31]) + np.array([1, 1, 0.5, 0, 0, 0])
    save = np.savez_compressed if compressed else np.savez
    save(path, imgs=imgs, latents_values=values, latents_classes=classes,
         metadata=np.array({"description": "test"}, dtype=object))
    return imgs, values, classes


@pytest.mark.parametrize("compressed", [False, True])
def test_dsprites_npz(tmp_path, compressed):
    imgs, values, classes = write_dsprites(tmp_path / DSPRITES_FILE, 40, compressed)
    splits = {s: load("dsprites", s, tmp_path) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [34, 2, 4]  # 10% test, 5% of the rest val
    ds = splits["train"]
    x, y = ds.tensors()
    idx = ds.indices.numpy()
    assert x.shape == (34, 1, 64, 64) and torch.equal(x[:, 0], torch.from_numpy(imgs[idx]).float())
    assert torch.equal(y, torch.from_numpy(classes[idx, 1])) and ds.class_names == ("square", "ellipse", "heart")
    assert torch.allclose(ds.latents, torch.from_numpy(values[idx]).float())
    assert torch.equal(ds.latent_classes, torch.from_numpy(classes[idx]))


def test_dsprites_streamed_in_chunks_equals_whole(tmp_path):
    imgs, _, _ = write_dsprites(tmp_path / "d.npz", 23, compressed=True)
    packed, _, _ = read_dsprites(tmp_path / "d.npz", chunk=5)
    assert packed.shape == (23, 64, 8)
    assert torch.equal(torch.from_numpy(np.unpackbits(packed.numpy(), axis=-1)), torch.from_numpy(imgs))


def test_dsprites_missing_array_is_a_clear_error(tmp_path):
    np.savez(tmp_path / DSPRITES_FILE, imgs=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(UsageError, match="lacks the arrays latents_classes, latents_values"):
        load("dsprites", "train", tmp_path)


def test_imagenette_default_split_sizes(tmp_path):
    """imagenette2-160's 9,469 train + 3,925 val files -> 8,994 / 475 / 3,925 (only listing: empty files)."""
    base = tmp_path / "imagenette2-160"
    for split, total in (("train", 9469), ("val", 3925)):
        for label, wnid in enumerate(IMAGENETTE_WNIDS):
            folder = base / split / wnid
            folder.mkdir(parents=True)
            count = total // 10 + (1 if label < total % 10 else 0)
            for k in range(count):
                (folder / f"{wnid}_{k}.JPEG").touch()
    sizes = [len(load("imagenette", s, tmp_path)) for s in ("train", "val", "test")]
    assert sizes == [8994, 475, 3925]
