"""Is an explanation faithful to the model?

- :func:`deletion_insertion`: deletion and insertion curves and their areas (Petsiuk et al.,
  "RISE", 2018). Deleting the pixels a faithful map ranks first makes the score fall fast
  (low deletion AUC); inserting them first makes it rise fast (high insertion AUC).
- :func:`sanity_check`: the model-parameter randomization test (Adebayo et al., "Sanity
  Checks for Saliency Maps", 2018). A map that still looks the same after the model's
  weights are randomized does not explain the model.
- :func:`rank_correlation`: Spearman's rank correlation per sample, ties averaged.

The numeric work runs in the native core; the defaults shown come from the C++ Options
structs (``cnnviz._C``).
"""
from __future__ import annotations

import copy as _copy
from typing import Any, Callable, Optional, Sequence, Union

import torch

from . import _C, _plan
from ._options import fill_options
from ._progress import ProgressArg, run_native
from .attribution import TargetLike

__all__ = [
    "DeletionInsertionResult", "SanityCheckResult", "deletion_insertion", "sanity_check", "rank_correlation",
    "SANITY_CHECK_METHODS",
]

DeletionInsertionResult = _C.DeletionInsertionResult
SanityCheckResult = _C.SanityCheckResult

_DI = _C.DeletionInsertionOptions()
_SC = _C.SanityCheckOptions()

MapLike = Union[torch.Tensor, Any]


