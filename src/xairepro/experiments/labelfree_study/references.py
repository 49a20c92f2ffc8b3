"""Published numbers of the Label-Free XAI reproduction (seed 003) as typed data.

Only the pretext-task experiment has numeric tables (Tables 3a/3b on MNIST; Tables 5/6 on
Fashion-MNIST; Tables 7/8 with label-free Integrated Gradients); Figures 1, 2 and 4 publish curves
and box plots only.  Each table is the mean ± std over 5 runs of the Pearson correlation between the
tasks' saliency maps (|label-free GradientShap| or IG) or DkNN example-importance scores.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TASKS", "TASK_LABELS", "PAIRS", "PublishedTable", "PUBLISHED_TABLES", "published", "pair_metric"]

#: The pretext tasks in the seed's table order: reconstruction, denoising, inpainting, classification.
TASKS = ("rec", "den", "inp", "clas")
TASK_LABELS = {"rec": "Rec.", "den": "Den.", "inp": "Inp.", "clas": "Clas."}
#: The lower triangle of the seed's tables, row by row: (row task, column task).
PAIRS = (("den", "rec"), ("inp", "rec"), ("inp", "den"), ("clas", "rec"), ("clas", "den"), ("clas", "inp"))


def pair_metric(kind: str, statistic: str, a: str, b: str) -> str:
    """``saliency_pearson:den-rec`` ...; kind saliency | example, statistic pearson | spearman."""
    return f"{kind}_{statistic}:{a}-{b}"


@dataclass(frozen=True)
class PublishedTable:
    """One published correlation table: (mean, std) per task pair, in ``PAIRS`` order."""

    table: str           # "Table 3a"
    dataset: str         # the study's data set key: "mnist" | "fashion-mnist"
    kind: str            # "saliency" | "example"
    method: str          # the variant of our records: the attribution method, or "dknn"
    values: tuple[tuple[float, float], ...]
    as_reference: bool = True   # False: kept for the record, not matched to our rows (see note)
    note: str = ""

    def pairs(self) -> dict[tuple[str, str], tuple[float, float]]:
        return dict(zip(PAIRS, self.values))


PUBLISHED_TABLES: tuple[PublishedTable, ...] = (
    PublishedTable("Table 3a", "mnist", "saliency", "gradient_shap",
                   ((0.38, 0.02), (0.33, 0.05), (0.32, 0.02), (0.43, 0.02), (0.40, 0.01), (0.35, 0.04))),
    PublishedTable("Table 3b", "mnist", "example", "dknn",
                   ((0.08, 0.04), (0.13, 0.05), (0.09, 0.01), (0.07, 0.02), (0.05, 0.02), (0.08, 0.02))),
    PublishedTable("Table 5", "fashion-mnist", "saliency", "gradient_shap",
                   ((0.49, 0.05), (0.43, 0.02), (0.45, 0.02), (0.37, 0.01), (0.36, 0.02), (0.31, 0.03))),
    PublishedTable("Table 6", "fashion-mnist", "example", "dknn",
                   ((0.27, 0.06), (0.30, 0.03), (0.31, 0.09), (0.07, 0.02), (0.07, 0.03), (0.07, 0.03))),
    PublishedTable("Table 7", "mnist", "saliency", "integrated_gradients",
                   ((0.45, 0.06), (0.43, 0.08), (0.45, 0.05), (0.39, 0.03), (0.40, 0.02), (0.35, 0.05))),
    PublishedTable("Table 8", "mnist", "example", "dknn",
                   ((0.14, 0.04), (0.18, 0.04), (0.21, 0.04), (0.09, 0.02), (0.09, 0.02), (0.10, 0.01)),
                   as_reference=False,
                   note="DkNN correlations of the Integrated-Gradients runs: the same quantity as Table 3b from "
                        "another 5 runs; Table 3b is the reference"),
)


def published(dataset: str, kind: str, method: str) -> PublishedTable | None:
    """The reference table for (study data set key, kind, method), or None."""
    for t in PUBLISHED_TABLES:
        if t.as_reference and (t.dataset, t.kind, t.method) == (dataset, kind, method):
            return t
    return None
