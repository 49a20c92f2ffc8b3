"""LICO study: a tiny configuration of every experiment end to end through the runner (models shared through
the cache, claims, references, figures), and the paper preset resolving to the study's settings (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from xairepro.errors import ConfigError
from xairepro.experiments import register_experiment, unregister_experiment
from xairepro.experiments.lico_study import (
    LicoAccuracyExperiment, LicoInsDelExperiment, LicoIouExperiment, LicoTemperatureExperiment, StudySet,
    register_study_set, unregister_study_set,
)
from xairepro.experiments.lico_study.trained_models import run_config
from xairepro.experiments.lico_study.sets import get_study_set
from xairepro.experiments.registry import BUILTIN_EXPERIMENTS
from xairepro.runner import reproduce

EXPERIMENTS = (LicoAccuracyExperiment, LicoInsDelExperiment, LicoIouExperiment, LicoTemperatureExperiment)
NAMES = ("lico-accuracy", "lico-insdel", "lico-iou", "lico-tau")
TINY = StudySet("tiny-k3", "shapes-seg", "cifar10", 3, "wrn-10-1", 1,
                {"num_classes": 3, "size": 16, "n": 60, "test_size": 0.4}, description="test set")


@pytest.fixture
def lico_registered():
    """The four experiments registered (replacing the built-ins' instances) and a tiny study set."""
    register_study_set(TINY, replace=True)
    for cls in EXPERIMENTS:
        register_experiment(cls, replace=True)
    yield
    for name in NAMES:
        if name not in BUILTIN_EXPERIMENTS:
            unregister_experiment(name)
    unregister_study_set(TINY.key)


def test_tiny_study_end_to_end_through_the_runner(lico_registered, tmp_path: Path) -> None:
    overrides = [
        "datasets=[tiny-k3]", "variants=[baseline,lico]", "training.epochs=1", "training.batch_size=16", "seeds=[0,1]",
        "lico-tau.variants=[baseline,lico,lico-tau-fixed]",
        "lico-insdel.saliency.n_images=4", "lico-insdel.saliency.rise_masks=8",
        "lico-tau.saliency.n_images=4", "lico-tau.saliency.rise_masks=8", "lico-tau.saliency.methods=[gradcam]",
        "lico-iou.n_images=8", "lico-iou.batch=4",
        "lico-variants.saliency.n_images=4", "lico-variants.saliency.rise_masks=8",
        "lico-variants.saliency.methods=[gradcam]",
    ]
    out = tmp_path / "run"
    summary = reproduce(["lico"], preset="quick", out_dir=out, overrides=overrides, show_progress=False)
    assert summary.failed == 0, [f.error for f in summary.failures]
    # cells: accuracy 2 variants x 2 seeds, insdel 4, iou 4, tau 3 x 2, variants 2 x 2
    assert (summary.total, summary.computed) == (22, 22)
    # every model trained once: baseline, lico, lico-tau-fixed x 2 seeds, shared by all four tables
    models = [p for p in (out / "models").iterdir() if p.is_dir() and (p / "model.pt").is_file()]
    assert len(models) == 6
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["experiment"]) == {*NAMES, "lico-variants"}
    acc = frame[frame["metric"] == "accuracy"].set_index(["experiment", "variant", "seed"])["value"]
    for variant in ("baseline", "lico"):
        for seed in (0, 1):  # every table reads the very same trained model (full-test-split accuracy)
            for other in ("lico-tau", "lico-insdel", "lico-iou"):
                assert acc[("lico-accuracy", variant, seed)] == acc[(other, variant, seed)], other
    assert acc.between(0, 100).all()
    ins = frame[frame["experiment"] == "lico-insdel"]
    for method in ("gradcam", "gradcampp", "rise"):
        for score in ("insertion", "deletion", "overall"):
            assert len(ins[ins["metric"] == f"{method}.{score}"]) == 4
            assert len(ins[ins["metric"] == f"petsiuk.{method}.{score}"]) == 4  # the second protocol
        row = ins[ins["metric"].str.startswith(f"{method}.")].pivot_table(
            index=["variant", "seed"], columns="metric", values="value")
        assert ((row[f"{method}.insertion"] - row[f"{method}.deletion"] - row[f"{method}.overall"]).abs()
                < 1e-6).all()
        # the same maps re-scored by the retrain-free metrics (issue 15), one record per cell each
        for score in ("road_morf", "road_lerf", "pixel_flipping", "faithfulness_correlation"):
            values = ins[ins["metric"] == f"{method}.{score}"]["value"]
            assert len(values) == 4 and values.notna().all(), score
        assert ins[ins["metric"] == f"{method}.road_morf"]["value"].between(0, 1).all()
    iou = frame[frame["experiment"] == "lico-iou"]
    iou = iou[iou["metric"].str.startswith("soft_iou")]
    assert len(iou) == 8 and iou["value"].between(0, 1).all()
    tau = frame[frame["experiment"] == "lico-tau"]
    assert set(tau[tau["metric"] == "final_tau"]["variant"]) == {"lico", "lico-tau-fixed"}
    fixed = tau[(tau["metric"] == "final_tau") & (tau["variant"] == "lico-tau-fixed")]["value"]
    assert (fixed == 1.0).all()  # a fixed temperature stays at 1
    # claims: every claim of every experiment decided with a status and the numbers
    claims = {c["id"]: c for c in _claim_entries(json.loads((out / "claims.json").read_text()))}
    assert set(claims) == {"claim-1-interpretability", "claim-2-accuracy", "claim-3-more-classes", "limited-data",
                           "finding-mm-beats-ot", "finding-both-not-above-mm", "finding-baseline-iou-above-lico",
                           "finding-tau-no-difference", "claim-1-interpretability-metric-robustness",
                           "claim-1-protocol-sensitivity"}
    for claim in claims.values():
        assert claim["status"] in ("holds", "fails", "partly", "inconclusive")
        assert "could not run" not in claim["reason"], claim["reason"]
    # one data set: "more classes" and "limited data" have nothing to compare; the others name their numbers
    assert (claims["claim-3-more-classes"]["status"], claims["claim-3-more-classes"]["cause"]) == ("inconclusive",
                                                                                               "not-run")
    assert (claims["limited-data"]["status"], claims["limited-data"]["cause"]) == ("inconclusive", "not-run")
    assert claims["claim-2-accuracy"]["study"] == "fails" and claims["claim-2-accuracy"]["kind"] == "test"
    assert "tiny-k3 diff" in claims["claim-2-accuracy"]["numbers"]
    assert "tiny-k3 Grad-CAM diff" in claims["claim-1-interpretability"]["numbers"]
    robust = claims["claim-1-interpretability-metric-robustness"]
    assert robust["numbers"]["metrics"] == 5 and robust["numbers"]["comparisons"] == 3
    assert "insertion-deletion:" in robust["reason"] and "ROAD MoRF:" in robust["reason"]
    for cid in ("claim-1-interpretability", "claim-2-accuracy", "finding-baseline-iou-above-lico"):
        assert claims[cid]["numbers"]["tiny-k3 chance"] == pytest.approx(100 / 3)   # accuracy vs chance shown
        assert "tiny-k3 lico accuracy" in claims[cid]["numbers"]
    # references of the stand-in, with the quick-preset note, in the summary
    summary_csv = pd.read_csv(out / "summary.csv")
    ref = summary_csv[(summary_csv["experiment"] == "lico-accuracy") & (summary_csv["variant"] == "baseline")
                      & (summary_csv["metric"] == "accuracy")].iloc[0]
    assert ref["reference"] == 93.9
    figures = json.loads((out / "figures.json").read_text())
    assert [f["error"] for f in figures if f["error"]] == []
    paths = [Path(f["path"]) for f in figures]
    assert all((out / p).is_file() for p in paths)
    assert any(p.name == "overall.png" for p in paths) and any(p.name == "iou.png" for p in paths)
    assert any(p.name.startswith("saliency-examples") for p in paths)
    # a second run recomputes nothing
    again = reproduce(["lico"], preset="quick", out_dir=out, overrides=overrides, show_progress=False)
    assert (again.computed, again.cached) == (0, 22)


