"""Optimization-based visualization: feature inversion, activation maximization, deep dream.

All loops run in the native core: gradients are taken with respect to the image only (the
model's parameters get no ``.grad`` and keep their ``requires_grad``), each forward pass
stops at the deepest layer needed, and the priors are the fused kernels of
:mod:`cnnviz.regularizers`. Layers are qualified module names as
``model.named_modules()`` gives them (``"features.18"``, ``"layer3.1"``,
``"features.denseblock2"``). Put the model in eval mode first.

Images are normalized model inputs (N, C, H, W) in and out: show results with
``cnnviz.deprocess(result.image[i:i+1])``.

Progress: ``progress=True`` shows a tqdm bar; a callable ``(step, total, loss) -> bool |
None`` is called after every step and stops the loop by returning False (the result then
has ``stopped_early=True``). Ctrl-C (or Jupyter's stop button) ends the loop cleanly: the
partial result comes back with ``interrupted=True`` and a RuntimeWarning.

Live images: ``on_snapshot=fn`` with ``snapshot_every=k`` calls ``fn(step, image)`` every k
steps with the current image(s) (N, C, H, W), normalized, detached (for showing a run as it
goes, e.g. in :func:`cnnviz.dashboard`).

The defaults shown in the signatures come from the C++ Options structs (``cnnviz._C``),
and each wrapper fills its Options from its own arguments (``fill_options``). The loop
options ``iterations``, ``learning_rate``, ``seed``, ``jitter``, ``mean``/``std``,
``snapshot_every``/``on_snapshot`` and ``progress`` mean the same in every loop (one
declaration in C++, each loop with its own defaults); ``optimizer``, ``momentum`` and the
priors ``alpha``, ``lambda_alpha``, ``tv_beta``, ``lambda_tv`` are shared by invert and
maximize.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from . import _C
from ._options import fill_options
from ._progress import ProgressArg, run_native

__all__ = [
    "InversionResult", "MaximizeResult", "DeepDreamResult", "TopFilters", "invert", "invert_layers",
    "inversion_loss", "maximize", "top_filters", "deep_dream",
]

InversionResult = _C.InversionResult
MaximizeResult = _C.MaximizeResult
DeepDreamResult = _C.DeepDreamResult
TopFilters = _C.TopFilters

_INV = _C.InversionOptions()
_MAX = _C.MaximizeOptions()
_DREAM = _C.DeepDreamOptions()


SnapshotArg = Optional[Callable[[int, torch.Tensor], None]]


def _snapshot_callback(on_snapshot: SnapshotArg, snapshot_every: int):
    """None or a callable; a callable without snapshot_every would never be called."""
    if on_snapshot is None:
        return None
    if not callable(on_snapshot):
        raise ValueError("cnnviz: on_snapshot must be a callable (step, image) or None")
    if snapshot_every <= 0:
        raise ValueError("cnnviz: on_snapshot needs snapshot_every > 0 (it is called every snapshot_every steps)")
    return on_snapshot


def _init_args(init: Union[str, torch.Tensor]) -> Dict[str, object]:
    if isinstance(init, torch.Tensor):
        return {"init": _INV.init, "init_image": init}
    return {"init": init, "init_image": None}


_SETTINGS = ("default", "notebook")


def _settings(settings: str, optimizer: str, learning_rate: float, momentum: float):
    """``settings="notebook"``: the notebook's optimizer, learning rate and momentum
    (from ``InversionOptions::notebook()``) wherever the argument was left at its default."""
    if settings not in _SETTINGS:
        raise ValueError(f"cnnviz: settings must be one of {', '.join(map(repr, _SETTINGS))}, got {settings!r}")
    if settings == "notebook":
        nb = _C.InversionOptions.notebook()
        optimizer = nb.optimizer if optimizer == _INV.optimizer else optimizer
        learning_rate = nb.learning_rate if learning_rate == _INV.learning_rate else learning_rate
        momentum = nb.momentum if momentum == _INV.momentum else momentum
    return optimizer, learning_rate, momentum


def _inversion_options(values: Dict[str, object]):
    """InversionOptions from a wrapper's arguments (its ``locals()``)."""
    values = dict(values)
    values["optimizer"], values["learning_rate"], values["momentum"] = _settings(
        values.get("settings", "default"), values["optimizer"], values["learning_rate"], values["momentum"])
    values["on_snapshot"] = _snapshot_callback(values.get("on_snapshot"), values["snapshot_every"])
    values.update(_init_args(values["init"]))
    return fill_options(_C.InversionOptions, values)


