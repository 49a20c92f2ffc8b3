"""The ``tda-benchmark`` experiment: its cells on a tiny configuration through the runner."""

from __future__ import annotations

import pandas as pd
import pytest

from xairepro.errors import ConfigError
from xairepro.experiments import get_experiment, select_experiments
from xairepro.runner import reproduce

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "lds_subsets=3", "lissa_depth=2", "arnoldi_iters=4", "arnoldi_rank=3", "simplex_steps=10", "projection_dim=16",
    "autoencoder.n_train=24", "autoencoder.n_test=4", "autoencoder.epochs=1", "autoencoder.batch_size=12",
    "autoencoder.methods=[exact-fisher,ekfac,projected,dknn]",
    "classifier.n_train=40", "classifier.n_test=5", "classifier.epochs=2", "classifier.batch_size=20",
    "classifier.methods=[exact,ekfac,tracin,simplex]",
]


def test_not_in_the_default_run_but_runs_when_named() -> None:
    exp = get_experiment("tda-benchmark")
    assert not exp.run_by_default
    assert exp not in select_experiments([], "quick")
    assert select_experiments(["tda-benchmark"], "quick") == [exp]
    with pytest.raises(ConfigError):
        exp.make_config("quick", ["classifier.methods=[nope]"])


def test_cells_through_the_runner_are_cached(tmp_path) -> None:
    out = tmp_path / "run"
    first = reproduce(["tda-benchmark"], preset="quick", out_dir=out, overrides=TINY, show_progress=False)
    assert first.ok, [f.error for f in first.failures]
    assert first.total == 2 * 3 + 4 + 4 and first.computed == first.total
    frame = pd.read_csv(out / "results.csv")
    value = lambda task, method, metric: frame[(frame.dataset == task) & (frame.variant == method)  # noqa: E731
                                               & (frame.metric == metric)]["value"]
    ae, clf = "autoencoder/digits", "classifier/digits"
    assert value(ae, "exact-fisher", "spearman_exact_fisher").item() == pytest.approx(1.0)
    assert value(clf, "exact", "spearman_exact_hessian").item() == pytest.approx(1.0)
    assert value(ae, "ekfac", "spearman_exact_hessian").empty  # the encoder's Hessian does not fit: not reported
    for task, method in ((ae, "ekfac"), (ae, "projected"), (clf, "ekfac"), (clf, "tracin")):
        for metric in ("wall_time_s", "peak_memory_mb", "spearman_exact_fisher", "lds", "corrupted_auc"):
            assert len(value(task, method, metric)) == 1, (task, method, metric)
        assert 0 <= value(task, method, "corrupted_auc").item() <= 1
    assert len(value(ae, "dknn", "lds_representation")) == 1 and value(ae, "dknn", "corrupted_auc").empty
    assert value(clf, "simplex", "lds_representation").empty  # supervised: the output is the test loss only
    lds = frame[frame.metric.str.startswith("lds")]["value"]
    assert lds.between(-1, 1).all()
    assert len(frame[frame.metric == "subset_test_loss"]) == 6
    # per task: the full model, 3 retrained subset models, the corrupted-data model, the exact reference
    folders = [p.name for p in (out / "models").iterdir() if p.is_dir()]
    for prefix in ("tda-mnist-ae-labelfree", "tda-small-cnn-supervised"):
        assert len([f for f in folders if f.startswith(prefix + "-alpha0.5-of3-subset")]) == 3
        assert len([f for f in folders if f.startswith(prefix + "-corrupt0.1-")]) == 1
    assert len([f for f in folders if f.startswith("tda-reference-")]) == 2
    again = reproduce(["tda-benchmark"], preset="quick", out_dir=out, overrides=TINY, show_progress=False)
    assert again.cached == again.total and again.computed == 0
    assert pd.read_csv(out / "results.csv").equals(frame)


@pytest.mark.slow
@pytest.mark.ray
def test_cells_on_ray_give_the_local_numbers(tmp_path) -> None:
    """Retrained-subset and method cells run as Ray tasks (local Ray, 2 CPUs): the same values as
    in-process for every metric but the measured time and memory."""
    overrides = TINY + ["tasks=[classifier]", "classifier.methods=[exact-fisher,ekfac]"]
    local = reproduce(["tda-benchmark"], preset="quick", out_dir=tmp_path / "local", overrides=overrides,
                      show_progress=False)
    distributed = reproduce(["tda-benchmark"], preset="quick", out_dir=tmp_path / "ray", executor="ray",
                            overrides=overrides, show_progress=False)
    assert local.ok and distributed.ok and distributed.computed == distributed.total == 5
    read = lambda p: pd.read_csv(p / "results.csv").query("metric not in ['wall_time_s', 'peak_memory_mb']")  # noqa: E731
    a, b = read(tmp_path / "local"), read(tmp_path / "ray")
    assert len(a) == len(b) > 0
    assert a.drop(columns="value").equals(b.drop(columns="value"))
    assert (a["value"] - b["value"]).abs().max() < 1e-6
