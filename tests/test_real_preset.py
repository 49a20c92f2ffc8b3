"""The ``real`` preset (issue 17) end to end through the runner on a tiny fake data folder, and the ``paper``
preset on a folder that holds only some of its sets.

Fake files in the loaders' real layouts (idx for mnist-10k and Fashion-MNIST, UCR tsv for ECG5000), a few
hundred random examples each; the presets' settings cut to one epoch and a handful of explained examples by
``--set``, so what is tested is that every cell of the preset resolves, loads its real set and runs, that
mnist-10k is flagged as a 10,000-image subset wherever it is shown, that the preset's deviations reach the
provenance, and that a missing set is named, its cells not run, the others run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_data_files import write_idx, write_mnist
from test_data_series import series, write_tsv

from xairepro.data.files import clear_cache
from xairepro.experiments.labelfree_study.real_preset import DEVIATIONS as LABELFREE_DEVIATIONS
from xairepro.experiments.lico_study.real_preset import DEVIATIONS as LICO_DEVIATIONS
from xairepro.runner.data_check import cell_data_sets, missing_data
from xairepro.runner.run import reproduce

pytestmark = pytest.mark.usefixtures("one_thread_module")

FEATURE, EXAMPLE, PRETEXT = "labelfree-feature-consistency", "labelfree-example-consistency", "labelfree-pretext"
ACCURACY, INSDEL, TAU = "lico-accuracy", "lico-insdel", "lico-tau"
FLAG = "10,000-image subset"


def write_mnist_10k(root: Path, n: int = 240, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    folder = root / "mnist-10k"
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "mnist-10k-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz=True)
    write_idx(folder / "mnist-10k-labels-idx1-ubyte", np.arange(n) % 10, gz=True)


def write_ecg(root: Path, n_train: int = 40, n_test: int = 60) -> None:
    folder = root / "ECG5000"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("TRAIN", n_train, 1), ("TEST", n_test, 2)):
        x, y = series(n, seed=seed)
        write_tsv(folder / f"ECG5000_{name}.tsv", x, y)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _tiny_model(prefix: str, ecg: bool = False) -> list[str]:
    out = [f"{prefix}.epochs=1", f"{prefix}.checkpoint_every=1"]
    return out + ([f"{prefix}.model_kwargs.embedding_dim=4"] if ecg else [])


#: The real preset cut to one epoch and a few examples; the data, models, methods and sets stay the preset's.
TINY = (
    [f"{PRETEXT}.seeds=[0]", f"{PRETEXT}.ig_steps=2"]
    + [o for key in ("mnist", "fashion_mnist") for o in
       [f"{PRETEXT}.{key}.autoencoder.epochs=1", f"{PRETEXT}.{key}.classifier.epochs=1", f"{PRETEXT}.{key}.n_test=10",
        f"{PRETEXT}.{key}.n_train=20"]]
    + [f"{FEATURE}.seeds=[0]", f"{FEATURE}.ig_steps=2"]
    + [o for key in ("mnist", "ecg5000", "fashion_mnist") for o in
       _tiny_model(f"{FEATURE}.{key}.model", key == "ecg5000") + [f"{FEATURE}.{key}.n_test=8"]]
    + [f"{EXAMPLE}.seeds=[0]", f"{EXAMPLE}.lissa.depth=2", f"{EXAMPLE}.lissa.hessian_batch_size=8",
       f"{EXAMPLE}.simplex_steps=10"]
    + [o for key in ("mnist", "ecg5000", "fashion_mnist") for o in
       _tiny_model(f"{EXAMPLE}.{key}.model", key == "ecg5000") + [f"{EXAMPLE}.{key}.n_train=20",
                                                                   f"{EXAMPLE}.{key}.n_test=10"]]
    + [o for e in (ACCURACY, INSDEL, TAU) for o in (f"{e}.seeds=[0]", f"{e}.training.epochs=1")]
    + [o for e in (INSDEL, TAU) for o in (f"{e}.saliency.n_images=3", f"{e}.saliency.rise_masks=8",
                                          f"{e}.saliency.n_examples=2")]
)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("realdata")
    data = root / "data"
    write_mnist_10k(data)
    write_mnist(data / "FashionMNIST" / "raw", 300, 60, seed=5, gz=True)
    write_ecg(data)
    out = root / "run"
    summary = reproduce([PRETEXT, FEATURE, EXAMPLE, ACCURACY, INSDEL, TAU], preset="real", out_dir=out,
                        data_dir=data, overrides=TINY, show_progress=False, workers=1)
    from xairepro.report.render import render_report

    render_report(out)
    return summary, out, pd.read_csv(out / "results.csv")


def test_every_cell_of_the_real_preset_runs_on_its_real_sets(real_run) -> None:
    summary, out, frame = real_run
    assert not summary.failures, [f.error for f in summary.failures]
    assert summary.computed == summary.total > 0
    sets = {e: set(frame[frame["experiment"] == e]["dataset"]) for e in (PRETEXT, FEATURE, EXAMPLE, ACCURACY)}
    assert sets[PRETEXT] == {"mnist-10k", "fashion-mnist"}
    assert sets[FEATURE] == sets[EXAMPLE] == {"mnist-10k", "ecg5000", "fashion-mnist"}
    assert sets[ACCURACY] == {"fashion-mnist"}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["run"]["missing_data"] == {}
    for name in (PRETEXT, FEATURE, EXAMPLE):
        assert prov["experiments"][name]["datasets"]["mnist-10k"]["bundled"] is False


def test_mnist_10k_is_flagged_as_a_subset_in_every_table_and_claim(real_run) -> None:
    _, out, _ = real_run
    report = (out / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| mnist-10k")]
    assert rows and all(FLAG in line for line in rows)
    summary = pd.read_csv(out / "summary.csv")
    noted = summary[(summary["dataset"] == "mnist-10k") & summary["note"].notna()]
    assert len(noted) and all(FLAG in n for n in noted["note"])
    claims = json.loads((out / "claims.json").read_text())
    mnist_claims = [c for e in (PRETEXT, FEATURE, EXAMPLE) for c in claims[e] if "-mnist" in c["id"]]
    assert mnist_claims and all(FLAG in c["text"] for c in mnist_claims)


def test_the_presets_deviations_reach_the_provenance_and_report(real_run) -> None:
    _, out, _ = real_run
    prov = json.loads((out / "provenance.json").read_text())
    for name in (PRETEXT, FEATURE, EXAMPLE):
        shown = prov["experiments"][name]["details"]["deviations"]
        assert all(line in shown for line in LABELFREE_DEVIATIONS[name])
    for name in (ACCURACY, INSDEL, TAU):
        assert all(line in prov["experiments"][name]["details"]["deviations"] for line in LICO_DEVIATIONS)
    report = (out / "report.md").read_text()
    assert LABELFREE_DEVIATIONS[EXAMPLE][2] in report


def test_lico_extension_is_labelled_and_scored_under_both_protocols(real_run) -> None:
    _, out, frame = real_run
    ins = frame[frame["experiment"] == INSDEL]
    assert set(ins["variant"]) == {"baseline", "mm", "ot", "lico"}
    metrics = set(ins["metric"])
    from xairepro.experiments.lico_study.evaluation import STUDY_PROTOCOLS, insdel_metric

    for protocol in STUDY_PROTOCOLS:                 # both protocols, every method
        for method in ("gradcam", "gradcampp", "rise"):
            assert insdel_metric(method, "overall", protocol, STUDY_PROTOCOLS[0]) in metrics, (protocol, method)
    tau = frame[frame["experiment"] == TAU]
    assert set(tau["variant"]) == {"baseline", "lico", "lico-tau-fixed"}
    report = (out / "report.md").read_text()
    assert "extension, not a seed table" in report


# ------------------------------------------------------------------ the paper preset on a partial folder

PAPER_TINY = ([f"{FEATURE}.use_gpu=false", f"{FEATURE}.seeds=[0]", f"{FEATURE}.ig_steps=2",
               f"{FEATURE}.ecg5000.n_test=8", f"{FEATURE}.ecg5000.replacements=[mean]"]
              + _tiny_model(f"{FEATURE}.ecg5000.model", ecg=True))


def test_paper_preset_runs_the_sets_present_and_names_the_missing(tmp_path) -> None:
    data = tmp_path / "data"
    write_ecg(data)
    out = tmp_path / "run"
    summary = reproduce([FEATURE], preset="paper", out_dir=out, data_dir=data, overrides=PAPER_TINY,
                        show_progress=False, workers=1)
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["dataset"]) == {"ecg5000"}
    assert not summary.failures                      # the missing sets' cells are not run, not failed
    prov = json.loads((out / "provenance.json").read_text())
    missing = prov["run"]["missing_data"]
    assert set(missing) == {"mnist", "cifar10"}
    assert missing["mnist"] == "xairepro data fetch mnist"
    n_missing = sum(1 for c in prov["cells"] if c["dataset"] != "ecg5000")
    assert prov["run"]["cells"]["missing_data"] == n_missing > 0
    assert all(c["status"] == "not run" for c in prov["cells"] if c["dataset"] != "ecg5000")
    from xairepro.report.render import render_report

    render_report(out)
    report = (out / "report.md").read_text()
    assert "Not run, data missing" in report and "xairepro data fetch cifar10" in report


def test_with_download_nothing_is_skipped_as_missing(tmp_path) -> None:
    from xairepro.runner.run import _missing_data

    data = tmp_path / "data"
    write_ecg(data)
    from xairepro.experiments import get_experiment

    exp = get_experiment(FEATURE)
    cells = {FEATURE: exp.cells(exp.make_config("paper", ["use_gpu=false"]))}
    assert _missing_data(cells, data, True, None) == ({}, set())
    absent, lacking = _missing_data(cells, data, False, None)
    assert set(absent) == {"mnist", "cifar10"}
    assert lacking == {c.key for c in cells[FEATURE] if c.dataset != "ecg5000"}


def test_cell_data_sets_reads_model_setups_and_run_configs() -> None:
    from xairepro.experiments import get_experiment

    lico = get_experiment(ACCURACY)
    cell = next(c for c in lico.cells(lico.make_config("paper")) if c.dataset == "cifar100-2500")
    assert "cifar100" in cell_data_sets(cell)          # a study set's key names its data set in the run config
    pre = get_experiment(PRETEXT)
    cell = pre.cells(pre.make_config("real"))[0]
    assert cell_data_sets(cell)[:1] == ["mnist-10k"]
    assert missing_data([cell], Path("/nonexistent-folder-xairepro")) == {"mnist-10k": "xairepro data fetch mnist-10k"}


# ------------------------------------------------------------------ LICO extension: the stand-ins' claim code

def _accuracy_frame(lico: list[float], baseline: list[float], mm: list[float], ot: list[float]) -> pd.DataFrame:
    rows = [("lico-accuracy", "fashion-mnist", variant, seed, "accuracy", value, "k")
            for variant, values in (("lico", lico), ("baseline", baseline), ("mm", mm), ("ot", ot))
            for seed, value in enumerate(values)]
    return pd.DataFrame(rows, columns=["experiment", "dataset", "variant", "seed", "metric", "value", "config_hash"])


def test_lico_extension_claims_are_the_stand_ins_claim_functions() -> None:
    from xairepro.experiments import Results, get_experiment
    from xairepro.experiments.lico_study.accuracy import accuracy_claims
    from xairepro.experiments.lico_study.insdel import interpretability_claim
    from xairepro.experiments.lico_study.real_preset import FASHION_SET
    from xairepro.experiments.lico_study.temperature import tau_claim

    exp = get_experiment(ACCURACY)
    cfg = exp.make_config("real")
    ours = exp.claims(cfg)
    shared = accuracy_claims([FASHION_SET], cfg.min_skill, cfg.ablation_keys())
    assert [c.id for c in ours] == [c.id for c in shared]
    # the very same check code (a second rule written for the extension would be other code)
    assert [c.check.__code__ for c in ours] == [c.check.__code__ for c in shared]
    # and the same verdicts: LICO clearly above the baseline holds, a tie does not
    clear = Results(_accuracy_frame([90.0, 91.0, 90.5], [80.0, 81.0, 80.5], [85, 86, 85.5], [82, 83, 82.5]))
    tie = Results(_accuracy_frame([80.0, 81.0, 80.5], [80.5, 80.0, 81.0], [85, 86, 85.5], [82, 83, 82.5]))
    for results in (clear, tie):
        assert [c.check(results).status for c in ours] == [c.check(results).status for c in shared]
    assert ours[0].check(clear).status == "holds" and ours[0].check(tie).status != "holds"
    insdel = get_experiment(INSDEL)
    icfg = insdel.make_config("real")
    assert insdel.claims(icfg)[0].check.__code__ is interpretability_claim(
        list(icfg.datasets), list(icfg.saliency.methods), {"fashion-mnist": 10},
        icfg.min_skill).check.__code__
    tau = get_experiment(TAU)
    tcfg = tau.make_config("real")
    assert tau.claims(tcfg)[0].check.__code__ is tau_claim(
        list(tcfg.datasets), list(tcfg.saliency.methods), {"fashion-mnist": 10},
        tcfg.min_skill).check.__code__


def test_subset_flag_in_set_names_notes_and_report_rows() -> None:
    from xairepro.data.subsets import flag_dataset
    from xairepro.experiments.labelfree_study.common import set_name, stand_in_note
    from xairepro.report.data import _tables

    assert FLAG in set_name("mnist", "mnist-10k") and set_name("mnist", "mnist") == "MNIST"
    assert FLAG in stand_in_note("mnist", "mnist-10k")
    assert stand_in_note("mnist", "digits") == "published on MNIST; this run compares the digits stand-in"
    assert flag_dataset("fashion-mnist") == "fashion-mnist"
    summary = pd.DataFrame([{"experiment": "e", "dataset": d, "variant": "v", "metric": "m", "mean": 1.0, "std": 0.1,
                             "n": 2, "reference": None, "reference_std": None, "difference": None, "source": "",
                             "note": ""} for d in ("mnist-10k", "ecg5000")])
    rows = _tables("e", {"tables": [{"title": "t", "metrics": ["m"]}]}, summary)[0].rows
    assert FLAG in rows[0].dataset and rows[1].dataset == "ecg5000"


def test_preset_deviations_are_appended_to_what_describe_says() -> None:
    from xairepro.runner.provenance import with_preset_deviations

    assert with_preset_deviations({"a": 1}, ()) == {"a": 1}
    assert with_preset_deviations({"a": 1}, ["x", "y"]) == {"a": 1, "deviations": "x; y"}
    assert with_preset_deviations({"deviations": "own"}, ["x"])["deviations"] == "own; x"
