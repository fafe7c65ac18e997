"""Drop-in replacement for the notebook's helper module ``cnn_utils``.

The notebook runs unchanged after replacing ``import cnn_utils`` with
``from cnnviz import cnn_utils``. Names, argument order and results are the helpers' own
(the inverted-representation helpers the notebook was written with):

- ``euclidian_loss(org_matrix, target_matrix)``: ``sum((target - org)^2) / sum(org^2)``
  (the notebook passes the original image's features first);
- ``alpha_norm(input_matrix, alpha)``: ``sum(x ** alpha)``;
- ``total_variation_norm(input_matrix, beta)``: the helper's total variation (below);
- ``recreate_image(im_as_var)``: a normalized ``(1, 3, H, W)`` tensor to an ``H x W x 3``
  uint8 array;
- ``preprocess_image(pil_im, resize_im=True)``: a PIL image or array to a normalized
  ``(1, 3, 224, 224)`` float tensor that requires grad.

Compatibility is the point of this module: the same values, the same gradients (autograd
through the same tensor operations, so double backward works too), the same dtypes and
shapes, and NaN in gives NaN out, as with the helpers. Where a result is NaN or infinite a
:class:`NonFiniteWarning` says so (the notebook's own SGD at ``lr=1e3`` can diverge, and
the notebook carries on), but nothing raises that did not raise before. The checked and
fused versions are cnnviz's own API: :func:`cnnviz.euclidean_loss`,
:func:`cnnviz.alpha_norm`, :func:`cnnviz.total_variation` (they reject NaN, mismatched
shapes, non-positive exponents, and ``total_variation`` differences height and width).

Two properties of the helpers that this module keeps, because the notebook's numbers
depend on them:

- ``total_variation_norm`` indexes its input as ``x[:, :-1, :-1]``, written for a
  ``(C, H, W)`` image. On the notebook's ``(1, 3, H, W)`` batches that differences channels
  and rows (dimensions 1 and 2), not rows and columns; on ``(C, H, W)`` it is the spatial
  total variation. :func:`cnnviz.total_variation` is the spatial one for both.
- ``alpha_norm`` raises ``x`` itself to ``alpha`` (no absolute value): negative sums for
  odd ``alpha``, NaN for fractional ``alpha`` at negative values. The notebook's
  ``alpha = 6`` is even.

Extensions where the helpers failed (they change no result the helpers produced):
``alpha_norm`` takes non-contiguous tensors (``reshape`` for ``view``); ``recreate_image``
takes CUDA tensors, tensors that require grad, ``(3, H, W)`` images and bfloat16, and maps
NaN pixels to 0 as ``np.uint8`` does on x86 (without numpy's cast warning);
``preprocess_image`` converts to RGB first (grayscale and RGBA inputs work) and accepts
float arrays in [0, 1]. Inputs that are not images raise TypeError / ValueError where the
helpers printed a message and failed later.
"""
from __future__ import annotations

import copy
import warnings
from typing import Union

import numpy as np
import torch
from PIL import Image

