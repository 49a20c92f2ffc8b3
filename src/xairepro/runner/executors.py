"""Executors: run cells in-process (default) or as Ray tasks; both call :func:`execute_cell`.

``execute_cell`` seeds every global generator with the cell's seed and sets torch's thread count to
the cell's ``num_cpus`` for the duration of the cell, so a cell gives bit-identical numbers whichever
executor (and whichever worker process) ran it.
"""

from __future__ import annotations

import datetime as _dt
import multiprocessing
import os
import queue
import re
import socket
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from xairepro.errors import UsageError
from xairepro.experiments.base import Cell, Context, Experiment, Record
from xairepro.runner.model_cache import ModelCache
from xairepro.runner.store import CellOutcome
from xairepro.utils import progress_listener, report_idle, report_progress, report_task, seed_everything

__all__ = ["Job", "Executor", "LocalExecutor", "RayExecutor", "execute_cell", "make_executor", "reservation",
           "EXECUTORS"]

EXECUTORS = ("local", "ray")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Job:
    """One cell to compute, with the folders its context points to."""

    experiment: Experiment
    cell: Cell
    work_dir: Path
    data_dir: Path | None
    models_dir: Path
    download: bool = False


def _device(cell: Cell) -> str:
    if cell.num_gpus > 0:
        if torch.cuda.is_available():
            return "cuda"
    return "cpu"


def _check_records(job: Job, records: Any) -> list[dict[str, Any]]:
    cell = job.cell
    if not isinstance(records, (list, tuple)):
        raise TypeError(f"run_cell must return a list of Record, not {type(records).__name__}")
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for rec in records:
        if not isinstance(rec, Record):
            raise TypeError(f"run_cell must return Record objects, not {type(rec).__name__}")
        if rec.experiment != cell.experiment or int(rec.seed) != int(cell.seed):
            raise ValueError(f"record {rec.metric!r} names experiment {rec.experiment!r} seed {rec.seed}, "
                             f"but the cell is {cell.label}")
        if not rec.metric:
            raise ValueError("a record has an empty metric name")
        ident = (rec.dataset, rec.variant, rec.metric)
        if ident in seen:
            raise ValueError(f"run_cell returned {rec.metric!r} for {rec.dataset}/{rec.variant} twice")
        seen.add(ident)
        out.append({"experiment": rec.experiment, "dataset": str(rec.dataset), "variant": str(rec.variant),
                    "seed": int(rec.seed), "metric": str(rec.metric), "value": float(rec.value),
                    "config_hash": cell.key})
    return out


def execute_cell(job: Job) -> CellOutcome:
    """Run one cell and return its outcome; an exception becomes a failed outcome, never escapes."""
    cell = job.cell
    report_task(cell.label)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        job.work_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(max(1, int(cell.num_cpus)))
        seed_everything(int(cell.seed))
        ctx = Context(cache_dir=job.work_dir, data_dir=job.data_dir, device=_device(cell),
                      seed=int(cell.seed), models=ModelCache(job.models_dir), download=job.download)
        records = _check_records(job, job.experiment.run_cell(cell, ctx))
    except Exception as exc:  # noqa: BLE001 - a failing cell is reported, the others go on
        message = (str(exc).strip().splitlines() or [""])[0]
        return CellOutcome(cell.key, cell.label, [], time.perf_counter() - t0, started,
                           error=f"{type(exc).__name__}: {message}" if message else type(exc).__name__,
                           traceback=traceback.format_exc(), status="failed")
    finally:
        torch.set_num_threads(threads)
    return CellOutcome(cell.key, cell.label, records, time.perf_counter() - t0, started)


class Executor(Protocol):
    name: str

    def preflight(self) -> None:
        """Raise ``UsageError`` now, before the run writes anything, when the executor cannot work."""
        ...

    def run(self, jobs: Sequence[Job]) -> Iterator[CellOutcome]:
        """Yield one outcome per job, in completion order."""
        ...


