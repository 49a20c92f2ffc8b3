"""The experiment interface, and the small test experiments every runner/report test uses.

``ToyExperiment`` cells are cheap arithmetic on seeded torch noise (plus an optional sleep), so the
expected value of every record is known in closed form here (``expected_value``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from xairepro.errors import ConfigError, UsageError
from xairepro.experiments import (
    Cell,
    Claim,
    Context,
    Experiment,
    Figure,
    MetricSpec,
    Record,
    Reference,
    Results,
    TableSpec,
    Verdict,
    get_experiment,
    list_experiments,
    register_experiment,
    select_experiments,
    unregister_experiment,
)
from xairepro.utils import derive_seed, make_generator


@dataclass
class ToyConfig:
    """Grid of the toy experiment; ``offset_<dataset>`` only enters that data set's cells."""

    datasets: list[str] = field(default_factory=lambda: ["a", "b"])
    variants: list[str] = field(default_factory=lambda: ["plus", "times"])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    offset_a: float = 0.0
    offset_b: float = 0.0
    delay: float = 0.0
    cpus: int = 1           # resources of every cell (not part of the cache key)
    gpus: float = 0.0
    slow_cell: str = ""     # "dataset/variant/seed" of one cell that sleeps slow_delay more (reorders Ray)
    slow_delay: float = 0.0

    def validate(self) -> None:
        if self.delay < 0:
            raise UsageError("toy: delay must be >= 0")


def expected_value(dataset: str, variant: str, seed: int, offset: float) -> float:
    """Closed form of the toy cell's ``score``: mean of 100 seeded N(0,1) draws, then the variant's op."""
    g = make_generator(derive_seed(seed, dataset, variant))
    base = float(torch.randn(100, generator=g, dtype=torch.float64).mean())
    return base + offset if variant == "plus" else base * 2.0 + offset


def _plus_beats_times(results: Results) -> Verdict:
    plus, times = results.mean("score", variant="plus"), results.mean("score", variant="times")
    return Verdict.decide(plus > times, f"plus {plus:.3f} vs times {times:.3f}", plus=plus, times=times)


class ToyExperiment(Experiment):
    name = "toy"
    title = "Toy arithmetic"
    study = "toystudy"
    reproduces = "Toy Table 1"
    config_class = ToyConfig
    presets = {"quick": {"seeds": [0, 1]}, "paper": {"seeds": [0, 1, 2]}}
    metrics = {"score": MetricSpec("Score", higher_is_better=True), "count": MetricSpec("Count")}
    tables = (TableSpec("Table 1", ("score",), "Toy Table 1"), TableSpec("Counts", ("count",)))

    def __init__(self) -> None:
        self.failing: set[str] = set()

    def cells(self, cfg: ToyConfig) -> list[Cell]:
        def delay(d: str, v: str, s: int) -> float:
            return cfg.delay + (cfg.slow_delay if cfg.slow_cell == f"{d}/{v}/{s}" else 0.0)

        return [self.cell(d, v, s, {"offset": getattr(cfg, f"offset_{d}", 0.0), "delay": delay(d, v, s)},
                          num_cpus=cfg.cpus, num_gpus=cfg.gpus)
                for d in cfg.datasets for v in cfg.variants for s in cfg.seeds]

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        with open(ctx.cache_dir / "calls.txt", "a") as fh:  # counts how often the cell was computed
            fh.write("x\n")
        time.sleep(cell.params["delay"])
        if cell.variant in self.failing:  # a bug in the code, not in the config: same cache key
            raise RuntimeError(f"boom in {cell.variant}")
        value = expected_value(cell.dataset, cell.variant, cell.seed, cell.params["offset"])
        return [cell.record("score", value), cell.record("count", 1.0)]

    def references(self, cfg: ToyConfig) -> list[Reference]:
        return [Reference("a", "plus", "score", 0.5, 0.1, "Toy Table 1"),
                Reference("z", "plus", "score", 2.0, None, "Toy Table 1", "not in the quick grid")]

    def claims(self, cfg: ToyConfig) -> list[Claim]:
        return [Claim("plus-beats-times", "Plus scores higher than times", _plus_beats_times, "Toy §1")]

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 2), dpi=60)
        means = results.frame[results.frame["metric"] == "score"].groupby("variant")["value"].mean()
        ax.bar(list(means.index), list(means.values))
        path = out_dir / "scores.png"
        fig.savefig(path, format="png")
        plt.close(fig)
        return [Figure(path, "Mean score per variant")]


@pytest.fixture
def toy() -> ToyExperiment:
    exp = register_experiment(ToyExperiment, replace=True)
    yield exp
    unregister_experiment("toy")


# ------------------------------------------------------------------------------------------ interface