__all__ = [
    "euclidian_loss",
    "alpha_norm",
    "total_variation_norm",
    "recreate_image",
    "preprocess_image",
    "NonFiniteWarning",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

#: The ImageNet normalization of torchvision's VGG16 (and the notebook's ``normalize_image``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NonFiniteWarning(RuntimeWarning):
    """A notebook helper returned NaN or infinity (as the original helper would have)."""


def _warn_if_not_finite(value: torch.Tensor, name: str) -> torch.Tensor:
    # One host read of a scalar per call: small next to the forward pass it follows.
    if value.is_floating_point() and not bool(torch.isfinite(value.detach()).all()):
        warnings.warn(
            f"cnnviz.cnn_utils.{name} returned {value.detach().flatten()[0].item()} (an input is NaN or "
            f"infinite, or the sum overflowed), as the notebook's helper would. If an optimization "
            f"diverged, lower its learning rate; cnnviz's own functions reject such inputs.",
            NonFiniteWarning,
            stacklevel=3,
        )
    return value


def _alpha_norm(input_matrix: torch.Tensor, alpha: float) -> torch.Tensor:
    return ((input_matrix.reshape(-1)) ** alpha).sum()


def alpha_norm(input_matrix: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sum(input_matrix ** alpha)`` over all elements, as a 0-dim tensor of the input's
    dtype (``x`` itself, not ``|x|``: equal to the alpha norm for even ``alpha``)."""
    return _warn_if_not_finite(_alpha_norm(input_matrix, alpha), "alpha_norm")


def total_variation_norm(input_matrix: torch.Tensor, beta: float) -> torch.Tensor:
    """The helper's total variation, as a 0-dim tensor::

        c = x[:, :-1, :-1]
        sum(((c - x[:, 1:, :-1]) ** 2 + (c - x[:, :-1, 1:]) ** 2) ** (beta / 2))

    For a ``(C, H, W)`` image that is Mahendran & Vedaldi's total variation over height and
    width; for an ``(N, C, H, W)`` batch it differences dimensions 1 and 2 (channels and
    rows), as the helper did (see the module docstring; :func:`cnnviz.total_variation` is
    the spatial one).
    """
    to_check = input_matrix[:, :-1, :-1]
    one_bottom = input_matrix[:, 1:, :-1]
    one_right = input_matrix[:, :-1, 1:]
    total_variation = (((to_check - one_bottom) ** 2 + (to_check - one_right) ** 2) ** (beta / 2)).sum()
    return _warn_if_not_finite(total_variation, "total_variation_norm")


def euclidian_loss(org_matrix: torch.Tensor, target_matrix: torch.Tensor) -> torch.Tensor:
    """``sum((target_matrix - org_matrix) ** 2) / sum(org_matrix ** 2)`` as a 0-dim tensor.

    The notebook calls ``euclidian_loss(target_features, current_features)``: the first
    argument is the reference whose norm normalizes the loss. Shapes broadcast as in
    ``target_matrix - org_matrix``.
    """
    distance = _alpha_norm(target_matrix - org_matrix, 2)
    return _warn_if_not_finite(distance / _alpha_norm(org_matrix, 2), "euclidian_loss")


def recreate_image(im_as_var: torch.Tensor) -> np.ndarray:
    """Undo the ImageNet normalization of an image tensor and return it as a uint8 array.

    Args:
        im_as_var: ``(N, 3, H, W)`` (the first image is used) or ``(3, H, W)``, normalized
            with the ImageNet mean and std; any device, may require grad.

    Returns:
        An ``H x W x 3`` uint8 array: ``round(clip(x * std + mean, 0, 1) * 255)``, computed
        in the tensor's dtype as the helper did; NaN pixels give 0.
    """
    if not isinstance(im_as_var, torch.Tensor):
        raise TypeError(f"cnnviz: recreate_image: expected a torch.Tensor, got {type(im_as_var).__name__}")
    x = im_as_var.detach()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] == 0 or x.shape[1] != 3:
        raise ValueError(
            f"cnnviz: recreate_image: expected (N, 3, H, W) with N >= 1 or (3, H, W), got {tuple(im_as_var.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"cnnviz: recreate_image: expected a floating-point tensor, got {x.dtype}")
    if x.dtype == torch.bfloat16:  # numpy has no bfloat16
        x = x.float()
    # The helper's arithmetic, step by step, so that every pixel rounds the same way.
    reverse_mean = [-0.485, -0.456, -0.406]
    reverse_std = [1 / 0.229, 1 / 0.224, 1 / 0.225]
    recreated_im = copy.copy(x.cpu().numpy()[0])
    for c in range(3):
        recreated_im[c] /= reverse_std[c]
        recreated_im[c] -= reverse_mean[c]
    recreated_im[recreated_im > 1] = 1
    recreated_im[recreated_im < 0] = 0
    recreated_im = np.round(recreated_im * 255)
    recreated_im[np.isnan(recreated_im)] = 0
    return np.uint8(recreated_im).transpose(1, 2, 0)


def preprocess_image(pil_im: Union[Image.Image, np.ndarray], resize_im: bool = True) -> torch.Tensor:
    """Turn an image into a normalized ``(1, 3, H, W)`` float32 tensor that requires grad.

    Args:
        pil_im: a PIL image, or an ``H x W`` / ``H x W x 3`` / ``H x W x 4`` array (uint8,
            or float in [0, 1]).
        resize_im: resize to 224 x 224 (Lanczos, PIL's ``ANTIALIAS``) first, as VGG16 expects.

    Returns:
        ``(1, 3, 224, 224)`` (or the image's own size without resizing): ``(x / 255 - mean) /
        std`` per channel with the ImageNet mean and std, ``requires_grad=True``.
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
    if pil_im.mode != "RGB":
        pil_im = pil_im.convert("RGB")
    if resize_im:
        pil_im = pil_im.resize((224, 224), getattr(Image, "Resampling", Image).LANCZOS)
    # The helper's arithmetic: float32 numpy, one channel at a time.
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    im_as_arr = np.float32(pil_im).transpose(2, 0, 1)
    for channel, _ in enumerate(im_as_arr):
        im_as_arr[channel] /= 255
        im_as_arr[channel] -= mean[channel]
        im_as_arr[channel] /= std[channel]
    im_as_ten = torch.from_numpy(np.ascontiguousarray(im_as_arr)).float().unsqueeze_(0)
    return im_as_ten.requires_grad_(True)
