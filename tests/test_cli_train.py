"""``xairepro train`` and ``xairepro list`` in-process: a real run on digits, and bad usage -> exit 2, one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xairepro.cli import main
from xairepro.train import load_model


pytestmark = pytest.mark.usefixtures("one_thread")


_FAST = ["--set", "train.accelerator=cpu", "--no-progress"]
_RUN = ["--set", "data.name=digits", "--set", "model.name=small-cnn", "--set", "model.kwargs.width=8",
        "--set", "train.epochs=8", "--set", "train.optimizer.lr=0.01", "--set", "train.checkpoint_every=4"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """One real digits classifier run through the CLI (shared by the tests below)."""
    out = tmp_path_factory.mktemp("cli_train")
    capture = pytest.MonkeyPatch()
    import io
    import sys

    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", *_RUN, "--out", str(out), *_FAST])
    finally:
        capture.undo()
        torch.set_num_threads(threads)
    return out, code, buffer.getvalue()


def test_train_on_digits_reaches_90_percent_and_saves_the_model(trained_run):
    out, code, stdout = trained_run
    assert code == 0
    assert "test/accuracy" in stdout and "model saved to" in stdout
    model = load_model(out / "model.pt")
    assert model.metadata["dataset"] == "digits" and model.metadata["method"] == "ce"
    from xairepro.data import load

    test = load("digits", "test")
    assert model.metadata["class_names"] == list(test.class_names) and len(test.class_names) == 10
    x, y = test.tensors()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_0004.pt", "epoch_0008.pt"]


def test_rerun_of_a_finished_run_resumes_without_training(trained_run, capsys):
    out, _, _ = trained_run
    before = (out / "model.pt").read_bytes()
    code = main(["train", *_RUN, "--out", str(out), *_FAST])
    assert code == 0
    assert "resumed after epoch 8" in capsys.readouterr().out
    a, b = load_model(out / "model.pt"), torch.load(__import__("io").BytesIO(before), weights_only=True)
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a.state_dict().items())


def _fails(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, captured.out, err)
    assert err.startswith("xairepro: error: ") and "\n" not in err, err
    assert "Traceback" not in captured.out + captured.err
    for needle in needles:
        assert needle in err, err
    return err


# Bad values, config files and output folders: one row each in test_cli_bad_inputs.py.


def test_corrupted_checkpoint_exits_2(capsys, tmp_path: Path):
    argv = ["train", "--set", "train.epochs=1", "--set", "data.options.subset=64", "--set", "model.kwargs.width=4",
            "--out", str(tmp_path), *_FAST]
    assert main(argv) == 0
    capsys.readouterr()
    (tmp_path / "last.pt").write_bytes(b"\x00garbage")
    _fails(capsys, argv, "corrupted")
    # and an output folder holding another run is refused rather than mixed up
    (tmp_path / "last.pt").unlink()
    assert main(argv) == 0
    capsys.readouterr()
    _fails(capsys, [*argv, "--set", "train.optimizer.lr=0.5"], "holds another training run")


def test_list_sections(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for needle in ("digits", "mnist-ae", "wrn-28-2", "tcvae", "crop-flip", "smoke"):
        assert needle in out
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "simclr" in out and "digits" not in out
    _fails(capsys, ["list", "nonsense"], "cannot list 'nonsense'")


def test_list_is_one_line_per_entry_in_80_columns_and_long_shows_everything(capsys, monkeypatch):
    from xairepro.data import list_datasets

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for info in list_datasets():  # the name starts exactly one line: no row wraps into a second line
        assert sum(line.startswith(info.name + " ") for line in lines) == 1, info.name
    assert "--long" in lines[-1] and not any("ot_iters" in line for line in lines)
    assert main(["list", "methods", "--long"]) == 0
    out = capsys.readouterr().out
    assert "ot_iters=100" in out and "temperature=0.5" in out


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "list" in out
    assert main(["train", "--help"]) == 0
    assert "--set" in capsys.readouterr().out
