"""The runner's cache: computed once, never again; a changed config recomputes only its cells;
failures are reported and retried; ``kill -9`` and rerun gives the uninterrupted results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from test_runner_experiment import ToyExperiment, expected_value, toy  # noqa: F401 - `toy` is a fixture
from xairepro.runner import CellStore, reproduce

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def _calls(out: Path) -> dict[str, int]:
    """How many times each cell's run_cell ran (lines of the cell's calls.txt)."""
    return {p.parent.name: len(p.read_text().splitlines()) for p in (out / "cells" / "toy").glob("*/calls.txt")}


def _results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv")


def test_first_run_computes_every_cell_with_the_exact_values(toy: ToyExperiment, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = reproduce(["toy"], out_dir=out, overrides=["toy.offset_b=1.5"], show_progress=False)
    assert (summary.total, summary.computed, summary.cached, summary.failed) == (8, 8, 0, 0)
    frame = _results(out)
    assert list(frame.columns) == ["experiment", "dataset", "variant", "seed", "metric", "value", "config_hash"]
    scores = frame[frame["metric"] == "score"]
    assert len(scores) == 8 and len(frame) == 16
    for row in scores.itertuples():
        offset = 1.5 if row.dataset == "b" else 0.0
        assert row.value == expected_value(row.dataset, row.variant, row.seed, offset)  # bit-exact
    # grid order, not completion order
    assert list(scores["dataset"] + scores["variant"] + scores["seed"].astype(str)) == [
        f"{d}{v}{s}" for d in "ab" for v in ("plus", "times") for s in (0, 1)]
    summary_csv = pd.read_csv(out / "summary.csv")
    a_plus = summary_csv[(summary_csv["dataset"] == "a") & (summary_csv["variant"] == "plus")
                         & (summary_csv["metric"] == "score")].iloc[0]
    values = scores[(scores["dataset"] == "a") & (scores["variant"] == "plus")]["value"]
    assert a_plus["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert a_plus["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert a_plus["reference"] == 0.5 and a_plus["difference"] == pytest.approx(values.mean() - 0.5)
    assert set(_calls(out).values()) == {1}


def test_second_run_recomputes_nothing_and_takes_under_a_tenth(toy: ToyExperiment, tmp_path: Path) -> None:
    reproduce(["toy"], out_dir=tmp_path / "warm", show_progress=False)  # imports paid before timing
    out = tmp_path / "run"
    args = dict(out_dir=out, overrides=["delay=0.5"], show_progress=False)
    t0 = time.perf_counter()
    first = reproduce(["toy"], **args)
    t_first = time.perf_counter() - t0
    before = _results(out)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*.json")}
    t0 = time.perf_counter()
    second = reproduce(["toy"], **args)
    t_cached = time.perf_counter() - t0
    print(f"first run {t_first:.3f} s, cached run {t_cached:.3f} s, ratio {t_cached / t_first:.3f}")
    assert (first.computed, second.computed, second.cached) == (8, 0, 8)
    assert t_cached < 0.1 * t_first
    assert set(_calls(out).values()) == {1}
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*.json")} == mtimes
    pd.testing.assert_frame_equal(_results(out), before)
    cells = json.loads((out / "provenance.json").read_text())["cells"]
    assert {c["status"] for c in cells} == {"cached"}


def test_changed_config_invalidates_only_its_own_cells(toy: ToyExperiment, tmp_path: Path) -> None:
    out = tmp_path / "run"
    reproduce(["toy"], out_dir=out, show_progress=False)
    before = _results(out)
    summary = reproduce(["toy"], out_dir=out, overrides=["offset_b=2"], show_progress=False)
    assert (summary.computed, summary.cached) == (4, 4)
    calls = _calls(out)
    assert len(calls) == 12 and set(calls.values()) == {1}  # 4 new b-cells, each computed once
    after = _results(out)
    same = before["dataset"] == "a"
    pd.testing.assert_frame_equal(after[same].reset_index(drop=True), before[same].reset_index(drop=True))
    b_scores = after[(after["dataset"] == "b") & (after["metric"] == "score")]
    for row in b_scores.itertuples():
        assert row.value == expected_value("b", row.variant, row.seed, 2.0)
    # back to the first config: everything is still cached
    again = reproduce(["toy"], out_dir=out, show_progress=False)
    assert (again.computed, again.cached) == (0, 8)
    pd.testing.assert_frame_equal(_results(out), before)


def test_failing_cell_is_reported_the_others_finish_and_a_rerun_retries_it(toy: ToyExperiment,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    toy.failing = {"times"}
    summary = reproduce(["toy"], out_dir=out, show_progress=False)
    assert (summary.computed, summary.failed, summary.ok) == (4, 4, False)
    assert {f.error for f in summary.failures} == {"RuntimeError: boom in times"}
    assert all("boom in times" in (f.traceback or "") for f in summary.failures)
    frame = _results(out)
    assert set(frame["variant"]) == {"plus"} and len(frame) == 8
    assert len(list((out / "cells" / "toy").glob("*.failed.json"))) == 4
    prov = json.loads((out / "provenance.json").read_text())
    assert sorted(c["status"] for c in prov["cells"]) == ["computed"] * 4 + ["failed"] * 4
    claims = json.loads((out / "claims.json").read_text())["toy"]
    assert claims[0]["status"] == "inconclusive"  # times is missing: the claim cannot be decided
    # a rerun of the same config retries the failed cells only (they still fail)
    rerun = reproduce(["toy"], out_dir=out, show_progress=False)
    assert (rerun.computed, rerun.cached, rerun.failed) == (0, 4, 4)
    assert set(_calls(out).values()) == {1, 2}  # failed cells ran twice, finished ones once
    # once the bug is fixed they are computed and the failure files go
    toy.failing = set()
    fixed = reproduce(["toy"], out_dir=out, show_progress=False)
    assert fixed.ok and (fixed.computed, fixed.cached) == (4, 4)
    assert not list((out / "cells" / "toy").glob("*.failed.json"))
    assert json.loads((out / "claims.json").read_text())["toy"][0]["status"] in ("holds", "fails")


def test_force_recomputes_every_cell_with_the_same_results(toy: ToyExperiment, tmp_path: Path) -> None:
    out = tmp_path / "run"
    reproduce(["toy"], out_dir=out, show_progress=False)
    before = _results(out)
    summary = reproduce(["toy"], out_dir=out, force=True, show_progress=False)
    assert (summary.computed, summary.cached) == (8, 0)
    assert set(_calls(out).values()) == {2}
    pd.testing.assert_frame_equal(_results(out), before)


def test_a_corrupt_cell_file_is_recomputed(toy: ToyExperiment, tmp_path: Path) -> None:
    out = tmp_path / "run"
    reproduce(["toy"], out_dir=out, show_progress=False)
    before = _results(out)
    victim = sorted((out / "cells" / "toy").glob("*.json"))[0]
    victim.write_text("{ not json")
    summary = reproduce(["toy"], out_dir=out, show_progress=False)
    assert (summary.computed, summary.cached) == (1, 7)
    pd.testing.assert_frame_equal(_results(out), before)


_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_runner_experiment import ToyExperiment
from xairepro.experiments import register_experiment
from xairepro.cli import main
register_experiment(ToyExperiment)
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_then_rerun_gives_exactly_the_uninterrupted_results(toy: ToyExperiment, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = ["reproduce", "toy", "--preset", "quick", "--no-progress", "--workers", "1", "--set", "delay=0.3",
            "--set", "offset_a=0.25"]
    script = _SCRIPT.format(tests=str(TESTS))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cell_dir = killed / "cells" / "toy"

    def finished() -> set[str]:
        return {p.stem for p in cell_dir.glob("*.json") if not p.name.endswith(".failed.json")}

    def started() -> set[str]:  # run_cell writes calls.txt first, then sleeps 0.3 s
        return {p.parent.name for p in cell_dir.glob("*/calls.txt")}

    # kill while the 4th cell (or a later one) is inside run_cell: 3+ cells done, one started, not finished
    deadline = time.monotonic() + 120
    while not (len(finished()) >= 3 and started() - finished()) and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before, interrupted = finished(), started() - finished()
    assert 3 <= len(done_before) < 8, "the kill must land in the middle of the run"
    assert len(interrupted) == 1, "the kill must land in the middle of a cell"
    assert not (killed / "results.csv").exists()
    # rerun (in-process, same command): finishes the remaining cells only
    from xairepro.cli import main

    assert main([*args, "--out", str(killed)]) == 0
    assert f"{len(done_before)} cached" in capsys.readouterr().out
    calls = _calls(killed)
    assert len(calls) == 8  # the interrupted cell ran again, every other cell exactly once
    assert {k for k, n in calls.items() if n == 2} == interrupted and set(calls.values()) == {1, 2}
    assert not list(killed.rglob(".*.tmp"))
    # the uninterrupted run, in-process
    clean = tmp_path / "clean"
    reproduce(["toy"], out_dir=clean, overrides=["delay=0.3", "offset_a=0.25"], show_progress=False)
    assert (killed / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()
    assert (killed / "summary.csv").read_bytes() == (clean / "summary.csv").read_bytes()


def test_cell_store_roundtrips_nan_and_infinity(tmp_path: Path) -> None:
    from xairepro.experiments import Cell
    from xairepro.runner import CellOutcome

    store = CellStore(tmp_path)
    cell = Cell("toy", "a", "plus", 0, {})
    recs = [{"experiment": "toy", "dataset": "a", "variant": "plus", "seed": 0, "metric": m, "value": v,
             "config_hash": cell.key} for m, v in (("nan", float("nan")), ("inf", float("inf")), ("x", 0.1))]
    store.save(cell, CellOutcome(cell.key, cell.label, recs, 1.0, "t"))
    back = store.load(cell)
    assert back is not None and back.status == "cached"
    values = [r["value"] for r in back.records]
    assert values[0] != values[0] and values[1] == float("inf") and values[2] == 0.1


def test_malformed_records_fail_the_cell_with_a_clear_error(toy: ToyExperiment, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from xairepro.experiments import Record

    bad_outputs = {
        "plus": lambda cell: [{"metric": "score", "value": 1.0}],
        "times": lambda cell: [Record("toy", cell.dataset, cell.variant, cell.seed + 7, "score", 1.0)],
    }
    monkeypatch.setattr(toy, "run_cell", lambda cell, ctx: bad_outputs[cell.variant](cell))
    summary = reproduce(["toy"], out_dir=tmp_path, overrides=["datasets=[a]", "seeds=[0]"], show_progress=False)
    errors = {f.label: f.error for f in summary.failures}
    assert errors == {
        "toy/a/plus/seed=0": "TypeError: run_cell must return Record objects, not dict",
        "toy/a/times/seed=0": "ValueError: record 'score' names experiment 'toy' seed 7, but the cell is "
                              "toy/a/times/seed=0",
    }


def test_execute_cell_seeds_every_global_generator_and_restores_the_thread_count(tmp_path: Path) -> None:
    import random

    import numpy as np
    import torch

    from xairepro.experiments import Cell, Context, Experiment, Record
    from xairepro.runner import Job, execute_cell

    class GlobalDraws(Experiment):
        name = "draws"

        def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
            if cell.variant == "boom":
                torch.set_num_threads(1)
                raise RuntimeError("boom")
            return [cell.record("random", random.random()), cell.record("numpy", float(np.random.rand())),
                    cell.record("torch", float(torch.rand(()))), cell.record("threads", torch.get_num_threads())]

    def run(variant: str, state: int) -> list[float]:
        random.seed(state), np.random.seed(state), torch.manual_seed(state)  # whatever ran before
        job = Job(GlobalDraws(), Cell("draws", "d", variant, 7, num_cpus=3), tmp_path / variant, None,
                  tmp_path / "models")
        outcome = execute_cell(job)
        return [r["value"] for r in outcome.records] if outcome.ok else [outcome.error]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        random.seed(7), np.random.seed(7), torch.manual_seed(7)  # the oracle: the cell's seed everywhere
        expected = [random.random(), float(np.random.rand()), float(torch.rand(())), 3.0]
        assert run("v", 1) == run("v", 12345) == expected
        assert torch.get_num_threads() == 2
        assert run("boom", 1) == ["RuntimeError: boom"] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_claims_on_partial_results_are_inconclusive(toy: ToyExperiment, tmp_path: Path) -> None:
    toy.failing = {"boom"}  # plus and times all finish: the check alone would decide the claim
    summary = reproduce(["toy"], out_dir=tmp_path / "partial", overrides=["variants=[plus,times,boom]"],
                        show_progress=False)
    assert (summary.computed, summary.failed) == (8, 4)
    complete = reproduce(["toy"], out_dir=tmp_path / "complete", show_progress=False)
    assert complete.ok
    (decided,) = json.loads((tmp_path / "complete" / "claims.json").read_text())["toy"]
    (partial,) = json.loads((tmp_path / "partial" / "claims.json").read_text())["toy"]
    assert decided["status"] in ("holds", "fails")
    assert partial["status"] == "inconclusive"
    assert partial["reason"] == (f"4 of 12 cells failed; on the finished cells the claim {decided['status']}: "
                                 f"{decided['reason']}")
    assert partial["numbers"] == decided["numbers"]


def test_a_run_killed_while_drawing_leaves_the_old_figures_intact(toy: ToyExperiment, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    reproduce(["toy"], out_dir=out, show_progress=False)
    figure = out / "figures" / "toy" / "scores.png"
    drawn = figure.read_bytes()

    def killed_while_drawing(results: object, fig_dir: Path) -> list:
        (fig_dir / "scores.png").write_bytes(drawn[:40])  # half a PNG, then the process dies
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(toy, "figures", killed_while_drawing)
        with pytest.raises(KeyboardInterrupt):
            reproduce(["toy"], out_dir=out, overrides=["offset_a=1"], show_progress=False)
    assert figure.read_bytes() == drawn
    again = reproduce(["toy"], out_dir=out, show_progress=False)  # back to the first config: reused as is
    assert again.computed == 0 and figure.read_bytes() == drawn
    assert json.loads((out / "figures.json").read_text())[0]["path"] == "figures/toy/scores.png"
    assert not list((out / "figures").glob(".*"))
