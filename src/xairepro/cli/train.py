"""``xairepro train``: train one model from a run config (YAML and/or ``--set key=value``)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        config: Path = typer.Option(None, "--config", help="YAML run config: sections data, model, method, "
                                    "method_options, train, out_dir."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                            help="Override one config value, e.g. data.name=digits, "
                                                 "model.name=small-cnn, train.epochs=5; repeatable."),
        out: Path = typer.Option(None, "--out", help="Output folder (default: the config's out_dir); "
                                 "a folder holding the same run resumes it."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per epoch."),
        download: bool = typer.Option(False, "--download", help="Fetch a missing real data set from its "
                                      "official source (same as --set data.options.download=true)."),
    ) -> int:
        """Train a model through the engine, print its final metrics and save it (out_dir/model.pt)."""
        # lazy: start-up time of `xairepro --help`
        from rich.console import Console
        from rich.table import Table

        from xairepro.config import resolve_config
        from xairepro.training import RunConfig, train_run

        overrides = list(overrides or []) + (["data.options.download=true"] if download else [])
        cfg = resolve_config(RunConfig, file=config, overrides=overrides)
        if out is not None:
            cfg.out_dir = str(out)
        outcome = train_run(cfg, progress=progress)
        result = outcome.result
        print(f"{cfg.model.name} ({cfg.method}) on {cfg.data.name}: {len(result.history)} epochs")
        table = Table()
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in outcome.metrics.items():
            table.add_row(key, f"{value:.4f}")
        Console().print(table)
        note = f" (resumed after epoch {result.resumed_from})" if result.resumed_from else ""
        if result.stopped_early:
            note += f"; stopped early, best epoch {int(result.best['epoch'])}"
        print(f"model saved to {outcome.model_path}{note}")
        return 0
