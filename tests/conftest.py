"""Shared test setup: no network, deterministic torch, a temp folder per test."""

from __future__ import annotations

import os
import socket

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


class _NoNetwork(socket.socket):
    def connect(self, address):  # type: ignore[override]
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
            raise RuntimeError(f"tests must not use the network (tried to connect to {address!r})")
        return super().connect(address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach a non-local host fails the test loudly."""
    monkeypatch.setattr(socket, "socket", _NoNetwork)


@pytest.fixture(autouse=True)
def _no_registry_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data fetch routes never run apt-get / pip / npm in tests (those reach the network in a subprocess)."""
    from xairepro.data import fetch

    def refuse(argv, cwd):
        raise RuntimeError(f"tests must not run registry clients (tried {argv[0]})")

    monkeypatch.setattr(fetch, "run_tool", refuse)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One intra-op thread for a test (small tensor ops on a shared 2-core machine: two threads mostly spin).

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``; the thread count is restored afterwards.
    """
    yield from _single_thread()


@pytest.fixture(scope="module")
def one_thread_module():
    """``one_thread`` for a whole test module (its module-scoped fixtures run single-threaded too)."""
    yield from _single_thread()


# --------------------------------------------------------------------------------------------------
# Shared trained models (session-scoped: trained once, used by every layer's tests; do not mutate).
# --------------------------------------------------------------------------------------------------


class Digits28:
    """The bundled ``digits`` set resized to 28 px (an MNIST stand-in): float32 (N, 1, 28, 28) in [0, 1]."""

    def __init__(self) -> None:
        from xairepro.data import load

        train, test = load("digits", "train", size=28, seed=0), load("digits", "test", size=28, seed=0)
        self.x_train, self.y_train = train.tensors()
        self.x_test, self.y_test = test.tensors()
        self.class_names = list(train.class_names)
        self.info = train.info


@pytest.fixture(scope="session")
def digits28() -> Digits28:
    """``digits28.x_train`` (1366, 1, 28, 28), ``.y_train``, ``.x_test`` (359, ...), ``.y_test``."""
    return Digits28()


class TrainedAutoencoder:
    """A trained ``mnist-ae`` and where it came from (see the ``trained_digits_autoencoder`` fixture)."""

    def __init__(self, model, checkpoints, data: Digits28, out_dir, result, objective) -> None:
        self.model = model
        self.checkpoints = list(checkpoints)
        self.x_train, self.y_train = data.x_train, data.y_train
        self.x_test, self.y_test = data.x_test, data.y_test
        self.out_dir = out_dir
        self.result = result
        self.objective = objective


@pytest.fixture(scope="session")
def trained_digits_autoencoder(digits28: Digits28, tmp_path_factory: pytest.TempPathFactory) -> TrainedAutoencoder:
    """The Label-Free-XAI MNIST autoencoder (``mnist-ae``, d=4) trained through the engine on ``digits28``.

    Denoising pretext task (x + 0.3 N(0, 1)), Adam lr 3e-3, batch 32, 8 epochs, seed 0, a checkpoint
    kept after every epoch (``.checkpoints``: paths of ``epoch_0001.pt`` ... ``epoch_0008.pt``, each
    ``{"model": state_dict, "epoch", "lr", ...}``; ``xairepro.train.checkpoint_weights(path)`` gives the
    state dict).  ``.model`` is in eval mode.  Trained once per session (~10 s on one core).
    """
    from xairepro.models import build_model
    from xairepro.train import AutoencoderObjective, Engine, OptimizerConfig, TrainConfig

    out_dir = tmp_path_factory.mktemp("trained_digits_autoencoder")
    model = build_model("mnist-ae", latent_dim=4, seed=0)
    objective = AutoencoderObjective("noise")
    cfg = TrainConfig(epochs=8, batch_size=32, seed=0, accelerator="cpu", checkpoint_every=1,
                      optimizer=OptimizerConfig(name="adam", lr=3e-3))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers whatever the core count; avoids spin-waits on a busy machine
    try:
        result = Engine(cfg, out_dir).fit(model, objective, (digits28.x_train, digits28.y_train))
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return TrainedAutoencoder(model, result.checkpoints, digits28, out_dir, result, objective)


#: ``xairepro train`` arguments of the small checkpoint ``CK`` (small-cnn, width 4, on 8 px digits, one epoch).
CK_TRAIN_ARGS = ["--set", "data.name=digits", "--set", "model.name=small-cnn", "--set", "model.kwargs.width=4",
                 "--set", "train.epochs=1", "--set", "train.accelerator=cpu", "--no-progress"]


def train_ck(out, *extra: str) -> None:
    """Train a small checkpoint through the CLI into ``out`` (a few seconds on one core)."""
    import contextlib
    import io

    from xairepro.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.contextmanager(_single_thread)():
        code = main(["train", *CK_TRAIN_ARGS, *extra, "--out", str(out)])
    assert code == 0, f"training the small checkpoint failed (exit {code})"


@pytest.fixture(scope="session")
def ck_run(tmp_path_factory: pytest.TempPathFactory):
    """The folder of ``CK``: ``model.pt``, ``last.pt``, ``run.json``, ``metrics.json`` of a small-cnn trained
    on digits at 8 px for one epoch through ``xairepro train`` (shared: never write into it)."""
    out = tmp_path_factory.mktemp("ck") / "run"
    train_ck(out)
    return out
