"""What the layers keep and how they break, in one call each.

- :func:`layer_information`: how much of an image each depth keeps (the notebook's
  challenge 3): the feature inversion of each layer compared with the input in pixel space
  (SSIM, PSNR, MSE), the layers' sizes, and the bottleneck.
- :func:`adversarial_report`: the notebook's challenge 4: an FGSM or PGD example, its
  perturbation, the predictions before and after, how the saliency map changes, and which
  layers an attack moves most.

Layers are qualified module names (``"features.18"``, ``"layer3.1"``) or, as in the
notebook, integers: ``n`` means ``features.n`` when the model has it (VGG's numbering),
else the module named ``n`` (an ``nn.Sequential``). The defaults shown come from the C++
Options structs (``cnnviz._C``).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import torch

from . import _C
from ._options import fill_options
from ._progress import ProgressArg, run_native
from .attribution import TargetLike

__all__ = ["LayerInformation", "AdversarialReport", "layer_information", "adversarial_report"]

LayerInformation = _C.LayerInformation
AdversarialReport = _C.AdversarialReport

_LI = _C.LayerInformationOptions()
_INV = _LI.inversion
_REPORT = _C.AdversarialReportOptions()
_PGD = _C.PgdOptions()

LayerLike = Union[int, str]


def _module_names(model) -> List[str]:
    named = getattr(model, "named_modules", None)
    return [name for name, _ in named()] if callable(named) else []


def _resolve_layers(model, layers: Union[LayerLike, Sequence[LayerLike]]) -> List[str]:
    """Names for layers given as names or notebook-style integers (``features.n``, else ``n``)."""
    if isinstance(layers, (str, int)):
        layers = [layers]
    names = None
    out = []
    for layer in layers:
        if isinstance(layer, bool):
            raise TypeError("cnnviz: a layer is a name or an integer, not a bool")
        if isinstance(layer, int):
            names = _module_names(model) if names is None else names
            for candidate in (f"features.{layer}", str(layer)):
                if candidate in names:
                    out.append(candidate)
                    break
            else:
                raise ValueError(f"cnnviz: layer {layer}: the model has neither 'features.{layer}' nor '{layer}'; "
                                 "name the layer (see cnnviz.summary(model))")
        elif isinstance(layer, str):
            out.append(layer)
        else:
            raise TypeError(f"cnnviz: a layer is a name or an integer, got {type(layer).__name__}")
    return out


def layer_information(model, x: torch.Tensor, layers: Union[LayerLike, Sequence[LayerLike]], *,
                      iterations: int = _INV.iterations, ssim_window_size: int = _LI.ssim_window_size,
                      ssim_sigma: float = _LI.ssim_sigma, ssim_k1: float = _LI.ssim_k1, ssim_k2: float = _LI.ssim_k2,
                      progress: ProgressArg = False,
                      **inversion: Any) -> LayerInformation:
    """How much of x (N, C, H, W) each layer keeps (the notebook's challenge 3).

    For each of ``layers`` (shallow to deep: names, or notebook integers such as
    ``[1, 5, 10, 15, 20, 25, 30]`` for VGG16's ``features.n``): the feature inversion
    (:func:`cnnviz.invert_layers` with ``iterations`` and any other of its keyword arguments,
    e.g. ``optimizer="adam", learning_rate=0.05``; it starts from the mean image, ``init="zeros"``,
    so that leftover start noise does not mask what the layer keeps), compared with x in pixel space (both mapped
    back with the inversion's ``mean``/``std`` and clamped to [0, 1], data range 1) by SSIM
    (Gaussian window ``ssim_window_size``, ``ssim_sigma``; constants ``ssim_k1``, ``ssim_k2``),
    PSNR and MSE; the layer's channel count and spatial size; and the bottleneck: the layer
    whose mean SSIM falls most below the previous layer's (the input counting as 1).

    Returns a ``LayerInformation``: ``layers``, ``inversions`` (``InversionResult`` each, with
    ``.image`` (N, C, H, W)), ``ssim``/``psnr``/``mse`` (L, N) float64, ``channels``,
    ``height``, ``width`` (L,), ``ssim_drop`` (L,), ``bottleneck`` (index) and
    ``bottleneck_layer``. ``progress`` counts inversion steps over all layers; when stopped,
    the layers done are returned with ``stopped_early``.
    """
    names = _resolve_layers(model, layers)
    inv = _C.LayerInformationOptions().inversion  # its defaults (start: the mean image)
    inv.iterations = iterations
    for key, value in inversion.items():
        if key == "init" and isinstance(value, torch.Tensor):
            key = "init_image"
        if key in ("progress",) or not hasattr(inv, key):
            raise TypeError(f"cnnviz: layer_information got an unknown inversion option '{key}'")
        setattr(inv, key, list(value) if key in ("mean", "std") else value)
    o = fill_options(_C.LayerInformationOptions, {"inversion": inv, "ssim_window_size": ssim_window_size,
                                                  "ssim_sigma": ssim_sigma, "ssim_k1": ssim_k1, "ssim_k2": ssim_k2})
    total = iterations * (1 if inv.batch_layers else len(names))
    return run_native(_C.layer_information, progress, total, "layer_information", model, x, names, o)


def adversarial_report(model, x: torch.Tensor, target: TargetLike = None, *, attack: str = _REPORT.attack,
                       eps: float = _PGD.eps, step: float = _PGD.step, steps: int = _PGD.steps,
                       random_start: bool = _PGD.random_start, targeted: bool = _PGD.targeted,
                       layers: Optional[Union[LayerLike, Sequence[LayerLike]]] = None,
                       saliency_reduction: str = _REPORT.saliency.reduction,
                       mean: Sequence[float] = tuple(_PGD.mean), std: Sequence[float] = tuple(_PGD.std),
                       progress: ProgressArg = False) -> AdversarialReport:
    """The notebook's challenge 4 in one call: attack x (N, C, H, W) and report what changed.

    ``attack``: "pgd" (``steps`` signed steps of ``step`` pixels within the L-infinity ball of
    ``eps`` pixels, from a random start when ``random_start``) or "fgsm" (one step of
    ``eps``); untargeted away from ``target`` (default: the predicted class) or, with
    ``targeted``, toward it. ``mean``/``std``: how x was normalized from pixels in [0, 1].

    Returns an ``AdversarialReport``: ``attack`` (an ``AdversarialResult``: ``adversarial``,
    ``perturbation`` in pixels, ``prediction_before``/``after``, ``success``, ...),
    ``probabilities_before``/``after`` (N, K), ``saliency_before``/``after`` (vanilla
    gradients of the attacked class, ``Attribution``), ``saliency_correlation`` (N,) their
    Spearman rank correlation, ``layers`` and ``divergence`` (L, N): ||A(adv) - A(x)|| /
    ||A(x)|| per layer (default layers: every leaf module with parameters), and
    ``most_affected_layer``.
    """
    fg = _C.FgsmOptions()
    fg.eps, fg.targeted, fg.mean, fg.std = eps, targeted, list(mean), list(std)
    pg = _C.PgdOptions()
    pg.eps, pg.step, pg.steps, pg.random_start, pg.targeted = eps, step, steps, random_start, targeted
    pg.mean, pg.std = list(mean), list(std)
    if layers is not None:
        layers = _resolve_layers(model, layers)
        if not layers:
            raise ValueError("cnnviz: adversarial_report: the list of layers is empty (None measures every "
                             "leaf module with parameters)")
    layers = layers or []
    saliency = _C.SaliencyOptions()
    saliency.reduction = saliency_reduction
    o = fill_options(_C.AdversarialReportOptions, {"attack": attack, "fgsm": fg, "pgd": pg, "layers": layers,
                                                   "saliency": saliency}, none_is_default={"layers"})
    return run_native(_C.adversarial_report, progress if attack == "pgd" else False, steps, "adversarial_report",
                      model, x, target, o)