def _claim_entries(obj):
    """The claim entries (dicts with an ``id`` and a ``status``) wherever they sit in claims.json."""
    if isinstance(obj, dict):
        if "id" in obj and "status" in obj:
            return [obj]
        obj = list(obj.values())
    return [e for item in obj for e in _claim_entries(item)] if isinstance(obj, list) else []


# ---------------------------------------------------------------------------------------- paper preset
def _resolved(exp, cell):
    training, lico = exp.settings(cell)
    return run_config(get_study_set(cell.dataset), cell.variant, cell.seed, training, lico, device="cuda")


def test_paper_preset_resolves_to_the_study_settings() -> None:
    grids = {}
    for cls in EXPERIMENTS:
        exp = cls()
        cfg = exp.make_config("paper")
        cells = exp.cells(cfg)
        grids[exp.name] = cells
        assert {c.seed for c in cells} == {0, 1, 2}                       # three runs
        assert all(c.num_gpus == 1.0 for c in cells)
        for cell in cells:
            run = _resolved(exp, cell)
            t = run.train
            assert (t.optimizer.name, t.optimizer.lr, t.optimizer.momentum, t.optimizer.weight_decay) == (
                "sgd", 0.03, 0.9, 1e-4)                                   # Table 7
            assert t.batch_size == 64 and (t.schedule.name, t.schedule.per) == ("lico-cosine", "step")
            assert t.epochs == (90 if cell.dataset in ("imagenette", "partimagenet") else 200)
            assert t.accelerator == "cuda" and t.seed == cell.seed
            model = {"cifar10": "wrn-28-2", "cifar100": "wrn-28-8", "cifar100-2500": "wrn-28-8",
                     "imagenette": "wrn-28-8", "partimagenet": "resnet18"}[cell.dataset]
            assert run.model.name == model
            assert run.data.name == {"cifar100-2500": "cifar100"}.get(cell.dataset, cell.dataset)
            if cell.dataset == "cifar100-2500":
                assert run.data.options["subset"] == 2500
            if cell.variant == "baseline":
                assert run.method == "ce"
            else:
                opts = run.method_options
                assert run.method == "lico" and opts["text_encoder"] == "clip"
                assert opts["losses"] == {"mm": "mm", "ot": "ot", "lico": "mm+ot",
                                          "lico-tau-fixed": "mm+ot"}[cell.variant]
                assert opts.get("temperature", "learnable") == (
                    "fixed" if cell.variant == "lico-tau-fixed" else "learnable")
    sizes = {name: len(cells) for name, cells in grids.items()}
    assert sizes == {"lico-accuracy": 4 * 4 * 3, "lico-insdel": 3 * 4 * 3, "lico-iou": 2 * 3, "lico-tau": 3 * 3}
    assert {c.dataset for c in grids["lico-accuracy"]} == {"imagenette", "cifar10", "cifar100", "cifar100-2500"}
    assert {c.dataset for c in grids["lico-iou"]} == {"partimagenet"}
    assert {c.dataset for c in grids["lico-tau"]} == {"cifar10"}
    # Tables 1 and 4 and Table 6 score the very models the accuracy table trains (same model cache key)
    acc = {(c.dataset, c.variant, c.seed): c.params["run"] for c in grids["lico-accuracy"]}
    for cell in grids["lico-insdel"] + grids["lico-tau"]:
        if (cell.dataset, cell.variant, cell.seed) in acc:
            assert cell.params["run"] == acc[(cell.dataset, cell.variant, cell.seed)]
    ins = LicoInsDelExperiment().make_config("paper").saliency
    assert ins.protocols[0] == "lico-fact" and ins.methods == ["gradcam", "gradcampp", "rise"]
    assert (ins.rise_masks, ins.rise_cell_size, ins.rise_p1, ins.n_images) == (4000, 8, 0.1, 1000)


