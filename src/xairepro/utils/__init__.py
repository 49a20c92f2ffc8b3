"""Small shared helpers: atomic file writes (figures too), seeding, progress bars."""

from xairepro.utils.atomic import (
    atomic_path, atomic_torch_save, atomic_write_bytes, atomic_write_text, check_output_folder_path, save_figure,
)
from xairepro.utils.seeding import seed_everything, make_generator, derive_seed

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_torch_save",
    "atomic_path",
    "check_output_folder_path",
    "save_figure",
    "seed_everything",
    "make_generator",
    "derive_seed",
]

from xairepro.utils.model_state import preserved_state, model_device  # noqa: E402
from xairepro.utils.progress import (  # noqa: E402
    progress, progress_listener, report_idle, report_progress, report_task,
)

__all__ += ["preserved_state", "model_device", "progress", "progress_listener", "report_progress", "report_task",
            "report_idle"]
