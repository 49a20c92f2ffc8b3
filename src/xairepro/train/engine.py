"""The one training loop of xairepro, built on lightning-fabric (device, precision, DDP).

    engine = Engine(TrainConfig(epochs=20, optimizer=OptimizerConfig(name="sgd", lr=0.03)), out_dir="runs/a")
    result = engine.fit(model, ClassifierObjective(), train_data, val_data)   # resumes from runs/a/last.pt
    engine.evaluate(model, ClassifierObjective(), test_data)                  # {"loss": ..., "accuracy": ...}

Determinism: every epoch draws its data order, its augmentation generator and the global torch RNG
(dropout, noise, masks) from ``derive_seed(seed, ..., epoch)``, so an epoch boundary carries no hidden
RNG state and a run killed after epoch k and resumed from ``last.pt`` ends with bit-identical weights.
Metrics are summed on the device and read once per epoch (no host sync per step).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xairepro.errors import ConfigError
from xairepro.train.augment import build_augmentation, check_augmentation
from xairepro.train.batches import BatchSource
from xairepro.train.config import OptimizerConfig, TrainConfig
from xairepro.train.early_stopping import EarlyStopping
from xairepro.train.ema import EMA
from xairepro.train.schedules import lr_factor, set_lr
from xairepro.train.state import RunState, load_run_state, save_best, save_epoch_checkpoint, save_run_state
from xairepro.utils import derive_seed, make_generator, model_device, preserved_state, progress, report_progress

__all__ = ["Engine", "TrainResult", "build_optimizer"]


@dataclass
class TrainResult:
    """What ``Engine.fit`` returns.

    ``history``: one dict per epoch (``epoch``, ``lr``, ``train/<metric>``, ``val/<metric>``);
    ``best``: the epoch record with the best monitored value (the last one without early stopping);
    ``checkpoints``: paths of the kept epoch checkpoints; ``resumed_from``: epochs already done when
    this call started (``None`` for a fresh run); ``wall_time``: seconds spent in this call.
    """

    history: list[dict[str, float]]
    checkpoints: list[Path]
    best: dict[str, float]
    last: dict[str, float]
    wall_time: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_optimizer(cfg: OptimizerConfig, params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg`` over ``params``."""
    params = list(params)
    if not params:
        raise ValueError("the model has no trainable parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


def _trainable(model: nn.Module, extras: Sequence[nn.Module]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for module in (model, *extras):
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


class _Sums:
    """Weighted sums of per-batch metrics kept on the device; one host read per epoch.

    Each step adds ``n * value`` for every metric with a single ``_foreach_add_`` (no host sync).
    """

    def __init__(self) -> None:
        self.names: list[str] | None = None
        self.totals: list[Tensor] = []
        self.count = 0

    @staticmethod
    def _scalar(value: Any) -> Tensor:
        if isinstance(value, Tensor) and value.dtype == torch.float32 and value.ndim == 0 and not value.requires_grad:
            return value
        return torch.as_tensor(value).detach().to(torch.float32).reshape(())

    def add(self, metrics: dict[str, Any], n: int) -> None:
        if self.names is None:
            self.names = list(metrics)
            self.totals = [torch.zeros((), dtype=torch.float32, device=torch.as_tensor(metrics[k]).device)
                           for k in self.names]
        values = [self._scalar(metrics[k]) for k in self.names]
        torch._foreach_add_(self.totals, values, alpha=n)
        self.count += n

    def means(self, reduce: bool = False) -> dict[str, float]:
        if self.names is None:
            return {}
        packed = torch.stack([*self.totals, torch.tensor(float(self.count), device=self.totals[0].device)])
        if reduce and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(packed)
        values = (packed[:-1] / packed[-1]).tolist()
        return dict(zip(self.names, values))


def _objective_metrics(objective: Any, model: nn.Module, batch: Sequence[Tensor], train: bool
                       ) -> tuple[Tensor | None, dict[str, Any]]:
    if train or not callable(getattr(objective, "evaluate", None)):
        loss, metrics = objective.loss(model, batch)
        return loss, {"loss": loss.detach(), **metrics}
    return None, dict(objective.evaluate(model, batch))


class Engine:
    """Train and evaluate a model with one loop for every objective (see the module docstring)."""

    def __init__(self, cfg: TrainConfig | None = None, out_dir: str | Path | None = None) -> None:
        self.cfg = (cfg if cfg is not None else TrainConfig()).validate()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        check_augmentation(self.cfg.augment)
        self.augment: Any = None

    # ----------------------------------------------------------------------------------------- setup
    def _fabric(self) -> Any:
        from lightning_fabric import Fabric  # lazy: lightning loads when a model trains, not on import

        cfg = self.cfg
        try:
            return Fabric(accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
                          precision=cfg.precision)
        except Exception as exc:  # noqa: BLE001 - e.g. accelerator=cuda without a GPU
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot set up accelerator={cfg.accelerator} devices={cfg.devices} "
                              f"strategy={cfg.strategy} precision={cfg.precision}: {msg}") from None

    @staticmethod
    def _check_objective(objective: Any) -> None:
        if not callable(getattr(objective, "loss", None)):
            raise TypeError(f"objective {type(objective).__name__} has no loss(model, batch) method")

    # ------------------------------------------------------------------------------------------- fit
    def fit(self, model: nn.Module, objective: Any, train_data: Any, val_data: Any = None) -> TrainResult:
        """Train ``model`` in place; resume from ``out_dir/last.pt`` when it exists.

        Afterwards the model holds the best weights (early stopping with ``restore_best``), else the
        EMA weights (``ema`` on), else the last weights.
        """
        self._check_objective(objective)
        fabric = self._fabric()
        if self.cfg.strategy == "ddp_spawn":
            result, blob = fabric.launch(_spawn_worker, self, model, objective, train_data, val_data)
            state = torch.load(io.BytesIO(blob), weights_only=True)
            model.load_state_dict(state["model"])
            _load_objective(objective, state["objective"], state["extras"])
            return result
        fabric.launch()
        return self._fit(fabric, model, objective, train_data, val_data)

    def _fit(self, fabric: Any, model: nn.Module, objective: Any, train_data: Any, val_data: Any
             ) -> TrainResult:
        cfg, start = self.cfg, time.perf_counter()
        rank, world, device = fabric.global_rank, fabric.world_size, fabric.device
        extras = list(objective.modules()) if callable(getattr(objective, "modules", None)) else []
        for module in extras:
            module.to(device)
        train = BatchSource(train_data, cfg.batch_size, device, num_workers=cfg.num_workers, rank=rank,
                            world_size=world, drop_last=cfg.drop_last, what="training data")
        val = (BatchSource(val_data, cfg.batch_size, device, num_workers=cfg.num_workers, what="validation data")
               if val_data is not None else None)
        self.augment = build_augmentation(cfg.augment, train.example_shape)
        optimizer = build_optimizer(cfg.optimizer, _trainable(model, extras))
        fmodel, foptimizer = fabric.setup(model, optimizer)
        if world > 1:
            for name in getattr(objective, "forward_methods", ()):
                if callable(getattr(model, name, None)):
                    fmodel.mark_forward_method(name)
        run = RunState(ema=EMA(model, cfg.ema) if cfg.ema is not None else None,
                       stopper=(EarlyStopping(cfg.early_stopping.monitor, cfg.early_stopping.patience,
                                              cfg.early_stopping.mode, cfg.early_stopping.min_delta)
                                if cfg.early_stopping.monitor else None))
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        resumed_from = None
        if self.out_dir is not None and (self.out_dir / "last.pt").is_file():
            load_run_state(self.out_dir, cfg, run, model, optimizer, objective, extras)
            resumed_from = run.epoch

        epochs_run = 0
        while run.epoch < cfg.epochs and not run.stopped:
            epoch = run.epoch
            record: dict[str, float] = {"epoch": epoch + 1}
            train_metrics, lr = self._train_epoch(fabric, fmodel, foptimizer, objective, extras, train, run,
                                                  epoch, base_lrs)
            record["lr"] = lr
            record.update({f"train/{k}": v for k, v in train_metrics.items()})
            validated = val is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs)
            if validated:
                record.update({f"val/{k}": v for k, v in
                               self._evaluate_pass(fabric, fmodel, objective, extras, val, run.ema).items()})
            run.history.append(record)
            improved = self._early_stopping(run, record, validated, val is not None, epoch)
            run.epoch = epoch + 1
            epochs_run += 1
            if improved and cfg.early_stopping.restore_best:
                run.best_state = self._evaluated_weights(model, run.ema)
            if run.stopper is not None and run.stopper.should_stop:
                run.stopped = True
            if self.out_dir is not None:
                if rank == 0:
                    if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
                        run.checkpoints.append(save_epoch_checkpoint(self.out_dir, epoch + 1, model, lr, run.ema))
                    if improved and run.best_state is not None:
                        save_best(self.out_dir, epoch + 1, run.best_state)
                    save_run_state(self.out_dir, cfg, run, model, optimizer, objective, extras)
                fabric.barrier()
            if cfg.progress and rank == 0:
                _print_record(record, cfg.epochs)

        self._finish(model, run)
        last = run.history[-1] if run.history else {}
        best = last
        if run.stopper is not None and run.stopper.best_epoch is not None:
            best = run.history[run.stopper.best_epoch - 1]
        return TrainResult(history=list(run.history), checkpoints=[self.out_dir / "checkpoints" / name
                                                                   for name in run.checkpoints]
                           if self.out_dir is not None else [], best=dict(best), last=dict(last),
                           wall_time=time.perf_counter() - start, epochs_run=epochs_run, stopped_early=run.stopped,
                           resumed_from=resumed_from, out_dir=self.out_dir)

    def _early_stopping(self, run: RunState, record: dict[str, float], validated: bool, has_val: bool,
                        epoch: int) -> bool:
        stopper = run.stopper
        if stopper is None:
            return False
        if stopper.monitor not in record:
            if stopper.monitor.startswith("val/") and has_val and not validated:
                return False
            available = ", ".join(k for k in record if k not in ("epoch", "lr"))
            raise ConfigError(f"early_stopping.monitor {stopper.monitor!r} is not a metric of this run "
                              f"(available: {available})")
        return stopper.update(record[stopper.monitor], epoch + 1)

    @staticmethod
    def _evaluated_weights(model: nn.Module, ema: EMA | None) -> dict[str, Tensor]:
        if ema is not None:
            return ema.state_dict()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    @staticmethod
    def _finish(model: nn.Module, run: RunState) -> None:
        if run.best_state is not None:
            model.load_state_dict(run.best_state)
        elif run.ema is not None:
            run.ema.copy_to()

    def _train_epoch(self, fabric: Any, fmodel: nn.Module, foptimizer: Any, objective: Any,
                     extras: list[nn.Module], train: BatchSource, run: RunState, epoch: int,
                     base_lrs: list[float]) -> tuple[dict[str, float], float]:
        cfg, rank, device = self.cfg, fabric.global_rank, fabric.device
        fmodel.train()
        for module in extras:
            module.train()
        torch.manual_seed(derive_seed(cfg.seed, "torch", epoch, rank))  # dropout, noise, masks (all devices)
        generator = (make_generator(derive_seed(cfg.seed, "augment", epoch, rank), device)
                     if self.augment is not None else None)
        per_step, steps = cfg.schedule.per == "step", len(train)
        total = cfg.epochs * steps if per_step else cfg.epochs
        lr = set_lr(foptimizer, base_lrs, lr_factor(cfg.schedule, epoch * steps if per_step else epoch, total))
        first_lr = lr
        params = [p for group in foptimizer.param_groups for p in group["params"]]
        extra_params = [p for m in extras for p in m.parameters() if p.requires_grad]
        sums = _Sums()
        batches = progress(train.epoch(derive_seed(cfg.seed, "order", epoch)), enabled=cfg.progress and rank == 0,
                           total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}")
        constant = cfg.schedule.name == "none" and cfg.schedule.warmup == 0
        for step, batch in enumerate(batches):
            if per_step and step and not constant:
                set_lr(foptimizer, base_lrs, lr_factor(cfg.schedule, epoch * steps + step, total))
            if self.augment is not None:
                batch = (self.augment(batch[0], generator=generator), *batch[1:])
            with fabric.autocast():
                loss, metrics = _objective_metrics(objective, fmodel, batch, train=True)
            foptimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            if fabric.world_size > 1 and extra_params:
                _average_gradients(extra_params, fabric.world_size)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            foptimizer.step()
            if run.ema is not None:
                run.ema.update()
            sums.add(metrics, int(batch[0].shape[0]))
            if rank == 0:
                report_progress(f"training epoch {epoch + 1}/{cfg.epochs}, batches", step + 1, steps)
        return sums.means(reduce=fabric.world_size > 1), first_lr

    # -------------------------------------------------------------------------------------- evaluate
    def _evaluate_pass(self, fabric: Any, fmodel: nn.Module, objective: Any, extras: list[nn.Module],
                       source: BatchSource, ema: EMA | None) -> dict[str, float]:
        with contextlib.ExitStack() as stack:
            for module in (fmodel, *extras):
                stack.enter_context(preserved_state(module, eval_mode=True))
            if ema is not None:
                stack.enter_context(ema.applied())
            # under DDP every rank evaluates the whole set; the means are averaged over ranks so that all
            # ranks hold the same record (BatchNorm statistics may differ slightly) and stop together
            return _evaluate_batches(objective, fmodel, source, fabric.autocast, self.cfg.seed, fabric.device,
                                     reduce=fabric.world_size > 1)

    def evaluate(self, model: nn.Module, objective: Any, data: Any) -> dict[str, float]:
        """Mean metrics of ``objective`` over ``data`` (eval mode, no gradients, on the model's device).

        The model's flags and the global RNG are left as they were.
        """
        self._check_objective(objective)
        device = model_device(model)
        source = BatchSource(data, self.cfg.batch_size, device, num_workers=self.cfg.num_workers, what="data")
        bf16 = self.cfg.precision == "bf16-mixed"

        def autocast() -> contextlib.AbstractContextManager[Any]:
            return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

        extras = list(objective.modules()) if callable(getattr(objective, "modules", None)) else []
        with contextlib.ExitStack() as stack:
            for module in (model, *extras):
                stack.enter_context(preserved_state(module, eval_mode=True))
            return _evaluate_batches(objective, model, source, autocast, self.cfg.seed, device)


