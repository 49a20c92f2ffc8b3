"""A real kill: training in a subprocess is SIGKILLed after an epoch checkpoint, resumed in a new process,
and must end with the bit-identical weights (and checkpoints) of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from xairepro.train import checkpoint_weights, load_checkpoint

EPOCHS = 8

SCRIPT = textwrap.dedent(f"""
    import sys
    import torch
    torch.set_num_threads(1)
    from xairepro.data import load
    from xairepro.models import build_model
    from xairepro.train import ClassifierObjective, Engine, OptimizerConfig, ScheduleConfig, TrainConfig

    def config():
        return TrainConfig(epochs={EPOCHS}, batch_size=32, seed=3, accelerator="cpu", checkpoint_every=1,
                           augment="crop-flip", ema=0.9,
                           optimizer=OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4),
                           schedule=ScheduleConfig(name="lico-cosine", per="step"))

    def model():
        return build_model("small-cnn", num_classes=10, in_channels=1, width=8, seed=0)

    def data():
        return load("digits", "train", subset=640), load("digits", "val")

    if __name__ == "__main__":
        out = sys.argv[1]
        net = model()
        result = Engine(config(), out).fit(net, ClassifierObjective(), *data())
        torch.save({{k: v for k, v in net.state_dict().items()}}, out + "/final.pt")
        print("resumed_from", result.resumed_from)
""")


def _child(script: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_gives_bit_identical_weights(tmp_path: Path):
    script = tmp_path / "train_digits.py"
    script.write_text(SCRIPT)
    run = tmp_path / "killed"
    proc = _child(script, run)
    target = run / "checkpoints" / "epoch_0002.pt"
    deadline = time.monotonic() + 300
    while not target.exists():
        if proc.poll() is not None:
            pytest.fail(f"training exited early: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no epoch-2 checkpoint within 300 s")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = load_checkpoint(run / "last.pt")["epoch"]
    # epoch checkpoints are written before last.pt: a kill right after epoch_0002.pt may find last.pt at epoch 1
    assert 1 <= done < EPOCHS, "the kill must interrupt training"
    assert not (run / "final.pt").exists()

    resumed = _child(script, run)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert f"resumed_from {done}" in out

    # the uninterrupted reference, in this process (one thread, like the children)
    namespace: dict = {}
    exec(compile(SCRIPT, "train_digits", "exec"), namespace)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from xairepro.train import ClassifierObjective, Engine

        reference = namespace["model"]()
        ref = Engine(namespace["config"](), tmp_path / "reference").fit(reference, ClassifierObjective(),
                                                                        *namespace["data"]())
    finally:
        torch.set_num_threads(threads)
    final = torch.load(run / "final.pt", weights_only=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, final[key]), key
    assert len(ref.checkpoints) == EPOCHS
    for path in ref.checkpoints:
        mine = checkpoint_weights(run / "checkpoints" / path.name)
        theirs = checkpoint_weights(path)
        assert all(torch.equal(theirs[k], mine[k]) for k in theirs), path.name
    assert load_checkpoint(run / "last.pt")["history"] == load_checkpoint(tmp_path / "reference" / "last.pt")["history"]