def test_quick_preset_uses_stand_ins_and_small_settings() -> None:
    for cls in EXPERIMENTS:
        exp = cls()
        cfg = exp.make_config("quick")
        assert cfg.seeds == [0, 1, 2] and cfg.gpus == 0 and cfg.lico["text_encoder"] == "minilm"
        assert exp.describe(cfg)["deviations"][-1].startswith("quick preset")
        for spec in cfg.sets():
            assert spec.stand_in and spec.data == "shapes-seg"
        for ref in exp.references(cfg):
            assert "quick preset" in ref.note
    # the limited-data stand-in is a training subset of the "more classes" stand-in, tested on its full test
    # split (as CIFAR-100 (2,500) is CIFAR-100 with subset=2500)
    limited, full = get_study_set("shapes-k8-limited"), get_study_set("shapes-k8")
    assert limited.limited_of == full.key and limited.eval_options() == dict(full.options)
    assert 0 < limited.options["subset"] < 1
    # the loss ablation (MM only, OT only) trains on shapes-k4 only in the quick preset
    acc = LicoAccuracyExperiment()
    grid = {(c.dataset, c.variant) for c in acc.cells(acc.make_config("quick"))}
    assert {v for d, v in grid if d == "shapes-k4"} == {"baseline", "mm", "ot", "lico"}
    assert {v for d, v in grid if d != "shapes-k4"} == {"baseline", "lico"}
    assert len(acc.cells(acc.make_config("quick", ["ablation_sets=null"]))) == 3 * 4 * 3
    with pytest.raises(ConfigError, match="nope"):
        acc.make_config("quick", ["ablation_sets=[nope]"])
    paper = LicoIouExperiment().describe(LicoIouExperiment().make_config("paper"))["deviations"]
    assert paper and paper[0].startswith("PartImageNet")
    described = LicoInsDelExperiment().describe(LicoInsDelExperiment().make_config("quick"))
    assert list(described["protocols"]) == ["lico-fact", "petsiuk"] and "lico-fact" in described["protocol_note"]
    assert not math.isnan(described["protocols"]["lico-fact"]["pixels_per_step"])
