"""Label-free feature importance (Crabbé & van der Schaar 2022) through any captum method.

An encoder f: X -> R^d has no scalar output to explain.  The label-free importance of feature i is
b_i(f, x) = a_i(g_x, x) with the auxiliary scalar g_x(x~) = <f(x), f(x~)> and f(x) held constant.
We pass the anchor f(x) to captum as ``additional_forward_args``, so captum expands it exactly as it
expands the inputs (``repeat`` for Integrated Gradients, ``repeat_interleave`` for noise-tunnel methods)
and every expanded row meets its own anchor.  ``bug_compatible=True`` instead stores the anchors and
tiles them with ``repeat`` as the original code did, which pairs GradientShap's rows with the wrong
anchors at batch > 1.

Per-unit maps |f_j(x) a_i(f_j, x)| use the same machinery: every captum method is linear in the
explained scalar, so f_j(x) a_i(f_j, x) = a_i(<f_j(x) e_j, f(.)>, x); each example is repeated d
times with weight vectors f_j(x) e_j in place of the anchor, all in one call.

Memory: a method that expands every example to several rows (IG: ``n_steps``, GradientShap:
``n_samples``) runs in passes of at most ``max_rows`` rows, by default as many as a memory budget
allows for this model (:mod:`xairepro.explain.memory`): captum's ``internal_batch_size`` splits the
steps, fewer examples go to each call.  The result is the unsplit one up to float rounding.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from captum import attr as captum_attr
from captum.attr import Attribution
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.memory import bytes_per_row, default_budget, rows_within
from xairepro.imaging import gaussian_blur
from xairepro.utils import make_generator, preserved_state

#: Captum defaults the study used (SPEC 6): IG 50 steps, GradientShap 5 samples with stdevs 0, Saliency abs.
IG_STEPS = 50
GRADIENT_SHAP_SAMPLES = 5
GRADIENT_SHAP_STDEVS = 0.0

#: Methods by name (input attribution) and their layer counterparts (``layer=`` given).
METHODS: dict[str, type[Attribution]] = {
    "saliency": captum_attr.Saliency,
    "integrated_gradients": captum_attr.IntegratedGradients,
    "gradient_shap": captum_attr.GradientShap,
    "input_x_gradient": captum_attr.InputXGradient,
    "deeplift": captum_attr.DeepLift,
    "guided_backprop": captum_attr.GuidedBackprop,
    "deconvolution": captum_attr.Deconvolution,
    "feature_ablation": captum_attr.FeatureAblation,
    "occlusion": captum_attr.Occlusion,
    "shapley_value_sampling": captum_attr.ShapleyValueSampling,
    "lime": captum_attr.Lime,
    "kernel_shap": captum_attr.KernelShap,
}
LAYER_METHODS: dict[str, type[Attribution]] = {
    "integrated_gradients": captum_attr.LayerIntegratedGradients,
    "gradient_shap": captum_attr.LayerGradientShap,
    "input_x_gradient": captum_attr.LayerGradientXActivation,
    "deeplift": captum_attr.LayerDeepLift,
    "conductance": captum_attr.LayerConductance,
    "feature_ablation": captum_attr.LayerFeatureAblation,
}

BaselineLike = Tensor | float | int | Callable[[Tensor], Tensor] | None

#: Captum keywords that may hold one row per example (B, ...): split with the batch, repeated for units.
PER_EXAMPLE_KWARGS = ("feature_mask",)


def latent_of(encoder: nn.Module, x: Tensor) -> Tensor:
    """f(x) checked to be a (B, d) tensor; a clear error otherwise."""
    z = encoder(x)
    if not isinstance(z, Tensor):
        raise UsageError(
            f"the encoder must return one (batch, d) tensor of latent vectors, it returned a "
            f"{type(z).__name__}; for a VAE pass the module that maps x to mu"
        )
    if z.ndim != 2 or z.shape[0] != x.shape[0]:
        raise UsageError(
            f"the encoder must return a 2-D (batch, d) tensor, it returned shape {tuple(z.shape)} "
            f"for a batch of {x.shape[0]}; flatten or pool its output first"
        )
    return z


class _InnerProduct(nn.Module):
    """g(x~; w) = <w, f(x~)> row by row; w travels beside x~ through captum's expansions."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x_tilde: Tensor, weights: Tensor) -> Tensor:
        z = latent_of(self.encoder, x_tilde)
        if weights.shape != z.shape:
            raise RuntimeError(f"anchors {tuple(weights.shape)} do not pair with latents {tuple(z.shape)}")
        return (z * weights).sum(-1)