def invert(model, x: torch.Tensor, layer: str, *, iterations: int = _INV.iterations, optimizer: str = _INV.optimizer,
           learning_rate: float = _INV.learning_rate, momentum: float = _INV.momentum, lr_decay: float = _INV.lr_decay,
           lr_decay_every: int = _INV.lr_decay_every, alpha: float = _INV.alpha,
           lambda_alpha: float = _INV.lambda_alpha, tv_beta: float = _INV.tv_beta, lambda_tv: float = _INV.lambda_tv,
           init: Union[str, torch.Tensor] = _INV.init, init_blur_sigma: float = _INV.init_blur_sigma,
           seed: int = _INV.seed, jitter: int = _INV.jitter, clamp_pixels: bool = _INV.clamp_pixels,
           mean: Sequence[float] = tuple(_INV.mean), std: Sequence[float] = tuple(_INV.std),
           snapshot_every: int = _INV.snapshot_every, on_snapshot: SnapshotArg = None, settings: str = "default",
           progress: ProgressArg = False) -> InversionResult:
    """Feature inversion (Mahendran & Vedaldi 2015): the image whose activations at
    ``layer`` match those of ``x`` (N, C, H, W), minimizing

        euclidean_loss(phi(x), phi(z)) + lambda_alpha * alpha_norm(z, alpha)
                                       + lambda_tv * total_variation(z, tv_beta).

    The priors are the notebook's ``feature_inversion`` (alpha 6 / 1e-7, beta 2 / 1e-8, from
    standard normal noise); the optimizer is Adam at learning rate 0.1, which converges on
    every sample model. ``settings="notebook"`` takes the notebook's SGD with momentum 0.9
    at learning rate 1e3 instead (it saturates the image on ResNet-20 and MobileNetV2; an
    optimizer argument given explicitly still wins). ``lr_decay_every`` > 0
    multiplies the learning rate by ``lr_decay`` every that many steps. ``init`` is
    "noise" (seeded), "zeros", "blurred" (x blurred by ``init_blur_sigma`` pixels) or a
    start tensor of x's shape. ``jitter`` rolls the image by up to that many pixels before
    each forward; ``clamp_pixels`` keeps it in the valid range of images normalized with
    ``mean``/``std``; ``snapshot_every`` keeps a copy every that many steps and hands it to
    ``on_snapshot(step, image)`` if given.

    Returns an ``InversionResult``: ``image`` (N, C, H, W), ``losses`` (steps,) float64
    (the loss before each update), ``snapshots`` and ``snapshot_steps``, ``final_loss``
    (of ``image``) = ``feature_loss`` (the matching term) + ``prior_loss`` (the priors),
    ``stopped_early``, ``interrupted``, ``layer``.
    """
    o = _inversion_options(locals())
    return run_native(_C.invert, progress, iterations, "invert", model, x, layer, o)


def invert_layers(model, x: torch.Tensor, layers: Sequence[str], *, batch_layers: bool = _INV.batch_layers,
                  iterations: int = _INV.iterations, optimizer: str = _INV.optimizer,
                  learning_rate: float = _INV.learning_rate, momentum: float = _INV.momentum,
                  lr_decay: float = _INV.lr_decay, lr_decay_every: int = _INV.lr_decay_every,
                  alpha: float = _INV.alpha, lambda_alpha: float = _INV.lambda_alpha, tv_beta: float = _INV.tv_beta,
                  lambda_tv: float = _INV.lambda_tv, init: Union[str, torch.Tensor] = _INV.init,
                  init_blur_sigma: float = _INV.init_blur_sigma, seed: int = _INV.seed, jitter: int = _INV.jitter,
                  clamp_pixels: bool = _INV.clamp_pixels, mean: Sequence[float] = tuple(_INV.mean),
                  std: Sequence[float] = tuple(_INV.std), snapshot_every: int = _INV.snapshot_every,
                  on_snapshot: SnapshotArg = None, settings: str = "default",
                  progress: ProgressArg = False) -> Dict[str, InversionResult]:
    """:func:`invert` for several layers (the notebook's layer comparison, challenge 3):
    ``{layer: InversionResult}`` in the order given. The targets of all layers come from
    one forward pass and every layer starts from the same image. ``batch_layers=True``
    optimizes all reconstructions as one batch (one forward to the deepest layer per step);
    the default runs them one after another, which is faster on CPU when the layers'
    depths differ (see benchmarks/RESULTS.md). The progress total counts all layers'
    steps; when the loop is stopped, layers not yet started are left out. ``on_snapshot``
    gets the step within the current run and the images being optimized (all layers' with
    ``batch_layers``)."""
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    o = _inversion_options(locals())
    total = iterations if batch_layers else iterations * len(layers)
    results = run_native(_C.invert_layers, progress, total, "invert_layers", model, x, layers, o)
    return {r.layer: r for r in results}


