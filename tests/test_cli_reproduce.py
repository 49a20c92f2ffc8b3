"""``xairepro reproduce`` and ``xairepro report`` from the command line: success, failing cells, and
bad input (exit 2, one line on stderr, nothing written over)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from test_runner_experiment import ToyExperiment, toy  # noqa: F401 - `toy` is a fixture
from xairepro.cli import main
from xairepro.errors import UsageError
from xairepro.experiments import register_experiment, unregister_experiment


class OtherExperiment(ToyExperiment):
    name = "other"
    study = "otherstudy"


@pytest.fixture
def other() -> OtherExperiment:
    exp = register_experiment(OtherExperiment, replace=True)
    yield exp
    unregister_experiment("other")


def _snapshot(root: Path) -> dict[str, str] | None:
    """Every file under root with a hash of its bytes (None when root does not exist)."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_reproduce_writes_every_output_and_exits_0(toy: ToyExperiment, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc, stdout, _ = _run(["reproduce", "toystudy", "--preset", "quick", "--out", str(out), "--no-progress",
                          "--set", "toy.offset_a=1", "--set", "seeds=[3]"], capsys)
    assert rc == 0
    assert "4 cells: 4 computed, 0 cached, 0 failed" in stdout
    for name in ("results.csv", "summary.csv", "report.md", "index.html", "provenance.json", "run.json",
                 "claims.json", "figures.json"):
        assert (out / name).is_file(), name
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["experiments"]["toy"]["config"]["offset_a"] == 1.0
    assert prov["experiments"]["toy"]["seeds"] == [3]
    assert prov["run"]["preset"] == "quick" and prov["packages"]["torch"]
    assert {c["status"] for c in prov["cells"]} == {"computed"}
    assert all(c["wall_time_s"] is not None for c in prov["cells"])
    rc, stdout, _ = _run(["reproduce", "toy", "--out", str(out), "--no-progress",
                          "--set", "toy.offset_a=1", "--set", "seeds=[3]"], capsys)
    assert rc == 0 and "0 computed, 4 cached" in stdout


