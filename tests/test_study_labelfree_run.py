"""The Label-Free XAI study's experiments end to end through the runner, on a tiny configuration.

One ``reproduce`` call runs all five experiments (2 runs each, 1 epoch on 150 examples, a handful of
explained examples), so the trained-model cache is shared as in a real run.  Oracles: the records'
ranges and invariances (at 100% every method perturbs every feature, Most = Least when every example is
selected, ROAR's 0% and 100% are one retraining shared by the methods), the model cache shared between
experiments (ROAR explains the pretext study's reconstruction autoencoder, the IG unit maps reuse the
VAEs), claims and figures written, and the report's figures loaded in headless Chromium.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from xairepro.errors import UsageError
from xairepro.experiments import register_experiment, unregister_experiment
from xairepro.experiments.labelfree_study.common import frac_metric
from xairepro.experiments.labelfree_study.disentangled_vae import DisentangledVaeExperiment
from xairepro.experiments.labelfree_study.example_consistency import LEAST, MOST, ExampleConsistencyExperiment
from xairepro.experiments.labelfree_study.feature_consistency import PREFIX, FeatureConsistencyExperiment
from xairepro.experiments.labelfree_study.pretext import PretextExperiment
from xairepro.experiments.labelfree_study.references import PAIRS, pair_metric
from xairepro.experiments.labelfree_study.roar import RoarExperiment
from xairepro.experiments.labelfree_study.sets import MASKED_EXAMPLES, PRETEXT_EXAMPLES, ROAR_PREFIX, UNIT_MAPS
from xairepro.experiments.registry import get_experiment

pytestmark = pytest.mark.usefixtures("one_thread_module")

FEATURE, EXAMPLE = "labelfree-feature-consistency", "labelfree-example-consistency"
PRETEXT, VAE, ROAR = "labelfree-pretext", "labelfree-vae", "labelfree-roar"
EXPERIMENTS = {FEATURE: FeatureConsistencyExperiment, EXAMPLE: ExampleConsistencyExperiment,
               PRETEXT: PretextExperiment, VAE: DisentangledVaeExperiment, ROAR: RoarExperiment}

#: The MNIST-stand-in autoencoder: the same overrides in every experiment, so one model per run is shared.
_DAE = ["epochs=1", "data_options.subset=0.12", "checkpoint_every=1"]
_ECG = ["epochs=1", "data_options.n=150", "model_kwargs.embedding_dim=4", "checkpoint_every=1"]
TINY = (
    [f"{FEATURE}.mnist.model.{o}" for o in _DAE] + [f"{FEATURE}.ecg5000.model.{o}" for o in _ECG]
    + [f"{FEATURE}.mnist.n_test=12", f"{FEATURE}.ecg5000.n_test=12", f"{FEATURE}.ig_steps=4"]
    + [f"{EXAMPLE}.mnist.model.{o}" for o in _DAE] + [f"{EXAMPLE}.ecg5000.model.{o}" for o in _ECG]
    + [f"{EXAMPLE}.mnist.n_train=40", f"{EXAMPLE}.mnist.n_test=20", f"{EXAMPLE}.ecg5000.n_train=30",
       f"{EXAMPLE}.ecg5000.n_test=12", f"{EXAMPLE}.lissa.depth=2", f"{EXAMPLE}.lissa.hessian_batch_size=8",
       f"{EXAMPLE}.simplex_steps=20"]
    + [f"{PRETEXT}.mnist.autoencoder.{o}" for o in _DAE]
    + [f"{PRETEXT}.mnist.classifier.{o}" for o in _DAE[:2]]
    + [f"{PRETEXT}.mnist.n_test=12", f"{PRETEXT}.mnist.n_train=30", f"{PRETEXT}.ig_steps=4"]
    + [f"{VAE}.mnist.model.epochs=1", f"{VAE}.mnist.model.data_options.subset=0.12", f"{VAE}.mnist.n_test=8",
       f"{VAE}.dsprites.model.epochs=1", f"{VAE}.dsprites.model.data_options.stride=[1,3,20,16,16]",
       f"{VAE}.dsprites.n_test=6", f"{VAE}.betas=[1.0,10.0]", f"{VAE}.gradient_shap_samples=2", f"{VAE}.ig_steps=2",
       f"{VAE}.vae_types=[beta-vae,tc-vae]"]
    # ROAR: the pretext study's reconstruction autoencoder (same overrides), 1 epoch per retraining
    + [f"{ROAR}.mnist.model.{o}" for o in _DAE]
    + [f"{ROAR}.mnist.retrain_epochs=1", f"{ROAR}.mnist.n_train=40", f"{ROAR}.mnist.n_test=20", f"{ROAR}.ig_steps=4",
       f"{ROAR}.fractions=[0.0,0.5,1.0]", f"{ROAR}.claim_fractions=[0.5]"]
    + [f"{name}.seeds=[0,1]" for name in (FEATURE, EXAMPLE, PRETEXT, VAE, ROAR)]   # the quick preset runs more
)


#: The figures issue 14 added (Figures 3, 5b, 6, 7, 8, 9, 13, 14, 15, 16, 17 on the quick stand-ins).
NEW_FIGURES = ("consistency_digits_blur.png", "masked_digits.png", "masked_digits_blur.png",
               "pretext_saliency_digits_gradient_shap.png", "pretext_saliency_digits_integrated_gradients.png",
               "pretext_top_examples_digits.png", "vae_unit_maps_digits.png",
               "vae_unit_maps_digits_integrated_gradients.png", "vae_pearson_digits_integrated_gradients.png",
               "vae_unit_maps_dsprites-gen.png", "vae_pearson_dsprites-gen_integrated_gradients.png",
               "vae_unit_maps_dsprites-gen_integrated_gradients.png", "roar_digits.png")


@pytest.fixture(scope="module")
def registered():
    """The study's experiments, registered for the module (left as found when they are built in)."""
    added = []
    for name, cls in EXPERIMENTS.items():
        try:
            get_experiment(name)
        except UsageError:
            register_experiment(cls)
            added.append(name)
    yield list(EXPERIMENTS)
    for name in added:
        unregister_experiment(name)


