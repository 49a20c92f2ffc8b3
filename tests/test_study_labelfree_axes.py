"""The label-free study's added items (issue 14), without training: ROAR (Figure 9), the VAEs' attribution
method axis (Figure 14), the replacement axis (Figures 5b, 13), the DenseNet-121 sets (Figures 5c, 18),
and the helpers of the qualitative figures.

Claims are checked on synthetic results; cell parameters against the rule that an axis's default keeps the
cell parameters (hence cache keys) the study's cells had; figure inputs against the metric they illustrate.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from torch import nn

from xairepro.config import config_to_dict
from xairepro.errors import ConfigError, UsageError
from xairepro.experiments.base import Results
from xairepro.experiments.labelfree_study.common import frac_metric, set_dataset, set_name
from xairepro.experiments.labelfree_study.disentangled_vae import (
    DisentangledVaeExperiment, parse_vae_variant, vae_variant, variant_method,
)
from xairepro.experiments.labelfree_study.feature_consistency import FeatureConsistencyExperiment
from xairepro.experiments.labelfree_study.pretext import PretextExperiment, task_setup
from xairepro.experiments.labelfree_study.roar import RoarExperiment
from xairepro.experiments.labelfree_study.sets import ROAR_PREFIX, FeatureSet, cell_sets


def frame(rows: list[tuple[str, str, int, str, float]]) -> Results:
    """Results from (dataset, variant, seed, metric, value) rows."""
    return Results(pd.DataFrame([{"experiment": "x", "dataset": d, "variant": v, "seed": s, "metric": m,
                                  "value": float(x), "config_hash": ""} for d, v, s, m, x in rows]))


# ---------------------------------------------------------------------------------------------- ROAR

def _roar_rows(method_losses: list[float], random_losses: list[float], dataset: str = "digits",
               ig_losses: list[float] | None = None):
    ig_losses = ig_losses or [m + 0.001 for m in method_losses]
    rows = []
    for f in (0.1, 0.2, 0.5):
        for seed, (m, g, r) in enumerate(zip(method_losses, ig_losses, random_losses)):
            rows += [(dataset, "gradient_shap", seed, frac_metric(ROAR_PREFIX, f), m + f),
                     (dataset, "integrated_gradients", seed, frac_metric(ROAR_PREFIX, f), g + f),
                     (dataset, "random", seed, frac_metric(ROAR_PREFIX, f), r + f)]
    return rows


@pytest.mark.parametrize(("method", "random", "ig", "status"), [
    ([0.30, 0.31, 0.32], [0.20, 0.22, 0.21], None, "holds"),        # removing the important pixels hurts more
    ([0.20, 0.21, 0.22], [0.30, 0.32, 0.31], None, "fails"),        # random removal hurts more
    ([0.30, 0.20, 0.25], [0.26, 0.25, 0.24], None, "inconclusive"),  # too noisy to tell
    ([0.30, 0.31, 0.32], [0.20, 0.22, 0.21], [0.10, 0.11, 0.12], "partly"),  # Gradient Shap holds, IG fails
])
def test_roar_claim_on_synthetic_results(method, random, ig, status) -> None:
    exp = RoarExperiment()
    cfg = exp.make_config("quick")
    (claim,) = exp.claims(cfg)
    assert claim.id == "roar-mnist" and "Figure 9" in claim.source and claim.study == "holds"
    verdict = claim.check(frame(_roar_rows(method, random, ig_losses=ig)))
    assert verdict.status == status
    assert verdict.cause == ("within-noise" if status == "inconclusive" else "")
    key = "gradient_shap: gradient_shap@10% diff"
    assert verdict.numbers[key] == pytest.approx(sum(method) / 3 - sum(random) / 3)


def test_roar_claim_needs_the_random_control() -> None:
    exp = RoarExperiment()
    cfg = exp.make_config("quick", ["methods=[gradient_shap]"])
    assert exp.claims(cfg)[0].check(frame(_roar_rows([0.3, 0.31], [0.2, 0.21]))).status == "inconclusive"


def test_roar_paper_preset_resolves_to_the_original_settings() -> None:
    exp = RoarExperiment()
    cfg = exp.make_config("paper")
    cells = exp.cells(cfg)
    assert [c.dataset for c in cells] == ["mnist"] * 3 and all(c.num_gpus == 1.0 for c in cells)
    assert cfg.fractions == [0.0, 0.1, 0.2, 0.5, 0.7, 1.0]            # the original's 10 ... 100% and 0
    assert cfg.methods == ["gradient_shap", "integrated_gradients", "random"] and cfg.ig_steps == 50
    m = cfg.mnist.model
    assert (m.data, m.model, m.model_kwargs, m.method) == ("mnist", "mnist-ae", {"latent_dim": 4}, "ae")
    assert m.method_options == {"perturbation": "identity"}           # a reconstruction autoencoder
    assert (m.epochs, m.batch_size, m.optimizer, m.lr) == (10, 200, "adam", 1e-3)   # roar_test(n_epochs=10)
    assert cfg.mnist.retrain_epochs is None and cfg.mnist.n_train is None
    assert exp.tables[0].source.endswith("(curves only, no numbers published)") and not exp.references(cfg)


def test_roar_quick_model_is_the_pretext_reconstruction_autoencoder() -> None:
    """The quick ROAR explains the very model the pretext study trains for its reconstruction task in the same
    run (same setup, same training seed), so the model cache trains it once."""
    from xairepro.experiments.labelfree_study.pretext_cells import task_seed
    from xairepro.experiments.labelfree_study.roar_cells import roar_seed
    from xairepro.experiments.labelfree_study.trained_models import run_config
    from xairepro.experiments.trained_models import model_key

    roar_cfg = RoarExperiment().make_config("quick")
    pretext_cfg = PretextExperiment().make_config("quick")
    assert roar_cfg.seeds == pretext_cfg.seeds
    for seed in roar_cfg.seeds:
        assert roar_seed(seed) == task_seed(seed, "rec")
        ours = model_key(run_config(roar_cfg.mnist.model, roar_seed(seed)))
        theirs = model_key(run_config(task_setup(pretext_cfg.mnist, "rec"), task_seed(seed, "rec")))
        assert ours == theirs


@pytest.mark.parametrize(("override", "match"), [
    ("fractions=[0.0,1.5]", "fractions"),
    ("claim_fractions=[0.3]", "claim_fractions"),
    ("mnist.model.method=vae", "autoencoder"),
    ("mnist.retrain_epochs=0", "retrain_epochs"),
    ("methods=[saliency]", "methods"),
])
def test_roar_bad_settings_get_one_clear_error(override, match) -> None:
    with pytest.raises(ConfigError, match=match):
        RoarExperiment().make_config("quick", [override])


# --------------------------------------------------------------------------- VAEs: the method axis

def test_vae_variants_name_the_method_except_the_study_s() -> None:
    assert vae_variant("beta-vae", 1.0) == vae_variant("beta-vae", 1.0, "gradient_shap") == "beta-vae beta=1"
    ig = vae_variant("tc-vae", 10.0, "integrated_gradients")
    assert ig == "tc-vae beta=10 (integrated_gradients)"
    assert parse_vae_variant(ig) == ("tc-vae", 10.0) and variant_method(ig) == "integrated_gradients"
    assert variant_method("beta-vae beta=5") == "gradient_shap" and variant_method("dknn") == ""


def test_vae_gradient_shap_cells_keep_the_study_parameters() -> None:
    """Adding the method axis leaves the GradientShap cells as they were (same parameters, same keys)."""
    exp = DisentangledVaeExperiment()
    both = exp.cells(exp.make_config("quick"))
    alone = exp.cells(exp.make_config("quick", ["methods=[gradient_shap]"]))
    assert {c.key for c in alone} < {c.key for c in both} and len(both) == 2 * len(alone)
    for c in alone:
        assert set(c.params) == {"set", "vae_set", "vae_type", "beta", "gradient_shap_samples", "batch_size"}


def _vae_rows(low, high, method, dataset="digits", betas=(1.0, 5.0), vae_types=("beta-vae",)):
    """Pearson ``low`` at the smallest beta, ``high`` at the largest, per run (the quick preset's betas and types)."""
    rows = []
    for vae_type in vae_types:
        for seed, (lo, hi) in enumerate(zip(low, high)):
            for beta, value in ((min(betas), lo), (max(betas), hi)):
                v = vae_variant(vae_type, beta, method)
                rows += [(dataset, v, seed, "pearson", value), (dataset, v, seed, "informative_units", 3.0)]
    return rows


def test_claim4_is_decided_per_method() -> None:
    exp = DisentangledVaeExperiment()
    cfg = exp.make_config("quick")
    claims = {c.id: c for c in exp.claims(cfg)}
    assert {"claim4-mnist", "claim4-mnist-integrated_gradients", "claim4-dsprites-integrated_gradients"} <= set(claims)
    assert "Figure 14" in claims["claim4-mnist-integrated_gradients"].source
    # GradientShap keeps its correlation, IG loses it: each claim reads its own method's rows only
    grid = {"betas": cfg.betas, "vae_types": cfg.vae_types}
    rows = (_vae_rows([0.40, 0.42, 0.41], [0.45, 0.47, 0.46], "gradient_shap", **grid)
            + _vae_rows([0.60, 0.62, 0.61], [0.20, 0.22, 0.21], "integrated_gradients", **grid))
    assert claims["claim4-mnist"].check(frame(rows)).status == "holds"
    assert claims["claim4-mnist-integrated_gradients"].check(frame(rows)).status == "fails"


def test_vae_method_must_be_known() -> None:
    with pytest.raises(ConfigError, match="methods"):
        DisentangledVaeExperiment().make_config("quick", ["methods=[saliency]"])


# ------------------------------------------------------------------- feature consistency: replacements

def test_each_attribution_baseline_is_a_cell_and_the_first_keeps_its_parameters() -> None:
    exp = FeatureConsistencyExperiment()
    cfg = exp.make_config("quick")
    assert cfg.mnist.replacements == ["zeros", "road", "blur"]
    one = exp.make_config("quick", ["mnist.replacements=[zeros,road]"])
    keys_one = {c.key for c in exp.cells(one)}
    cells = exp.cells(cfg)
    # the black-pixel (and road) cells are those of a set without blur: the same keys as before the axis
    runs = len(cfg.seeds)
    assert keys_one < {c.key for c in cells} and len(cells) == len(keys_one) + runs
    blur = [c for c in cells if c.variant == "methods (blur)"]
    assert len(blur) == runs and all(c.params["primary"] == "zeros" for c in blur)
    assert blur[0].params["feature_set"]["replacements"] == ["blur"]
    assert blur[0].params["feature_set"]["baseline"] == "blur"
    assert {c.id for c in exp.claims(cfg)} >= {"claim1-mnist", "claim1-mnist-blur"}


def test_cell_sets_group_replacements_by_attribution_baseline() -> None:
    fs = FeatureSet(replacements=["blur", "zeros", "road", "mean"], baseline="blur")
    parts = cell_sets(fs)
    assert [(p.replacements, p.baseline) for p in parts] == [(["blur", "road"], "blur"), (["zeros"], "zeros"),
                                                             (["mean"], "mean")]
    assert config_to_dict(parts[0]) == config_to_dict(dataclasses.replace(fs, replacements=["blur", "road"]))
    assert fs.replacements == ["blur", "zeros", "road", "mean"]        # not changed
    # a further replacement equal to the set's baseline shares the first cell
    same = cell_sets(FeatureSet(replacements=["zeros", "blur"], baseline="blur"))
    assert [(p.replacements, p.baseline) for p in same] == [(["zeros", "blur"], "blur")]


def test_densenet_sets_are_named_and_kept_apart() -> None:
    cfg = FeatureConsistencyExperiment().make_config("paper")
    assert set_dataset("cifar10_densenet", cfg.cifar10_densenet.model) == "cifar10-densenet121"
    assert set_dataset("cifar10", cfg.cifar10.model) == "cifar10"
    assert set_name("cifar10_densenet", "cifar10") == "CIFAR-10, DenseNet-121 encoder"
    assert set_name("mnist", "digits") == "MNIST (digits)"


def test_densenet_paper_models_resolve_without_training() -> None:
    """The paper preset's DenseNet SimCLR builds (no training): the backbone is DenseNet-121, 1024 features."""
    from xairepro.experiments.labelfree_study.trained_models import run_config
    from xairepro.models import build_model

    cfg = FeatureConsistencyExperiment().make_config("paper")
    run = run_config(cfg.cifar10_densenet.model, 0)
    assert (run.model.name, run.method, run.data.name) == ("simclr", "simclr", "cifar10")
    model = build_model(run.model.name, **run.model.kwargs)
    assert type(model.encoder).__name__ == "DenseNetEncoder"
    with torch.no_grad():
        assert model.encoder.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 1024)