class LocalExecutor:
    """Cells on this machine: one after the other in this process (``workers=1``), or spread over
    ``workers`` worker processes (started with ``spawn``), each computing one cell at a time.

    A cell gives the same numbers in either case (:func:`execute_cell` seeds every generator and sets the
    thread count per cell); cells that need the same trained model wait for each other on the model
    cache's lock.  Worker processes relay their progress reports to this process.
    """

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise UsageError(f"workers must be a whole number >= 1, got {workers!r}")
        self.workers = workers

    def preflight(self) -> None:
        return None

    def run(self, jobs: Sequence[Job]) -> Iterator[CellOutcome]:
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield execute_cell(job)
            return
        yield from _run_in_workers(jobs, min(self.workers, len(jobs)))


_EVENTS: Any = None   # in a worker process: the queue its progress reports go to
_RELAYING: Any = None  # ... and the open listener context (kept referenced for the worker's whole life)


class _Relay:
    """A worker's progress listener: every report goes to the parent through the queue, tagged by PID."""

    def task(self, label: str) -> None:
        _EVENTS.put(("task", os.getpid(), (label,)))

    def step(self, what: str, done: int, total: int) -> None:
        _EVENTS.put(("step", os.getpid(), (what, done, total)))


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the process that started it dies (a ``kill -9`` of
    ``xairepro reproduce`` must not leave workers computing cells that a rerun computes again)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _start_worker(events: Any) -> None:
    global _EVENTS, _RELAYING
    _die_with_parent()
    _EVENTS = events
    _RELAYING = progress_listener(_Relay())
    _RELAYING.__enter__()


def _execute_in_worker(job: Job) -> CellOutcome:
    try:
        return execute_cell(job)
    finally:
        _EVENTS.put(("idle", os.getpid(), ()))


def _relay(events: Any) -> None:
    """Hand the reports queued by the workers to this process's listeners (the progress display)."""
    while True:
        try:
            kind, worker, args = events.get_nowait()
        except queue.Empty:
            return
        if kind == "task":
            report_task(*args, worker=worker)
        elif kind == "step":
            report_progress(*args, worker=worker)
        else:
            report_idle(worker)


def _run_in_workers(jobs: Sequence[Job], workers: int) -> Iterator[CellOutcome]:
    context = multiprocessing.get_context("spawn")   # no fork of a process whose torch threads are running
    events = context.Queue()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                               initargs=(events,))
    pending = {pool.submit(_execute_in_worker, job): job for job in jobs}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _relay(events)
            for future in done:
                job = pending.pop(future)
                try:
                    yield future.result()
                except Exception as exc:  # noqa: BLE001 - the worker itself died (killed, out of memory)
                    yield CellOutcome(job.cell.key, job.cell.label, [], 0.0, "",
                                      error=f"worker process failed: {type(exc).__name__}: {exc}",
                                      traceback=traceback.format_exc(), status="failed")
        _relay(events)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)   # interrupted: queued cells never start


def _ship_by_value(experiments: Sequence[Experiment]) -> None:
    """Experiments defined outside xairepro (a script, a test module) travel to Ray workers by value."""
    from ray import cloudpickle  # Ray serialises with its own copy of cloudpickle

    for exp in experiments:
        module_name = type(exp).__module__
        if module_name == "__main__" or module_name.split(".")[0] == "xairepro":
            continue
        module = sys.modules.get(module_name)
        if module is not None:
            cloudpickle.register_pickle_by_value(module)


def reservation(cell: Cell, capacity: dict[str, float] | None = None) -> tuple[float, float]:
    """The (CPUs, GPUs) a Ray task reserves for ``cell``: its own request, capped by ``capacity``.

    A local Ray is capped to what it has, so a cell never waits forever for resources that cannot appear
    (a GPU cell on a CPU-only machine runs on the CPU there, as it does in-process: ``execute_cell``
    picks ``cuda`` only when torch sees one).  ``capacity=None`` (a joined cluster): the request as is.
    """
    cpus, gpus = float(cell.num_cpus), float(cell.num_gpus)
    if capacity is None:
        return cpus, gpus
    return min(cpus, float(capacity.get("CPU", 0.0))), min(gpus, float(capacity.get("GPU", 0.0)))