@pytest.fixture(scope="module")
def run(registered, tmp_path_factory):
    from xairepro.runner.run import reproduce

    out = tmp_path_factory.mktemp("labelfree") / "run"
    summary = reproduce(registered, preset="quick", out_dir=out, overrides=TINY, show_progress=False)
    frame = pd.read_csv(out / "results.csv")
    return summary, out, frame


def part(frame: pd.DataFrame, experiment: str) -> pd.DataFrame:
    return frame[frame["experiment"] == experiment]


def test_every_cell_runs_and_claims_are_decided(run) -> None:
    summary, out, frame = run
    assert summary.failed == 0, [f.error for f in summary.failures]
    assert set(frame["experiment"]) == set(EXPERIMENTS)
    assert frame["value"].notna().all()
    claims = json.loads((out / "claims.json").read_text())
    ids = {name: {c["id"] for c in claims[name]} for name in EXPERIMENTS}
    assert ids[EXAMPLE] == {"claim2-mnist", "claim2-ecg5000"}
    assert ids[PRETEXT] == {"claim3-mnist", "claim3-mnist-examples-weaker"}
    assert ids[VAE] == {"claim4-mnist", "claim4-dsprites", "claim4-mnist-integrated_gradients",
                        "claim4-dsprites-integrated_gradients"}
    assert ids[ROAR] == {"roar-mnist"}
    assert ids[FEATURE] == {"claim1-mnist", "claim1-ecg5000", "claim1-mnist-road", "claim1-ecg5000-road",
                            "claim1-mnist-metric-robustness", "claim1-ecg5000-metric-robustness", "claim1-mnist-blur"}
    for name in EXPERIMENTS:
        for c in claims[name]:
            assert c["status"] in ("holds", "fails", "partly", "inconclusive") and c["reason"], c
            if c["id"].endswith(("-road", "-blur", "-metric-robustness")):   # not the study's (issues 14, 15)
                assert c["study"] == "" and c["agreement"] == "", c
            else:
                assert c["study"] == "holds" and c["agreement"] in ("agrees", "disagrees", "undecided"), c


