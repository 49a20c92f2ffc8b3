"""The LICO reproducibility study (seed 000) as five experiments of ``xairepro reproduce lico``.

- ``lico-accuracy`` (Tables 2, 3): test accuracy of the baseline, MM only, OT only and LICO;
- ``lico-insdel`` (Tables 1, 4): insertion / deletion / Overall of Grad-CAM, Grad-CAM++ and RISE;
- ``lico-iou`` (Table 5): soft IoU of Grad-CAM maps with segmentation masks;
- ``lico-tau`` (Table 6): learnable vs fixed temperature;
- ``lico-variants`` (Section 5.2, no table): the authors' code's departures from the paper as variants.

All five train their models through one cache (``ctx.models``), so a model is trained once and shared.
"""

from xairepro.experiments.lico_study.accuracy import LicoAccuracyExperiment
from xairepro.experiments.lico_study.insdel import LicoInsDelExperiment
from xairepro.experiments.lico_study.iou import LicoIouExperiment
from xairepro.experiments.lico_study.sets import STUDY_SETS, StudySet, register_study_set, unregister_study_set
from xairepro.experiments.lico_study.temperature import LicoTemperatureExperiment
from xairepro.experiments.lico_study.variants import LicoVariantsExperiment

__all__ = [
    "LicoAccuracyExperiment", "LicoInsDelExperiment", "LicoIouExperiment", "LicoTemperatureExperiment",
    "LicoVariantsExperiment", "STUDY_SETS", "StudySet", "register_study_set", "unregister_study_set",
]
