"""Drop-in replacement for the notebook's helper module ``cnn_utils``.

The notebook runs unchanged after replacing ``import cnn_utils`` with
``from cnnviz import cnn_utils``. Names and argument order are the notebook's:

- ``euclidian_loss(org_matrix, target_matrix)``: ``||target - org||^2 / ||org||^2``
  (the notebook passes the original image's features first);
- ``alpha_norm(input_matrix, alpha)``: ``sum(|x| ** alpha)``;
- ``total_variation_norm(input_matrix, beta)``: total variation over the spatial dimensions;
- ``recreate_image(im_as_var)``: a normalized ``(1, 3, H, W)`` tensor to an ``H x W x 3``
  uint8 array;
- ``preprocess_image(pil_im, resize_im=True)``: a PIL image or array to a normalized
  ``(1, 3, 224, 224)`` tensor that requires grad.

The losses are cnnviz's fused kernels (``cnnviz.euclidean_loss``, ``cnnviz.alpha_norm``,
``cnnviz.total_variation``). Differences from the helpers the notebook was written with:

- ``total_variation_norm`` differences over height and width. The original indexed a
  4-D ``(N, C, H, W)`` batch as if it were ``(C, H, W)`` (``x[:, :-1, :-1]``), so it
  differenced channels and rows instead of rows and columns. The terms are
  Mahendran & Vedaldi's: ``((x[i, j+1] - x[i, j])^2 + (x[i+1, j] - x[i, j])^2)^(beta/2)``
  for ``i < H-1, j < W-1``, summed over the batch and channels. ``(C, H, W)`` works too.
- ``alpha_norm`` takes the absolute value (``|x| ** alpha``); the original raised ``x``
  itself to ``alpha``, which is negative for odd ``alpha`` and NaN for fractional ``alpha``
  on negative values. For even ``alpha`` (the notebook uses 6) the two agree.
- Bad input raises (TypeError / ValueError) instead of printing a message and going on:
  NaN values, non-positive exponents, an all-zero ``org_matrix``, mismatched shapes.
- ``recreate_image`` detaches and copies to the CPU, so it takes CUDA tensors and tensors
  that require grad; it accepts ``(3, H, W)`` as well as ``(N, 3, H, W)`` (first image).
- ``preprocess_image`` converts to RGB first (grayscale and RGBA inputs work), accepts
  float arrays in [0, 1], and raises TypeError for anything that is not an image.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from PIL import Image

from .regularizers import alpha_norm as _alpha_norm
from .regularizers import euclidean_loss as _euclidean_loss
from .regularizers import total_variation as _total_variation

__all__ = [
    "euclidian_loss",
    "alpha_norm",
    "total_variation_norm",
    "recreate_image",
    "preprocess_image",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

#: The ImageNet normalization of torchvision's VGG16 (and the notebook's ``normalize_image``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def euclidian_loss(org_matrix: torch.Tensor, target_matrix: torch.Tensor) -> torch.Tensor:
    """``||target_matrix - org_matrix||^2 / ||org_matrix||^2`` as a 0-dim tensor.

    The notebook calls ``euclidian_loss(target_features, current_features)``: the first
    argument is the reference whose norm normalizes the loss.
    """
    return _euclidean_loss(org_matrix, target_matrix)


def alpha_norm(input_matrix: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sum(|input_matrix| ** alpha)`` as a 0-dim tensor (any shape, ``alpha > 0``)."""
    return _alpha_norm(input_matrix, alpha)


def total_variation_norm(input_matrix: torch.Tensor, beta: float) -> torch.Tensor:
    """Total variation of ``(N, C, H, W)`` or ``(C, H, W)`` images as a 0-dim tensor::

        sum over i < H-1, j < W-1 of
            ((x[i, j+1] - x[i, j]) ** 2 + (x[i+1, j] - x[i, j]) ** 2) ** (beta / 2)
    """
    return _total_variation(input_matrix, beta)


def recreate_image(im_as_var: torch.Tensor) -> np.ndarray:
    """Undo the ImageNet normalization of an image tensor and return it as a uint8 array.

    Args:
        im_as_var: ``(N, 3, H, W)`` (the first image is used) or ``(3, H, W)``, normalized
            with the ImageNet mean and std; any device, may require grad.

    Returns:
        An ``H x W x 3`` uint8 array (values clipped to [0, 255]).
    """
    if not isinstance(im_as_var, torch.Tensor):
        raise TypeError(f"cnnviz: recreate_image: expected a torch.Tensor, got {type(im_as_var).__name__}")
    x = im_as_var.detach()
    if x.dim() == 4:
        if x.shape[0] == 0:
            raise ValueError("cnnviz: recreate_image: the batch is empty")
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(
            f"cnnviz: recreate_image: expected (N, 3, H, W) or (3, H, W), got {tuple(im_as_var.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"cnnviz: recreate_image: expected a floating-point tensor, got {x.dtype}")
    x = x.to("cpu", torch.float32)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = (x * std + mean).nan_to_num(0.0).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def preprocess_image(pil_im: Union[Image.Image, np.ndarray], resize_im: bool = True) -> torch.Tensor:
    """Turn an image into a normalized ``(1, 3, H, W)`` float tensor that requires grad.

    Args:
        pil_im: a PIL image, or an ``H x W`` / ``H x W x 3`` / ``H x W x 4`` array (uint8,
            or float in [0, 1]).
        resize_im: resize to 224 x 224 (Lanczos) first, as VGG16 expects.

    Returns:
        A float32 tensor ``(1, 3, 224, 224)`` (or the image's own size without resizing),
        normalized with the ImageNet mean and std, with ``requires_grad=True``.
    """
    if isinstance(pil_im, np.ndarray):
        arr = pil_im
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or arr.size == 0:
            raise ValueError(
                f"cnnviz: preprocess_image: expected an H x W, H x W x 3 or H x W x 4 array, got {arr.shape}"
            )
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise TypeError(f"cnnviz: preprocess_image: expected uint8 or float values, got {arr.dtype}")
            if not np.isfinite(arr).all():
                raise ValueError("cnnviz: preprocess_image: the array contains NaN or infinity")
            arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
        pil_im = Image.fromarray(arr)
    if not isinstance(pil_im, Image.Image):
        raise TypeError(
            f"cnnviz: preprocess_image: expected a PIL image or a numpy array, got {type(pil_im).__name__}"
        )
    im = pil_im.convert("RGB")
    if resize_im:
        lanczos = getattr(Image, "Resampling", Image).LANCZOS
        im = im.resize((224, 224), lanczos)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = ((x - mean) / std).unsqueeze(0).contiguous()
    return x.requires_grad_(True)