class RayExecutor:
    """One Ray task per cell, reserving the cell's ``num_cpus``/``num_gpus``.

    Without ``address`` a local Ray is started (``num_cpus`` CPUs, no dashboard) and shut down after the
    run; a cell asking for more than it has reserves all of it (:func:`reservation`).  With an address
    (``auto`` or ``host:port``) the cluster is joined and cells reserve what they ask for.  Workers must
    see the output folder at the same path (a shared file system on a multi-node cluster).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int = 2, connect_timeout: float = 10.0) -> None:
        self.address = address
        self.num_cpus = int(num_cpus)
        self.connect_timeout = float(connect_timeout)
        self._endpoint = ray_endpoint(address) if address else None

    def preflight(self) -> None:
        """A joined cluster's head must answer on TCP within ``connect_timeout`` seconds."""
        if self._endpoint is not None:
            probe_endpoint(self.address or "", self._endpoint, self.connect_timeout)

    def _init(self) -> bool:
        import ray  # lazy: an optional dependency (the 'distributed' extra)

        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, private instance
        if self.address:
            self.preflight()
            try:
                ray.init(address=self.address, log_to_driver=True)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UsageError(f"could not connect to the Ray cluster at {self.address!r}: {line}") from None
        else:
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
        return True

    def run(self, jobs: Sequence[Job]) -> Iterator[CellOutcome]:
        if not jobs:
            return
        import ray  # lazy: an optional dependency (the 'distributed' extra)

        _ship_by_value([job.experiment for job in jobs])
        started_here = self._init()
        pending: dict[Any, Job] = {}
        try:
            remote = ray.remote(execute_cell)
            capacity = ray.cluster_resources() if started_here and not self.address else None
            for job in jobs:
                cpus, gpus = reservation(job.cell, capacity)
                ref = remote.options(num_cpus=cpus, num_gpus=gpus, max_retries=0).remote(job)
                pending[ref] = job
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    yield ray.get(done[0])
                except Exception as exc:  # noqa: BLE001 - the task itself died (worker crash, pickling)
                    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
                    line = lines[-1] if lines else type(exc).__name__  # the root cause comes last
                    yield CellOutcome(job.cell.key, job.cell.label, [], 0.0, "",
                                      error=f"ray task failed: {line}", traceback=str(exc), status="failed")
        finally:
            for ref in list(pending):  # interrupted: do not leave tasks running
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()


def ray_endpoint(address: str) -> tuple[str, int] | None:
    """The (host, port) a Ray address names: ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto``/``local``.

    ``UsageError`` for anything else, before any connection is tried.
    """
    if address in ("auto", "local"):
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"Ray address must be 'auto' or HOST:PORT (e.g. 10.0.0.5:6379), got {address!r}")
    return host.strip("[]"), int(port)


def probe_endpoint(address: str, endpoint: tuple[str, int], timeout: float) -> None:
    """One TCP connection to the cluster's head, so that a wrong address fails in ``timeout`` seconds.

    ``ray.init`` itself retries an unreachable head for minutes, printing warnings, before it gives up.
    """
    try:
        with socket.create_connection(endpoint, timeout=timeout):
            pass
    except OSError as exc:
        reason = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else (
            exc.strerror or type(exc).__name__)
        raise UsageError(f"could not reach the Ray cluster at {address!r}: {reason} (is `ray start --head` "
                         "running there, and the port open?)") from None


def make_executor(kind: str, address: str | None = None, *, workers: int = 1) -> LocalExecutor | RayExecutor:
    """``"local"`` (``workers`` processes) or ``"ray"``; ``UsageError`` for another name, or for Ray when it is
    not installed."""
    if kind not in EXECUTORS:
        raise UsageError(f"unknown executor {kind!r} (executors: {', '.join(EXECUTORS)})")
    if kind == "local":
        if address:
            raise UsageError("--address only applies to --executor ray")
        return LocalExecutor(workers)
    if workers != 1:
        raise UsageError("--workers only applies to --executor local (Ray places cells by their CPUs)")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError("--executor ray needs ray: pip install 'xairepro[distributed]'") from None
    return RayExecutor(address)
