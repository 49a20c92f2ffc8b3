"""The Ray executor (a local Ray with 2 CPUs) gives the same results.csv as the in-process one.

Ray is the optional extra `distributed`; `make test` installs it (`.[dev,distributed]`), so a missing
Ray fails here rather than skipping.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_runner_experiment import ToyExperiment, toy  # noqa: F401 - `toy` is a fixture
from xairepro.errors import UsageError
from xairepro.experiments import Cell
from xairepro.runner import LocalExecutor, RayExecutor, make_executor, reproduce
from xairepro.runner.executors import reservation

pytestmark = pytest.mark.ray


def test_ray_executor_gives_the_local_results_byte_for_byte(toy: ToyExperiment, tmp_path: Path) -> None:
    import ray

    # cells ask for a GPU: the local Ray (2 CPUs, no GPU here) caps the reservation instead of waiting
    # forever, and the cells run on the CPU as they do in-process.  The first cell is slow, so Ray
    # finishes the others before it: results.csv must still come in grid order.
    overrides = ["variants=[plus,times,boom]", "offset_b=0.5", "gpus=1", "slow_cell=a/plus/0", "slow_delay=2"]
    toy.failing = {"boom"}  # a failing cell kind: reported with its error, the others finish
    local = reproduce(["toy"], out_dir=tmp_path / "local", overrides=overrides, show_progress=False)
    distributed = reproduce(["toy"], out_dir=tmp_path / "ray", executor="ray", overrides=overrides,
                            show_progress=False)
    assert not ray.is_initialized()  # the local Ray it started is shut down again
    assert (local.computed, local.failed) == (8, 4)
    assert (distributed.computed, distributed.failed) == (8, 4)
    assert {f.error for f in distributed.failures} == {"RuntimeError: boom in boom"}
    # the driver stores each cell as it completes: the slow first cell was stored after later ones
    saved = {json.loads(p.read_text())["label"]: p.stat().st_mtime_ns
             for p in (tmp_path / "ray" / "cells" / "toy").glob("*.json") if not p.name.endswith(".failed.json")}
    assert sum(t < saved["toy/a/plus/seed=0"] for t in saved.values()) >= 3, "Ray ran the cells in grid order"
    assert (tmp_path / "ray" / "results.csv").read_bytes() == (tmp_path / "local" / "results.csv").read_bytes()
    assert (tmp_path / "ray" / "summary.csv").read_bytes() == (tmp_path / "local" / "summary.csv").read_bytes()
    assert len((tmp_path / "ray" / "results.csv").read_text().splitlines()) == 1 + 16
    prov = json.loads((tmp_path / "ray" / "provenance.json").read_text())
    assert prov["run"]["executor"] == "ray"
    assert sorted(c["status"] for c in prov["cells"]) == ["computed"] * 8 + ["failed"] * 4


def test_reservation_is_capped_by_a_local_ray_only() -> None:
    cell = Cell("toy", "a", "plus", 0, num_cpus=4, num_gpus=1.0)
    assert reservation(cell, None) == (4.0, 1.0)  # a joined cluster: the request as is
    assert reservation(cell, {"CPU": 2.0}) == (2.0, 0.0)
    assert reservation(cell, {"CPU": 16.0, "GPU": 8.0}) == (4.0, 1.0)
    half = Cell("toy", "a", "plus", 0, num_cpus=1, num_gpus=0.5)
    assert reservation(half, {"CPU": 2.0, "GPU": 1.0}) == (1.0, 0.5)


def test_make_executor_validates_its_arguments() -> None:
    assert isinstance(make_executor("local"), LocalExecutor)
    ex = make_executor("ray", "auto")
    assert isinstance(ex, RayExecutor) and ex.address == "auto"
    with pytest.raises(UsageError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(UsageError, match="--address only applies to --executor ray"):
        make_executor("local", "host:6379")


def _closed_local_port() -> int:
    import socket

    with socket.socket() as s:  # bind, read the port, close: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("prefix", ["", "ray://"])
def test_an_unreachable_ray_address_is_one_clear_error_not_a_wait(prefix: str, tmp_path: Path) -> None:
    import time

    import ray

    address = f"{prefix}127.0.0.1:{_closed_local_port()}"
    start = time.monotonic()
    with pytest.raises(UsageError, match=r"could not reach the Ray cluster at .*127\.0\.0\.1:\d+.*ray start"):
        RayExecutor(address=address, connect_timeout=5.0)._init()
    assert time.monotonic() - start < 5.0  # refused at once; Ray's own connect retries for minutes
    assert not ray.is_initialized()


@pytest.mark.parametrize("address", ["nohost", "host:port", ":6379", "host:0", "host:70000"])
def test_a_malformed_ray_address_is_rejected_before_connecting(address: str) -> None:
    with pytest.raises(UsageError, match="Ray address must be 'auto' or HOST:PORT"):
        make_executor("ray", address)