def test_figures_are_written(run) -> None:
    _, out, _ = run
    figures = json.loads((out / "figures.json").read_text())
    assert not [f for f in figures if f.get("error")], figures
    paths = {f["path"] for f in figures}
    for expected in ("consistency_digits.png", "consistency_ecg-gen.png", "similarity_digits.png",
                     "similarity_ecg-gen.png", "pretext_digits.png", "vae_pearson_digits.png",
                     "vae_pearson_dsprites-gen.png", *NEW_FIGURES):
        match = [p for p in paths if p.endswith(expected)]
        assert match, (expected, sorted(paths))
        assert (out / match[0]).is_file()


def test_feature_consistency_records(run) -> None:
    _, _, frame = run
    f = part(frame, FEATURE)
    methods = {"integrated_gradients", "gradient_shap", "saliency", "random"}
    for dataset, replacements in (("digits", ["zeros", "blur"]), ("ecg-gen", ["mean"])):
        d = f[f["dataset"] == dataset]
        road = d[d["variant"].str.endswith(" (road)")]
        d = d[~d["variant"].str.endswith(" (road)")]
        variants = methods | {f"{m} ({r})" for m in methods for r in replacements[1:]}
        assert set(d["variant"]) == variants and set(d["seed"]) == {0, 1}
        assert len(d) == len(variants) * 6 * 2 and (d["value"] >= 0).all()
        # ROAD removal (issue 15): every fraction but 100%, where nothing is left to impute from
        assert set(road["variant"]) == {f"{m} (road)" for m in methods} and len(road) == 4 * 5 * 2
        assert frac_metric(PREFIX, 1.0) not in set(road["metric"]) and (road["value"] >= 0).all()
        # at 100% every method replaces every feature: the same perturbed input, the same shift
        full = d[d["metric"] == frac_metric(PREFIX, 1.0)]
        for seed in (0, 1):
            for r in replacements:
                mine = full["variant"].str.endswith(f" ({r})") if r != replacements[0] else ~full["variant"].str.contains(" ")
                v = full[(full["seed"] == seed) & mine]["value"].to_numpy()
                assert len(v) == 4 and v.max() - v.min() <= 1e-5 * max(1.0, v.max()), v


def test_example_consistency_records(run) -> None:
    _, _, frame = run
    f = part(frame, EXAMPLE)
    assert set(f[f["dataset"] == "digits"]["variant"]) == {"influence_functions", "tracin", "simplex", "dknn"}
    assert set(f[f["dataset"] == "ecg-gen"]["variant"]) == {"tracin", "simplex", "dknn"}
    assert f["value"].between(0, 1).all()
    # every training example selected: Most and Least are the same set
    most = f[f["metric"] == frac_metric(MOST, 1.0)].set_index(["dataset", "variant", "seed"])["value"]
    least = f[f["metric"] == frac_metric(LEAST, 1.0)].set_index(["dataset", "variant", "seed"])["value"]
    assert len(most) == 7 * 2
    pd.testing.assert_series_equal(most.sort_index(), least.sort_index(), check_names=False)


def test_pretext_records(run) -> None:
    _, _, frame = run
    f = part(frame, PRETEXT)
    assert set(f["variant"]) == {"gradient_shap", "integrated_gradients", "dknn"}
    for kind, variant in (("saliency", "gradient_shap"), ("example", "dknn")):
        for a, b in PAIRS:
            v = f[(f["variant"] == variant) & (f["metric"] == pair_metric(kind, "pearson", a, b))]["value"]
            assert len(v) == 2 and v.between(-1, 1).all()


