"""Models: WRN-d-k, ResNet-18/50, MNIST AE/classifier, Burgess VAE, LSTM AE, SimCLR head.

    from xairepro.models import build_model, list_models
    model = build_model("wrn-28-2", num_classes=10, mean=[...], std=[...])
    model.config                  # every option, so a checkpoint can rebuild it: model_from_config(cfg)

Contracts (docs/design.md): classifiers give ``forward``, ``forward_features`` (last conv stage after its
final BN + activation), ``forward_head``, ``cam_layer``, ``num_classes``, ``input_shape`` and
``check_input``; autoencoders give ``.encoder`` (x -> (B, d)) and ``.decoder``; VAEs give ``encode``,
``reparameterize``, ``decode`` and ``.encoder`` mapping x -> mu.
"""

from xairepro.imaging import check_images
from xairepro.models.common import ImageClassifier, ImageModule, Normalize
from xairepro.models.registry import (
    ModelInfo,
    build_model,
    list_models,
    model_from_config,
    model_info,
    register_model,
)

# Importing the model modules registers them.
from xairepro.models.wrn import WideResNet  # noqa: E402
from xairepro.models.small_cnn import SmallCNN  # noqa: E402
from xairepro.models.mnist import MnistAutoencoder, MnistClassifier, MnistDecoder, MnistEncoder  # noqa: E402
from xairepro.models.resnet import DenseNetEncoder, ResNetClassifier, ResNetEncoder  # noqa: E402
from xairepro.models.vae import BurgessDecoder, BurgessEncoder, BurgessVAE  # noqa: E402
from xairepro.models.lstm_ae import LSTMAutoencoder, LSTMDecoder, LSTMEncoder  # noqa: E402
from xairepro.models.simclr import SimCLR  # noqa: E402

__all__ = [
    "ModelInfo",
    "build_model",
    "list_models",
    "model_from_config",
    "model_info",
    "register_model",
    "Normalize",
    "ImageModule",
    "ImageClassifier",
    "check_images",
    "WideResNet",
    "SmallCNN",
    "MnistEncoder",
    "MnistDecoder",
    "MnistAutoencoder",
    "MnistClassifier",
    "ResNetClassifier",
    "ResNetEncoder",
    "DenseNetEncoder",
    "BurgessEncoder",
    "BurgessDecoder",
    "BurgessVAE",
    "LSTMEncoder",
    "LSTMDecoder",
    "LSTMAutoencoder",
    "SimCLR",
]
