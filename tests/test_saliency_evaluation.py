"""``evaluate_saliency`` against the explainers and metrics called one by one; protocol presets adjusted with
``dataclasses.replace``; the metric-direction table and the claims that read it."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.experiments import Results, list_experiments
from xairepro.experiments.lico_study.stats import advantage, difference, gain_advantage, gain_difference
from xairepro.explain import RISE, GradCAM
from xairepro.metrics import (
    HIGHER_IS_BETTER, PROTOCOL_PRESETS, InsertionDeletionProtocol, higher_is_better, insertion_deletion, soft_iou,
)
from xairepro.saliency import evaluate_saliency


def _model() -> nn.Module:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    return net.eval()


LAYER = "3"  # the last conv stage's activation


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(9, 3, 12, 12, generator=gen)
    labels = torch.randint(0, 4, (9,), generator=gen)
    masks = torch.rand(9, 12, 12, generator=gen) > 0.6
    return x, labels, masks


def test_matches_the_explainers_and_metrics_called_directly(batch) -> None:
    x, labels, masks = batch
    model = _model()
    lico, petsiuk = InsertionDeletionProtocol.lico_fact(), InsertionDeletionProtocol.petsiuk()
    ev = evaluate_saliency(model, x, labels, ["grad-cam", "rise"], {"lf": lico, "p": petsiuk}, masks=masks,
                           batch_size=4, seed=5, target_layer=LAYER, options={"rise": {"n_masks": 30}})
    pred = model(x).argmax(1)
    assert torch.equal(ev.predictions, pred) and (pred != labels).any() and (pred == labels).any()
    for name, explain in (("gradcam", GradCAM(model, LAYER)), ("rise", RISE(model, n_masks=30, batch_size=4, seed=5))):
        by_label = explain(x, target=labels)
        torch.testing.assert_close(ev.maps[name]["label"], by_label)
        # the prediction's maps: the label's where it is right, the misclassified images explained again
        wrong = pred != labels
        torch.testing.assert_close(ev.maps[name]["predicted"][~wrong], by_label[~wrong])
        torch.testing.assert_close(ev.maps[name]["predicted"][wrong], explain(x[wrong], target=pred[wrong]))
        for key, proto, target in (("lf", lico, "label"), ("p", petsiuk, "predicted")):
            direct = insertion_deletion(model, x, ev.maps[name][target], proto, labels=labels, batch_size=4)
            got = ev.scores[name][key]
            torch.testing.assert_close(got.insertion, direct.insertion)
            torch.testing.assert_close(got.deletion, direct.deletion)
            assert got.protocol == proto
            torch.testing.assert_close(ev.iou[name][target], soft_iou(ev.maps[name][target], masks),
                                       equal_nan=True)
    rows = pd.DataFrame(ev.rows())
    assert len(rows) == 9 * 2 * 2 and set(rows["protocol"]) == {"lf", "p"}
    lf = rows[(rows["method"] == "gradcam") & (rows["protocol"] == "lf")]
    assert (lf["target"] == lf["label"]).all()
    p = rows[(rows["method"] == "gradcam") & (rows["protocol"] == "p")]
    assert p["target"].tolist() == pred.tolist()
    assert ((rows["insertion"] - rows["deletion"] - rows["overall"]).abs() < 1e-6).all()
    assert set(ev.explainers) == {"gradcam", "rise"} and "n_masks=30" in ev.explainers["rise"]


def test_batch_size_does_not_change_the_scores(batch) -> None:
    x, labels, _ = batch
    model = _model()
    runs = [evaluate_saliency(model, x, labels, ["gradcampp", "groupcam"], ["petsiuk"], batch_size=bs,
                                  target_layer=LAYER)
            for bs in (2, 64)]
    for method in ("gradcampp", "groupcam"):
        torch.testing.assert_close(runs[0].maps[method]["predicted"], runs[1].maps[method]["predicted"],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(runs[0].scores[method]["petsiuk"].insertion,
                                   runs[1].scores[method]["petsiuk"].insertion, atol=1e-5, rtol=0)


def test_maps_and_iou_only_explain_the_prediction(batch) -> None:
    x, _, masks = batch
    model = _model()
    ev = evaluate_saliency(model, x, None, ["gradcam"], {}, masks=masks, target_layer=LAYER)
    assert list(ev.maps["gradcam"]) == ["predicted"] and ev.scores["gradcam"] == {}
    torch.testing.assert_close(ev.maps["gradcam"]["predicted"], GradCAM(model, LAYER)(x))


def test_bad_input_is_one_usage_error(batch) -> None:
    x, labels, masks = batch
    model = _model()
    with pytest.raises(UsageError, match="needs the labels"):
        evaluate_saliency(model, x, None, ["gradcam"], ["lico-fact"], target_layer=LAYER)
    with pytest.raises(UsageError, match="unknown saliency method"):
        evaluate_saliency(model, x, labels, ["magic"], ["petsiuk"], target_layer=LAYER)
    with pytest.raises(UsageError, match="unknown insertion/deletion protocol"):
        evaluate_saliency(model, x, labels, ["gradcam"], ["nope"], target_layer=LAYER)
    with pytest.raises(UsageError, match="masks have shape"):
        evaluate_saliency(model, x, labels, ["gradcam"], ["petsiuk"], masks=masks[:3], target_layer=LAYER)
    with pytest.raises(UsageError, match="given twice"):
        evaluate_saliency(model, x, labels, ["gradcam"], ["petsiuk", InsertionDeletionProtocol.petsiuk()], target_layer=LAYER)


# ------------------------------------------------------------------------------------------------ presets
def test_presets_adjust_with_dataclasses_replace() -> None:
    p = dataclasses.replace(InsertionDeletionProtocol.petsiuk(), pixels_per_step=16)
    assert (p.pixels_per_step, p.n_steps, p.name) == (16, None, "petsiuk")
    assert p == InsertionDeletionProtocol(pixels_per_step=16, blur_kernel=11, name="petsiuk")
    assert p.step_pixels(32 * 32) == 16
    q = dataclasses.replace(InsertionDeletionProtocol.lico_fact(), n_steps=20)
    assert (q.pixels_per_step, q.n_steps) == (None, 20) and q.step_pixels(400) == 20
    r = dataclasses.replace(p, n_steps=7)        # a replaced copy adjusts again
    assert (r.pixels_per_step, r.n_steps) == (None, 7)
    same = dataclasses.replace(InsertionDeletionProtocol.petsiuk(), blur_kernel=5)
    assert (same.pixels_per_step, same.n_steps, same.blur_kernel) == (None, 28, 5)
    with pytest.raises(UsageError, match="exactly one"):
        InsertionDeletionProtocol(pixels_per_step=3, n_steps=4)
    with pytest.raises(UsageError, match="exactly one"):
        dataclasses.replace(InsertionDeletionProtocol.petsiuk(), pixels_per_step=3, n_steps=4)


def test_preset_list_is_the_one_preset_reads() -> None:
    assert list(PROTOCOL_PRESETS) == ["petsiuk", "lico-fact"]
    for name, make in PROTOCOL_PRESETS.items():
        proto = InsertionDeletionProtocol.preset(name)
        assert proto == make() and proto.name == name
        fields = {f.name for f in dataclasses.fields(proto) if not f.name.startswith("_")}
        assert set(proto.to_dict()) == fields   # the private step record is not in the digest


# ---------------------------------------------------------------------------------------------- direction
def test_direction_of_record_names() -> None:
    assert higher_is_better("petsiuk.rise.deletion") is False and higher_is_better("gradcam.overall") is True
    assert higher_is_better("soft_iou_batch") is True and higher_is_better("similarity_least@5%") is False
    assert higher_is_better("final_tau") is None


def test_every_experiment_takes_its_arrows_from_the_table() -> None:
    checked = 0
    for exp in list_experiments():
        for metric, spec in exp.metrics.items():
            direction = higher_is_better(metric)
            if direction is not None:
                assert spec.higher_is_better is direction, (exp.name, metric)
                checked += 1
    assert checked > 50


def _frame(values: dict[tuple[str, str, str], list[float]]) -> Results:
    rows = [{"experiment": "e", "dataset": d, "variant": v, "seed": s, "metric": m, "value": x, "config_hash": ""}
            for (d, v, m), xs in values.items() for s, x in enumerate(xs)]
    return Results(pd.DataFrame(rows))


def test_claims_orient_differences_by_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    r = _frame({("p", "a", "deletion"): [0.2, 0.3], ("p", "b", "deletion"): [0.5, 0.6],
                ("q", "a", "deletion"): [0.4, 0.4], ("q", "b", "deletion"): [0.5, 0.5]})
    raw = difference(r, "deletion", "p", "a", "b")
    better = advantage(r, "deletion", "p", "a", "b")
    assert better.diff == pytest.approx(0.3) and raw.diff == pytest.approx(-0.3) and better.se == raw.se
    assert gain_advantage(r, "deletion", "p", "q", "a", "b").diff == pytest.approx(
        -gain_difference(r, "deletion", "p", "q", "a", "b").diff)
    monkeypatch.setitem(HIGHER_IS_BETTER, "deletion", True)   # the table decides, nothing else
    assert advantage(r, "deletion", "p", "a", "b").diff == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="no direction"):
        advantage(r, "nameless", "p", "a", "b")
    assert math.isnan(advantage(r, "accuracy", "p", "a", "b").diff)


def test_retrain_free_metrics_on_the_same_maps(batch) -> None:
    # issue 15: the faithfulness metrics score every map with the class it explains, and join the rows
    from xairepro.metrics import FaithfulnessSuite, retrain_free_scores

    x, labels, _ = batch
    model = _model()
    suite = FaithfulnessSuite(road_percentages=(30.0, 70.0), pixel_flipping_steps=4, faithfulness_subsets=5, seed=1)
    ev = evaluate_saliency(model, x, labels, ["gradcam"], ["lico-fact", "petsiuk"], target_layer=LAYER,
                           metrics=["road", "confidence-change"], suite=suite, batch_size=4)
    for target, classes in (("label", labels), ("predicted", ev.predictions)):
        direct = retrain_free_scores(model, x, ev.maps["gradcam"][target], classes, ["road", "confidence-change"],
                                     suite)
        assert set(ev.faithfulness["gradcam"][target]) == set(direct)
        for name, values in direct.items():
            torch.testing.assert_close(ev.faithfulness["gradcam"][target][name], values)
    rows = pd.DataFrame(ev.rows())
    lf = rows[rows["protocol"] == "lico-fact"].sort_values("image")
    torch.testing.assert_close(torch.tensor(lf["road_morf"].to_numpy(), dtype=torch.float32),
                               ev.faithfulness["gradcam"]["label"]["road_morf"])
    # without a protocol: one row per image and target kind explained, the classes of that kind
    plain = evaluate_saliency(model, x, labels, ["gradcam"], [], target_layer=LAYER, metrics=["confidence-change"],
                              explain=["label"])
    rows = pd.DataFrame(plain.rows())
    assert len(rows) == 9 and rows["protocol"].isna().all() and (rows["target"] == rows["label"]).all()
    assert "insertion" not in rows.columns and "average_drop" in rows.columns
    with pytest.raises(UsageError, match="choose from road"):
        evaluate_saliency(model, x, labels, ["gradcam"], [], target_layer=LAYER, metrics=["roar"])
    with pytest.raises(UsageError, match="explain must name"):
        evaluate_saliency(model, x, labels, ["gradcam"], [], target_layer=LAYER, explain=["both"])
