"""Data sets that are a part of a published one and must never be reported as it (no imports: light).

``SUBSET_FLAGS`` maps such a data set's name to the words every table, claim and reference note shows
beside it (issue 17: the real MNIST images reachable here are 10,000 of MNIST's training images).
"""

from __future__ import annotations

__all__ = ["SUBSET_FLAGS", "flag_dataset"]

SUBSET_FLAGS: dict[str, str] = {
    "mnist-10k": "10,000-image subset of MNIST's training images, not MNIST",
}


def flag_dataset(name: str) -> str:
    """``name`` with its subset flag: ``mnist-10k (10,000-image subset of ..., not MNIST)``; others as they are."""
    flag = SUBSET_FLAGS.get(name)
    return f"{name} ({flag})" if flag else name
