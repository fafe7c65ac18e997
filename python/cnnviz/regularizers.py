"""Image priors and the feature-matching loss of feature inversion (Mahendran & Vedaldi).

Each function returns a 0-dim tensor connected to autograd. CPU float32/float64 tensors
run fused native kernels (one pass for the value, one for the analytic gradient, results
independent of the thread count); other devices and dtypes (CUDA, float16, bfloat16) run
the same formulas as composed ATen expressions. Double backward (``create_graph=True``)
works. Where the true derivative is infinite or undefined the gradient is 0 (``|x|^alpha``
at 0 for ``alpha <= 1``, a total-variation term whose differences are both 0 for
``beta < 2``).

Errors: a non-floating dtype raises TypeError; a non-positive or non-finite exponent, an
empty tensor, NaN or infinite values, a wrong rank, mismatched shapes and an all-zero
target raise ValueError.
"""
from __future__ import annotations

import torch

from . import _C

__all__ = ["alpha_norm", "total_variation", "euclidean_loss"]


def alpha_norm(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sum(|x| ** alpha)`` over every element of ``x`` (any shape, e.g. ``(N, C, H, W)``).

    Args:
        x: a floating-point tensor; may require grad.
        alpha: the exponent, > 0. ``alpha = 6`` is Mahendran & Vedaldi's choice for images.

    Returns:
        A 0-dim tensor (the dtype of ``x``; float32 for float16/bfloat16 inputs).

    Example:
        >>> x = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> cnnviz.alpha_norm(x, 2).item()
        5.0
    """
    return _C.alpha_norm(x, float(alpha))


def total_variation(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Total variation of images ``x`` of shape ``(N, C, H, W)`` or ``(C, H, W)``::

        sum over n, c, i < H-1, j < W-1 of
            ((x[i, j+1] - x[i, j]) ** 2 + (x[i+1, j] - x[i, j]) ** 2) ** (beta / 2)

    This is the convention of Mahendran & Vedaldi: forward differences without padding,
    so the last row and column enter only as neighbours. The sum runs over the whole
    batch; images with ``H == 1`` or ``W == 1`` have no terms (total variation 0).

    Args:
        x: a floating-point tensor ``(N, C, H, W)`` or ``(C, H, W)``; may require grad.
        beta: the exponent, > 0. ``beta = 2`` (the notebook's choice) is the fastest;
            ``beta = 1`` is the isotropic total variation.

    Returns:
        A 0-dim tensor (the dtype of ``x``; float32 for float16/bfloat16 inputs).
    """
    return _C.total_variation(x, float(beta))


def euclidean_loss(target: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Normalized squared distance ``||current - target||^2 / ||target||^2``.

    Args:
        target: the reference, e.g. the feature map of the original image ``(N, C, H, W)``.
        current: a tensor of the same shape, dtype and device, e.g. the feature map of the
            image being optimized.

    Returns:
        A 0-dim tensor, differentiable with respect to both arguments.

    Raises:
        ValueError: if ``target`` is all zeros (its norm normalizes the loss).
    """
    return _C.euclidean_loss(target, current)
