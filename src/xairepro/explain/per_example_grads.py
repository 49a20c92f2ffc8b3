"""Per-example gradients of a label-free loss, batched with ``torch.func``.

    G = per_example_gradients(model, loss_fn, x, params=model.encoder)   # (N, P)
    G[n] = d loss_fn(model, x[n:n+1])[0] / d theta,  theta = the chosen parameters, flattened in order

``loss_fn(model, x) -> (B,)`` returns one loss per example (for an autoencoder: its reconstruction loss).
Supervised losses take the examples as a tuple, ``loss_fn(model, (x, y))``: pass ``inputs=(x, y)``
(see ``xairepro.explain.examples``); every tensor of the tuple is split by example alike.
Gradients are taken with respect to the chosen parameters only (the encoder's, by convention), in eval
mode (BatchNorm statistics and dropout untouched), through ``vmap(grad(...))``.  Where ``vmap`` cannot
batch the model (data-dependent control flow, random ops, some fused kernels such as cuDNN LSTM), a
chunked fallback runs one forward per chunk and takes the chunk's Jacobian with a batched backward.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from xairepro.errors import UsageError
from xairepro.explain.examples import Examples, check_examples, count, device_of, take, to_device
from xairepro.explain.projection import ProjectionKind, Projector
from xairepro.utils import model_device, preserved_state, progress

LossFn = Callable[[nn.Module, Examples], Tensor]
ParamsArg = nn.Module | Iterable[nn.Parameter] | Iterable[str] | None
Strategy = Literal["auto", "vmap", "chunked"]

#: Examples per vectorised call (a memory/speed trade-off only: results do not depend on it).
DEFAULT_BATCH_SIZE = 128
#: Examples per forward in the chunked fallback (its batched backward costs O(b^2) per sub-chunk).
FALLBACK_CHUNK = 16

__all__ = ["per_example_gradients", "random_projection", "resolve_params", "LabelFreeLoss", "LossFn"]


def resolve_params(model: nn.Module, params: ParamsArg = None) -> list[str]:
    """Names (in ``model.named_parameters()``) of the parameters gradients are taken for.

    ``params``: a sub-module of ``model``, an iterable of its parameters or of their names, or ``None``
    for ``model.encoder`` when the model has one (the label-free convention) and all parameters otherwise.
    """
    named = dict(model.named_parameters())
    if params is None:
        encoder = getattr(model, "encoder", None)
        params = encoder if isinstance(encoder, nn.Module) else model
    if isinstance(params, nn.Module):
        items: list[object] = list(params.parameters())
    elif isinstance(params, (str, Tensor)):
        items = [params]
    else:
        items = list(params)
    by_id = {id(p): name for name, p in named.items()}
    names: list[str] = []
    for k, item in enumerate(items):
        if isinstance(item, str):
            if item not in named:
                raise UsageError(f"params: {item!r} is not a parameter name of the model "
                                 f"(it has {len(named)} parameters, e.g. {next(iter(named), 'none')!r})")
            name = item
        elif isinstance(item, Tensor):
            name = by_id.get(id(item))
            if name is None:
                raise UsageError(f"params: tensor #{k} of shape {tuple(item.shape)} is not a parameter "
                                 "of the model (pass the model's own parameters, a sub-module or names)")
        else:
            raise UsageError(f"params: expected parameters, names or a module, got {type(item).__name__}")
        if name not in names:
            names.append(name)
    if not names:
        raise UsageError("params: no parameters selected (the module or list given is empty)")
    return names


class LabelFreeLoss:
    """``loss_fn(model, x)`` evaluated functionally at given values of the chosen parameters.

    ``state`` optionally overrides parameters and buffers (a checkpoint's state dict) without touching
    the model.  ``point()`` is the dict of chosen parameter values; ``flatten``/``unflatten`` map such
    dicts to ``(..., P)`` vectors in the order of ``names``.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, params: ParamsArg = None,
                 state: Mapping[str, Tensor] | None = None) -> None:
        if not callable(loss_fn):
            raise UsageError(f"loss_fn must be callable as loss_fn(model, x) -> (B,), got {type(loss_fn).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.names = resolve_params(model, params)
        values = {n: t.detach() for n, t in model.named_parameters()}
        values.update({n: t.detach() for n, t in model.named_buffers()})
        if state is not None:
            unknown = [k for k in state if k not in values]
            if unknown:
                raise UsageError(f"state has {len(unknown)} entries the model does not have, e.g. {unknown[0]!r}")
            device = model_device(model)
            for k, t in state.items():
                if tuple(t.shape) != tuple(values[k].shape):
                    raise UsageError(f"state[{k!r}] has shape {tuple(t.shape)} but the model's is "
                                     f"{tuple(values[k].shape)}")
                values[k] = t.detach().to(device=device, dtype=values[k].dtype)
        self.values = values
        self.shapes = [tuple(values[n].shape) for n in self.names]
        self.sizes = [values[n].numel() for n in self.names]
        self.n_params = sum(self.sizes)
        self.device = model_device(model)
        self._wrapper = _LossModule(model, loss_fn)

    def point(self) -> dict[str, Tensor]:
        return {n: self.values[n] for n in self.names}

    def losses(self, chosen: Mapping[str, Tensor], x: Examples) -> Tensor:
        """Per-example losses (B,) with the chosen parameters set to ``chosen``."""
        merged = {f"model.{k}": v for k, v in self.values.items()}
        merged.update({f"model.{k}": v for k, v in chosen.items()})
        out = functional_call(self._wrapper, merged, (x,))
        check_loss_shape(out, count(x))
        return out

    def flatten(self, tensors: Mapping[str, Tensor], batch_dims: int = 0) -> Tensor:
        lead = next(iter(tensors.values())).shape[:batch_dims]
        return torch.cat([tensors[n].reshape(*lead, -1) for n in self.names], dim=-1)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        parts = torch.split(flat, self.sizes, dim=-1)
        lead = flat.shape[:-1]
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes)}

    # -- per-example gradients of one chunk ---------------------------------------------------------
    def grads_vmap(self, x: Examples) -> Tensor:
        def one(chosen: dict[str, Tensor], xi: Examples) -> Tensor:
            single = xi.unsqueeze(0) if isinstance(xi, Tensor) else tuple(t.unsqueeze(0) for t in xi)
            return self.losses(chosen, single)[0]

        g = vmap(grad(one), in_dims=(None, 0))(self.point(), x)
        return self.flatten(g, batch_dims=1)

    def grads_chunked(self, x: Examples) -> Tensor:
        leaves = {n: t.clone().requires_grad_(True) for n, t in self.point().items()}
        inputs = list(leaves.values())
        with torch.enable_grad():
            out = self.losses(leaves, x)
            eye = torch.eye(out.shape[0], dtype=out.dtype, device=out.device)
            try:
                rows = torch.autograd.grad(out, inputs, grad_outputs=eye, is_grads_batched=True,
                                           allow_unused=True, materialize_grads=True, retain_graph=True)
                return self.flatten(dict(zip(self.names, rows)), batch_dims=1)
            except (RuntimeError, NotImplementedError):
                pass
            flat = []
            for i in range(out.shape[0]):  # last resort: one backward per example, one forward per chunk
                g = torch.autograd.grad(out[i], inputs, retain_graph=True, allow_unused=True,
                                        materialize_grads=True)
                flat.append(self.flatten(dict(zip(self.names, g))))
            return torch.stack(flat)