# --------------------------------------------------------------------------- qualitative figure inputs

class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 12 * 12, 3))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("replacement", ["zeros", "blur"])
@pytest.mark.parametrize("attr", ["random", "given"])
def test_masked_examples_are_the_inputs_the_metric_scores(replacement, attr) -> None:
    """The masked images a figure shows give exactly the latent shifts feature_consistency records."""
    from xairepro.experiments.labelfree_study.feature_cells import masked_examples
    from xairepro.metrics import feature_consistency

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(7, 2, 12, 12, generator=gen)
    a = "random" if attr == "random" else torch.randn(7, 2, 12, 12, generator=gen)
    fractions = [0.1, 0.5, 1.0]
    enc = _Linear().eval()
    shifts = feature_consistency(enc, x, a, fractions, replacement, seed=11, reduction="none")
    shown = masked_examples(x, a, fractions, replacement, seed=11, n=4)
    assert shown.shape == (3, 4, 2, 12, 12)
    with torch.no_grad():
        mine = ((enc(x[:4]).unsqueeze(0) - enc(shown.reshape(-1, 2, 12, 12)).reshape(3, 4, -1)) ** 2).sum(-1)
    torch.testing.assert_close(mine.double(), shifts[:, :4], rtol=1e-5, atol=1e-6)