def inversion_loss(model, x: torch.Tensor, z: torch.Tensor, layer: str, *, alpha: float = _INV.alpha,
                   lambda_alpha: float = _INV.lambda_alpha, tv_beta: float = _INV.tv_beta,
                   lambda_tv: float = _INV.lambda_tv) -> torch.Tensor:
    """The objective :func:`invert` minimizes, at the image ``z`` for the target image ``x``
    (both (N, C, H, W)): a 0-dim tensor in the autograd graph of ``z`` (no jitter), for
    checking gradients or driving a custom optimizer."""
    o = fill_options(_C.InversionOptions, locals())
    return _C.inversion_loss(model, x, z, layer, o)


def _index_list(v, what: str) -> List[int]:
    if isinstance(v, torch.Tensor):
        v = v.flatten().tolist()
    if isinstance(v, bool):
        raise ValueError(f"cnnviz: {what} must be an int or a list of ints, not a bool")
    if hasattr(v, "__index__"):
        return [int(v)]
    try:
        out = [int(i) for i in v]
    except TypeError:
        raise ValueError(f"cnnviz: {what} must be an int or a list of ints, got {type(v).__name__}") from None
    return out


def _size_pair(size) -> List[int]:
    if isinstance(size, int):
        return [size, size]
    return [int(s) for s in size]


def maximize(model, layer: Optional[str] = None, channel: Union[None, int, Sequence[int]] = None, *,
             position: Optional[Tuple[int, int]] = None, logit: Union[None, int, Sequence[int]] = None,
             direction: Optional[torch.Tensor] = None, iterations: int = _MAX.iterations,
             optimizer: str = _MAX.optimizer, learning_rate: float = _MAX.learning_rate,
             momentum: float = _MAX.momentum, size: Union[int, Tuple[int, int]] = tuple(_MAX.size),
             parameterization: str = _MAX.parameterization, decay_power: float = _MAX.decay_power,
             decorrelate: bool = _MAX.decorrelate, sigmoid: bool = _MAX.sigmoid, init_scale: float = _MAX.init_scale,
             init_image: Optional[torch.Tensor] = _MAX.init_image, seed: int = _MAX.seed,
             transforms: bool = _MAX.transforms, pad: int = _MAX.pad, jitter: int = _MAX.jitter,
             scale_min: float = _MAX.scale_min, scale_max: float = _MAX.scale_max, rotate: float = _MAX.rotate,
             lambda_alpha: float = _MAX.lambda_alpha, alpha: float = _MAX.alpha, lambda_tv: float = _MAX.lambda_tv,
             tv_beta: float = _MAX.tv_beta, lambda_blur: float = _MAX.lambda_blur, blur_sigma: float = _MAX.blur_sigma,
             mean: Sequence[float] = tuple(_MAX.mean), std: Sequence[float] = tuple(_MAX.std),
             snapshot_every: int = _MAX.snapshot_every, on_snapshot: SnapshotArg = None,
             progress: ProgressArg = False) -> MaximizeResult:
    """Activation maximization (Olah et al., "Feature Visualization", 2017): images that
    maximize one objective each.

    Objectives (one image per entry, optimized as one batch):
      * ``channel=c`` or ``channel=[c1, c2, ...]``: the mean activation of channel c of
        ``layer`` (challenge 2: ``channel=top_filters(...).channels``);
      * ``channel=c, position=(y, x)``: one neuron of ``layer``'s (N, C, h, w) activation
        (``position=(-1, -1)`` for the centre);
      * ``logit=k`` or a list: the model's output k (a class);
      * ``direction=d``: a direction (C,) in ``layer``'s channel space, or several (B, C).

    The image is ``size`` (height, width), parameterized as an rfft2 spectrum scaled by
    1/f^decay_power (``parameterization="fourier"``) or as pixels (``"pixel"``), its
    colours decorrelated with ImageNet's colour correlation (``decorrelate``) and mapped
    to [0, 1] by a sigmoid, then normalized with ``mean``/``std``. Each step applies random
    transforms (``transforms``): padding by ``pad``, shifts up to ``jitter`` pixels, scaling
    in [``scale_min``, ``scale_max``], rotation up to ``rotate`` degrees. Optional priors on
    the normalized image: ``lambda_alpha`` (alpha norm), ``lambda_tv`` (total variation),
    ``lambda_blur`` (pull towards its Gaussian blur). ``init_image`` (1 or B, 3, H, W),
    normalized, replaces the random start.

    Returns a ``MaximizeResult``: ``image`` (B, 3, H, W) normalized, ``objective`` (B,)
    at the result, ``initial_objective`` (B,) at the start, ``losses`` (steps,) (mean over
    images of -objective + priors), ``snapshots``/``snapshot_steps`` (every
    ``snapshot_every`` steps, each also handed to ``on_snapshot(step, images)``),
    ``stopped_early``, ``interrupted``.
    """
    given = [name for name, v in (("channel", channel), ("logit", logit), ("direction", direction)) if v is not None]
    if len(given) != 1:
        raise ValueError("cnnviz: maximize needs exactly one of channel=, logit= or direction=, got "
                         + (", ".join(given) if given else "none"))
    if position is not None and channel is None:
        raise ValueError("cnnviz: position= goes with channel= (a neuron objective)")
    if logit is None and not isinstance(layer, str):
        raise ValueError("cnnviz: maximize needs a layer name for a channel, neuron or direction objective")
    y = x = -1
    indices: List[int] = []
    if logit is not None:
        kind, indices, layer = "logit", _index_list(logit, "logit"), ""
    elif direction is not None:
        kind = "direction"
    else:
        kind, indices = ("channel" if position is None else "neuron"), _index_list(channel, "channel")
        if position is not None:
            y, x = (int(p) for p in position)
    o = fill_options(_C.MaximizeOptions, {**locals(), "size": _size_pair(size),
                                          "on_snapshot": _snapshot_callback(on_snapshot, snapshot_every)})
    return run_native(_C.maximize, progress, iterations, "maximize", model, kind, layer, indices, y, x, direction, o)


