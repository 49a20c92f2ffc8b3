"""Start-up time of the command line: ``xairepro --help`` and ``xairepro list`` in fresh processes.

    python benchmarks/cli_startup.py                          # these sources
    python benchmarks/cli_startup.py --against OTHER/src      # and another checkout's, interleaved

Each command runs ``--reps`` times in a new interpreter (``python -c "from xairepro.cli import run; run()"``)
with ``PYTHONPATH`` pointing at the sources measured.  Reported: median wall time and median CPU time
(user + sys of the child: the work itself, which a loaded machine does not inflate), and the slowest
top-level imports of one run (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
COMMANDS = (["--help"], ["list"])
RUN = "import sys; from xairepro.cli import run; sys.argv[0] = 'xairepro'; run()"


def _once(src: Path, argv: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN, *argv], env={**os.environ, "PYTHONPATH": str(src)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _top_imports(src: Path, argv: list[str], n: int = 5) -> str:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", RUN, *argv],
                          env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            rows.append((int(parts[1]), parts[2].strip()))
    rows.sort(reverse=True)
    return ", ".join(f"{name} {us / 1e6:.2f}" for us, name in rows[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--against", type=Path, default=None, help="another checkout's src folder")
    args = parser.parse_args()
    trees = [("these sources", SRC)] + ([("--against", args.against.resolve())] if args.against else [])
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| command | sources | wall s (median) | CPU s user+sys (median) | slowest top-level imports (s) |")
    print("|---|---|---:|---:|---|")
    for argv in COMMANDS:
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in trees}
        for _ in range(args.reps):  # interleaved, so that both see the same load
            for name, src in trees:
                results[name].append(_once(src, argv))
        for name, src in trees:
            walls, cpus = zip(*results[name])
            print(f"| xairepro {' '.join(argv)} | {name} | {statistics.median(walls):.2f} | "
                  f"{statistics.median(cpus):.2f} | {_top_imports(src, argv)} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
