"""The Label-Free XAI study's experiments end to end through the runner, on a tiny configuration.

One ``reproduce`` call runs all four experiments (2 runs each, 1 epoch on 150 examples, a handful of
explained examples), so the trained-model cache is shared as in a real run.  Oracles: the records'
ranges and invariances (at 100% every method perturbs every feature, and Most = Least when every example
is selected), the model cache shared between experiments, claims and figures written.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from xairepro.errors import UsageError
from xairepro.experiments import register_experiment, unregister_experiment
from xairepro.experiments.labelfree_study.common import frac_metric
from xairepro.experiments.labelfree_study.disentangled_vae import DisentangledVaeExperiment
from xairepro.experiments.labelfree_study.example_consistency import LEAST, MOST, ExampleConsistencyExperiment
from xairepro.experiments.labelfree_study.feature_consistency import PREFIX, FeatureConsistencyExperiment
from xairepro.experiments.labelfree_study.pretext import PretextExperiment
from xairepro.experiments.labelfree_study.references import PAIRS, pair_metric
from xairepro.experiments.registry import get_experiment

pytestmark = pytest.mark.usefixtures("one_thread_module")

FEATURE, EXAMPLE = "labelfree-feature-consistency", "labelfree-example-consistency"
PRETEXT, VAE = "labelfree-pretext", "labelfree-vae"
EXPERIMENTS = {FEATURE: FeatureConsistencyExperiment, EXAMPLE: ExampleConsistencyExperiment,
               PRETEXT: PretextExperiment, VAE: DisentangledVaeExperiment}

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
       f"{VAE}.dsprites.n_test=6", f"{VAE}.betas=[1.0,10.0]", f"{VAE}.gradient_shap_samples=2"]
)


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
    assert ids[FEATURE] == {"claim1-mnist", "claim1-ecg5000", "claim1-mnist-road", "claim1-ecg5000-road",
                            "claim1-mnist-metric-robustness", "claim1-ecg5000-metric-robustness"}
    assert ids[EXAMPLE] == {"claim2-mnist", "claim2-ecg5000"}
    assert ids[PRETEXT] == {"claim3-mnist", "claim3-mnist-examples-weaker"}
    assert ids[VAE] == {"claim4-mnist", "claim4-dsprites"}
    for name in EXPERIMENTS:
        for c in claims[name]:
            assert c["status"] in ("holds", "fails", "inconclusive") and c["reason"], c


def test_figures_are_written(run) -> None:
    _, out, _ = run
    figures = json.loads((out / "figures.json").read_text())
    assert not [f for f in figures if f.get("error")], figures
    paths = {f["path"] for f in figures}
    for expected in ("consistency_digits.png", "consistency_ecg-gen.png", "similarity_digits.png",
                     "similarity_ecg-gen.png", "pretext_digits.png", "vae_pearson_digits.png",
                     "vae_pearson_dsprites-gen.png"):
        match = [p for p in paths if p.endswith(expected)]
        assert match, (expected, sorted(paths))
        assert (out / match[0]).is_file()


def test_feature_consistency_records(run) -> None:
    _, _, frame = run
    f = part(frame, FEATURE)
    methods = {"integrated_gradients", "gradient_shap", "saliency", "random"}
    for dataset in ("digits", "ecg-gen"):
        d = f[f["dataset"] == dataset]
        road = d[d["variant"].str.endswith(" (road)")]
        d = d[~d["variant"].str.endswith(" (road)")]
        assert set(d["variant"]) == methods and set(d["seed"]) == {0, 1}
        assert len(d) == 4 * 6 * 2 and (d["value"] >= 0).all()
        # ROAD removal (issue 15): every fraction but 100%, where nothing is left to impute from
        assert set(road["variant"]) == {f"{m} (road)" for m in methods} and len(road) == 4 * 5 * 2
        assert frac_metric(PREFIX, 1.0) not in set(road["metric"]) and (road["value"] >= 0).all()
        # at 100% every method replaces every feature: the same perturbed input, the same shift
        full = d[d["metric"] == frac_metric(PREFIX, 1.0)]
        for seed in (0, 1):
            v = full[full["seed"] == seed]["value"].to_numpy()
            assert v.max() - v.min() <= 1e-5 * max(1.0, v.max()), v


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
        assert set(g["variant"]) == {"beta-vae beta=1", "beta-vae beta=10", "tc-vae beta=1", "tc-vae beta=10"}
        assert set(g["metric"]) == {"pearson", "pearson_per_example", "spearman", "cosine", "entropy",
                                    "active_units", "informative_units"}
        assert len(g) == 4 * 2 * 7
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
    assert len([n for n in folders if "burgess-vae" in n]) == 2 * 2 * 2 * 2


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
    overrides = [o for o in TINY if o.startswith(FEATURE)] + [f"{FEATURE}.datasets=[mnist]", f"{FEATURE}.seeds=[1]"]
    again = reproduce([FEATURE], preset="quick", out_dir=tmp_path / "again", overrides=overrides,
                      show_progress=False)
    assert again.computed == 1 and again.failed == 0
    new = pd.read_csv(tmp_path / "again" / "results.csv")
    old = frame[(frame["experiment"] == FEATURE) & (frame["dataset"] == "digits") & (frame["seed"] == 1)]
    key = ["variant", "metric"]
    merged = old.merge(new, on=key + ["config_hash"], suffixes=("_old", "_new"))
    assert len(merged) == len(old) == len(new) == 4 * 6 + 4 * 5      # + ROAD removal below 100%
    assert (merged["value_old"] - merged["value_new"]).abs().max() <= 1e-6 * max(1.0, merged["value_old"].abs().max())
