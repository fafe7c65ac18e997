"""Matplotlib helpers for notebooks: image rows, grids, heatmaps and overlays.

Every function takes images in any form :func:`cnnviz.as_image_tensor` accepts, plus
normalized model inputs ``(1, 3, H, W)`` / ``(3, H, W)`` (float tensors, deprocessed with
``mean``/``std``, ImageNet by default) and maps ``(H, W)``, ``(1, H, W)``, ``(1, 1, H, W)``
(shown with a colormap).

With ``show=True`` (the default) a figure is drawn with pyplot and shown, and nothing is
returned (so a notebook shows it once). With ``show=False`` the figure is built with
matplotlib's object API and returned, e.g. to ``fig.savefig(...)``. Functions with an ``ax``
argument draw into that axes instead and return it.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from . import image as _image

__all__ = ["show_images", "show_grid", "show_heatmap", "show_overlay", "show_attribution", "to_display"]


def _is_model_input(t: torch.Tensor) -> bool:
    if not t.is_floating_point():
        return False
    # One-channel tensors are maps (saliency, CAM), shown with a colormap.
    if t.dim() == 4:
        return t.shape[0] == 1 and t.shape[1] == 3
    return t.dim() == 3 and t.shape[0] == 3 and t.shape[-1] not in (1, 3, 4)


def to_display(img, mean: Sequence[float] = _image.IMAGENET_MEAN, std: Sequence[float] = _image.IMAGENET_STD):
    """What imshow should get: an ``(H, W, 3)`` uint8 array for images, a float ``(H, W)`` array
    for maps. Float ``(1, 3, H, W)`` and ``(3, H, W)`` tensors are deprocessed with mean/std."""
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if _is_model_input(t):
            return _image.deprocess(t, list(mean), list(std)).numpy()
        while t.dim() > 2 and t.shape[0] == 1 and t.is_floating_point():
            t = t.squeeze(0)
        if t.dim() == 2:
            return t.float().numpy()
        return _image.as_image_tensor(t).numpy()
    if isinstance(img, np.ndarray) and img.ndim == 2 and np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32)
    return _image.as_image_tensor(img).numpy()


def _new_figure(show: bool, figsize):
    if show:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _finish(fig, show: bool):
    if show:
        import matplotlib.pyplot as plt

        plt.show()
        return None
    return fig


def _imshow(ax, img, title, cmap, mean, std, colorbar=False):
    data = to_display(img, mean, std)
    im = ax.imshow(data, cmap=cmap if data.ndim == 2 else None)
    if colorbar and data.ndim == 2:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    ax.axis("off")
    return im


def show_images(
    images,
    titles: Optional[Sequence[str]] = None,
    ncols: Optional[int] = None,
    cmap: str = "viridis",
    figsize=None,
    suptitle: Optional[str] = None,
    colorbar: bool = False,
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """Shows images side by side, ``ncols`` per row (default: all in one row, at most 6).

    ``images`` is a list (or a batch ``(N, 3, H, W)`` of model inputs); entries may be
    images, model inputs or 2-D maps (drawn with ``cmap``, with a colorbar if asked).
    """
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        items = [images[i : i + 1] for i in range(images.shape[0])]
    elif isinstance(images, (list, tuple)):
        items = list(images)
    else:
        items = [images]
    if not items:
        raise ValueError("cnnviz: show_images: no images")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"cnnviz: show_images: {len(titles)} titles for {len(items)} images")
    n = len(items)
    cols = min(n, ncols if ncols else 6)
    if cols < 1:
        raise ValueError(f"cnnviz: show_images: ncols must be >= 1, got {ncols}")
    rows = math.ceil(n / cols)
    fig = _new_figure(show, figsize or (3.2 * cols, 3.2 * rows + (0.4 if suptitle else 0)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            _imshow(ax, items[i], titles[i] if titles else None, cmap, mean, std, colorbar)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return _finish(fig, show)


def show_grid(
    images,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    scale_each: bool = False,
    colormap: Optional[str] = None,
    title: Optional[str] = None,
    figsize=None,
    ax=None,
    show: bool = True,
):
    """Shows :func:`cnnviz.make_grid` of a batch or list (filters, feature maps, snapshots)."""
    grid = _image.make_grid(
        images, nrow=nrow, padding=padding, normalize=normalize, scale_each=scale_each, colormap=colormap
    )
    return _single(lambda a: _imshow(a, grid, title, None, None, None), ax, show, figsize, grid.shape)


def _single(draw, ax, show, figsize, shape):
    if ax is not None:
        draw(ax)
        return ax
    h, w = shape[0], shape[1]
    fig = _new_figure(show, figsize or (min(12.0, max(4.0, 6.0 * w / max(h, 1))), 6.0))
    a = fig.subplots()
    draw(a)
    fig.tight_layout()
    return _finish(fig, show)


def show_heatmap(
    heatmap,
    image=None,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: Optional[str] = None,
    colorbar: bool = True,
    figsize=None,
    ax=None,
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """Shows a 2-D map with a colorbar; with ``image``, drawn over it (resized to the image)
    with transparency ``alpha``."""
    if isinstance(heatmap, torch.Tensor):
        hm = heatmap.detach().cpu().float()
    else:
        hm = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))
    shape = tuple(hm.shape)
    while hm.dim() > 2 and hm.shape[0] == 1:
        hm = hm.squeeze(0)
    if hm.dim() != 2:
        raise ValueError(f"cnnviz: show_heatmap: the heatmap must be (H, W), got shape {shape}")
    base = None if image is None else to_display(image, mean, std)
    if base is not None:
        hm = _image.resize_image(hm, (base.shape[0], base.shape[1]))

    def draw(a):
        if base is not None:
            a.imshow(base, cmap="gray" if base.ndim == 2 else None)
        im = a.imshow(hm.numpy(), cmap=cmap, alpha=alpha if base is not None else None)
        if colorbar:
            a.figure.colorbar(im, ax=a, fraction=0.046, pad=0.04)
        if title:
            a.set_title(title)
        a.axis("off")

    return _single(draw, ax, show, figsize, hm.shape)


def show_overlay(
    image,
    heatmap,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: Optional[str] = None,
    figsize=None,
    ax=None,
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """Shows :func:`cnnviz.overlay` of a heatmap on an image."""
    blended = _image.overlay(to_display(image, mean, std), _as_map(heatmap), alpha=alpha, colormap=cmap)
    return _single(lambda a: _imshow(a, blended, title, None, None, None), ax, show, figsize, blended.shape)


def _as_map(m):
    return m.detach().cpu() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float32)


def show_attribution(
    image,
    heatmap,
    title: Optional[str] = None,
    cmap: str = "hot",
    alpha: float = 0.4,
    figsize=(15, 5),
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """The three panels of a saliency figure: the image, the map with a colorbar, and the map
    over the image."""
    base = to_display(image, mean, std)
    fig = _new_figure(show, figsize)
    axes = fig.subplots(1, 3)
    _imshow(axes[0], base, "Image", None, None, None)
    show_heatmap(heatmap, cmap=cmap, title="Attribution", ax=axes[1])
    show_heatmap(heatmap, image=base, cmap=cmap, alpha=alpha, title="Overlay", colorbar=False, ax=axes[2])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, show)

from ._plot_filters import *  # noqa: E402,F401,F403  filter statistics, redundancy, CKA