def test_vae_records(run) -> None:
    _, _, frame = run
    f = part(frame, VAE)
    for dataset, d in (("digits", 3), ("dsprites-gen", 6)):
        g = f[f["dataset"] == dataset]
        gs = {"beta-vae beta=1", "beta-vae beta=10", "tc-vae beta=1", "tc-vae beta=10"}
        assert set(g["variant"]) == gs | {f"{v} (integrated_gradients)" for v in gs}
        assert set(g["metric"]) == {"pearson", "pearson_per_example", "spearman", "cosine", "entropy",
                                    "active_units", "informative_units"}
        assert len(g) == 8 * 2 * 7
        # the same VAE whatever the attribution method: its informative units agree
        units = g[g["metric"] == "informative_units"].set_index(["variant", "seed"])["value"]
        for v in gs:
            for seed in (0, 1):
                assert units[(v, seed)] == units[(f"{v} (integrated_gradients)", seed)]
        val = g.set_index("metric")["value"]
        assert val[["pearson", "spearman", "pearson_per_example"]].between(-1, 1).all()
        assert val["cosine"].between(0, 1 + 1e-9).all()             # maps are |.|: non-negative
        assert val["entropy"].between(0, math.log(d) + 1e-9).all()
        assert val["active_units"].between(1, d).all()
        units = val["informative_units"]
        assert units.between(0, d).all() and (units == units.round()).all()


def test_models_are_shared_between_experiments(run) -> None:
    _, out, _ = run
    folders = [p.name for p in (out / "models").iterdir() if p.is_dir()]
    # one denoising autoencoder per run, used by the feature, example and pretext (den) experiments
    assert len([n for n in folders if n.startswith("labelfree-digits-mnist-ae-ae-noise-")]) == 2
    assert len([n for n in folders if n.startswith("labelfree-ecg-gen-lstm-ae-")]) == 2
    assert len([n for n in folders if "burgess-vae" in n]) == 2 * 2 * 2 * 2       # IG maps reuse the VAEs
    # the pretext study's reconstruction autoencoder is ROAR's: one per run
    assert len([n for n in folders if n.startswith("labelfree-digits-mnist-ae-ae-identity-")]) == 2


def test_rerun_loads_every_cell_from_the_cache(run, registered) -> None:
    from xairepro.runner.run import reproduce

    summary, out, frame = run
    again = reproduce(registered, preset="quick", out_dir=out, overrides=TINY, show_progress=False)
    assert again.computed == 0 and again.cached == summary.total
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), frame)


def test_same_seed_same_numbers_from_scratch(run, registered, tmp_path) -> None:
    """One feature-consistency cell recomputed in a fresh folder (model retrained) gives the same records."""
    from xairepro.runner.run import reproduce

    _, _, frame = run
    # without blur: the black-pixel (and road) cell's key is the same as in the full grid (merged on config_hash)
    overrides = [o for o in TINY if o.startswith(FEATURE)] + [f"{FEATURE}.datasets=[mnist]", f"{FEATURE}.seeds=[1]",
                                                              f"{FEATURE}.mnist.replacements=[zeros,road]"]
    again = reproduce([FEATURE], preset="quick", out_dir=tmp_path / "again", overrides=overrides,
                      show_progress=False)
    assert again.computed == 1 and again.failed == 0
    new = pd.read_csv(tmp_path / "again" / "results.csv")
    old = frame[(frame["experiment"] == FEATURE) & (frame["dataset"] == "digits") & (frame["seed"] == 1)
                & ~frame["variant"].str.endswith(" (blur)")]
    key = ["variant", "metric"]
    merged = old.merge(new, on=key + ["config_hash"], suffixes=("_old", "_new"))
    assert len(merged) == len(old) == len(new) == 4 * 6 + 4 * 5      # + ROAD removal below 100%
    assert (merged["value_old"] - merged["value_new"]).abs().max() <= 1e-6 * max(1.0, merged["value_old"].abs().max())


