"""Batched augmentations: equal to slow per-image references, seeded, device-agnostic, input untouched."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xairepro.data import (
    Compose,
    Normalize,
    RandomCropFlip,
    RandomResizedCropFlip,
    ResizeCenterCrop,
    dataset_info,
    default_train_transform,
)


def images(b=6, c=3, h=12, w=10, seed=0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def crop_flip_reference(x, oy, ox, flip, padding, mode):
    """One image at a time: F.pad, slice, flip."""
    pad_mode = {"reflect": "reflect", "replicate": "replicate", "zeros": "constant"}[mode]
    out = []
    for i in range(x.shape[0]):
        p = F.pad(x[i:i + 1], (padding,) * 4, mode=pad_mode)[0]
        crop = p[:, int(oy[i]):int(oy[i]) + x.shape[2], int(ox[i]):int(ox[i]) + x.shape[3]]
        out.append(crop.flip(-1) if flip[i] else crop)
    return torch.stack(out)


@pytest.mark.parametrize("mode", ["reflect", "zeros", "replicate"])
@pytest.mark.parametrize("padding", [0, 1, 4])
def test_random_crop_flip_equals_the_slow_reference(mode, padding):
    x = images()
    t = RandomCropFlip(padding=padding, mode=mode)
    oy, ox, flip = t.sample(x.shape[0], torch.Generator().manual_seed(1))
    assert int(oy.max()) <= 2 * padding and int(ox.min()) >= 0
    torch.testing.assert_close(t.apply(x, oy, ox, flip), crop_flip_reference(x, oy, ox, flip, padding, mode),
                               rtol=0, atol=0)


def test_random_crop_flip_call_uses_one_draw_of_the_generator():
    x, t = images(b=32), RandomCropFlip()
    out = t(x, generator=torch.Generator().manual_seed(7))
    params = t.sample(32, torch.Generator().manual_seed(7))
    assert torch.equal(out, t.apply(x, *params))
    assert torch.equal(out, t(x, generator=torch.Generator().manual_seed(7)))  # deterministic per generator
    assert not torch.equal(out, t(x, generator=torch.Generator().manual_seed(8)))
    offsets = torch.stack(params[:2]).flatten()
    assert set(offsets.tolist()) > {0, 8} and 0 < int(params[2].sum()) < 32  # offsets span 0..8, flips both ways


def test_random_crop_flip_does_not_mutate_and_keeps_dtype():
    x = images()
    before = x.clone()
    out = RandomCropFlip()(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before) and out.shape == x.shape and out.dtype == x.dtype
    u8 = (x * 255).to(torch.uint8)
    out8 = RandomCropFlip()(u8, generator=torch.Generator().manual_seed(0))
    assert out8.dtype == torch.uint8 and torch.equal(out8, (out * 255).to(torch.uint8))
    single = RandomCropFlip()(x[0], generator=torch.Generator().manual_seed(3))
    assert single.shape == x[0].shape


def test_flip_only_is_a_mirror():
    x = images(b=16)
    t = RandomCropFlip(padding=0)
    oy, ox, flip = t.sample(16, torch.Generator().manual_seed(2))
    out = t.apply(x, oy, ox, flip)
    assert torch.equal(out[flip], x[flip].flip(-1)) and torch.equal(out[~flip], x[~flip])
    no_flip = RandomCropFlip(padding=2, flip=False)
    assert not no_flip.sample(64, torch.Generator().manual_seed(0))[2].any()


def test_reflect_padding_larger_than_the_image_is_a_clear_error():
    with pytest.raises(ValueError, match="reflect padding 4 needs images larger"):
        RandomCropFlip(padding=4)(torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match="mode must be one of"):
        RandomCropFlip(mode="circular")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_generator_gives_the_same_crops_on_gpu():
    x, t = images(), RandomCropFlip()
    cpu = t(x, generator=torch.Generator().manual_seed(0))
    gpu = t(x.cuda(), generator=torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)


# -- random resized crop --------------------------------------------------------------------------

def test_resized_crop_boxes_follow_the_scale_and_ratio_rule():
    t = RandomResizedCropFlip(16, scale=(0.2, 0.9), ratio=(0.5, 2.0))
    boxes, flip = t.sample(500, 40, 60, torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 60).all()
    area = (h * w).double() / (40 * 60)
    assert (area >= 0.2 - 0.02).all() and (area <= 0.9 + 0.02).all()  # rounding of w, h
    aspect = w.double() / h.double()
    assert (aspect > 0.5 * 0.85).all() and (aspect < 2.0 / 0.85).all()
    assert 150 < int(flip.sum()) < 350


def test_resized_crop_falls_back_to_a_centre_crop():
    t = RandomResizedCropFlip(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))  # impossible on a 10 x 20 image
    boxes, _ = t.sample(4, 10, 20, torch.Generator().manual_seed(0))
    assert boxes.tolist() == [[0, 5, 10, 10]] * 4


def test_resized_crop_of_the_whole_image_is_a_resize():
    x = images(b=3, h=16, w=16)
    t = RandomResizedCropFlip(8)
    boxes = torch.tensor([[0, 0, 16, 16]] * 3)
    out = t.apply(x, boxes, torch.tensor([False, True, False]))
    ref = F.avg_pool2d(x, 2)  # a 2x downscale averages 2 x 2 bilinear samples = the 2 x 2 mean
    torch.testing.assert_close(out[0], ref[0])
    torch.testing.assert_close(out[1], ref[1].flip(-1))
    crop = t.apply(x, torch.tensor([[4, 2, 8, 8]] * 3), torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(crop, x[:, :, 4:12, 2:10], atol=1e-6, rtol=0)  # same size: a plain crop
    # enlarging a 4 x 4 box is bilinear; samples just outside the box come from the image around it
    up = t.apply(x, torch.tensor([[1, 3, 4, 4]] * 3), torch.zeros(3, dtype=torch.bool))
    context = F.interpolate(x[:, :, 0:6, 2:8], size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(up, context[:, :, 2:10, 2:10], atol=1e-6, rtol=0)


def test_resized_crop_call_is_seeded():
    x = images(b=5, h=20, w=24)
    t = RandomResizedCropFlip(10)
    a = t(x, generator=torch.Generator().manual_seed(4))
    assert a.shape == (5, 3, 10, 10)
    assert torch.equal(a, t(x, generator=torch.Generator().manual_seed(4)))
    assert not torch.equal(a, t(x, generator=torch.Generator().manual_seed(5)))


# -- eval transform, normalise, defaults ----------------------------------------------------------

def test_resize_center_crop():
    x = images(b=2, h=20, w=30)
    out = ResizeCenterCrop(10, 8)(x)
    ref = F.interpolate(x, size=(10, 15), mode="bilinear", align_corners=False, antialias=True)[:, :, 1:9, 3:11]
    assert out.shape == (2, 3, 8, 8) and torch.allclose(out, ref)
    same = ResizeCenterCrop(20, 20)(x)
    assert torch.equal(same, x[:, :, :, 5:25])


def test_normalize_and_compose():
    x = images(b=2, c=3, h=4, w=4)
    norm = Normalize((0.5, 0.4, 0.3), (0.1, 0.2, 0.3))
    out = Compose(None, norm)(x)
    assert torch.allclose(out[:, 1], (x[:, 1] - 0.4) / 0.2)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize((0.0,), (0.0,))


def test_default_train_transforms_follow_spec_4():
    cifar = default_train_transform(dataset_info("cifar10"))
    assert isinstance(cifar, RandomCropFlip) and cifar.padding == 4 and cifar.mode == "reflect" and cifar.flip
    assert isinstance(default_train_transform(dataset_info("imagenette")), RandomCropFlip)
    part = default_train_transform(dataset_info("partimagenet"))
    assert isinstance(part, RandomResizedCropFlip) and part.size == 224
    assert default_train_transform(dataset_info("svhn")).flip is False  # digits are not mirrored
    assert default_train_transform(dataset_info("mnist")) is None
    assert default_train_transform(dataset_info("ecg-gen")) is None
    assert math.isclose(sum(dataset_info("cifar10").mean), 0.4914 + 0.4822 + 0.4465)


def test_resizing_transforms_keep_uint8_and_round():
    """Integer images stay integer images: the float result rounded (not truncated), same dtype."""
    x = images(b=3, h=20, w=30)
    u8 = (x * 255).round().to(torch.uint8)
    resize = ResizeCenterCrop(10, 8)
    out8 = resize(u8)
    assert out8.dtype == torch.uint8
    assert torch.equal(out8, resize(u8.float()).round().clamp(0, 255).to(torch.uint8))
    t = RandomResizedCropFlip(7)
    boxes, flip = t.sample(3, 20, 30, torch.Generator().manual_seed(0))
    out8 = t.apply(u8, boxes, flip)
    assert out8.dtype == torch.uint8
    assert torch.equal(out8, t.apply(u8.float(), boxes, flip).round().clamp(0, 255).to(torch.uint8))