class _TiledInnerProduct(nn.Module):
    """The original wrapper: anchors stored, tiled with ``repeat`` when captum expands the batch."""

    def __init__(self, encoder: nn.Module, weights: Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.weights = weights

    def forward(self, x_tilde: Tensor) -> Tensor:
        z = latent_of(self.encoder, x_tilde)
        n_rows, n_anchor = z.shape[0], self.weights.shape[0]
        if n_rows % n_anchor:
            raise UsageError(
                f"bug_compatible mode needs every internal batch to be a multiple of the batch "
                f"({n_rows} rows for {n_anchor} anchors); drop internal_batch_size"
            )
        return (z * self.weights.repeat(n_rows // n_anchor, 1)).sum(-1)


@contextlib.contextmanager
def _seeded_global_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's and NumPy's global generators (captum draws from them); restore them afterwards."""
    if seed is None:
        yield
        return
    np_state = np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(np_state)


def _per_example_kwargs(kwargs: dict[str, Any], n: int) -> dict[str, Tensor]:
    """The keywords of ``PER_EXAMPLE_KWARGS`` given with one row per example (n > 1 rows)."""
    return {k: v for k, v in kwargs.items()
            if k in PER_EXAMPLE_KWARGS and isinstance(v, Tensor) and v.ndim > 0 and n > 1 and v.shape[0] == n}


def _resolve_method(method: Any, layer: nn.Module | None) -> type[Attribution]:
    if isinstance(method, str):
        table = LAYER_METHODS if layer is not None else METHODS
        key = method.lower().replace("-", "_").replace(" ", "_")
        if key not in table:
            where = "at a layer" if layer is not None else "on inputs"
            raise UsageError(f"unknown method {method!r} {where}; choose one of {sorted(table)}")
        return table[key]
    if isinstance(method, Attribution):
        raise UsageError(
            f"pass the captum class ({type(method).__name__}), not an instance: the wrapper builds "
            f"it around g_x itself"
        )
    if not (inspect.isclass(method) and issubclass(method, Attribution)):
        raise UsageError(f"method must be a captum attribution class or a name, got {method!r}")
    is_layer = issubclass(method, captum_attr.LayerAttribution)
    if layer is not None and not is_layer:
        raise UsageError(f"{method.__name__} attributes inputs; with layer= use a captum Layer* class")
    if layer is None and is_layer:
        raise UsageError(f"{method.__name__} is a layer method: pass layer=<the module to attribute>")
    return method


class LabelFreeAttribution:
    """Label-free feature importance: any captum method applied to g_x(x~) = <f(x), f(x~)>.

    ``method``: a captum attribution class or a name in ``METHODS`` ("saliency", "integrated_gradients",
    "gradient_shap", ...).  ``layer``: attribute at this module's output instead of the input (e.g. the
    embedding of a token encoder); the result is summed over the layer's trailing dimensions beyond
    the input's (``layer_reduce="sum"``) or returned whole (``layer_reduce=None``).
    ``bug_compatible``: reproduce the original code's anchor tiling (wrong for GradientShap at batch > 1).
    The encoder is explained in eval mode; its flags, ``.grad`` and ``requires_grad`` are restored.
    """

    def __init__(self, encoder: nn.Module, method: str | type[Attribution] = "integrated_gradients", *,
                 layer: nn.Module | None = None, bug_compatible: bool = False,
                 layer_reduce: str | None = "sum") -> None:
        if not isinstance(encoder, nn.Module):
            raise UsageError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
        if layer is not None and not any(m is layer for m in encoder.modules()):
            raise UsageError("layer must be a sub-module of the encoder")
        if layer_reduce not in ("sum", None):
            raise UsageError(f"layer_reduce must be 'sum' or None, got {layer_reduce!r}")
        self.encoder = encoder
        self.layer = layer
        self.bug_compatible = bool(bug_compatible)
        self.layer_reduce = layer_reduce
        self.method_class = _resolve_method(method, layer)
        # GradientShap on inputs runs through our seeded sampler (captum's own draws from the global
        # NumPy RNG, so a row's result would depend on the batch it sits in; see docs/decisions.md).
        self._own_gradient_shap = layer is None and issubclass(self.method_class, captum_attr.GradientShap)

    def __repr__(self) -> str:
        return (f"LabelFreeAttribution({type(self.encoder).__name__}, {self.method_class.__name__}, "
                f"bug_compatible={self.bug_compatible})")

    # ------------------------------------------------------------------ public
    def attribute(self, x: Tensor, baselines: BaselineLike = None, *, seed: int | None = 0,
                  batch_size: int | None = None, max_rows: int | None = None, memory_budget: int | None = None,
                  **method_kwargs: Any) -> Tensor:
        """Label-free attributions b(f, x), shaped like ``x`` (for layers: like the layer, reduced).

        ``baselines``: None (captum's default, zeros), a number, one baseline shaped like an example
        (e.g. a data-set mean), one per example (B, ...), a distribution (N, ...) for GradientShap, or a
        callable of ``x`` (e.g. a Gaussian blur); ``"blur"`` = Gaussian blur 21 / sigma 5.  ``seed``
        fixes every random draw.  ``batch_size``: explain at most this many examples per captum call.
        ``max_rows``: rows (examples x steps or samples) per forward/backward pass; default: as many as
        ``memory_budget`` bytes allow (default :func:`~xairepro.explain.memory.default_budget`).  Neither
        changes the result beyond float rounding.  Other keywords go to the captum method (``n_steps``,
        ``internal_batch_size`` (then used as given), ``n_samples``, ``stdevs`` ...).
        """
        x = self._check_input(x)
        with preserved_state(self.encoder, eval_mode=True):
            cap = self._row_cap(x, max_rows, memory_budget)
            anchors = self._latents(x, cap)
            resolved = self._resolve_baselines(baselines, x)
            return self._in_chunks(x, anchors, resolved, seed, method_kwargs, batch_size, cap)

    def attribute_per_unit(self, x: Tensor, baselines: BaselineLike = None, *, seed: int | None = 0,
                           batch_size: int | None = None, max_rows: int | None = None,
                           memory_budget: int | None = None, **method_kwargs: Any) -> Tensor:
        """Per-unit maps |f_j(x) a_i(f_j, x)|, shaped (B, d, *x.shape[1:]) (layers: layer-shaped).

        ``batch_size`` counts (example, unit) rows; ``max_rows`` and ``memory_budget`` as in :meth:`attribute`.
        """
        x = self._check_input(x)
        with preserved_state(self.encoder, eval_mode=True):
            cap = self._row_cap(x, max_rows, memory_budget)
            z = self._latents(x, cap)
            n, d = z.shape
            weights = torch.diag_embed(z).reshape(n * d, d)  # row (b, j) = f_j(x_b) e_j
            base, kind = self._resolve_baselines(baselines, x)
            if kind == "rows":
                base = base.repeat_interleave(d, dim=0)
            method_kwargs = {**method_kwargs, **{k: v.repeat_interleave(d, dim=0) for k, v in
                                                 _per_example_kwargs(method_kwargs, n).items()}}
            rows = x.repeat_interleave(d, dim=0)
            out = self._in_chunks(rows, weights, (base, kind), seed, method_kwargs, batch_size, cap)
        return out.reshape(n, d, *out.shape[1:]).abs()

    # ------------------------------------------------------------------ internals
    def _check_input(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise UsageError(f"x must be a tensor, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise UsageError(f"x must be a non-empty batch shaped (B, ...), got shape {tuple(x.shape)}")
        if self.layer is None and not x.is_floating_point():
            raise UsageError(
                f"x has dtype {x.dtype}: gradients need float inputs; for token ids pass layer=<embedding>"
            )
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise UsageError("x contains NaN or infinite values")
        if not x.is_floating_point() and issubclass(self.method_class, captum_attr.LayerGradientShap):
            raise UsageError(
                "LayerGradientShap interpolates in input space, which token ids do not allow; use "
                "integrated_gradients (interpolates at the layer) or deeplift at the embedding"
            )
        return x.detach()

    def _resolve_baselines(self, baselines: BaselineLike, x: Tensor) -> tuple[Tensor | None, str]:
        """Every accepted baseline form as (tensor or None, kind); kind in none|single|rows|distribution."""
        if baselines is None:
            return None, "none"
        if isinstance(baselines, str):
            if baselines != "blur":
                raise UsageError(f"unknown baseline {baselines!r}; use 'blur', a tensor or a callable")
            baselines = functools.partial(gaussian_blur, strict=True)   # the study's 21 x 21, sigma 5 blur
        if callable(baselines) and not isinstance(baselines, Tensor):
            b = baselines(x)
            if not isinstance(b, Tensor) or b.shape != x.shape:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise UsageError(f"the baseline callable returned {shape}; it must return x's shape {tuple(x.shape)}")
            return b.detach(), "rows"
        if isinstance(baselines, (int, float)):
            value = float(baselines) if x.is_floating_point() else int(baselines)
            return torch.full_like(x[:1], value), "single"
        if not isinstance(baselines, Tensor):
            raise UsageError(f"baselines must be a tensor, a number or a callable, got {type(baselines).__name__}")
        b = baselines.detach().to(device=x.device, dtype=x.dtype)
        example = tuple(x.shape[1:])
        if tuple(b.shape) == example:
            b = b.unsqueeze(0)
        if b.ndim != x.ndim or tuple(b.shape[1:]) != example:
            raise UsageError(
                f"baselines have shape {tuple(baselines.shape)} but x is {tuple(x.shape)}: give one "
                f"baseline shaped {example}, one per example {tuple(x.shape)}, or a callable of x"
            )
        if b.shape[0] == 1:
            return b, "single"
        if b.shape[0] == x.shape[0] and not self._own_gradient_shap:
            return b, "rows"
        if self._own_gradient_shap:
            return b, "distribution"
        raise UsageError(
            f"baselines have {b.shape[0]} rows but x has {x.shape[0]}: give 1 or {x.shape[0]} "
            f"(only GradientShap draws from a distribution of baselines)"
        )

    def _latents(self, x: Tensor, cap: int | None) -> Tensor:
        """f(x) without gradients, ``cap`` rows at a time."""
        step = x.shape[0] if cap is None else cap
        with torch.no_grad():
            return torch.cat([latent_of(self.encoder, x[s:s + step]) for s in range(0, x.shape[0], step)]).detach()

    def _row_cap(self, x: Tensor, max_rows: int | None, memory_budget: int | None) -> int | None:
        """Rows per pass: ``max_rows``, else what ``memory_budget`` allows for this model (None: no cap, for
        methods whose random draws depend on the batch, so that splitting it would change the result)."""
        if max_rows is not None:
            if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
                raise UsageError(f"max_rows must be a positive int, got {max_rows!r}")
            return max_rows
        if issubclass(self.method_class, captum_attr.LayerGradientShap):
            return None  # captum draws its samples from the global RNG for the whole batch at once
        budget = default_budget(x.device) if memory_budget is None else memory_budget
        g = _InnerProduct(self.encoder)
        with torch.no_grad():
            anchor = latent_of(self.encoder, x[:1])
        per_row = bytes_per_row(lambda rows: g(rows, anchor.expand(rows.shape[0], -1)), x)
        return rows_within(budget, per_row)

    def _expansion(self, kwargs: dict[str, Any]) -> tuple[int, int]:
        """(rows per example in one call, rows per example the method's ``internal_batch_size`` cannot split:
        2 for LayerConductance's step pairs, else 1; 0 when the method has no ``internal_batch_size``)."""
        if self._own_gradient_shap:
            return int(kwargs.get("n_samples", GRADIENT_SHAP_SAMPLES)), 1
        params = inspect.signature(self.method_class.attribute).parameters
        if "perturbations_per_eval" in params:
            return int(kwargs.get("perturbations_per_eval", 1)), 0
        for name in ("n_steps", "n_samples"):
            if name in params:
                default = params[name].default
                steps = int(kwargs.get(name, default if isinstance(default, int) else 1))
                split = 2 if issubclass(self.method_class, captum_attr.LayerConductance) else 1
                return steps, split if "internal_batch_size" in params else 0
        return (2 if issubclass(self.method_class, captum_attr.DeepLift) else 1), 0

    def _in_chunks(self, x: Tensor, weights: Tensor, resolved: tuple[Tensor | None, str], seed: int | None,
                   kwargs: dict[str, Any], batch_size: int | None, max_rows: int | None = None) -> Tensor:
        """``_attribute_rows`` over chunks of at most ``batch_size`` examples (all at once for None), each
        pass through the model at most ``max_rows`` rows (examples x steps or samples).

        Lime and KernelShap always run row by row: captum fits one surrogate per example anyway, drawing
        from the global RNG in turn, so only a per-row seed makes a row's result independent of its batch.
        """
        if batch_size is not None and int(batch_size) < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if issubclass(self.method_class, captum_attr.LimeBase):
            batch_size = 1
        if max_rows is not None:
            expand, unsplit = self._expansion(kwargs)
            if unsplit and "internal_batch_size" not in kwargs:  # captum splits the steps: rows <= max_rows
                batch_size = min(batch_size or x.shape[0], max(1, max_rows // unsplit))
                kwargs = {**kwargs, "internal_batch_size": max(max_rows, unsplit * batch_size)}
            elif not unsplit:
                batch_size = min(batch_size or x.shape[0], max(1, max_rows // max(1, expand)))
        if batch_size is None or int(batch_size) >= x.shape[0]:
            return self._attribute_rows(x, weights, resolved, seed, kwargs)
        base, kind = resolved
        step = int(batch_size)
        per_example = _per_example_kwargs(kwargs, x.shape[0])
        return torch.cat([
            self._attribute_rows(x[s:s + step], weights[s:s + step],
                                 (base[s:s + step] if kind == "rows" else base, kind), seed,
                                 {**kwargs, **{k: v[s:s + step] for k, v in per_example.items()}})
            for s in range(0, x.shape[0], step)
        ])

    def _attribute_rows(self, x: Tensor, weights: Tensor, resolved: tuple[Tensor | None, str],
                        seed: int | None, kwargs: dict[str, Any]) -> Tensor:
        """Attribute sum_k w_k f_k(x~) at every row of ``x`` (w: (B, d) weights, one row per input)."""
        baselines, kind = resolved
        if self._own_gradient_shap:
            return self._gradient_shap(x, weights, baselines, kind, seed, **kwargs)
        if self.bug_compatible:
            forward: nn.Module = _TiledInnerProduct(self.encoder, weights)
            extra: dict[str, Any] = {}
        else:
            forward = _InnerProduct(self.encoder)
            extra = {"additional_forward_args": (weights,)}
        explainer = (self.method_class(forward, self.layer) if self.layer is not None
                     else self.method_class(forward))
        params = inspect.signature(explainer.attribute).parameters
        if "additional_forward_args" in kwargs or "target" in kwargs:
            raise UsageError("target and additional_forward_args are set by the label-free wrapper")
        if baselines is not None:
            if "baselines" not in params:
                raise UsageError(f"{self.method_class.__name__} takes no baselines")
            if kind == "single":
                baselines = baselines.expand_as(x)
            kwargs = {**kwargs, "baselines": baselines}
        if isinstance(explainer, captum_attr.GradientAttribution) and x.is_floating_point():
            x = x.detach().requires_grad_(True)  # a fresh alias: the caller's flag is untouched
        with _seeded_global_rng(seed, x.device):
            out = explainer.attribute(x, **extra, **kwargs)
        if isinstance(out, tuple):  # (attributions, delta) when return_convergence_delta=True
            out = out[0]
        if self.layer is not None and self.layer_reduce == "sum" and out.ndim > x.ndim:
            out = out.sum(dim=tuple(range(x.ndim, out.ndim)))
        return out.detach()

    def _gradient_shap(self, x: Tensor, weights: Tensor, baselines: Tensor | None, kind: str,
                       seed: int | None,
                       n_samples: int = GRADIENT_SHAP_SAMPLES, stdevs: float = GRADIENT_SHAP_STDEVS,
                       internal_batch_size: int | None = None, **unknown: Any) -> Tensor:
        """GradientShap as captum defines it, with draws from a local generator.

        Attribution = mean_k (x + eps_k - b_k) * grad g(b_k + alpha_k (x + eps_k - b_k)), alpha_k ~ U(0, 1),
        b_k drawn from the baselines, eps_k ~ N(0, stdevs^2).  The K draws depend on ``seed`` only, so
        every row gets the same draws and a row's result does not depend on its batch.
        Rows are expanded sample-fastest (``repeat_interleave``, as captum's noise tunnel does).
        """
        if unknown:
            raise UsageError(f"unknown GradientShap options {sorted(unknown)}; "
                             f"use n_samples, stdevs, internal_batch_size")
        if int(n_samples) < 1:
            raise UsageError(f"n_samples must be >= 1, got {n_samples}")
        n, k = x.shape[0], int(n_samples)
        gen = make_generator(seed, "cpu")
        alphas = torch.rand(k, generator=gen, dtype=torch.float64)
        if baselines is None:
            baselines, kind = torch.zeros_like(x[:1]), "single"
        picks = torch.randint(baselines.shape[0], (k,), generator=gen)
        noise = torch.randn((k, *x.shape[1:]), generator=gen, dtype=torch.float64) * float(stdevs)
        noise = noise.to(device=x.device, dtype=x.dtype)
        alphas = alphas.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))

        x_rows = x.repeat_interleave(k, dim=0) + noise.repeat(n, *([1] * (x.ndim - 1)))
        if kind == "distribution":
            b_rows = baselines[picks.to(baselines.device)].repeat(n, *([1] * (x.ndim - 1)))
        elif kind == "rows":
            b_rows = baselines.repeat_interleave(k, dim=0)
        else:
            b_rows = baselines.expand(n * k, *x.shape[1:])
        scaled = b_rows + alphas.repeat(n, *([1] * (x.ndim - 1))) * (x_rows - b_rows)
        w_rows = weights.repeat(k, 1) if self.bug_compatible else weights.repeat_interleave(k, dim=0)

        chunk = int(internal_batch_size) if internal_batch_size else n * k
        grads = []
        g = _InnerProduct(self.encoder)
        for start in range(0, n * k, chunk):
            part = scaled[start:start + chunk].detach().requires_grad_(True)
            with torch.enable_grad():
                out = g(part, w_rows[start:start + chunk])
                grads.append(torch.autograd.grad(out.sum(), part)[0])
        attr = (x_rows - b_rows) * torch.cat(grads)
        return attr.reshape(n, k, *x.shape[1:]).mean(dim=1).detach()
