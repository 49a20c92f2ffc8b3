"""Which real data sets a run's cells need and which of them the data folder lacks (issue 17).

A preset that names several real sets (``paper``: MNIST, ECG5000, CIFAR-10 ...) should run the cells whose
data are present and name the sets that are missing, rather than fail every cell of a missing set one by one
(or start hours of training on the sets present and then fail).  The runner asks :func:`missing_data` before
it computes anything: cells needing a missing set are not run (they count as not run in the claims), and
the missing sets are listed with the command that fetches them (console, ``provenance.json``, report).

A cell's data sets are read from its parameters: every ``data`` entry (a name, or a section with a
``name``), as the studies' model setups and run configs hold them.  A cell whose params name no data set
is always run.  Only registered real sets (not bundled or generated) are checked; a set counts as
present when its loader reads the test split from the folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from xairepro.experiments.base import Cell

__all__ = ["cell_data_sets", "missing_data"]


def _walk(value: Any, out: list[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "data":
                if isinstance(item, str):
                    out.append(item)
                elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
                    out.append(item["name"])
            _walk(item, out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _walk(item, out)


def cell_data_sets(cell: Cell) -> list[str]:
    """The data set names the ``data`` entries of ``cell``'s params hold, in order.  The cell's own
    ``dataset`` is a label (a study set's key, ``cifar10-densenet121``, a toy's name) and is not read."""
    names: list[str] = []
    _walk(dict(cell.params), names)
    return list(dict.fromkeys(names))


def missing_data(cells: Iterable[Cell], data_dir: str | os.PathLike[str] | None) -> dict[str, str]:
    """The real data sets ``cells`` need that ``data_dir`` lacks: name -> how to get it.

    Names the data registry does not know (e.g. a study set's key such as ``cifar100-2500``) and bundled or
    generated sets are not checked.
    """
    # lazy: the data registry imports torch; the runner imports this module at start-up
    from xairepro.data import dataset_info, load
    from xairepro.data.fetch import SPECS
    from xairepro.data.files import clear_cache
    from xairepro.errors import DataNotFoundError

    names = list(dict.fromkeys(n for cell in cells for n in cell_data_sets(cell)))
    missing: dict[str, str] = {}
    for name in names:
        try:
            info = dataset_info(name)
        except Exception:  # noqa: BLE001 - not a registered data set name (a study set's key)
            continue
        if info.bundled:
            continue
        try:
            load(name, "test", data_dir)
        except DataNotFoundError:
            missing[name] = f"xairepro data fetch {name}" if name in SPECS else f"get it from {info.source}"
        except Exception:  # noqa: BLE001 - present but unreadable: its cells run and fail with the loader's error
            pass
        finally:
            clear_cache()
    return missing
