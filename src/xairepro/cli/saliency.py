"""``xairepro saliency``: saliency maps of a trained classifier and their faithfulness (and IoU) scores.

    xairepro saliency --checkpoint CK --data NAME --methods gradcam,gradcampp,groupcam,rise \\
        --protocol petsiuk --metrics insdel,road,pixel-flipping --n-images N --out DIR

``--metrics``: ``insdel`` (insertion/deletion under ``--protocol``) and the retrain-free metrics of
``metrics.FAITHFULNESS_METRICS`` (road, pixel-flipping, faithfulness-correlation, confidence-change), every
one scoring the class the protocol explains (the label for lico-fact, else the prediction).

writes ``DIR/saliency_grid.png`` (images x methods), ``DIR/curves.png``, ``DIR/per_image.csv`` (one row
per image and method), ``DIR/summary.csv`` and ``DIR/summary.md`` (mean ± std per method),
``DIR/maps.pt`` (every map) and ``DIR/protocol.json`` (the protocol record, its digest, the run's inputs).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from xairepro.errors import UsageError

if TYPE_CHECKING:  # torch, pandas and the library are imported when the command runs: start-up stays cheap
    # lazy: start-up time of `xairepro --help`
    import torch

DEFAULT_METHODS = "gradcam,gradcampp,groupcam,rise"
DEFAULT_METRICS = "insdel"


def parse_metrics(text: str) -> list[str]:
    """``--metrics`` as distinct names: ``insdel`` or one of ``metrics.FAITHFULNESS_METRICS``."""
    # lazy: start-up time of `xairepro --help`
    from xairepro.metrics import FAITHFULNESS_METRICS

    allowed = ("insdel", *FAITHFULNESS_METRICS)
    names = list(dict.fromkeys(m.strip().lower() for m in text.split(",") if m.strip()))
    unknown = [m for m in names if m not in allowed]
    if not names or unknown:
        raise UsageError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
    return names


def _parse_options(items: list[str]) -> dict[str, Any]:
    # lazy: start-up time of `xairepro --help`
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--data-option {item!r} is not of the form key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _images(ds: Any, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    # lazy: start-up time of `xairepro --help`
    import torch

    n = min(n, len(ds))
    idx = list(range(n))
    if hasattr(ds, "batch"):
        x, y = ds.batch(idx)
    else:
        pairs = [ds[i] for i in idx]
        x, y = torch.stack([p[0] for p in pairs]), torch.as_tensor([int(p[1]) for p in pairs])
    masks = None
    if getattr(ds.info, "task", "") == "segmentation":   # decode only the masks of the explained images
        masks = ds.batch_masks(idx) if hasattr(ds, "batch_masks") else ds.masks[:n]
    return x.float(), torch.as_tensor(y).long(), (masks.bool() if masks is not None else None)


def _check_classifier(model: Any, checkpoint: Path) -> None:
    """Saliency explains class scores: an autoencoder, VAE or SimCLR encoder is refused in the user's terms."""
    # lazy: start-up time of `xairepro --help`
    from xairepro.models import model_info

    name = str((getattr(model, "config", None) or {}).get("name", type(model).__name__))
    try:
        kind = model_info(name).kind
    except UsageError:
        kind = "classifier" if getattr(model, "num_classes", None) else "unknown"
    if kind != "classifier":
        raise UsageError(f"checkpoint {str(checkpoint)!r} holds a model of kind {kind!r} ({name}), not a "
                         "classifier; saliency maps and insertion/deletion explain a classifier's class scores")


def _training_data(record: Any, data: str | None, given: dict[str, Any], split: str,
                   override: bool) -> tuple[str, int, dict[str, Any], dict[str, Any]]:
    """The data set, split seed and loader options to explain, and what the output records about them.

    They are the checkpoint's own (its training record), so the test split is the one held out in
    training; ``--data``/``--data-option`` must agree with it unless ``--override-data`` (recorded).
    ``subset`` (of the split explained) and ``download`` are free.
    """
    # lazy: start-up time of `xairepro --help`
    from xairepro.data import dataset_info

    if record is None:
        if data is None:
            raise UsageError("the checkpoint records no training data (saved outside `xairepro train`); "
                             "name the data set with --data")
        return data, 0, given, {"split_seed_from": "default (the checkpoint records no training data)"}
    trained = dataset_info(record.name)
    note: dict[str, Any] = {"split_seed_from": record.source, "trained_on": record.name,
                            "trained_options": dict(record.options)}
    if data is not None and dataset_info(data).name != trained.name:
        if not override:
            raise UsageError(f"--data {data} contradicts the checkpoint, trained on {record.name!r}; leave --data "
                             "out, or pass --override-data to explain other data (recorded in protocol.json)")
        return data, record.seed, given, {**note, "overrides": {"data": data}}
    effective = {"subset": None, **trained.default_options, **record.options}
    options = {k: v for k, v in record.options.items() if k != "subset" or split == "train"}
    overrides: dict[str, Any] = {}
    for key, value in given.items():
        if key not in ("subset", "download") and key in effective and effective[key] != value:
            if not override:
                raise UsageError(f"--data-option {key}={value!r} contradicts the checkpoint, trained with "
                                 f"{key}={effective[key]!r}; leave it out, or pass --override-data to explain "
                                 "other data (recorded in protocol.json)")
            overrides[key] = value
        options[key] = value
    return trained.name, record.seed, options, {**note, **({"overrides": overrides} if overrides else {})}