def _map_of(attribution: MapLike) -> torch.Tensor:
    """The (N, h, w) map of a tensor or of a method's result: a CAM's ``upsampled`` map,
    otherwise ``map``."""
    if isinstance(attribution, torch.Tensor):
        return attribution
    for name in ("upsampled", "map"):
        value = getattr(attribution, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cnnviz: expected an attribution map (a tensor) or a result with .map, got "
                    f"{type(attribution).__name__}")


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of ``a`` and ``b`` (N, ...) per sample over all other
    dimensions, ties given their average rank: (N,) float64 in [-1, 1] (NaN for a constant
    sample)."""
    return _C.rank_correlation(a, b)


def deletion_insertion(model, x: torch.Tensor, attribution: MapLike, target: TargetLike = None, *,
                       steps: int = _DI.steps, baseline: Union[None, str, torch.Tensor] = None,
                       deletion_baseline: str = _DI.deletion_baseline, insertion_baseline: str = _DI.insertion_baseline,
                       blur_sigma: float = _DI.blur_sigma, score: str = _DI.score,
                       batch_size: Optional[int] = _DI.batch_size,
                       seed: int = _DI.seed, mean: Sequence[float] = tuple(_DI.mean),
                       std: Sequence[float] = tuple(_DI.std), progress: ProgressArg = False) -> DeletionInsertionResult:
    """Deletion and insertion curves of an attribution map (Petsiuk et al. 2018).

    Pixels (all channels) of x (N, C, H, W) are ranked by ``attribution``, most important
    first (ties in a random order seeded by ``seed``). Deletion replaces the top
    ``round(k P / steps)`` of the P pixels by the deletion baseline, insertion puts them into
    the insertion baseline, for k = 0..steps; the target's ``score`` ("probability", RISE's
    choice, or "logit") is recorded at each step. The 2 N steps perturbed images run
    ``batch_size`` at a time (deletion's first point and insertion's last are x itself,
    scored by one forward of x). ``batch_size=None`` (the default) chooses it from the image
    size: on a CPU as many images as keep one batch's input under 2^19 values (3 at
    3 x 224 x 224), at least 1 and at most 16; on other devices 32. Larger batches run slower
    per image on a CPU with glibc's default allocator
    (their activations come from fresh pages on every forward; benchmarks/RESULTS.md,
    "Analysis: deletion/insertion"). The result's ``batch_size`` says which was used.

    ``attribution``: a map (N, h, w), (N, 1, h, w) or (h, w) for one image, or a method's
    result (a CAM's ``upsampled`` map, else its ``map``); a coarser map with the image's
    aspect ratio is upsampled bilinearly. ``target``: default the result's ``target`` when
    a result is given, else the predicted class.

    Baselines ("zeros": the mean color, "black", "blur": x blurred by ``blur_sigma`` pixels,
    "uniform" noise): RISE's defaults are ``deletion_baseline="zeros"`` and
    ``insertion_baseline="blur"``; ``baseline`` (a kind or an image (C, H, W), (1, C, H, W)
    or (N, C, H, W), normalized like x) sets both.

    Returns a ``DeletionInsertionResult``: ``fractions`` (steps + 1,), ``deletion`` and
    ``insertion`` (N, steps + 1), ``deletion_auc`` and ``insertion_auc`` (N,) by the trapezoid
    rule over the fractions, ``target`` (N,), ``logits`` (N, K), ``batch_size``.
    """
    if target is None and not isinstance(attribution, torch.Tensor):
        target = getattr(attribution, "target", None)
    custom_baseline = None
    if isinstance(baseline, torch.Tensor):
        custom_baseline, deletion_baseline, insertion_baseline = baseline, "custom", "custom"
    elif baseline is not None:
        deletion_baseline = insertion_baseline = baseline
    o = fill_options(_C.DeletionInsertionOptions, locals())
    total = 2 * x.shape[0] * steps if x.dim() == 4 and steps > 0 else None
    return run_native(_C.deletion_insertion, progress, total, "deletion_insertion", _plan.forward_plan(model, x), x,
                      _map_of(attribution), target, o)


def _method_names():
    from . import attribution as a

    return {
        "saliency": a.saliency, "smooth_grad": a.smooth_grad, "guided_backprop": a.guided_backprop,
        "integrated_gradients": a.integrated_gradients, "grad_cam": a.grad_cam, "grad_cam_pp": a.grad_cam_pp,
        "layer_cam": a.layer_cam, "score_cam": a.score_cam, "guided_grad_cam": a.guided_grad_cam,
        "occlusion": a.occlusion, "lime": a.lime,
    }


#: Attribution methods sanity_check() takes by name (their keyword arguments pass through).
SANITY_CHECK_METHODS = tuple(sorted(_method_names()))

MethodLike = Union[str, Callable[..., Any]]


def _as_method(method: MethodLike, kwargs) -> Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]:
    if isinstance(method, str):
        methods = _method_names()
        if method not in methods:
            raise ValueError(f"cnnviz: unknown method '{method}'; known: {', '.join(SANITY_CHECK_METHODS)}, "
                             "or a callable (model, x, target) -> map")
        fn = methods[method]
        return lambda m, x, t: _map_of(fn(m, x, target=t, **kwargs))
    if not callable(method):
        raise TypeError(f"cnnviz: method must be a name or a callable (model, x, target), got {type(method).__name__}")
    if kwargs:
        raise TypeError(f"cnnviz: keyword arguments {sorted(kwargs)} are for named methods; bind them in the callable")
    return lambda m, x, t: _map_of(method(m, x, t))


def sanity_check(method: MethodLike, model: torch.nn.Module, x: torch.Tensor,
                 layers_from_top: Union[None, int, Sequence[str]] = None, target: TargetLike = None, *,
                 group_depth: int = _SC.group_depth, ssim: bool = _SC.ssim, seed: int = _SC.seed,
                 progress: ProgressArg = False, **method_kwargs) -> SanityCheckResult:
    """The model-parameter randomization test (Adebayo et al. 2018), cascading from the output.

    A deep copy of ``model`` (``copy.deepcopy``; the model itself is never modified) has its
    modules' parameters re-initialized one step at a time, from the output back, earlier
    steps staying randomized; after each step the map of ``method`` is compared with the
    map for the trained model by Spearman rank correlation (and SSIM of the maps scaled to
    [0, 1] when ``ssim``). A faithful method's correlation falls towards 0. Each parameter
    is redrawn from a normal distribution with the original tensor's mean and standard
    deviation (seeded by ``seed``); BatchNorm running statistics stay.

    ``method``: a name from ``SANITY_CHECK_METHODS`` (``method_kwargs`` pass through, e.g.
    ``layer="features.18"`` for "grad_cam") or a callable ``(model, x, target) -> map`` (a
    tensor (N, h, w) or a result with ``.map``/``.upsampled``), called with the original and
    with the copy. ``target`` (default: the trained model's prediction) is resolved once and
    explained at every step.

    ``layers_from_top``: None for every module that owns parameters, an int for the first
    that many steps of that cascade, or a list of module names (containers expand to their
    modules, output first) to re-initialize in that order. ``group_depth`` d > 0 makes
    modules sharing the first d parts of their names one step (``features.17`` for d = 2).

    Returns a ``SanityCheckResult``: ``steps`` (the module or group each step randomized),
    ``target`` (N,), ``original`` (N, h, w), ``maps`` (S, N, h, w), ``rank_correlation``
    (S, N), ``ssim`` (S, N) or None.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"cnnviz: sanity_check needs a torch.nn.Module or ScriptModule to copy, got "
                        f"{type(model).__name__}")
    fn = _as_method(method, method_kwargs)
    layers = None
    if isinstance(layers_from_top, (list, tuple)):
        layers, layers_from_top = [str(n) for n in layers_from_top], None
    elif layers_from_top is not None and (isinstance(layers_from_top, bool) or not isinstance(layers_from_top, int)):
        raise TypeError("cnnviz: layers_from_top must be None, an int or a list of layer names, got "
                        f"{type(layers_from_top).__name__}")
    o = fill_options(_C.SanityCheckOptions, locals(), none_is_default={"layers"})
    with torch.no_grad():  # a ScriptModule's deepcopy clones its parameters: keep them leaves
        copy = _copy.deepcopy(model)
    return run_native(_C.sanity_check, progress, None, "sanity_check", fn, model, copy, x, target, o)
