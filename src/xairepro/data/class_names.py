"""Class names in label order, as prompt-friendly words (LICO builds its text prompts from them).

Never sort these lists: index i must stay the name of label i (the original LICO code sorted a
set of names and scrambled the labels).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

__all__ = [
    "DIGIT_NAMES", "CIFAR10_NAMES", "CIFAR100_NAMES", "FASHION_MNIST_NAMES", "IMAGENETTE_WNIDS",
    "IMAGENETTE_NAMES", "ECG5000_NAMES", "ECG_BINARY_NAMES", "DSPRITES_SHAPES", "prompt_name",
    "imagenet_name",
]

#: MNIST, digits and SVHN (SVHN's label 10 is the digit 0, remapped as torchvision does).
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: The 100 fine labels of CIFAR-100 in the official order (``meta['fine_label_names']``), "_" -> " ".
CIFAR100_NAMES = tuple(n.replace("_", " ") for n in (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray "
    "road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar "
    "sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle "
    "wardrobe whale willow_tree wolf woman worm").split())

#: Official Fashion-MNIST names.
FASHION_MNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                       "Bag", "Ankle boot")

#: Imagenette's ten ImageNet classes in sorted-wnid order (= label order of its folders).
IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916",
                    "n03417042", "n03425413", "n03445777", "n03888257")
IMAGENETTE_NAMES = ("tench", "English springer", "cassette player", "chain saw", "church", "French horn",
                    "garbage truck", "gas pump", "golf ball", "parachute")

#: ECG5000's five UCR labels 1..5 (label 1 = normal).
ECG5000_NAMES = ("normal", "R-on-T premature ventricular contraction", "premature ventricular contraction",
                 "supraventricular premature beat", "unclassified beat")
ECG_BINARY_NAMES = ("normal", "abnormal")

#: dSprites shapes in the order of ``latents_classes[:, 1]``.
DSPRITES_SHAPES = ("square", "ellipse", "heart")


def prompt_name(name: str) -> str:
    """A label as prompt text: underscores become spaces, surrounding blanks go."""
    return name.replace("_", " ").strip()


@functools.lru_cache(maxsize=1)
def _imagenet_table() -> dict[str, str]:
    """wnid -> ImageNet-1k class name (sorted wnids align with torchvision's category list)."""
    wnids = json.loads((Path(__file__).with_name("imagenet_wnids.json")).read_text())
    try:
        from torchvision.models import ResNet18_Weights

        names = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # noqa: BLE001 - names are a nicety; the wnid is the fallback
        return {}
    if len(names) != len(wnids):
        return {}
    return dict(zip(wnids, names))


def imagenet_name(wnid: str) -> str:
    """The ImageNet-1k name of a WordNet id (``n01440764`` -> ``tench``); the wnid itself if unknown."""
    return _imagenet_table().get(wnid, wnid)