def test_failing_cells_exit_1_and_are_named(toy: ToyExperiment, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    toy.failing = {"plus"}
    rc, stdout, err = _run(["reproduce", "toy", "--out", str(tmp_path), "--no-progress"], capsys)
    assert rc == 1
    assert "4 computed, 0 cached, 4 failed" in stdout
    # the 4 cells with one error are one line, with the cells named
    assert err.count("boom in plus") == 1
    assert ("4 cells failed with the same error (toy/a/plus/seed=0, toy/a/plus/seed=1, toy/b/plus/seed=0 "
            "and 1 more): RuntimeError: boom in plus") in err
    assert (tmp_path / "index.html").is_file()  # the report is still written, with the failures


def test_a_failure_of_its_own_is_named_alone(toy: ToyExperiment, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    toy.failing = {"plus", "times"}
    rc, _, err = _run(["reproduce", "toy", "--out", str(tmp_path), "--no-progress", "--set", "datasets=[a]",
                       "--set", "seeds=[0]"], capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert lines[:2] == ["xairepro: cell failed: toy/a/plus/seed=0: RuntimeError: boom in plus",
                         "xairepro: cell failed: toy/a/times/seed=0: RuntimeError: boom in times"]
    assert lines[2].startswith("xairepro: 2 cell(s) failed; rerun the same command") and len(lines) == 3


def test_progress_display_counts_cells(toy: ToyExperiment, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    toy.failing = {"plus"}
    rc, _, err = _run(["reproduce", "toy", "--out", str(tmp_path), "--set", "datasets=[a]"], capsys)
    assert rc == 1
    assert "failed toy/a/plus/seed=0: RuntimeError: boom in plus" in err
    assert "done 2 · cached 0 · failed 2" in err


# Bad input (exit 2, one line, nothing written): one row each in test_cli_bad_inputs.py.


def test_output_folder_of_another_study_is_refused_untouched(toy: ToyExperiment, other: OtherExperiment,
                                                             tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _run(["reproduce", "toy", "--out", str(out), "--no-progress"], capsys)[0] == 0
    before = _snapshot(out)
    for args, reason in (
        (["reproduce", "otherstudy"], "holds results of toy"),
        (["reproduce", "toy", "--preset", "paper"], "holds preset 'quick' results"),
    ):
        rc, _, err = _run([*args, "--out", str(out), "--no-progress"], capsys)
        assert rc == 2 and reason in err and len(err.strip().splitlines()) == 1
        assert _snapshot(out) == before
    # a superset of the studies it holds is fine (and reuses its cells)
    rc, stdout, _ = _run(["reproduce", "toy", "other", "--out", str(out), "--no-progress"], capsys)
    assert rc == 0 and "16 cells: 8 computed, 8 cached" in stdout


def test_non_empty_foreign_folder_is_refused(toy: ToyExperiment, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    rc, _, err = _run(["reproduce", "toy", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "not empty and holds no xairepro run" in err
    assert _snapshot(tmp_path) == {"thesis.tex": hashlib.sha256(b"precious").hexdigest()}


def test_report_command_rerenders_and_rejects_a_folder_without_a_run(toy: ToyExperiment, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(["report", str(tmp_path)], capsys)
    assert rc == 2 and "holds no finished xairepro run" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "run"
    assert _run(["reproduce", "toy", "--out", str(out), "--no-progress"], capsys)[0] == 0
    (out / "index.html").unlink()
    rc, stdout, _ = _run(["report", str(out)], capsys)
    assert rc == 0 and (out / "index.html").is_file() and "index.html" in stdout


@pytest.mark.parametrize("how", ["no permission", "listing fails"])
def test_unreadable_data_dir_exits_2_and_writes_nothing(toy: ToyExperiment, tmp_path: Path, how: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import os

    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0)  # enough for a normal user; root reads it anyway, hence the patches below
    real_access, real_iterdir = os.access, Path.iterdir
    if how == "no permission":
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == data
                            else real_access(p, mode, **kw))
    else:
        def iterdir(self: Path):  # noqa: ANN202
            if self == data:
                raise PermissionError(13, "Permission denied")
            return real_iterdir(self)

        monkeypatch.setattr(Path, "iterdir", iterdir)
    out = tmp_path / "out"
    try:
        rc, _, err = _run(["reproduce", "toy", "--out", str(out), "--data-dir", str(data)], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert str(data) in err and "is not readable" in err
        assert not out.exists()
        from xairepro.runner import check_data_dir  # the API path (no click in front of it)

        with pytest.raises(UsageError, match="is not readable"):
            check_data_dir(data)
    finally:
        data.chmod(0o755)


class ProvenanceExperiment(ToyExperiment):
    """Cells on a bundled and a real data set; ``datasets`` adds one the cells do not name."""

    name = "prov"
    study = "provstudy"

    def cells(self, cfg):  # noqa: ANN001, ANN201
        return [self.cell(d, "plus", 0, {"offset": 0.0, "delay": 0.0}) for d in ("digits", "mnist")]

    def datasets(self, cfg):  # noqa: ANN001, ANN201
        return ["digits", "mnist", "shapes-seg", "not-a-registered-set"]

    def describe(self, cfg):  # noqa: ANN001, ANN201
        return {"protocol": "petsiuk", "text_encoder": "all-MiniLM-L6-v2"}


def test_provenance_records_data_sets_device_details_and_wall_time_per_cell(tmp_path: Path) -> None:
    from xairepro.runner import reproduce

    register_experiment(ProvenanceExperiment, replace=True)
    data = tmp_path / "data"
    data.mkdir()
    try:
        reproduce(["prov"], out_dir=tmp_path / "run", data_dir=data, show_progress=False)
    finally:
        unregister_experiment("prov")
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    exp = prov["experiments"]["prov"]
    assert exp["datasets"]["digits"]["bundled"] is True and exp["datasets"]["shapes-seg"]["bundled"] is True
    assert exp["datasets"]["mnist"]["bundled"] is False and exp["datasets"]["mnist"]["data_dir"] == str(data)
    assert exp["datasets"]["not-a-registered-set"] == {"bundled": None, "source": None,
                                                       "note": "not in the data set registry"}
    assert exp["details"] == {"protocol": "petsiuk", "text_encoder": "all-MiniLM-L6-v2"}
    assert exp["seeds"] == [0] and prov["run"]["data_dir"] == str(data)
    assert {"platform", "cpu_count", "cuda_available", "gpus"} <= set(prov["device"])
    for cell in prov["cells"]:  # wall time per cell, as stored with the cell
        stored = json.loads((tmp_path / "run" / "cells" / "prov" / f"{cell['key']}.json").read_text())
        assert cell["wall_time_s"] == round(stored["wall_time_s"], 4) and cell["status"] == "computed"


class StudyToy(ToyExperiment):
    """The toy with study claims: one the study says holds, one it says fails, one sanity check."""

    name = "studytoy"
    study = "studytoy"

    def claims(self, cfg):
        from xairepro.experiments import Claim, Verdict

        return [Claim("agrees-claim", "Plus scores higher than times", lambda r: Verdict("holds", "r"), study="holds",
                      study_quote="plus wins"),
                Claim("disagrees-claim", "Times wins", lambda r: Verdict("holds", "r"), study="fails"),
                Claim("noise-claim", "Noise", lambda r: Verdict.inconclusive("within-noise", "n"), study="holds"),
                Claim("sanity-claim", "Below 0.7", lambda r: Verdict("holds", "s"), study="holds", sanity=True)]


def test_reproduce_ends_with_one_line_per_claim_and_the_report(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal shows the claims (ours, the study's, agreement) and the report's path, not the results
    tables (those stay in the report and results.csv)."""
    register_experiment(StudyToy, replace=True)
    try:
        out = tmp_path / "run"
        rc, stdout, _ = _run(["reproduce", "studytoy", "--out", str(out), "--no-progress"], capsys)
    finally:
        unregister_experiment("studytoy")
    assert rc == 0
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("report: ") and str(out / "index.html") in lines[-1]
    assert lines[-2] == ("3 study claims tested: 2 decided (1 agree with the study, 1 disagree), 1 undecided; "
                         "1 sanity check(s) shown apart")
    rows = {line.split()[0]: line.split()[1:] for line in lines[-7:-2]}
    assert rows["studytoy/agrees-claim"] == ["holds", "holds", "agrees"]
    assert rows["studytoy/disagrees-claim"] == ["holds", "fails", "disagrees"]
    assert rows["studytoy/noise-claim"] == ["inconclusive", "(within-noise)", "holds", "undecided"]
    assert rows["studytoy/sanity-claim"][:3] == ["holds", "holds", "agrees"] and "sanity" in lines[-3]
    assert "score" not in stdout and "published" not in stdout          # no results table on the terminal
    assert len(lines) < 15
    claims = json.loads((out / "claims.json").read_text())["studytoy"]
    assert [(c["status"], c["cause"], c["study"], c["agreement"], c["kind"]) for c in claims] == [
        ("holds", "", "holds", "agrees", "test"), ("holds", "", "fails", "disagrees", "test"),
        ("inconclusive", "within-noise", "holds", "undecided", "test"), ("holds", "", "holds", "agrees", "sanity")]
    report = (out / "report.md").read_text()
    assert "| **inconclusive (within-noise)** | holds | undecided |" in report
    assert "3 study claims tested: 2 decided" in report and "How verdicts are decided" in report
    html = (out / "index.html").read_text()
    assert "plus wins" in html and "sanity check, not counted" in html and 'class="disagrees"' in html
