"""Image similarity: SSIM (Wang et al. 2004) and PSNR.

Inputs are batches ``(N, C, H, W)``, images ``(H, W, C)`` or maps ``(H, W)``, as tensors,
numpy arrays or PIL images, both of one shape and dtype: uint8 (range 255) or floating point
(range 1 unless ``data_range`` says otherwise).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import torch

from . import _C
from ._options import fill_options

if TYPE_CHECKING:  # pragma: no cover
    import PIL.Image

__all__ = ["ssim", "ssim_map", "psnr"]

# The defaults of the wrappers below: default-constructed C++ Options, the one place they are written.
_SSIM = _C.SsimOptions()
_PSNR = _C.PsnrOptions()

ArrayLike = Union[torch.Tensor, np.ndarray, "PIL.Image.Image"]


def _tensor(x: ArrayLike) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if hasattr(x, "convert") and hasattr(x, "mode"):  # a PIL image
        x = np.asarray(x.convert("RGB"))
    if not isinstance(x, np.ndarray):
        raise TypeError(f"cnnviz: expected a tensor, numpy array or PIL image, got {type(x).__name__}")
    return torch.from_numpy(np.ascontiguousarray(x).copy())


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    data_range: Optional[float] = _SSIM.data_range,
    window_size: int = _SSIM.window_size,
    sigma: float = _SSIM.sigma,
    k1: float = _SSIM.k1,
    k2: float = _SSIM.k2,
    reduction: str = _SSIM.reduction,
) -> torch.Tensor:
    """Structural similarity, 1 for identical images.

    A Gaussian window (``window_size`` 11, ``sigma`` 1.5) over positions fully inside the
    image, constants ``(k1 L)^2`` and ``(k2 L)^2`` with ``L = data_range`` (default 255 for
    uint8, 1 for float), averaged over positions and channels. Returns a 0-dim tensor, or one
    value per image ``(N,)`` with ``reduction="none"`` (``"max"`` is refused). Differentiable for float inputs, so it
    also serves as a loss. Equals skimage's ``structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` averaged over channels.
    """
    return _C.ssim(_tensor(a), _tensor(b), fill_options(_C.SsimOptions, locals()))


def ssim_map(
    a: ArrayLike,
    b: ArrayLike,
    data_range: Optional[float] = _SSIM.data_range,
    window_size: int = _SSIM.window_size,
    sigma: float = _SSIM.sigma,
    k1: float = _SSIM.k1,
    k2: float = _SSIM.k2,
) -> torch.Tensor:
    """The local SSIM ``(N, C, H - w + 1, W - w + 1)`` behind :func:`ssim` (``w`` the window
    size): where two images differ in structure."""
    return _C.ssim_map(_tensor(a), _tensor(b), fill_options(_C.SsimOptions, locals()))


def psnr(a: ArrayLike, b: ArrayLike, data_range: Optional[float] = _PSNR.data_range,
         reduction: str = _PSNR.reduction) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(L^2 / MSE)`` with the MSE over each
    image's ``C, H, W``: a 0-dim float64 tensor (mean over images), or ``(N,)`` with
    ``reduction="none"`` (``"max"`` is refused). Identical images give ``inf``."""
    return _C.psnr(_tensor(a), _tensor(b), fill_options(_C.PsnrOptions, locals()))