def top_filters(model, x: torch.Tensor, layer: str, k: int = 10, reduction: str = "mean", *,
                reference=None, relative: str = "zscore") -> TopFilters:
    """The ``k`` channels of ``layer`` that each image of ``x`` (N, C, H, W) excites most, by
    mean (or ``reduction="max"``) activation over positions (challenge 2), ranked per image.

    Raw activations favour filters that respond to almost anything (flat colour): with
    ``reference`` (a :class:`cnnviz.FilterStatistics` of the same layer over a reference set
    of images, from :func:`cnnviz.filter_statistics`) the ranking is relative to each
    filter's typical response: ``relative="zscore"`` (a - mean) / std, or ``"ratio"``
    a / mean. Returns ``TopFilters``: ``channels`` (N, k) int64 (highest first), ``scores``
    (N, k) (the ranking score) and ``activations`` (N, k); pass ``channels[i].tolist()`` to
    :func:`maximize` to see what image i's filters respond to."""
    mean = std = None
    if reference is not None:
        mean, std = reference.mean, reference.std
    return _C.top_filters(model, x, layer, int(k), reduction, mean, std, relative)


def deep_dream(model, x: torch.Tensor, layer: Union[str, Sequence[str]], *, iterations: int = _DREAM.iterations,
               octaves: int = _DREAM.octaves, octave_scale: float = _DREAM.octave_scale,
               learning_rate: float = _DREAM.learning_rate, jitter: int = _DREAM.jitter,
               grad_blur_sigma: float = _DREAM.grad_blur_sigma, clamp_pixels: bool = _DREAM.clamp_pixels,
               mean: Sequence[float] = tuple(_DREAM.mean), std: Sequence[float] = tuple(_DREAM.std),
               seed: int = _DREAM.seed, snapshot_every: int = _DREAM.snapshot_every,
               on_snapshot: SnapshotArg = None, progress: ProgressArg = False) -> DeepDreamResult:
    """DeepDream (Mordvintsev et al. 2015): amplifies what ``layer`` (or a list of layers)
    sees in the images ``x`` (N, C, H, W) by gradient ascent on the sum of mean(activation^2),
    over ``octaves`` scales (smallest first, each ``octave_scale`` times the previous, the
    detail found carried up), ``iterations`` steps per octave of ``learning_rate`` times the
    gradient normalized to mean |g| = 1 per image, the image rolled by up to ``jitter``
    pixels before each step, the gradient optionally smoothed (``grad_blur_sigma``) and the
    image clamped to the valid range of ``mean``/``std``. ``on_snapshot(step, image)`` gets
    the current image (at the octave's size) every ``snapshot_every`` steps.

    Returns a ``DeepDreamResult``: ``image`` (N, C, H, W) normalized like x, ``losses``
    (octaves * iterations,), ``stopped_early``, ``interrupted``."""
    layers = [layer] if isinstance(layer, str) else list(layer)
    o = fill_options(_C.DeepDreamOptions, {**locals(), "on_snapshot": _snapshot_callback(on_snapshot, snapshot_every)})
    return run_native(_C.deep_dream, progress, iterations * octaves, "deep_dream", model, x, layers, o)