def test_roar_records(run) -> None:
    _, _, frame = run
    f = part(frame, ROAR)
    assert set(f["dataset"]) == {"digits"} and set(f["seed"]) == {0, 1}
    assert set(f["variant"]) == {"gradient_shap", "integrated_gradients", "random"}
    assert set(f["metric"]) == {frac_metric(ROAR_PREFIX, p) for p in (0.0, 0.5, 1.0)}
    assert len(f) == 3 * 3 * 2 and (f["value"] > 0).all()
    # nothing removed and everything removed: one retraining each, shared by the methods
    for p in (0.0, 1.0):
        for seed in (0, 1):
            v = f[(f["metric"] == frac_metric(ROAR_PREFIX, p)) & (f["seed"] == seed)]["value"]
            assert v.nunique() == 1, v


def _cell_file(out, frame, experiment, dataset, variant, name):
    key = frame[(frame["experiment"] == experiment) & (frame["dataset"] == dataset) & (frame["variant"] == variant)
                & (frame["seed"] == 0)]["config_hash"].iloc[0]
    return torch.load(out / "cells" / experiment / key / name, weights_only=True)


def test_cells_keep_what_the_qualitative_figures_draw(run) -> None:
    """The examples a cell keeps are the ones it measured: fully masked black images at 100%, one unit map per
    latent unit, the top example of each task drawn from the training set."""
    _, out, frame = run
    masked = _cell_file(out, frame, FEATURE, "digits", "gradient_shap", MASKED_EXAMPLES)
    assert masked["primary"] == "zeros" and masked["fractions"][-1] == 1.0    # road: no masked images kept
    assert set(masked["masked"]) == {"integrated_gradients", "gradient_shap", "saliency", "random"}
    assert masked["images"].shape == (4, 1, 28, 28) and masked["images"].dtype == torch.uint8
    for shown in masked["masked"].values():
        assert shown.shape == (6, 4, 1, 28, 28) and (shown[-1] == 0).all()
        removed = (shown[0] != masked["images"]).float().mean()      # 5%: at most 5% of the pixels changed
        assert removed <= 0.05 + 1e-9
    blur = _cell_file(out, frame, FEATURE, "digits", "gradient_shap (blur)", MASKED_EXAMPLES)
    assert set(blur["masked"]) == {f"{m} (blur)" for m in masked["masked"]}
    for dataset, d, size in (("digits", 3, 32), ("dsprites-gen", 6, 64)):
        for variant in ("beta-vae beta=10", "beta-vae beta=10 (integrated_gradients)"):
            kept = _cell_file(out, frame, VAE, dataset, variant, UNIT_MAPS)
            assert kept["maps"].shape == (4, d, size, size) and (kept["maps"] >= 0).all()
    pretext = _cell_file(out, frame, PRETEXT, "digits", "dknn", PRETEXT_EXAMPLES)
    labels = pretext["labels"].tolist()           # one test image per class, in class order
    assert pretext["tasks"] == ["rec", "den", "inp", "clas"] and labels == sorted(set(labels)) and len(labels) == 4
    assert set(pretext["maps"]) == {"gradient_shap", "integrated_gradients"}
    assert pretext["maps"]["gradient_shap"].shape == (4, 4, 28, 28)
    assert pretext["top"].shape == (4, 4, 1, 28, 28)


@pytest.mark.browser
def test_report_shows_every_figure_in_headless_chromium(run) -> None:
    """The report of the study's run: every figure (the added ones too) is in the page and loads."""
    from xairepro.report import check_page, render_report

    _, out, _ = run
    figures = json.loads((out / "figures.json").read_text())
    _, html = render_report(out)
    check = check_page(html)
    assert check.console_errors == []
    assert check.images == check.images_loaded == len(figures) >= 7 + len(NEW_FIGURES)
    page = html.read_text()
    for caption in ("Figure 9", "Figure 14", "Figure 17", "Figures 6 and 13", "Figures 7, 11, 15"):
        assert caption in page, caption
