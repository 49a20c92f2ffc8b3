"""Wall time and peak memory of a piece of work, on the CPU or a CUDA device.

    with PeakMemory(device) as peak:
        scores = explainer.attribute(x_test, x_train)
    peak.seconds, peak.cpu_seconds, peak.peak_bytes

``cpu_seconds``: the process's CPU time (all threads) over the block: on a machine shared with other
jobs it says what the work cost, where wall time also counts waiting for a core.

CPU: the process's resident anonymous memory (``RssAnon`` of ``/proc/self/status``: the heap and
tensors, not the pages of memory-mapped files, which are page cache the system can drop) sampled every
``interval`` seconds by a thread; ``peak_bytes`` = the largest sample minus the value at the start
(NaN where ``/proc`` is missing).  CUDA: ``torch.cuda.max_memory_allocated`` above the allocation at the start.
"""

from __future__ import annotations

import math
import threading
import time

import torch

__all__ = ["PeakMemory", "resident_bytes"]


def resident_bytes() -> float:
    """The process's resident anonymous memory in bytes (NaN where ``/proc/self/status`` cannot be read)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


class PeakMemory:
    """Context manager measuring seconds and peak memory (see the module docstring)."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval = float(interval)
        self.seconds = math.nan
        self.cpu_seconds = math.nan
        self.peak_bytes = math.nan
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_bytes = math.nan
        self._max = math.nan

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._max = max(self._max, resident_bytes())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start_bytes = float(torch.cuda.memory_allocated(self.device))
        else:
            self._start_bytes = self._max = resident_bytes()
            if not math.isnan(self._start_bytes):
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_seconds = time.process_time() - self._c0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.seconds = time.perf_counter() - self._t0
            self.peak_bytes = float(torch.cuda.max_memory_allocated(self.device)) - self._start_bytes
            return
        self.seconds = time.perf_counter() - self._t0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, resident_bytes())
            self.peak_bytes = self._max - self._start_bytes
