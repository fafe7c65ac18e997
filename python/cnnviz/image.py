"""Images: loading and saving, model preprocessing, colormaps, overlays and grids.

An *image* is an ``(H, W, 3)`` uint8 tensor, channels last, as decoded. A model input is a
normalized ``(N, 3, H, W)`` float batch. Every function that takes an image accepts what
:func:`as_image_tensor` accepts: PIL images, numpy arrays and tensors.
"""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import _C
from ._options import fill_options

if TYPE_CHECKING:  # pragma: no cover
    import PIL.Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "as_image_tensor",
    "load_image",
    "decode_image",
    "encode_image",
    "save_image",
    "preprocess",
    "deprocess",
    "resize_image",
    "colormap",
    "colormap_names",
    "overlay",
    "make_grid",
]

#: ImageNet RGB mean and std (torchvision's pretrained models).
IMAGENET_MEAN: Tuple[float, float, float] = tuple(_C.IMAGENET_MEAN)
IMAGENET_STD: Tuple[float, float, float] = tuple(_C.IMAGENET_STD)
#: What the sample CIFAR-10 ResNets were trained with (the ImageNet values, by their
#: training script), not CIFAR-10's own statistics.
CIFAR10_MEAN: Tuple[float, float, float] = tuple(_C.CIFAR10_MEAN)
CIFAR10_STD: Tuple[float, float, float] = tuple(_C.CIFAR10_STD)

# The defaults of the wrappers below: default-constructed C++ Options, the one place they are written.
_DECODE = _C.DecodeOptions()
_PRE = _C.PreprocessOptions()
_CMAP = _C.ColormapOptions()
_OVERLAY = _C.OverlayOptions()
_GRID = _C.GridOptions()

ImageLike = Union[torch.Tensor, np.ndarray, "PIL.Image.Image"]
PathLike = Union[str, "os.PathLike[str]"]


def _pil_to_numpy(image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit gray: keep the precision as floats
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        return (arr / top).astype(np.float32)
    if mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image.convert("RGB"))