def _device(name: str) -> torch.device:
    """``--device``: auto (CUDA when there is one), cpu, cuda, cuda:N; a bad or missing device is bad usage."""
    # lazy: start-up time of `xairepro --help`
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _summary(rows: list[dict[str, Any]], methods: list[str]) -> Any:
    # lazy: start-up time of `xairepro --help`
    import pandas as pd

    from xairepro.metrics import higher_is_better

    df = pd.DataFrame(rows)
    metrics = [c for c in df.columns if higher_is_better(c) is not None]
    agg = df.groupby("method", sort=False)[metrics].agg(["mean", "std", "count"])
    out = pd.DataFrame({"method": methods})
    for m in metrics:
        out[f"{m}_mean"] = [float(agg.loc[k, (m, "mean")]) for k in methods]
        out[f"{m}_std"] = [float(agg.loc[k, (m, "std")]) if agg.loc[k, (m, "count")] > 1 else 0.0 for k in methods]
    out["n_images"] = [int(agg.loc[k, (metrics[0], "count")]) for k in methods]
    return out, metrics


def _markdown(summary: Any, metrics: list[str], header: str) -> str:
    # lazy: start-up time of `xairepro --help`
    from xairepro.metrics import higher_is_better

    arrows = {True: " ↑", False: " ↓", None: ""}
    cols = ["method", "n"] + [f"{m}{arrows[higher_is_better(m)]}" for m in metrics]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        cells = [r["method"], str(r["n_images"])] + [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("saliency")
    def saliency_command(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="Classifier saved by xairepro (train/save_model)."),
        data: str = typer.Option(None, "--data", help="Data set name (default: the one the checkpoint was "
                                 "trained on; see `xairepro list`)."),
        out: Path = typer.Option(..., "--out", help="Output folder (created)."),
        methods: str = typer.Option(DEFAULT_METHODS, "--methods",
                                    help="Comma-separated saliency methods (`xairepro list saliency` names them)."),
        protocol: str = typer.Option("petsiuk", "--protocol",
                                     help="Insertion/deletion protocol preset (`xairepro list saliency`)."),
        metric_names: str = typer.Option(DEFAULT_METRICS, "--metrics",
                                         help="Comma-separated: insdel and retrain-free faithfulness metrics "
                                              "(`xairepro list saliency` names them)."),
        n_images: int = typer.Option(64, "--n-images", help="The first N images of the split are explained."),
        split: str = typer.Option("test", "--split", help="train, val or test."),
        data_dir: Path = typer.Option(None, "--data-dir", help="Folder holding the real data sets."),
        data_options: list[str] = typer.Option([], "--data-option", metavar="KEY=VALUE",
                                               help="Option of the data set (e.g. n=40); repeatable. The "
                                                    "checkpoint's own options apply; one contradicting them "
                                                    "needs --override-data."),
        override_data: bool = typer.Option(False, "--override-data", help="Explain other data than the "
                                           "checkpoint was trained on (--data / --data-option); protocol.json "
                                           "records it."),
        target_layer: str = typer.Option(None, "--target-layer", help="Dotted name of the CAM layer "
                                         "(default: the model's cam_layer)."),
        rise_masks: int = typer.Option(None, "--rise-masks", help="Number of RISE masks (default: RISE's, 4,000)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Images per forward pass "
                                       "(default: 32 on the CPU, 256 on a GPU)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the stochastic methods and metrics: RISE's "
                                 "masks, ROAD's noise, faithfulness-correlation subsets (the data split is the "
                                 "checkpoint's own, from its training record)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
        grid_images: int = typer.Option(8, "--grid-images", help="Images shown in saliency_grid.png."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> int:
        """Explain N images with each method; score the chosen metrics (and soft IoU where masks exist)."""
        # lazy: start-up time of `xairepro --help`
        import pandas as pd
        import torch
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from xairepro.data import load
        from xairepro.explain import method_name
        from xairepro.metrics import FaithfulnessSuite, InsertionDeletionProtocol
        from xairepro.report.saliency_figures import insertion_deletion_curves, saliency_grid
        from xairepro.saliency import evaluate_saliency
        from xairepro.train import load_model
        from xairepro.training import checkpoint_run_record
        from xairepro.utils import atomic_path, atomic_torch_save, atomic_write_text, check_output_folder_path

        names = list(dict.fromkeys(method_name(m) for m in methods.split(",") if m.strip()))
        if not names:
            raise UsageError("--methods names no saliency method")
        proto = InsertionDeletionProtocol.preset(protocol)
        metric_list = parse_metrics(metric_names)
        others = [m for m in metric_list if m != "insdel"]
        protocols = {proto.name: proto} if "insdel" in metric_list else {}
        suite = FaithfulnessSuite(seed=seed)
        for flag, value in (("--n-images", n_images), ("--rise-masks", rise_masks), ("--batch-size", batch_size),
                            ("--grid-images", grid_images)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be >= 1, got {value}")
        check_output_folder_path(out, "--out")
        dev = _device(device)
        given = _parse_options(data_options)
        model = load_model(checkpoint, map_location=dev)  # a missing, corrupted or foreign file: one line
        _check_classifier(model, checkpoint)
        trained = checkpoint_run_record(checkpoint, model.metadata)
        data, split_seed, options, data_note = _training_data(trained, data, given, split, override_data)
        if data_note["split_seed_from"] == "assumed":
            print(f"xairepro: warning: {checkpoint} does not record its data split seed and has no run.json "
                  "beside it; assuming seed 0", file=sys.stderr)
        ds = load(data, split, data_dir, seed=split_seed, **options)
        x, y, seg = _images(ds, n_images)
        if hasattr(model, "check_input"):
            model.check_input(x)
        classes = getattr(model, "num_classes", None)
        if classes is not None and ds.info.num_classes is not None and classes != ds.info.num_classes:
            raise UsageError(f"the checkpoint predicts {classes} classes but {data!r} has {ds.info.num_classes}")
        x, y = x.to(dev), y.to(dev)

        console = Console(stderr=True)
        with Progress(TextColumn("[bold]saliency"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, disable=not progress, transient=True) as bar:
            task = bar.add_task("saliency", total=len(names))
            ev = evaluate_saliency(model, x, y, names, protocols, masks=seg, batch_size=batch_size,
                                   seed=seed, target_layer=target_layer,
                                   options={"rise": {"n_masks": rise_masks}} if rise_masks else None,
                                   progress=lambda _: bar.advance(task), metrics=others, suite=suite,
                                   explain=[proto.target])
        rows = [{k: v for k, v in row.items() if k != "protocol"} for row in ev.rows()]
        maps = {m: ev.maps[m][proto.target].cpu() for m in names}
        results = {m: ev.scores[m][proto.name] for m in names if proto.name in ev.scores.get(m, {})}

        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "per_image.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        summary, metrics = _summary(rows, names)
        with atomic_path(out / "summary.csv") as tmp:
            summary.to_csv(tmp, index=False)
        header = (f"Saliency on {data} ({split}, {x.shape[0]} images), protocol {proto.name} "
                  f"({proto.digest}), checkpoint {checkpoint.name}")
        table = _markdown(summary, metrics, header)
        atomic_write_text(out / "summary.md", table)
        atomic_torch_save({m: v.half() for m, v in maps.items()}, out / "maps.pt")
        k = min(grid_images, x.shape[0])
        titles = [ds.info.class_names[int(c)] if ds.info.class_names else str(int(c)) for c in y[:k]]
        saliency_grid(x[:k].cpu(), {m: v[:k] for m, v in maps.items()}, row_titles=titles,
                      path=out / "saliency_grid.png")
        if results:
            insertion_deletion_curves(results, title=f"{data}: {checkpoint.name}", path=out / "curves.png")
        record = {"protocol": proto.to_dict(), "protocol_digest": proto.digest, "methods": names,
                  "metrics": metric_list, "faithfulness_suite": suite.to_dict(),
                  "method_settings": ev.explainers,
                  "checkpoint": str(checkpoint), "data": data, "split": split, "data_options": options,
                  "split_seed": split_seed, **data_note, "n_images": int(x.shape[0]), "seed": seed,
                  "device": str(dev), "torch": torch.__version__,
                  "python": platform.python_version(),
                  "substrates": "pixel space: images in [0, 1], normalisation inside the model"}
        atomic_write_text(out / "protocol.json", json.dumps(record, indent=2, sort_keys=True, default=str))
        print(table, end="")
        print(f"wrote {out}/saliency_grid.png, {'curves.png, ' if results else ''}per_image.csv, summary.csv, "
              "summary.md, maps.pt, protocol.json")
        return 0
