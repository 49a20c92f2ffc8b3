"""What the reliability sweep of issue 19 asked for beyond one-line errors (those are in test_cli_bad_inputs.py):
byte-reproducible checkpoints, one ``reproduce`` per output folder (two real processes), CIFAR pickles that
cannot run code, a CLI that starts without torch, ``list presets`` and the ``wrn-D-K`` family, global
``--set`` keys applied where they exist, the running cell and its progress on the display, and the
explainers' own input checks."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import xairepro
from conftest import train_ck
from test_cli_bad_inputs import snapshot
from test_runner_experiment import ToyExperiment, toy  # noqa: F401 - `toy` is a fixture
from xairepro.cli import main
from xairepro.errors import UsageError
from xairepro.experiments import Experiment, register_experiment, unregister_experiment

SRC = str(Path(xairepro.__file__).parents[1])  # the sources under test, for subprocesses


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, **extra}


# ------------------------------------------------------------------------------ 6: same run, same bytes
def test_two_identical_runs_write_identical_checkpoint_bytes(tmp_path: Path) -> None:
    runs = [tmp_path / "first", tmp_path / "second-folder"]  # names differ: nothing path-derived may enter a file
    for out in runs:
        train_ck(out, "--set", "train.epochs=2", "--set", "train.checkpoint_every=1")
    names = ["model.pt", "last.pt", "checkpoints/epoch_0001.pt", "checkpoints/epoch_0002.pt"]
    for name in names:
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name


def test_atomic_torch_save_gives_the_same_bytes_under_any_file_name(tmp_path: Path) -> None:
    from xairepro.utils import atomic_torch_save

    obj = {"w": torch.arange(6.0).reshape(2, 3), "meta": {"name": "x"}}
    a, b = atomic_torch_save(obj, tmp_path / "a.pt"), atomic_torch_save(obj, tmp_path / "other" / "b.pt")
    assert a.read_bytes() == b.read_bytes()
    assert torch.equal(torch.load(b, weights_only=True)["w"], obj["w"])
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


# ------------------------------------------------------------------- 10: one reproduce per output folder
WAITER = '''
import os, sys, time
from dataclasses import dataclass, field
from pathlib import Path

from xairepro.cli import main
from xairepro.experiments import Experiment, register_experiment


@dataclass
class WaitConfig:
    seeds: list[int] = field(default_factory=lambda: [0])


class Waiter(Experiment):
    name = "waiter"
    title = "One cell that waits for a go file"
    config_class = WaitConfig
    presets = {"quick": {}}

    def cells(self, cfg):
        return [self.cell("d", "v", s) for s in cfg.seeds]

    def run_cell(self, cell, ctx):
        Path(os.environ["STARTED"]).write_text(str(os.getpid()))
        deadline = time.time() + 170   # the test touches GO; long enough for a second start-up on a loaded machine
        while not Path(os.environ["GO"]).exists() and time.time() < deadline:
            time.sleep(0.05)
        return [cell.record("score", 1.0)]


register_experiment(Waiter)
sys.exit(main(sys.argv[1:]))
'''


def test_a_second_reproduce_into_a_busy_folder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    script, out = tmp_path / "waiter.py", tmp_path / "out"
    script.write_text(WAITER)
    started, go = tmp_path / "started", tmp_path / "go"
    env = _env(STARTED=str(started), GO=str(go))
    argv = [sys.executable, str(script), "reproduce", "waiter", "--out", str(out), "--no-progress"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not started.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert started.exists(), first.communicate(timeout=60)
        before = snapshot(out)
        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
        assert second.returncode == 2, second.stderr
        assert f"is in use by another xairepro run (PID {first.pid})" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert snapshot(out) == before  # the refused run wrote nothing, not even a manifest
    finally:
        go.touch()
        stdout, stderr = first.communicate(timeout=180)
    assert first.returncode == 0, stderr
    assert "1 cells: 1 computed, 0 cached, 0 failed" in stdout
    assert json.loads((out / "run.json").read_text())["experiments"] == ["waiter"]
    # the lock went with its process: the next run of the same folder goes ahead (and finds the cell cached)
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0 and "0 computed, 1 cached" in again.stdout, again.stderr


# -------------------------------------------------------------------- 11: CIFAR batches cannot run code
class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if the reader runs what a pickle names."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _batch(n: int = 4) -> dict[bytes, object]:
    data = (np.arange(n * 3072) % 251).astype(np.uint8).reshape(n, 3072)
    return {b"batch_label": b"training batch 1 of 5", b"labels": [i % 10 for i in range(n)], b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_batches_in_their_real_format_still_load(tmp_path: Path, protocol: int) -> None:
    from xairepro.data.readers import read_cifar_batches

    raw = pickle.dumps(_batch(), protocol=protocol)
    if protocol == 2:  # as the official files (Python 2, numpy 1) name numpy's array rebuilder
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "data_batch_1").write_bytes(raw)
    x, y = read_cifar_batches([tmp_path / "data_batch_1"], "labels")
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x.reshape(4, -1), torch.from_numpy(_batch()[b"data"]))
    assert y.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("payload", ["reduce", "object-array"])
def test_a_planted_cifar_file_is_refused_without_running_it(tmp_path: Path, payload: str) -> None:
    from xairepro.data.readers import read_cifar_batches

    marker = tmp_path / "payload-ran"
    batch = _batch()
    if payload == "reduce":
        batch[b"data"] = _Payload(marker)
    else:  # an object array would rebuild arbitrary Python objects from its items
        batch[b"data"] = np.array([_Payload(marker)], dtype=object)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UsageError, match="is not a CIFAR batch: it asks for"):
        read_cifar_batches([tmp_path / "data_batch_1"], "labels")
    assert not marker.exists()


# ------------------------------------------------------------------------- 12: a CLI that starts fast
HEAVY = ("torch", "pandas", "matplotlib", "transformers", "captum", "ray")
COMMANDS = (["--help"], ["list"], ["list", "presets"], ["list", "saliency"], ["list", "--long"], ["train", "--help"],
            ["saliency", "--help"], ["reproduce", "--help"], ["report", "--help"], ["data", "--help"],
            ["data", "fetch", "--help"], ["data", "list", "--help"])


def test_help_and_list_import_no_heavy_library() -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from xairepro.cli import main\n"
        "seen = {}\n"
        f"for argv in {list(map(list, COMMANDS))!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        rc = main(argv)\n"
        f"    seen[' '.join(argv)] = [rc, [m for m in {HEAVY!r} if m in sys.modules]]\n"
        "print(json.dumps(seen))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {" ".join(argv): [0, []] for argv in COMMANDS}


def test_the_list_catalog_matches_the_registries() -> None:
    from xairepro.cli.catalog import load_catalog

    # a fresh process: tests register their own data sets and experiments in this one
    code = "import json; from xairepro.cli.catalog import build_catalog; print(json.dumps(build_catalog()))"
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    live, stored = json.loads(done.stdout), load_catalog()
    for name in live:
        assert live[name] == stored[name], f"{name}: run `python -m xairepro.cli.catalog` to refresh catalog.json"
    assert set(live) == set(stored)


def test_saliency_help_states_rises_own_default(capsys: pytest.CaptureFixture[str]) -> None:
    from xairepro.explain.rise import N_MASKS

    assert main(["saliency", "--help"]) == 0
    assert f"(default: RISE's, {N_MASKS:,})" in " ".join(capsys.readouterr().out.split())


def test_list_presets_and_the_wrn_family(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["list", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {line.split()[0] for line in lines if line.startswith(("quick ", "paper ", "real "))} == {
        "quick", "paper", "real"}
    from xairepro.cli.catalog import load_catalog

    offered = {row[0]: row[2].split(", ") for row in load_catalog()["presets"]["rows"]}
    assert "smoke" in offered["quick"] and "smoke" not in offered["paper"] and "lico-accuracy" in offered["paper"]
    assert "labelfree-pretext" in offered["real"] and "lico-iou" not in offered["real"]
    assert main(["list", "models"]) == 0
    assert "wrn-D-K (e.g. wrn-28-2)" in capsys.readouterr().out
    from xairepro.models import build_model

    assert build_model("wrn-16-1", num_classes=10).config["name"] == "wrn-16-1"  # the README's example builds


@dataclass
class _NoCpusConfig:
    seeds: list[int] = field(default_factory=lambda: [0])


class _NoCpus(Experiment):
    name = "nocpus"
    title = "An experiment whose config has no cpus key"
    config_class = _NoCpusConfig
    presets = {"quick": {}}

    def cells(self, cfg):
        return [self.cell("d", "v", s) for s in cfg.seeds]

    def run_cell(self, cell, ctx):
        return [cell.record("score", 2.0)]


def test_a_global_set_applies_where_the_key_exists(toy: ToyExperiment, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    register_experiment(_NoCpus, replace=True)
    try:
        rc = main(["reproduce", "toy", "nocpus", "--out", str(tmp_path / "o"), "--no-progress",
                   "--set", "cpus=2", "--set", "seeds=[0]"])
    finally:
        unregister_experiment("nocpus")
    assert rc == 0, capsys.readouterr().err
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov["experiments"]["toy"]["config"]["cpus"] == 2
    assert prov["experiments"]["nocpus"]["config"] == {"seeds": [0]}


def test_the_display_names_the_running_cell_and_its_progress() -> None:
    from xairepro.runner.progress import CellProgress
    from xairepro.utils import report_progress, report_task

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    with CellProgress(3, 1, console=console) as bar:
        report_task("lico-accuracy/shapes-k4/lico/seed=0")
        report_progress("training epoch 2/3, batches", 5, 12)
        bar._progress.refresh()
        shown = buffer.getvalue()
    assert "lico-accuracy/shapes-k4/lico/seed=0" in shown and "training epoch 2/3, batches" in shown
    assert "5/12" in shown and "done 0 · cached 1 · failed 0" in shown
    report_task("after the display closed")  # nobody listens any more: no error, nothing shown
    assert "after the display" not in buffer.getvalue()


def test_training_and_cells_report_their_progress(tmp_path: Path) -> None:
    from xairepro.runner.executors import Job, execute_cell
    from xairepro.utils import progress_listener

    class Recorder:
        def __init__(self) -> None:
            self.events: list[tuple] = []

        def task(self, label: str) -> None:
            self.events.append(("task", label))

        def step(self, what: str, done: int, total: int) -> None:
            self.events.append((what, done, total))

    class Trains(ToyExperiment):
        def run_cell(self, cell, ctx):
            train_ck(Path(ctx.cache_dir) / "model", "--set", "train.epochs=2", "--set", "train.batch_size=512")
            return super().run_cell(cell, ctx)

    exp = Trains()
    cell = exp.cells(exp.make_config("quick", ["datasets=[a]", "variants=[plus]", "seeds=[0]"]))[0]
    with progress_listener(Recorder()) as recorder:
        outcome = execute_cell(Job(exp, cell, tmp_path / "cell", None, tmp_path / "models"))
    assert outcome.ok, outcome.traceback
    assert recorder.events[0] == ("task", "toy/a/plus/seed=0")
    steps = [e for e in recorder.events[1:]]
    # 1,366 training digits in batches of 512: three batches per epoch, two epochs
    assert steps == [(f"training epoch {e}/2, batches", b, 3) for e in (1, 2) for b in (1, 2, 3)]


# ----------------------------------------------- 3, 4: saliency explains the checkpoint's own test split
def _saliency(capsys: pytest.CaptureFixture[str], checkpoint: Path, out: Path, *extra: str) -> tuple[list, dict]:
    """Run ``xairepro saliency`` (Grad-CAM, 16 images); return the labels explained and protocol.json."""
    import pandas as pd

    rc = main(["saliency", "--checkpoint", str(checkpoint), "--methods", "gradcam", "--n-images", "16",
               "--out", str(out), "--no-progress", *extra])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    labels = pd.read_csv(out / "per_image.csv").sort_values("image")["label"].tolist()
    return labels, json.loads((out / "protocol.json").read_text())


def _test_labels(seed: int) -> list[int]:
    from xairepro.data import load

    return load("digits", "test", seed=seed).batch(list(range(16)))[1].tolist()


@pytest.mark.usefixtures("one_thread")
def test_saliency_seed_does_not_redraw_the_split(ck_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _test_labels(0) != _test_labels(1)  # the two splits differ: the labels tell which one was explained
    first, record = _saliency(capsys, ck_run / "model.pt", tmp_path / "s0")
    second, record1 = _saliency(capsys, ck_run / "model.pt", tmp_path / "s1", "--seed", "1")
    assert first == second == _test_labels(0)
    assert record["split_seed"] == record1["split_seed"] == 0 and record1["seed"] == 1
    assert record["split_seed_from"] == "checkpoint" and record["data"] == "digits"


@pytest.mark.usefixtures("one_thread")
def test_saliency_takes_the_split_of_the_checkpoints_training(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "seed1"
    train_ck(run, "--set", "data.seed=1")
    labels, record = _saliency(capsys, run / "model.pt", tmp_path / "a")
    assert labels == _test_labels(1) and record["split_seed"] == 1 and record["split_seed_from"] == "checkpoint"
    # a model saved before the seed was recorded: the run.json beside it (same run) gives it
    obj = torch.load(run / "model.pt", weights_only=True)
    del obj["metadata"]["data_seed"]
    torch.save(obj, run / "model.pt")
    labels, record = _saliency(capsys, run / "model.pt", tmp_path / "b")
    assert labels == _test_labels(1) and record["split_seed"] == 1 and record["split_seed_from"] == "run.json"


@pytest.mark.usefixtures("one_thread")
def test_saliency_uses_the_checkpoints_data_options_and_records_an_override(
        ck_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    _, record = _saliency(capsys, ck_run / "model.pt", tmp_path / "own")
    assert record["data_options"] == {} and "overrides" not in record and record["trained_on"] == "digits"
    _, record = _saliency(capsys, ck_run / "model.pt", tmp_path / "other", "--data-option", "size=28",
                          "--override-data")
    assert record["overrides"] == {"size": 28} and record["data_options"] == {"size": 28}
    assert len(pd.read_csv(tmp_path / "other" / "per_image.csv")) == 16


# ------------------------------------------------------------------- 9: the explainers' own input checks
def test_gradcam_on_float64_images_names_the_dtypes() -> None:
    from xairepro.explain import GradCAM
    from xairepro.models import build_model

    model = build_model("small-cnn", num_classes=10, width=4, in_channels=1).eval()
    with pytest.raises(UsageError, match="images are float64 but the model's weights are float32"):
        GradCAM(model)(torch.rand(2, 1, 8, 8, dtype=torch.float64))
    assert GradCAM(model)(torch.rand(2, 1, 8, 8)).shape == (2, 8, 8)


def test_label_free_attribution_rejects_nan_like_every_other_explainer() -> None:
    from xairepro.explain import LabelFreeAttribution

    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3))
    x = torch.rand(2, 6)
    x[1, 2] = float("nan")
    with pytest.raises(UsageError, match="NaN or infinite"):
        LabelFreeAttribution(encoder, "saliency").attribute(x)