class _LossModule(nn.Module):
    """Lets ``functional_call`` substitute parameters while ``loss_fn`` sees the model itself."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, x: Examples) -> Tensor:
        return self._loss_fn(self.model, x)


def check_loss_shape(out: object, n: int) -> None:
    """``loss_fn`` must return a (n,) tensor: one loss per example."""
    if not isinstance(out, Tensor) or out.dim() != 1 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise UsageError(f"loss_fn must return one loss per example, shape ({n},), got {shape} "
                         "(use reduction='none' and average over all but the batch dimension)")


def random_projection(n_params: int, dim: int, seed: int | None = 0, *, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """Gaussian sketch R (n_params, dim) with E[R Rᵀ] = I, so (g R)·(g' R) estimates g·g' (Johnson-Lindenstrauss).

    The dense form of ``Projector(n_params, dim, "gaussian", seed)`` (drawn on the CPU block by block from
    ``seed``, so the same seed gives the same matrix on every device).
    """
    return Projector(n_params, dim, "gaussian", seed).matrix(device, dtype)


def _vmap_with_retry(loss: LabelFreeLoss, chunk: Examples) -> Tensor:
    """``vmap`` the chunk; on CUDA retry once with cuDNN off (cuDNN RNN kernels have no batching rule)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*performance drop.*")
        try:
            return loss.grads_vmap(chunk)
        except (RuntimeError, NotImplementedError):
            if not chunk.is_cuda:
                raise
        with torch.backends.cudnn.flags(enabled=False):
            return loss.grads_vmap(chunk)


def compute_gradients(loss: LabelFreeLoss, x: Examples, *, batch_size: int = DEFAULT_BATCH_SIZE,
                      strategy: Strategy = "auto", projection: Tensor | Callable[[Tensor], Tensor] | None = None,
                      show_progress: bool = False) -> Tensor:
    """Per-example gradients (N, P) -- or (N, k) projected by ``projection`` (a (P, k) matrix or a callable
    (B, P) -> (B, k)) -- for a prepared loss, on the device of ``x``'s (first) tensor.

    The caller is responsible for eval mode (``preserved_state``); see ``per_example_gradients``.
    """
    n = check_examples(x, "inputs")
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    if strategy not in ("auto", "vmap", "chunked"):
        raise UsageError(f"strategy must be 'auto', 'vmap' or 'chunked', got {strategy!r}")
    out_device = device_of(x)
    x = to_device(x, loss.device)
    use_vmap = strategy != "chunked"
    parts = []
    starts = range(0, n, batch_size)
    for start in progress(starts, enabled=show_progress, total=len(starts), desc="per-example gradients"):
        chunk = take(x, slice(start, start + batch_size))
        g = None
        if use_vmap:
            try:
                g = _vmap_with_retry(loss, chunk)
            except (RuntimeError, NotImplementedError):
                if strategy == "vmap":
                    raise
                use_vmap = False  # vmap cannot batch this model: chunked fallback from now on
        if g is None:
            # One forward per sub-chunk and a batched backward for its Jacobian; that costs O(b^2) per
            # sub-chunk of b examples, hence the small sub-chunks.
            g = torch.cat([loss.grads_chunked(take(chunk, slice(i, i + FALLBACK_CHUNK)))
                           for i in range(0, count(chunk), FALLBACK_CHUNK)])
        g = g.detach()
        if projection is not None:
            g = projection(g) if callable(projection) else g @ projection
        parts.append(g)
    return torch.cat(parts).to(out_device)


def per_example_gradients(model: nn.Module, loss_fn: LossFn, inputs: Examples, params: ParamsArg = None, *,
                          state: Mapping[str, Tensor] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                          strategy: Strategy = "auto", projection_dim: int | None = None,
                          projection: ProjectionKind = "gaussian", seed: int | None = 0,
                          show_progress: bool = False) -> Tensor:
    """Per-example gradients of ``loss_fn(model, x) -> (B,)`` w.r.t. ``params``: (N, P), or (N, k) projected.

    ``params``: sub-module, parameters or names of ``model`` (default: ``model.encoder`` if present).
    ``state``: parameter/buffer values to use instead of the model's (e.g. a checkpoint's state dict).
    ``strategy``: ``"vmap"``, ``"chunked"`` (one forward per chunk, batched backward) or ``"auto"``
    (vmap, falling back to chunked where vmap cannot batch the model).  ``projection_dim=k`` multiplies
    the gradients by a seeded sketch R (P, k) that preserves dot products in expectation (``projection``:
    ``gaussian`` or sparse ``rademacher``, see ``xairepro.explain.projection``).
    Runs in eval mode; the model's flags, ``.grad`` and ``requires_grad`` are left as they were.
    """
    loss = LabelFreeLoss(model, loss_fn, params, state)
    proj = None
    if projection_dim is not None:
        proj = Projector(loss.n_params, projection_dim, projection, seed)
    with preserved_state(model, eval_mode=True):
        return compute_gradients(loss, inputs, batch_size=batch_size, strategy=strategy, projection=proj,
                                 show_progress=show_progress)