def _evaluate_batches(objective: Any, model: nn.Module, source: BatchSource, autocast: Any, seed: int,
                      device: torch.device, reduce: bool = False) -> dict[str, float]:
    sums = _Sums()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_seed(seed, "evaluate"))
        for batch in source.epoch(None):
            with autocast():
                _, metrics = _objective_metrics(objective, model, batch, train=False)
            sums.add(metrics, int(batch[0].shape[0]))
    return sums.means(reduce=reduce)


def _average_gradients(params: list[nn.Parameter], world_size: int) -> None:
    """All-reduce (mean) the gradients of an objective's own modules, which DDP does not see."""
    for p in params:
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world_size)


def _load_objective(objective: Any, state: dict[str, Any], extra_states: list[dict[str, Any]]) -> None:
    if callable(getattr(objective, "load_state_dict", None)):
        objective.load_state_dict(state)
    extras = list(objective.modules()) if callable(getattr(objective, "modules", None)) else []
    for module, sd in zip(extras, extra_states):
        module.load_state_dict(sd)


def _spawn_worker(fabric: Any, engine: Engine, model: nn.Module, objective: Any, train_data: Any,
                  val_data: Any) -> tuple[TrainResult, bytes] | None:
    """Body of each ``ddp_spawn`` process; rank 0 sends back the result and the trained state.

    The state travels as ``torch.save`` bytes: tensors sent through a multiprocessing queue would be
    shared by file descriptor, which dies with the worker.
    """
    result = engine._fit(fabric, model, objective, train_data, val_data)
    if fabric.global_rank != 0:
        return None
    extras = list(objective.modules()) if callable(getattr(objective, "modules", None)) else []
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "objective": objective.state_dict() if callable(getattr(objective, "state_dict", None)) else {},
             "extras": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in extras]}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return result, buffer.getvalue()


def _print_record(record: dict[str, float], epochs: int) -> None:
    parts = [f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch",)]
    from tqdm.auto import tqdm  # lazy: start-up time (only when a bar is shown)

    tqdm.write(f"epoch {int(record['epoch'])}/{epochs}: " + "  ".join(parts))