def test_presets_and_overrides_resolve_through_the_config_schema(toy: ToyExperiment) -> None:
    assert toy.make_config("quick").seeds == [0, 1]
    assert toy.make_config("paper").seeds == [0, 1, 2]
    cfg = toy.make_config("quick", ["offset_a=2.5", "seeds=[4]"])
    assert (cfg.offset_a, cfg.seeds) == (2.5, [4])
    with pytest.raises(ConfigError, match="nope"):
        toy.make_config("quick", ["nope=1"])
    with pytest.raises(ConfigError, match="offset_a"):
        toy.make_config("quick", ["offset_a=abc"])
    with pytest.raises(UsageError, match="no preset 'huge'"):
        toy.make_config("huge")
    with pytest.raises(UsageError, match="delay"):
        toy.make_config("quick", ["delay=-1"])


def test_cell_key_changes_with_exactly_what_the_cell_depends_on(toy: ToyExperiment) -> None:
    base = {c.label: c.key for c in toy.cells(toy.make_config("quick"))}
    changed = {c.label: c.key for c in toy.cells(toy.make_config("quick", ["offset_b=1"]))}
    differ = sorted(label for label in base if base[label] != changed[label])
    assert differ == sorted(label for label in base if label.startswith("toy/b/"))
    assert len(set(base.values())) == len(base) == 8
    # the key is stable: same config in a new object, same key
    assert toy.cells(toy.make_config("quick"))[0].key == toy.cells(toy.make_config("quick"))[0].key
    bumped = Cell("toy", "a", "plus", 0, {"offset": 0.0}, version="2")
    assert bumped.key != Cell("toy", "a", "plus", 0, {"offset": 0.0}, version="1").key


def test_cell_record_fills_identity_and_hash() -> None:
    cell = Cell("toy", "a", "plus", 3, {"x": 1})
    rec = cell.record("score", 1.5, variant="plus/gradcam")
    assert rec == Record("toy", "a", "plus/gradcam", 3, "score", 1.5, cell.key)


def test_verdict_decide_and_status_check() -> None:
    assert Verdict.decide(True, "r", a=1.0).status == "holds"
    assert Verdict.decide(False, "r", a=1.0).status == "fails"
    missing = Verdict.decide(True, "r", a=float("nan"))
    assert (missing.status, missing.cause, missing.label) == ("inconclusive", "not-run", "inconclusive (not-run)")
    with pytest.raises(ValueError, match="holds, fails, partly, inconclusive"):
        Verdict("maybe", "r")
    with pytest.raises(ValueError, match="needs a cause"):
        Verdict("inconclusive", "r")               # why it is inconclusive must be said
    with pytest.raises(ValueError, match="only an inconclusive verdict has a cause"):
        Verdict("holds", "r", cause="within-noise")
    assert Verdict.inconclusive("not-learned", "r").label == "inconclusive (not-learned)"


def test_agreement_of_ours_with_the_study() -> None:
    from xairepro.experiments.base import Claim, agreement

    assert agreement("fails", "fails") == "agrees"
    assert agreement("partly", "holds") == "disagrees"
    assert agreement("inconclusive", "holds") == "undecided"
    assert agreement("holds", "") == ""
    with pytest.raises(ValueError, match="holds, fails or partly"):
        Claim("c", "t", lambda r: Verdict("holds", ""), study="maybe")


def test_results_accessors() -> None:
    import pandas as pd

    frame = pd.DataFrame({"experiment": "toy", "dataset": ["a", "a", "b"], "variant": "v", "seed": [1, 0, 0],
                          "metric": "m", "value": [3.0, 1.0, 10.0], "config_hash": "h"})
    res = Results(frame)
    assert list(res.values("m", dataset="a")) == [1.0, 3.0]  # seed order
    assert res.mean("m", dataset="a") == 2.0
    assert res.std("m", dataset="a") == pytest.approx(2 ** 0.5)
    assert res.std("m", dataset="b") != res.std("m", dataset="b")  # NaN with one seed
    assert res.mean("other") != res.mean("other")


def test_registry_select_by_experiment_or_study_name(toy: ToyExperiment) -> None:
    assert get_experiment("toy") is toy
    assert toy in list_experiments()
    assert select_experiments(["toystudy"], "quick") == [toy]
    assert select_experiments(["toy", "toystudy"], "paper") == [toy]
    assert toy in select_experiments([], "paper")
    with pytest.raises(UsageError, match="unknown experiment or study 'nope'.*toy"):
        select_experiments(["nope"], "quick")
    with pytest.raises(UsageError, match="no preset 'huge'"):
        select_experiments(["toy"], "huge")
    with pytest.raises(ValueError, match="already registered"):
        register_experiment(ToyExperiment)


def test_register_rejects_malformed_experiments() -> None:
    class NoPresets(ToyExperiment):
        name = "nopresets"
        presets = {}

    class BadName(ToyExperiment):
        name = "bad name"

    with pytest.raises(ValueError, match="no preset"):
        register_experiment(NoPresets)
    with pytest.raises(ValueError, match="must start with a letter"):
        register_experiment(BadName)
    assert "nopresets" not in [e.name for e in list_experiments()]


def test_smoke_experiment_is_registered_with_a_quick_preset() -> None:
    smoke = get_experiment("smoke")
    assert "quick" in smoke.presets
    cells = smoke.cells(smoke.make_config("quick"))
    assert [c.dataset for c in cells] == ["digits"]
