"""Experiments: one module per table or figure of the two studies.

The interface (:class:`Experiment`, :class:`Cell`, :class:`Record`, ...) lives in
``experiments/base.py``, the registry in ``experiments/registry.py``; both are re-exported here.
"""

from xairepro.experiments.base import (
    PRESET_DESCRIPTIONS,
    RECORD_FIELDS,
    Cell,
    Claim,
    Context,
    Experiment,
    Figure,
    MetricSpec,
    ModelStore,
    Record,
    Reference,
    Results,
    TableSpec,
    Verdict,
    VerdictStatus,
)
from xairepro.experiments.registry import (
    get_experiment,
    list_experiments,
    register_experiment,
    select_experiments,
    unregister_experiment,
)

__all__ = [
    "PRESET_DESCRIPTIONS", "RECORD_FIELDS", "Cell", "Claim", "Context", "Experiment", "Figure", "MetricSpec",
    "ModelStore", "Record", "Reference", "Results", "TableSpec", "Verdict", "VerdictStatus",
    "get_experiment", "list_experiments", "register_experiment", "select_experiments",
    "unregister_experiment",
]