def _to_tensor(image: ImageLike) -> torch.Tensor:
    """PIL / numpy / tensor -> tensor (H, W[, C]), uint8 or float, no validation yet."""
    if isinstance(image, torch.Tensor):
        return image
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        image = _pil_to_numpy(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"cnnviz: expected an image (PIL image, numpy array or torch tensor), got {type(image).__name__}"
        )
    arr = image
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(
                f"cnnviz: an integer image must have values in [0, 255], got [{arr.min()}, {arr.max()}]"
            )
        arr = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating) and arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    elif not (arr.dtype == np.uint8 or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"cnnviz: unsupported image dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr).copy())


def _float_pixels(t: torch.Tensor, fn: str) -> torch.Tensor:
    """A float image's values checked against [0, 1], the range every image function
    assumes: one that looks like [0, 255] (maximum above 2) is divided by 255 with a warning,
    other values outside [0, 1] are refused (negative ones usually mean a normalized model
    input, which deprocess() turns back into an image)."""
    if not t.is_floating_point() or t.numel() == 0:
        return t
    lo, hi = float(t.min()), float(t.max())
    if not (lo == lo and hi == hi) or (lo >= -1e-3 and hi <= 1 + 1e-3):
        return t  # in range (NaN and inf are refused by the native checks)
    if lo >= 0 and 2 < hi <= 255:
        warnings.warn(f"cnnviz: {fn}: the float image has values up to {hi:.4g}, beyond [0, 1]; treating it "
                      "as a [0, 255] image and dividing by 255 (pass uint8, or floats in [0, 1])",
                      UserWarning, stacklevel=3)
        return t / 255
    hint = ("; this looks like a normalized model input: use deprocess() to get an image back" if lo < 0
            else "; pass uint8, or floats in [0, 1]")
    raise ValueError(f"cnnviz: {fn}: a float image must have values in [0, 1] (or [0, 255]), "
                     f"got [{lo:.4g}, {hi:.4g}]{hint}")


def as_image_tensor(image: ImageLike) -> torch.Tensor:
    """Any image as a contiguous ``(H, W, 3)`` uint8 tensor.

    Accepts PIL images (any mode), numpy arrays and tensors shaped ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)``, uint8 or floating point with values in ``[0, 1]``. Gray is
    replicated, alpha dropped, floats scaled by 255 and rounded. A normalized model input
    ``(1, 3, H, W)`` is not an image: use :func:`deprocess`.
    """
    return _C.as_image_tensor(_float_pixels(_to_tensor(image), "as_image_tensor"))


def load_image(
    path: PathLike, max_side: int = _DECODE.max_side, max_pixels: int = _DECODE.max_pixels
) -> torch.Tensor:
    """Reads a JPEG, PNG, BMP or GIF (first frame) file as an ``(H, W, 3)`` uint8 tensor.

    Gray and RGBA files are converted to RGB; EXIF orientation is not applied. Files declaring
    more than ``max_side`` pixels per side or ``max_pixels`` in all are refused before any
    pixel memory is allocated. Raises OSError (FileNotFoundError, ...) when the file cannot be
    read and ValueError when it is not a supported image, truncated or corrupt.
    """
    return _C.load_image(os.fspath(path), fill_options(_C.DecodeOptions, locals()))


def decode_image(
    data: Union[bytes, bytearray, memoryview, np.ndarray, torch.Tensor],
    max_side: int = _DECODE.max_side,
    max_pixels: int = _DECODE.max_pixels,
) -> torch.Tensor:
    """Decodes an encoded JPEG, PNG, BMP or GIF held in memory (``bytes``, ``bytearray``, a
    1-D uint8 numpy array or tensor) into an ``(H, W, 3)`` uint8 tensor. Raises ValueError for
    bytes that are not such an image, truncated or corrupt data and oversized images."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ValueError("cnnviz: decode_image takes the encoded bytes as a 1-D uint8 array")
        data = np.ascontiguousarray(data)
    elif isinstance(data, memoryview):
        data = data.tobytes() if not data.contiguous or data.ndim != 1 or data.itemsize != 1 else data
    elif not isinstance(data, (bytes, bytearray, torch.Tensor)):
        raise TypeError(f"cnnviz: decode_image takes bytes, got {type(data).__name__}")
    return _C.decode_image(data, fill_options(_C.DecodeOptions, locals()))


def encode_image(image: ImageLike, format: str = "png", quality: int = _C.JPEG_QUALITY) -> bytes:
    """Encodes an image as ``"png"``, ``"jpeg"`` (``"jpg"``) or ``"bmp"`` bytes. ``(H, W)``
    images are written as gray, ``(H, W, 4)`` as RGBA (PNG, BMP); ``quality`` (1-100) is the
    JPEG quality."""
    return _C.encode_image(_float_pixels(_to_tensor(image), "encode_image"), format, quality)


def save_image(image: ImageLike, path: PathLike, quality: int = _C.JPEG_QUALITY) -> None:
    """Writes an image to ``path``, the format taken from the extension (``.png``, ``.jpg``,
    ``.jpeg``, ``.bmp``; another extension raises ValueError). Accepts ``(H, W)``,
    ``(H, W, 3)`` and ``(H, W, 4)`` images, uint8 or float in ``[0, 1]`` (PIL images and numpy
    arrays too). To save a model input, :func:`deprocess` it first."""
    _C.save_image(_float_pixels(_to_tensor(image), "save_image"), os.fspath(path), quality)


def _size_pair(size, name: str) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"cnnviz: {name} must be an int or (height, width), got {size}")
    return size


def _image_input(image: ImageLike, fn: str = "preprocess") -> torch.Tensor:
    """Image for the native side; float images keep their precision."""
    t = _to_tensor(image)
    if t.dim() == 4:
        raise ValueError(
            f"cnnviz: expected an image (H, W, 3), got a tensor of shape {tuple(t.shape)}; "
            "this looks like a model input (N, C, H, W): use deprocess() to get an image back"
        )
    if t.dim() == 3 and t.shape[0] in (1, 3) and t.shape[-1] not in (1, 3, 4):
        normalized = t.is_floating_point() and t.numel() > 0 and bool(t.min() < 0 or t.max() > 1)
        advice = ("its values leave [0, 1], so it looks normalized: use deprocess() to get an image back"
                  if normalized else
                  "it looks channels-first (C, H, W), as ToTensor() makes: pass image.permute(1, 2, 0)")
        raise ValueError(f"cnnviz: expected an image (H, W, 3), got a tensor of shape {tuple(t.shape)}; {advice}")
    return _float_pixels(t, fn)


_UNSET: Any = object()


def preprocess(
    image: ImageLike,
    size: Union[int, Tuple[int, int], None] = _UNSET,
    resize: Optional[int] = None,
    mean: Sequence[float] = _UNSET,
    std: Sequence[float] = _UNSET,
    antialias: bool = _PRE.antialias,
    *,
    model=None,
) -> torch.Tensor:
    """An image as a normalized model input ``(1, 3, H, W)`` float32.

    ``size`` is an int (square) or ``(height, width)``; without ``resize`` the whole image is
    resized to it (like ``transforms.Resize((h, w))``). With ``resize``, the shorter side is
    first resized to ``resize`` (aspect kept) and the center ``size`` is cropped: the ImageNet
    evaluation protocol is ``preprocess(img, size=224, resize=256)``. ``size=None`` keeps the
    size. Resizing is bilinear and antialiased when shrinking, as torchvision's
    ``Resize(antialias=True)``. Values are scaled to ``[0, 1]``, then ``(x - mean) / std``.

    ``model``: a network whose :class:`cnnviz.zoo.ModelInfo` is known (the sample models, or
    one given to :func:`cnnviz.zoo.describe`) supplies the defaults of ``size``, ``resize``,
    ``mean`` and ``std``; arguments passed explicitly win. Without it the defaults are 224 and
    the ImageNet statistics, and an image at most half that size (a 32x32 CIFAR image) is
    upscaled with a RuntimeWarning.
    """
    from .zoo import info

    spec = info(model) if model is not None else None
    if model is not None and spec is None:
        warnings.warn("cnnviz: preprocess: nothing is known about this model's input; using 224 and "
                      "ImageNet statistics (record them once with cnnviz.zoo.describe)", RuntimeWarning,
                      stacklevel=2)
    size_given = size is not _UNSET
    if not size_given:
        size = spec.input_size[1:] if spec is not None and spec.input_size else tuple(_PRE.size)
        if resize is None and spec is not None:
            resize = spec.resize
    if mean is _UNSET:
        mean = spec.mean if spec is not None else tuple(_PRE.mean)
    if std is _UNSET:
        std = spec.std if spec is not None else tuple(_PRE.std)
    pair = _size_pair(size, "size")
    r = 0 if resize is None else int(resize)
    if resize is not None and r <= 0:
        raise ValueError(f"cnnviz: resize must be a positive int, got {resize}")
    t = _image_input(image)
    if not size_given and spec is None and pair and t.dim() >= 2:
        h, w = int(t.shape[0]), int(t.shape[1])
        if 2 * max(h, w) <= min(pair):
            warnings.warn(f"cnnviz: preprocess upscales a {h}x{w} image to {pair[0]}x{pair[1]} (the default "
                          "size); pass model= (or size=) if the network expects another input size",
                          RuntimeWarning, stacklevel=2)
    values = {"size": list(pair) if pair else [], "resize": r, "mean": list(mean), "std": list(std),
              "antialias": antialias}
    return _C.preprocess(t, fill_options(_C.PreprocessOptions, values))


def deprocess(
    tensor: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Undoes :func:`preprocess`: a normalized ``(1, 3, H, W)`` or ``(3, H, W)`` tensor to an
    ``(H, W, 3)`` uint8 image (``x * std + mean``, clamped to ``[0, 1]``, scaled by 255)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"cnnviz: deprocess takes a tensor, got {type(tensor).__name__}")
    return _C.deprocess(tensor, list(mean), list(std))


def resize_image(image: ImageLike, size: Union[int, Tuple[int, int]], antialias: bool = True) -> torch.Tensor:
    """Resizes an image ``(H, W, C)`` or a float map ``(H, W)`` to ``size`` (int or
    ``(height, width)``), bilinear and antialiased when shrinking. uint8 images stay uint8,
    float maps stay float."""
    t = image if isinstance(image, torch.Tensor) else _to_tensor(image)
    return _C.resize_image(t, list(_size_pair(size, "size")), antialias)


def colormap_names() -> list:
    """The colormap names :func:`colormap` knows (matplotlib's tables)."""
    return list(_C.colormap_names())


def _map_tensor(m) -> torch.Tensor:
    if isinstance(m, torch.Tensor):
        return m
    return torch.from_numpy(np.array(m, dtype=np.float32))


def colormap(
    map: Union[torch.Tensor, np.ndarray],
    name: str = _CMAP.name,
    vmin: Optional[float] = _CMAP.vmin,
    vmax: Optional[float] = _CMAP.vmax,
    symmetric: bool = _CMAP.symmetric,
) -> torch.Tensor:
    """Colors a map ``(H, W)`` (or ``(1, 1, H, W)``) into an ``(H, W, 3)`` uint8 image.

    Values are scaled min-max to ``[0, 1]`` unless ``vmin``/``vmax`` are given;
    ``symmetric=True`` centers the range on 0 (for signed maps with ``"coolwarm"``, ``"bwr"``,
    ``"seismic"``). Colors equal matplotlib's ``imshow(map, cmap=name)``; see
    :func:`colormap_names`.
    """
    return _C.colormap(_map_tensor(map), fill_options(_C.ColormapOptions, locals()))


def overlay(
    image: ImageLike,
    heatmap: Union[torch.Tensor, np.ndarray],
    alpha: float = _OVERLAY.alpha,
    colormap: str = _OVERLAY.colormap,
    vmin: Optional[float] = _OVERLAY.vmin,
    vmax: Optional[float] = _OVERLAY.vmax,
) -> torch.Tensor:
    """Blends a heatmap ``(h, w)`` of any size (resized bilinearly to the image) colored with
    ``colormap`` over an image: ``(1 - alpha) * image + alpha * color``, ``(H, W, 3)`` uint8.
    The heatmap is scaled min-max unless ``vmin``/``vmax`` are given."""
    return _C.overlay(_image_input(image, "overlay"), _map_tensor(heatmap), fill_options(_C.OverlayOptions, locals()))


def _warn_if_clipped(batch) -> None:
    """make_grid shows float values in [0, 1]: a normalized model input (about [-2.1, 2.6])
    would lose most of its pixels to clipping without a word."""
    floats = [t for t in (batch if isinstance(batch, list) else [batch])
              if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()]
    if not floats:
        return
    with torch.no_grad():
        total = sum(t.numel() for t in floats)
        outside = sum(int(((t < -1e-3) | (t > 1 + 1e-3)).sum()) for t in floats)
    if outside:
        warnings.warn(f"cnnviz: make_grid: {outside / total:.0%} of the float values lie outside [0, 1] and are "
                      "clipped; deprocess() normalized model inputs first, or pass normalize=True",
                      UserWarning, stacklevel=3)


def make_grid(
    images,
    nrow: int = _GRID.nrow,
    padding: int = _GRID.padding,
    pad_value: float = _GRID.pad_value,
    normalize: bool = _GRID.normalize,
    scale_each: bool = _GRID.scale_each,
    colormap: Optional[str] = None,
) -> torch.Tensor:
    """Tiles images into one ``(H', W', 3)`` uint8 image, ``nrow`` per row, as
    ``torchvision.utils.make_grid`` lays them out.

    ``images`` is a batch ``(N, C, H, W)`` float with values in ``[0, 1]`` (C in 1 or 3), a
    uint8 batch ``(N, H, W, 3)``, or a list of images of one size (``(H, W, 3)`` uint8, PIL,
    numpy, ``(C, H, W)`` float, ``(H, W)`` float maps). ``normalize`` scales all values
    min-max to ``[0, 1]``, ``scale_each`` each image by its own range (filters, feature maps:
    ``make_grid(act[0].unsqueeze(1), normalize=True, scale_each=True, colormap="viridis")``).
    ``colormap`` colors one-channel images.
    """
    if isinstance(images, torch.Tensor):
        batch = images
    else:
        items = list(images)
        batch = [
            t if isinstance(t, torch.Tensor) and t.is_floating_point() else as_image_tensor(t) for t in items
        ]
    if not normalize and not scale_each:
        _warn_if_clipped(batch)
    options = fill_options(_C.GridOptions, locals(), none_is_default={"colormap"})  # colormap None: gray
    return _C.make_grid(batch, options)