def test_shown_indices_take_one_example_per_class_first() -> None:
    from xairepro.experiments.labelfree_study.trained_models import shown_indices

    y = torch.tensor([3, 3, 1, 0, 1, 2, 0])
    assert shown_indices(y, 4).tolist() == [3, 2, 5, 0]       # first 0, first 1, first 2, first 3
    assert shown_indices(y, 6).tolist() == [3, 2, 5, 0, 1, 4]
    assert shown_indices(torch.tensor([1, 1, 1]), 2).tolist() == [0, 1]
    assert shown_indices(y, 20).shape == (7,)


def test_picture_grid_draws_images_and_maps_and_refuses_ragged_rows(tmp_path) -> None:
    from xairepro.experiments.labelfree_study.figures import picture_grid

    img = (torch.rand(3, 8, 8) * 255).to(torch.uint8)
    rows = [[("image", img), ("map", torch.rand(8, 8)), None], [("image", torch.rand(1, 8, 8)), None, ("map", torch.zeros(8, 8))]]
    path = picture_grid(rows, tmp_path / "grid.png", column_titles=["a", "b", "c"], row_titles=["r1", "r2"])
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="every row"):
        picture_grid([[("image", img)]], tmp_path / "bad.png", column_titles=["a", "b"])
    with pytest.raises(UsageError, match="channels"):
        picture_grid([[("image", torch.rand(2, 8, 8))]], tmp_path / "bad.png", column_titles=["a"])
