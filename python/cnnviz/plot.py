"""Matplotlib helpers for notebooks: image rows, grids, heatmaps and overlays.

Every function takes images in any form :func:`cnnviz.as_image_tensor` accepts, plus
normalized model inputs ``(1, 3, H, W)`` / ``(3, H, W)`` (float tensors, deprocessed with
``mean``/``std``, ImageNet by default) and maps ``(H, W)``, ``(1, H, W)``, ``(1, 1, H, W)``
(shown with a colormap).

With ``show=True`` (the default) a figure is drawn with pyplot and shown, and nothing is
returned (so a notebook shows it once). With ``show=False`` the figure is built with
matplotlib's object API and returned, e.g. to ``fig.savefig(...)``. Functions with an ``ax``
argument draw into that axes instead and return it.

Display defaults, so that figures read well without tuning: maps are clipped at the
``clip_percentile`` (99.5) of their values, so that a few extreme pixels do not wash out
the rest; signed maps (integrated gradients, LIME, occlusion: any map with negative values)
get a diverging colormap centred on 0 (``signed=None`` decides from the values); figures
use matplotlib's constrained layout, so subplot titles and colorbars never run into a
figure title; small tiles in grids (a 3x3 filter) are enlarged by nearest-neighbour
repetition so that every weight is a visible square. Ready-made figures for the usual
analyses: :func:`show_inversion_progress`, :func:`show_metric_vs_depth`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from . import image as _image

__all__ = ["show_images", "show_grid", "show_heatmap", "show_overlay", "show_attribution", "to_display",
           "map_range", "stretch_contrast", "show_inversion_progress", "show_metric_vs_depth",
           "CLIP_PERCENTILE", "SEQUENTIAL_CMAP", "DIVERGING_CMAP"]

#: Maps are clipped at this percentile of their (absolute, for signed maps) values.
CLIP_PERCENTILE = 99.5
#: Colormap for maps with values >= 0 (saliency, CAM) and for signed maps centred on 0.
SEQUENTIAL_CMAP = "jet"
DIVERGING_CMAP = "bwr"
#: Grids enlarge tiles smaller than this (pixels) by an integer factor, nearest-neighbour.
MIN_TILE = 48


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
    # Constrained layout keeps subplot titles, colorbars and a suptitle apart.
    if show:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout="constrained")
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _map_array(m) -> np.ndarray:
    if isinstance(m, torch.Tensor):
        a = m.detach().cpu().float().numpy()
    else:
        a = np.asarray(m, dtype=np.float32)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    return a


def map_range(heatmap, clip_percentile: Optional[float] = CLIP_PERCENTILE, signed: Optional[bool] = None):
    """``(vmin, vmax, signed)`` for showing a map: signed maps (``signed=None``: any value
    below 0) get ``[-v, v]`` with ``v`` the ``clip_percentile`` of ``|map|``; others get
    ``[min, percentile]``. ``clip_percentile=None`` (or 100) uses the extremes. NaN values
    are ignored; an all-NaN or empty map raises ValueError."""
    a = _map_array(heatmap)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        raise ValueError("cnnviz: map_range: the map has no finite values")
    if clip_percentile is not None and not (0 < clip_percentile <= 100):
        raise ValueError(f"cnnviz: clip_percentile must be in (0, 100], got {clip_percentile}")
    q = 100.0 if clip_percentile is None else float(clip_percentile)
    if signed is None:
        signed = bool(finite.min() < 0)
    if signed:
        v = float(np.percentile(np.abs(finite), q))
        v = v if v > 0 else 1.0
        return -v, v, True
    lo = float(finite.min())
    hi = float(np.percentile(finite, q))
    return lo, (hi if hi > lo else lo + 1.0), False


def stretch_contrast(img, low: float = 1.0, high: float = 99.0,
                     mean: Sequence[float] = _image.IMAGENET_MEAN, std: Sequence[float] = _image.IMAGENET_STD) -> np.ndarray:
    """An image (any form :func:`to_display` takes) with its ``low``..``high`` percentiles
    stretched to 0..255, as ``(H, W, 3)`` uint8: lets a reader compare the structure of
    reconstructions whose contrast differs (feature inversions at several depths)."""
    if not (0 <= low < high <= 100):
        raise ValueError(f"cnnviz: stretch_contrast: need 0 <= low < high <= 100, got {low}, {high}")
    if isinstance(img, torch.Tensor) and _is_model_input(img.detach().cpu()):
        t = img.detach().cpu().float()
        t = t[0] if t.dim() == 4 else t
        a = (t * torch.tensor(list(std)).view(3, 1, 1) + torch.tensor(list(mean)).view(3, 1, 1)).permute(1, 2, 0).numpy()
    else:
        a = to_display(img, mean, std).astype(np.float32)
    lo, hi = np.percentile(a, [low, high])
    if hi <= lo:
        hi = lo + 1e-6
    out = np.clip((a - lo) / (hi - lo), 0, 1)
    return (out * 255).round().astype(np.uint8)


def _finish(fig, show: bool):
    if show:
        import matplotlib.pyplot as plt

        plt.show()
        return None
    return fig


def _imshow(ax, img, title, cmap, mean, std, colorbar=False, interpolation=None, stretch=False):
    data = stretch_contrast(img, mean=mean, std=std) if stretch else to_display(img, mean, std)
    kwargs = {}
    if data.ndim == 2:
        lo, hi, signed = map_range(data)
        kwargs = dict(cmap=cmap or (DIVERGING_CMAP if signed else "viridis"), vmin=lo, vmax=hi)
    im = ax.imshow(data, interpolation=interpolation, **kwargs)
    if colorbar and data.ndim == 2:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title, fontsize=10)
    ax.axis("off")
    return im


def show_images(
    images,
    titles: Optional[Sequence[str]] = None,
    ncols: Optional[int] = None,
    cmap: Optional[str] = None,
    figsize=None,
    suptitle: Optional[str] = None,
    colorbar: bool = False,
    stretch: bool = False,
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """Shows images side by side, ``ncols`` per row (default: all in one row, at most 6).

    ``images`` is a list (or a batch ``(N, 3, H, W)`` of model inputs); entries may be
    images, model inputs or 2-D maps (drawn with ``cmap``: by default viridis, or a
    diverging colormap centred on 0 for signed maps, clipped at :data:`CLIP_PERCENTILE`;
    with a colorbar if asked). ``stretch=True`` stretches each image's contrast
    (:func:`stretch_contrast`), e.g. to compare inversions from several depths.
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
    fig = _new_figure(show, figsize or (3.2 * cols, 3.2 * rows + (0.5 if suptitle else 0)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            two_d = not stretch and to_display(items[i], mean, std).ndim == 2
            _imshow(ax, items[i], titles[i] if titles else None, cmap, mean, std, colorbar, stretch=stretch and not two_d)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    return _finish(fig, show)


def _upscale(images, min_tile: int):
    """Repeats the pixels of small tiles (nearest neighbour) so each is >= ``min_tile``."""
    def factor(h, w):
        return max(1, math.ceil(min_tile / max(1, min(h, w))))

    if isinstance(images, torch.Tensor):
        if images.dim() == 4 and images.is_floating_point():  # (N, C, h, w)
            k = factor(images.shape[2], images.shape[3])
            return images.repeat_interleave(k, 2).repeat_interleave(k, 3), images.shape[2] * k, images.shape[3] * k
        if images.dim() == 4:  # (N, h, w, 3) uint8
            k = factor(images.shape[1], images.shape[2])
            return images.repeat_interleave(k, 1).repeat_interleave(k, 2), images.shape[1] * k, images.shape[2] * k
        return images, None, None
    items = []
    for t in images:
        t = t if isinstance(t, torch.Tensor) and t.is_floating_point() else _image.as_image_tensor(t)
        items.append(t)
    if not items:
        return items, None, None
    t0 = items[0]
    hw = (t0.shape[-2], t0.shape[-1]) if t0.is_floating_point() else (t0.shape[0], t0.shape[1])
    k = factor(*hw)
    if t0.is_floating_point():
        items = [t.repeat_interleave(k, -2).repeat_interleave(k, -1) for t in items]
    else:
        items = [t.repeat_interleave(k, 0).repeat_interleave(k, 1) for t in items]
    return items, hw[0] * k, hw[1] * k


def show_grid(
    images,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    scale_each: bool = False,
    colormap: Optional[str] = None,
    title: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
    min_tile: int = MIN_TILE,
    figsize=None,
    ax=None,
    show: bool = True,
):
    """Shows :func:`cnnviz.make_grid` of a batch or list (filters, feature maps, snapshots).

    Tiles smaller than ``min_tile`` pixels are enlarged by an integer factor, repeating
    pixels (a 3x3 filter becomes 3x3 visible squares, not a blur); ``labels`` (one per
    tile, e.g. filter indices) are written in each tile's corner.
    """
    images, th, tw = _upscale(images, min_tile) if min_tile and min_tile > 1 else (images, None, None)
    n = images.shape[0] if isinstance(images, torch.Tensor) else len(images)
    if labels is not None and len(labels) != n:
        raise ValueError(f"cnnviz: show_grid: {len(labels)} labels for {n} images")
    grid = _image.make_grid(
        images, nrow=nrow, padding=padding, normalize=normalize, scale_each=scale_each, colormap=colormap
    )

    def draw(a):
        _imshow(a, grid, title, None, None, None, interpolation="nearest")
        if labels is not None and th:
            for i, text in enumerate(labels):
                r, c = divmod(i, nrow)
                a.text(padding + c * (tw + padding) + 1, padding + r * (th + padding) + 1, str(text), color="white",
                       fontsize=7, va="top", ha="left",
                       bbox=dict(boxstyle="square,pad=0.1", facecolor="black", alpha=0.6, linewidth=0))

    return _single(draw, ax, show, figsize, grid.shape)


def _single(draw, ax, show, figsize, shape):
    if ax is not None:
        draw(ax)
        return ax
    h, w = shape[0], shape[1]
    fig = _new_figure(show, figsize or (min(12.0, max(4.0, 6.0 * w / max(h, 1))), 6.0))
    a = fig.subplots()
    draw(a)
    return _finish(fig, show)


def show_heatmap(
    heatmap,
    image=None,
    alpha: float = 0.5,
    cmap: Optional[str] = None,
    title: Optional[str] = None,
    colorbar: bool = True,
    clip_percentile: Optional[float] = CLIP_PERCENTILE,
    signed: Optional[bool] = None,
    figsize=None,
    ax=None,
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """Shows a 2-D map with a colorbar; with ``image``, drawn over it (resized to the image)
    with transparency ``alpha``.

    The colour range is clipped at ``clip_percentile`` (:func:`map_range`); a signed map
    (``signed=None``: any negative value) is centred on 0 with :data:`DIVERGING_CMAP`, other
    maps use :data:`SEQUENTIAL_CMAP`, unless ``cmap`` is given.
    """
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
    lo, hi, is_signed = map_range(hm, clip_percentile, signed)
    cm = cmap or (DIVERGING_CMAP if is_signed else SEQUENTIAL_CMAP)

    def draw(a):
        if base is not None:
            a.imshow(base, cmap="gray" if base.ndim == 2 else None)
        im = a.imshow(hm.numpy(), cmap=cm, vmin=lo, vmax=hi, alpha=alpha if base is not None else None)
        if colorbar:
            a.figure.colorbar(im, ax=a, fraction=0.046, pad=0.04)
        if title:
            a.set_title(title, fontsize=10)
        a.axis("off")

    return _single(draw, ax, show, figsize, hm.shape)


def show_overlay(
    image,
    heatmap,
    alpha: float = 0.5,
    cmap: Optional[str] = None,
    title: Optional[str] = None,
    clip_percentile: Optional[float] = CLIP_PERCENTILE,
    signed: Optional[bool] = None,
    figsize=None,
    ax=None,
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """Shows :func:`cnnviz.overlay` of a heatmap on an image, with the colour range of
    :func:`show_heatmap` (clipped at ``clip_percentile``, centred on 0 for signed maps)."""
    m = _as_map(heatmap)
    lo, hi, is_signed = map_range(m, clip_percentile, signed)
    cm = cmap or (DIVERGING_CMAP if is_signed else SEQUENTIAL_CMAP)
    blended = _image.overlay(to_display(image, mean, std), m, alpha=alpha, colormap=cm, vmin=lo, vmax=hi)
    return _single(lambda a: _imshow(a, blended, title, None, None, None), ax, show, figsize, blended.shape)


def _as_map(m):
    return m.detach().cpu() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float32)


def show_attribution(
    image,
    heatmap,
    title: Optional[str] = None,
    cmap: Optional[str] = None,
    alpha: float = 0.5,
    clip_percentile: Optional[float] = CLIP_PERCENTILE,
    signed: Optional[bool] = None,
    figsize=(15, 5),
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """The three panels of a saliency figure: the image, the map with a colorbar, and the map
    over the image (colour range as :func:`show_heatmap`)."""
    base = to_display(image, mean, std)
    fig = _new_figure(show, figsize)
    axes = fig.subplots(1, 3)
    _imshow(axes[0], base, "Image", None, None, None)
    kw = dict(cmap=cmap, clip_percentile=clip_percentile, signed=signed)
    show_heatmap(heatmap, title="Attribution", ax=axes[1], **kw)
    show_heatmap(heatmap, image=base, alpha=alpha, title="Overlay", colorbar=False, ax=axes[2], **kw)
    if title:
        fig.suptitle(title)
    return _finish(fig, show)


def show_inversion_progress(
    result=None,
    *,
    snapshots=None,
    steps: Optional[Sequence[int]] = None,
    losses=None,
    original=None,
    max_snapshots: int = 8,
    stretch: bool = False,
    title: Optional[str] = None,
    mean: Sequence[float] = _image.IMAGENET_MEAN,
    std: Sequence[float] = _image.IMAGENET_STD,
    show: bool = True,
):
    """The process of an optimization (feature inversion, activation maximization): a row
    of snapshots labelled with their step, and the loss curve (log scale when positive).

    Pass an ``InversionResult``/``MaximizeResult`` (its ``snapshots``, ``snapshot_steps``,
    ``losses`` and final ``image``; the first image of the batch is shown), or ``snapshots``
    (a list of (1, 3, H, W) tensors or images), ``steps`` and ``losses`` directly.
    ``original`` adds the target image in front; at most ``max_snapshots`` evenly spaced
    snapshots are shown.
    """
    if result is not None:
        snapshots = list(result.snapshots) if snapshots is None else snapshots
        steps = list(result.snapshot_steps) if steps is None else steps
        losses = result.losses if losses is None else losses
        final = result.image[:1]
        if not snapshots or int(steps[-1]) != len(losses):
            snapshots, steps = list(snapshots) + [final], list(steps) + [len(losses)]
    if snapshots is None or len(snapshots) == 0:
        raise ValueError("cnnviz: show_inversion_progress: no snapshots (run with snapshot_every > 0)")
    snapshots = [s[:1] if isinstance(s, torch.Tensor) and s.dim() == 4 else s for s in snapshots]
    steps = list(range(len(snapshots))) if steps is None else [int(s) for s in steps]
    if len(steps) != len(snapshots):
        raise ValueError(f"cnnviz: show_inversion_progress: {len(steps)} steps for {len(snapshots)} snapshots")
    if max_snapshots < 1:
        raise ValueError(f"cnnviz: show_inversion_progress: max_snapshots must be >= 1, got {max_snapshots}")
    if len(snapshots) > max_snapshots:
        keep = np.unique(np.linspace(0, len(snapshots) - 1, max_snapshots).round().astype(int))
        snapshots, steps = [snapshots[i] for i in keep], [steps[i] for i in keep]
    panels = ([(original, "Original")] if original is not None else []) + [
        (s, f"step {k}") for s, k in zip(snapshots, steps)]
    has_loss = losses is not None and len(losses) > 0
    cols = len(panels) + (2 if has_loss else 0)
    fig = _new_figure(show, (2.3 * cols, 2.8 + (0.4 if title else 0)))
    gs = fig.add_gridspec(1, cols)
    for i, (img, label) in enumerate(panels):
        ax = fig.add_subplot(gs[0, i])
        _imshow(ax, img, label, None, mean, std, stretch=stretch and label != "Original")
    if has_loss:
        ax = fig.add_subplot(gs[0, len(panels):])
        y = np.asarray(losses.detach().cpu() if isinstance(losses, torch.Tensor) else losses, dtype=np.float64)
        ax.plot(np.arange(len(y)), y, lw=1.5)
        finite = y[np.isfinite(y)]
        if finite.size and finite.min() > 0:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("loss", fontsize=10)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _finish(fig, show)


def show_metric_vs_depth(
    depths: Sequence,
    metrics,
    *,
    labels: Optional[Sequence[str]] = None,
    mark_drop: bool = True,
    title: Optional[str] = None,
    xlabel: str = "layer",
    figsize=None,
    ax=None,
    show: bool = True,
):
    """Metrics against depth (information preserved by feature inversion, CKA, divergence
    under attack): ``metrics`` is ``{name: values}`` with one value per depth. The first
    metric is on the left axis, a second one on a right axis (SSIM and PSNR have different
    units); more share the left axis. ``labels`` name the depths on the x axis (layer
    names). ``mark_drop`` marks the largest drop of the first metric between consecutive
    depths (the bottleneck)."""
    depths = list(depths)
    items = list(metrics.items()) if hasattr(metrics, "items") else [("value", metrics)]
    if not items:
        raise ValueError("cnnviz: show_metric_vs_depth: no metrics")
    series = []
    for name, values in items:
        v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
        if v.shape != (len(depths),):
            raise ValueError(f"cnnviz: show_metric_vs_depth: {name} has {v.size} values for {len(depths)} depths")
        series.append((name, v))
    if labels is not None and len(labels) != len(depths):
        raise ValueError(f"cnnviz: show_metric_vs_depth: {len(labels)} labels for {len(depths)} depths")
    numeric = all(isinstance(d, (int, float, np.integer, np.floating)) for d in depths)
    indexed = labels is not None or not numeric
    x = np.arange(len(depths), dtype=np.float64) if indexed else np.asarray(depths, dtype=np.float64)

    def draw(a):
        colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
        handles = []
        for i, (name, v) in enumerate(series):
            target = a if i != 1 else a.twinx()
            (h,) = target.plot(x, v, "o-", color=colors[i % len(colors)], label=name)
            handles.append(h)
            if i <= 1:
                target.set_ylabel(name, color=colors[i])
        if mark_drop and len(depths) > 1:
            v = series[0][1]
            drops = v[:-1] - v[1:]
            k = int(np.nanargmax(drops))
            a.axvspan(x[k], x[k + 1], color="gray", alpha=0.15)
            a.annotate(f"largest drop of {series[0][0]}", xy=((x[k] + x[k + 1]) / 2, v[k + 1]),
                       xytext=(0, -18), textcoords="offset points", ha="center", fontsize=8)
        if indexed:
            a.set_xticks(x)
            a.set_xticklabels([str(t) for t in (labels if labels is not None else depths)], rotation=45, ha="right",
                              fontsize=8)
        a.set_xlabel(xlabel)
        a.grid(alpha=0.3)
        if len(series) > 1:
            a.legend(handles=handles, loc="best", fontsize=8)
        if title:
            a.set_title(title, fontsize=11)

    if ax is not None:
        draw(ax)
        return ax
    fig = _new_figure(show, figsize or (max(6.0, 0.8 * len(depths) + 3), 4.0))
    draw(fig.subplots())
    return _finish(fig, show)


from ._plot_faithfulness import *  # noqa: E402,F401,F403  (analysis figures)
from ._plot_filters import *  # noqa: E402,F401,F403  filter statistics, redundancy, CKA
