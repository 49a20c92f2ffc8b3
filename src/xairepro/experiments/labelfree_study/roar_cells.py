"""The computation of one ROAR cell: explain one run's autoencoder, retrain it without its top features."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from xairepro.config import resolve_config
from xairepro.experiments.base import Cell, Context, Record
from xairepro.experiments.labelfree_study.common import frac_metric
from xairepro.experiments.labelfree_study.feature_cells import attributions
from xairepro.experiments.labelfree_study.pretext_cells import task_seed
from xairepro.experiments.labelfree_study.sets import ROAR_PREFIX, RoarSet
from xairepro.experiments.labelfree_study.trained_models import load_tensors, pick_indices, run_config, trained_model
from xairepro.experiments.trained_models import with_context_data
from xairepro.metrics import roar
from xairepro.train import EarlyStoppingConfig
from xairepro.training import build_run
from xairepro.utils import derive_seed

__all__ = ["roar_records", "roar_seed"]


def roar_seed(seed: int) -> int:
    """The training seed of run ``seed``'s autoencoder: the pretext study's reconstruction task's, so the two
    experiments share one model where their setups agree (the quick preset)."""
    return task_seed(seed, "rec")


def roar_records(cell: Cell, ctx: Context) -> list[Record]:
    """Train-or-fetch the run's autoencoder, attribute its training examples, retrain without the top
    features (engine folders under the cell's folder: a killed cell resumes), record the test losses."""
    p = cell.params
    rs = resolve_config(RoarSet, values=dict(p["roar_set"]))
    seed = roar_seed(cell.seed)
    encoder = trained_model(ctx, rs.model, seed).model.encoder
    run = run_config(rs.model, seed, device=ctx.device)
    # the explained model's own initial weights (the engine's seeded build) and its objective
    built = build_run(with_context_data(ctx, run))
    x_train, y_train = load_tensors(rs.model, "train", ctx)
    x_train = x_train[pick_indices(y_train, rs.n_train, cell.seed, balanced=False, key="roar-train").to(x_train.device)]
    x_test, y_test = load_tensors(rs.model, "test", ctx)
    x_test = x_test[pick_indices(y_test, rs.n_test, cell.seed, balanced=False, key="roar-test").to(x_test.device)]
    attrs = {m: attributions(encoder, x_train, m, None, seed=cell.seed, ig_steps=p["ig_steps"],
                             gs_samples=p["gradient_shap_samples"], batch_size=p["batch_size"])
             for m in p["methods"]}
    # a fixed number of epochs per retraining (no held-out data is modified alike), no checkpoints
    retrain = dataclasses.replace(run.train, epochs=rs.retrain_epochs or rs.model.epochs, checkpoint_every=0,
                                  early_stopping=EarlyStoppingConfig(monitor=None))
    model = built.model.to(ctx.device)
    result = roar(model, built.objective, x_train, x_test, attrs, [float(f) for f in p["fractions"]],
                  train_config=retrain, initial_state=model.state_dict(), replacement="zeros",
                  out_dir=Path(ctx.cache_dir) / "roar", seed=derive_seed(cell.seed, "roar-random"))
    return [cell.record(frac_metric(ROAR_PREFIX, f), float(loss), variant=method)
            for method, losses in result.test_loss.items() for f, loss in zip(result.fractions, losses)]
