"""The local executor's worker processes give the in-process results byte for byte, and relay progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_runner_experiment import ToyExperiment, toy  # noqa: F401 - `toy` is a fixture
from xairepro.errors import UsageError
from xairepro.experiments import Cell
from xairepro.runner import LocalExecutor, auto_workers, make_executor, reproduce
from xairepro.utils import progress_listener


class Recorder:
    """A listener that shows several cells at once (it takes ``worker=``): records what is relayed."""

    def __init__(self) -> None:
        self.tasks: list[tuple[int | None, str]] = []
        self.idle_workers: list[int] = []

    def task(self, label: str, *, worker: int | None = None) -> None:
        self.tasks.append((worker, label))

    def step(self, what: str, done: int, total: int, *, worker: int | None = None) -> None:
        pass

    def idle(self, worker: int) -> None:
        self.idle_workers.append(worker)


def test_two_workers_give_the_in_process_results_byte_for_byte(toy: ToyExperiment, tmp_path: Path) -> None:
    # the first cell is slow: the other worker computes the rest meanwhile, and results.csv must still
    # come in grid order; a failing kind of cell is reported with its error while the others finish
    overrides = ["variants=[plus,times,boom]", "offset_b=0.5", "slow_cell=a/plus/0", "slow_delay=3"]
    toy.failing = {"boom"}
    one = reproduce(["toy"], out_dir=tmp_path / "one", overrides=overrides, show_progress=False)
    recorder = Recorder()
    with progress_listener(recorder):
        two = reproduce(["toy"], out_dir=tmp_path / "two", workers=2, overrides=overrides, show_progress=False)
    assert (one.computed, one.failed) == (two.computed, two.failed) == (8, 4)
    assert {f.error for f in two.failures} == {"RuntimeError: boom in boom"}
    for name in ("results.csv", "summary.csv", "claims.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    saved = {json.loads(p.read_text())["label"]: p.stat().st_mtime_ns
             for p in (tmp_path / "two" / "cells" / "toy").glob("*.json") if not p.name.endswith(".failed.json")}
    assert sum(t < saved["toy/a/plus/seed=0"] for t in saved.values()) >= 3, "the cells ran one after the other"
    # every cell was announced from one of two worker processes (not this one), and each worker went idle
    workers = {w for w, _ in recorder.tasks}
    assert len(workers) == 2 and os.getpid() not in workers and None not in workers
    assert sorted(label for _, label in recorder.tasks) == sorted(c.label for c in toy.cells(toy.make_config(
        "quick", overrides)))
    assert len(recorder.idle_workers) == 12 and set(recorder.idle_workers) == workers
    assert json.loads((tmp_path / "two" / "provenance.json").read_text())["run"]["workers"] == 2


def test_workers_are_checked() -> None:
    assert LocalExecutor().workers == 1
    assert make_executor("local", workers=3).workers == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="workers must be a whole number >= 1"):
            LocalExecutor(bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--workers only applies to --executor local"):
        make_executor("ray", workers=2)
    with pytest.raises(UsageError, match="unknown executor 'dask'"):
        make_executor("dask", workers=2)


def test_auto_workers_fills_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})

    def cells(cpus: int, gpus: float = 0.0) -> list[Cell]:
        return [Cell("toy", "a", "plus", s, num_cpus=cpus, num_gpus=gpus) for s in range(3)]

    assert auto_workers(cells(1)) == 4
    assert auto_workers(cells(2)) == 2
    assert auto_workers(cells(3)) == 1
    assert auto_workers(cells(8)) == 1
    assert auto_workers([]) == 1
    assert auto_workers(cells(1) + [Cell("toy", "b", "plus", 0, num_cpus=2)]) == 2   # the largest cell decides
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_workers(cells(1, gpus=1.0)) == 1   # cells sharing one GPU: one at a time
    assert auto_workers(cells(1)) == 4


def _children(pid: int) -> set[int]:
    """PIDs of the live processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and fields.get("State", "").strip()[:1] != "Z":
            found.add(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker clean-up on the parent's death is Linux's")
def test_kill_9_of_the_run_takes_its_workers_with_it(toy: ToyExperiment, tmp_path: Path) -> None:
    from test_runner_cache import _SCRIPT, SRC, TESTS, _calls

    args = ["reproduce", "toy", "--preset", "quick", "--no-progress", "--workers", "2", "--set", "delay=0.5",
            "--set", "offset_a=0.25"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT.format(tests=str(TESTS)), *args, "--out", str(killed)],
                            env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        calls = _calls(killed) if (killed / "cells").exists() else {}
        workers |= _children(proc.pid)
        if len(calls) >= 3:   # cells under way in the workers
            break
        time.sleep(0.02)
    workers |= _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(workers) >= 2, "the run should have started its worker processes"
    gone = time.monotonic() + 15
    while any(_alive(w) for w in workers) and time.monotonic() < gone:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "worker processes outlived the killed run"
    # a rerun (two workers again) finishes the run; the numbers equal an uninterrupted in-process run
    assert reproduce(["toy"], out_dir=killed, workers=2, overrides=["delay=0.5", "offset_a=0.25"],
                     show_progress=False).ok
    clean = tmp_path / "clean"
    reproduce(["toy"], out_dir=clean, overrides=["delay=0.5", "offset_a=0.25"], show_progress=False)
    assert (killed / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()
