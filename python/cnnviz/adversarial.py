"""Adversarial examples: FGSM and PGD under an L-infinity budget in pixel units, and how
far an attack moves each layer's activations.

Inputs are normalized batches (N, C, H, W); ``mean``/``std`` say how they were normalized
from pixels in [0, 1], so the budget ``eps`` and the ``step`` are in pixel units (2/255 is
two gray levels) and the adversarial pixels stay in [0, 1]. Untargeted attacks move away
from ``target`` (default: the predicted class), targeted ones toward it.
"""
from __future__ import annotations

from typing import Dict, Sequence, Union

import torch

from . import _C
from ._progress import ProgressArg, run_native
from ._options import fill_options
from .attribution import TargetLike

__all__ = ["AdversarialResult", "fgsm", "pgd", "layer_divergence"]

AdversarialResult = _C.AdversarialResult

_FGSM = _C.FgsmOptions()
_PGD = _C.PgdOptions()


def fgsm(model, x: torch.Tensor, target: TargetLike = None, *, eps: float = _FGSM.eps,
         targeted: bool = _FGSM.targeted, mean: Sequence[float] = tuple(_FGSM.mean),
         std: Sequence[float] = tuple(_FGSM.std)) -> AdversarialResult:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of ``eps`` times the sign
    of the cross-entropy's gradient, in pixels, clamped to [0, 1].

    Returns an ``AdversarialResult``: ``adversarial`` (N, C, H, W, normalized like x),
    ``perturbation`` (pixels, within [-eps, eps]), ``target``, ``logits_before``/``after``,
    ``prediction_before``/``after`` (N,), ``success`` (N,) bool, ``steps`` (1).
    """
    o = fill_options(_C.FgsmOptions, locals())
    return _C.fgsm(model, x, target, o)


def pgd(model, x: torch.Tensor, target: TargetLike = None, *, eps: float = _PGD.eps, step: float = _PGD.step,
        steps: int = _PGD.steps, random_start: bool = _PGD.random_start, targeted: bool = _PGD.targeted,
        mean: Sequence[float] = tuple(_PGD.mean), std: Sequence[float] = tuple(_PGD.std),
        progress: ProgressArg = False) -> AdversarialResult:
    """Projected gradient descent (Madry et al. 2018): ``steps`` signed steps of ``step``
    pixels, each projected onto the ``eps``-ball around x and onto [0, 1], from a random
    point of the ball when ``random_start``. Returns an ``AdversarialResult`` like ``fgsm``;
    ``steps`` counts the steps taken. A ``progress`` callable that returns False stops after
    that step (``stopped_early``); Ctrl-C does the same (``interrupted``): the result is the
    current iterate either way."""
    o = fill_options(_C.PgdOptions, locals())
    return run_native(_C.pgd, progress, steps, "pgd", model, x, target, o)


def layer_divergence(model, clean: torch.Tensor, adversarial: torch.Tensor,
                     layers: Union[str, Sequence[str]]) -> Dict[str, torch.Tensor]:
    """How far the adversarial batch moves each layer: ``{layer: (N,)}`` with
    ||A(adversarial) - A(clean)|| / ||A(clean)|| per sample, from one forward pass."""
    return _C.layer_divergence(model, clean, adversarial, [layers] if isinstance(layers, str) else list(layers))
