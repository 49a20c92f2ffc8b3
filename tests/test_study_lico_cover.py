"""LICO study, issue 14: Figure 2's one image per class, the code-vs-paper variant grid (``lico-variants``)
and the protocol-sensitivity verdict, on synthetic results and through the runner on a tiny set."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from xairepro.experiments import Results, register_experiment, unregister_experiment
from xairepro.experiments.lico_study import (
    LicoAccuracyExperiment, LicoInsDelExperiment, LicoVariantsExperiment, StudySet, register_study_set,
    unregister_study_set,
)
from xairepro.experiments.lico_study.evaluation import EXAMPLES_FILE, example_indices
from xairepro.experiments.lico_study.robustness import protocol_sensitivity, protocol_sensitivity_claim
from xairepro.experiments.lico_study.sets import VARIANTS
from xairepro.experiments.lico_study.variants import CODE_VARIANTS, code_choice_claim
from xairepro.experiments.registry import BUILTIN_EXPERIMENTS
from xairepro.experiments.verdict_rules import one_sample
from xairepro.lico.config import LicoConfig
from xairepro.runner import reproduce


def frame(rows: dict[tuple[str, str, str], list[float]]) -> Results:
    """Results from {(dataset, variant, metric): values over seeds 0, 1, ...}."""
    out = [{"experiment": "x", "dataset": d, "variant": v, "seed": s, "metric": m, "value": float(x),
            "config_hash": f"h{s}"} for (d, v, m), values in rows.items() for s, x in enumerate(values)]
    return Results(pd.DataFrame(out))


# ---------------------------------------------------------------------------------------- Figure 2
def test_example_indices_are_the_first_image_of_each_class_in_class_order() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 3])
    assert example_indices(labels, 10) == [1, 3, 0, 5]
    assert example_indices(labels, 2) == [1, 3]
    assert example_indices(labels, 0) == []
    assert example_indices(torch.tensor([], dtype=torch.long), 4) == []


# ---------------------------------------------------------------------------------------- variants
def test_code_variants_switch_exactly_one_option_of_the_papers_lico() -> None:
    paper = VARIANTS["lico"][1]
    defaults = LicoConfig()
    for variant in CODE_VARIANTS:
        method, options = VARIANTS[variant]
        changed = {k: v for k, v in options.items() if paper.get(k) != v}
        assert method == "lico" and len(changed) == 1, variant
        (key, value), = changed.items()
        assert getattr(defaults, key) != value, f"{variant} switches {key} to the default"


def _variant_rows(shift_acc: float, shift_overall: float, noise: float = 0.1) -> Results:
    rows = {}
    base = [70.0, 70.0 + noise, 70.0 - noise]
    for variant, acc_shift, ov_shift in (("baseline", -1.0, 0.0), ("lico", 0.0, 0.0),
                                         ("lico-ot-nograd", shift_acc, shift_overall)):
        rows[("k", variant, "accuracy")] = [v + acc_shift for v in base]
        rows[("k", variant, "gradcam.overall")] = [20.0 + ov_shift + d for d in (0.0, noise, -noise)]
    return frame(rows)


def test_code_choice_claim_holds_within_margins_fails_beyond_and_waits_on_noise() -> None:
    claim = code_choice_claim("lico-ot-nograd", ["k"], ["gradcam"], {"k": 4}, 0.15)
    assert claim.id == "code-ot-nograd-no-effect"
    assert claim.check(_variant_rows(0.0, 0.0)).status == "holds"
    assert claim.check(_variant_rows(0.0, 6.0)).status == "fails"          # Overall moved 6 > 2 points
    assert claim.check(_variant_rows(-5.0, 0.0)).status == "fails"         # accuracy moved 5 > 1 point
    noisy = claim.check(_variant_rows(0.0, 0.0, noise=5.0))
    assert (noisy.status, noisy.cause) == ("inconclusive", "within-noise")
    chance = code_choice_claim("lico-ot-nograd", ["k"], ["gradcam"], {"k": 4}, 0.9).check(_variant_rows(0.0, 0.0))
    assert (chance.status, chance.cause) == ("inconclusive", "not-learned")  # 69 % on 4 classes: skill 0.59 < 0.9


# ---------------------------------------------------------------------------------------- protocols
def _est(values: list[float]):
    return one_sample(values, 0.0)


def test_protocol_sensitivity_flip_keep_and_noise() -> None:
    up, down, flat = _est([3.0, 3.1, 2.9]), _est([-3.0, -3.1, -2.9]), _est([0.5, -0.4, 0.1])
    flip = protocol_sensitivity({"a": (up, down), "b": (up, up)}, ("lico-fact", "petsiuk"))
    assert flip.status == "fails" and "protocol-sensitive" in flip.reason and flip.numbers["flip"] == 1
    keep = protocol_sensitivity({"a": (up, up), "b": (down, down)}, ("lico-fact", "petsiuk"))
    assert keep.status == "holds" and keep.numbers["keep their sign"] == 2
    partial = protocol_sensitivity({"a": (up, up), "b": (up, flat)}, ("lico-fact", "petsiuk"))
    assert (partial.status, partial.cause) == ("inconclusive", "within-noise")
    none = protocol_sensitivity({"a": (_est([1.0]), up)}, ("lico-fact", "petsiuk"))
    assert (none.status, none.cause) == ("inconclusive", "within-noise")


def test_protocol_flip_p_is_the_intersection_union_of_one_sided_t_tests() -> None:
    """A weak flip: significant one way under lico-fact, barely the other way under petsiuk; the claim
    fails exactly when 2 x max(p_up(first), p_down(second)) is at most 0.05 (one comparison: Holm = plain)."""
    first, second = [2.0, 2.4, 1.6], [-0.9, -1.5, -1.1]
    p1 = scipy_stats.ttest_1samp(first, 0.0, alternative="greater").pvalue
    p2 = scipy_stats.ttest_1samp(second, 0.0, alternative="less").pvalue
    verdict = protocol_sensitivity({"a": (_est(first), _est(second))}, ("lico-fact", "petsiuk"))
    expected = "fails" if 2 * max(p1, p2) <= 0.05 else "inconclusive"
    assert verdict.status == expected
    assert 2 * max(p1, p2) <= 0.05   # the data are chosen so that it flips
    weaker = [-0.5, -1.5, -0.9]   # significant alone (p < 0.05) but not after the x 2 for the orientation
    p3 = scipy_stats.ttest_1samp(weaker, 0.0, alternative="less").pvalue
    assert max(p1, p3) <= 0.05 < 2 * max(p1, p3)
    assert protocol_sensitivity({"a": (_est(first), _est(weaker))}, ("lico-fact", "petsiuk")).status != "fails"


def test_protocol_sensitivity_claim_reads_both_protocols_records() -> None:
    rows = {("k", "baseline", "accuracy"): [90, 91, 92], ("k", "lico", "accuracy"): [90, 91, 92]}
    for variant, lf, pe in (("baseline", 10.0, 30.0), ("lico", 20.0, 20.0)):
        rows[("k", variant, "gradcam.overall")] = [lf, lf + 0.2, lf - 0.2]
        rows[("k", variant, "petsiuk.gradcam.overall")] = [pe, pe + 0.3, pe - 0.1]
    claim = protocol_sensitivity_claim(["k"], ["gradcam"], ["lico-fact", "petsiuk"], {"k": 4}, 0.15)
    verdict = claim.check(frame(rows))
    assert verdict.status == "fails" and "k Grad-CAM" in verdict.reason  # + under lico-fact, - under petsiuk
    for variant in ("baseline", "lico"):   # same sign under both now
        rows[("k", variant, "petsiuk.gradcam.overall")] = [v + (5 if variant == "lico" else 0)
                                                         for v in rows[("k", variant, "gradcam.overall")]]
    assert claim.check(frame(rows)).status == "holds"
    with pytest.raises(ValueError):
        protocol_sensitivity_claim(["k"], ["gradcam"], ["lico-fact"])


def test_insdel_has_the_protocol_claim_only_with_two_protocols() -> None:
    exp = LicoInsDelExperiment()
    ids = {c.id for c in exp.claims(exp.make_config("quick"))}
    assert "claim-1-protocol-sensitivity" in ids
    one = exp.make_config("quick", overrides=["saliency.protocols=[lico-fact]"])
    assert "claim-1-protocol-sensitivity" not in {c.id for c in exp.claims(one)}


# ---------------------------------------------------------------------------------------- through the runner
TINY = StudySet("tiny-k3", "shapes-seg", "cifar10", 3, "wrn-10-1", 1,
                {"num_classes": 3, "size": 16, "n": 60, "test_size": 0.4}, description="test set")
EXPERIMENTS = (LicoAccuracyExperiment, LicoInsDelExperiment, LicoVariantsExperiment)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """lico-variants (all six variants) and lico-insdel on a tiny set, two seeds, through the runner."""
    register_study_set(TINY, replace=True)
    for cls in EXPERIMENTS:
        register_experiment(cls, replace=True)
    overrides = ["datasets=[tiny-k3]", "training.epochs=1", "training.batch_size=16", "seeds=[0,1]",
                 "saliency.n_images=12", "saliency.rise_masks=8", "saliency.methods=[gradcam]",
                 "lico-insdel.variants=[baseline,lico]", "lico-insdel.saliency.faithfulness=[]",
                 "lico-variants.variants=[baseline,lico,lico-prompt-official,lico-mm-official,lico-ot-nograd,"
                 "lico-tau-clamped]"]
    out = tmp_path_factory.mktemp("lico-cover") / "run"
    summary = reproduce(["lico-variants", "lico-insdel"], preset="quick", out_dir=out, overrides=overrides,
                        show_progress=False)
    yield summary, out
    for cls in EXPERIMENTS:
        if cls.name not in BUILTIN_EXPERIMENTS:
            unregister_experiment(cls.name)
    unregister_study_set(TINY.key)


def _claims(out: Path) -> dict[str, dict]:
    def entries(obj):
        if isinstance(obj, dict):
            if "id" in obj and "status" in obj:
                return [obj]
            obj = list(obj.values())
        return [e for item in obj for e in entries(item)] if isinstance(obj, list) else []

    return {e["id"]: e for e in entries(json.loads((out / "claims.json").read_text()))}


def test_variant_grid_and_figure_2_through_the_runner(run) -> None:
    summary, out = run
    assert summary.failed == 0, [f.error for f in summary.failures]
    assert summary.total == 16                             # variants 6 x 2 seeds, insdel 2 x 2
    results = pd.read_csv(out / "results.csv")
    for variant in CODE_VARIANTS:
        rows = results[results["variant"] == variant]
        assert set(rows["seed"]) == {0, 1}
        for metric in ("accuracy", "gradcam.overall", "petsiuk.gradcam.overall", "final_tau", "final_ot_loss"):
            assert rows[rows["metric"] == metric]["value"].notna().sum() == 2, (variant, metric)
    models = [p for p in (out / "models").iterdir() if (p / "model.pt").is_file()]
    assert len(models) == 12                               # each variant its own model; insdel shares two
    run_json = json.loads(next(p for p in models if "prompt-official" in p.name).joinpath("run.json").read_text())
    assert "official" in json.dumps(run_json)
    claims = _claims(out)
    for variant in CODE_VARIANTS:
        cid = f"code-{variant.removeprefix('lico-')}-no-effect"
        assert claims[cid]["status"] in ("holds", "fails", "inconclusive"), cid
        assert "LICO (paper)" in claims[cid]["reason"]
    assert "Grad-CAM" in claims["claim-1-protocol-sensitivity"]["reason"]
    # Figure 2: the kept examples are one image per class, the same images for every variant
    kept = [torch.load(p, weights_only=True) for p in (out / "cells" / "lico-variants").glob(f"*/{EXAMPLES_FILE}")]
    assert len(kept) == 12
    for ex in kept:
        assert ex["labels"].tolist() == sorted(set(ex["labels"].tolist())) and len(ex["labels"]) == 3
        assert torch.equal(ex["images"], kept[0]["images"])
        assert ex["maps"]["gradcam"].shape[0] == 3


@pytest.mark.browser
def test_report_shows_figure_2_and_the_variant_grid_in_headless_chromium(run) -> None:
    from xairepro.report import check_page, render_report

    _, out = run
    figures = json.loads((out / "figures.json").read_text())
    paths = {f["path"] for f in figures}
    for name in ("accuracy.png", "overall.png", "saliency-examples-tiny-k3.png"):
        assert any(p.endswith(f"lico-variants/{name}") for p in paths), name
    assert any(p.endswith("lico-insdel/saliency-examples-tiny-k3.png") for p in paths)
    _, html = render_report(out)
    check = check_page(html)
    assert check.console_errors == []
    assert check.images == check.images_loaded == len(figures)
    page = html.read_text()
    for text in ("Figure 2", "Section 5.2", "Code vs paper: the code&#39;s prompts", "Protocol sensitivity of the study"):
        assert text in page, text
