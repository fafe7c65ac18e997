"""Plots of the filter analyses: filter statistics, redundancy, CKA (re-exported by
:mod:`cnnviz.plot`). Same convention as the rest of cnnviz.plot: ``show=True`` draws with
pyplot and shows; ``show=False`` returns the matplotlib Figure (e.g. to ``savefig``)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["show_filter_statistics", "show_redundancy", "show_cka"]


def _figure(show: bool, figsize):
    if show:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _finish(fig, show: bool, tight: bool = True):
    if tight:
        fig.tight_layout()
    if show:
        import matplotlib.pyplot as plt

        plt.show()
        return None
    return fig


def show_filter_statistics(stats, max_filters: int = 64, image_labels: Optional[Sequence[str]] = None,
                           normalize: bool = True, cmap: str = "viridis", title: Optional[str] = None,
                           figsize=None, show: bool = True):
    """Filters x images heatmap of a :class:`cnnviz.FilterStatistics` computed with
    ``keep_per_image=True``: rows are filters sorted by selectivity (image-specific at the
    top, consistently active at the bottom), each row scaled to its own maximum
    (``normalize``), with the consistent (green) and image-specific (orange) filters marked
    on the left; a side panel shows the fraction of images each filter is active for.
    ``max_filters`` rows at most: the most selective half and the least selective half."""
    if stats.per_image is None:
        raise ValueError("cnnviz: show_filter_statistics needs per-image responses: compute the statistics with "
                         "keep_per_image=True")
    if max_filters < 2:
        raise ValueError(f"cnnviz: show_filter_statistics: max_filters must be at least 2, got {max_filters}")
    m = stats.per_image.double().T  # (C, N)
    order = torch.argsort(stats.selectivity, descending=True)
    if order.numel() > max_filters:
        half = max_filters // 2
        order = torch.cat([order[:half], order[-(max_filters - half):]])
    rows = m[order]
    if normalize:
        peak = rows.abs().amax(1, keepdim=True)
        rows = rows / torch.where(peak > 0, peak, torch.ones_like(peak))
    consistent, specific = set(stats.consistent.tolist()), set(stats.specific.tolist())
    n_img = m.shape[1]
    fig = _figure(show, figsize or (min(14.0, 3.0 + 0.35 * n_img), min(14.0, 2.0 + 0.16 * len(order))))
    gs = fig.add_gridspec(1, 3, width_ratios=[0.25, max(4.0, n_img * 0.35), 1.2], wspace=0.05)
    ax_mark, ax, ax_frac = fig.add_subplot(gs[0]), fig.add_subplot(gs[1]), fig.add_subplot(gs[2])
    im = ax.imshow(rows.numpy(), aspect="auto", cmap=cmap, interpolation="nearest")
    cax = fig.add_axes([0.9, 0.35, 0.015, 0.3])
    fig.colorbar(im, cax=cax, label="response / filter max" if normalize else "response")
    labels = [str(c) for c in order.tolist()]
    colours = np.array([[0.2, 0.7, 0.3] if c in consistent else [0.95, 0.55, 0.1] if c in specific else [1, 1, 1]
                        for c in order.tolist()])
    ax_mark.imshow(colours[:, None, :], aspect="auto")
    ax_mark.set_yticks(range(len(labels)))
    ax_mark.set_yticklabels(labels, fontsize=6)
    ax_mark.set_xticks([])
    ax_mark.set_ylabel("filter (most selective first)")
    ax.set_yticks([])
    ax.set_xticks(range(n_img))
    names = list(image_labels) if image_labels is not None else [str(i) for i in stats.per_image_indices.tolist()]
    if len(names) != n_img:
        raise ValueError(f"cnnviz: show_filter_statistics: {len(names)} image labels for {n_img} images")
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_xlabel("image")
    frac = stats.fraction_active[order].numpy()
    ax_frac.barh(range(len(frac)), frac, color=colours, edgecolor="0.4", linewidth=0.3)
    ax_frac.set_ylim(len(frac) - 0.5, -0.5)
    ax_frac.set_xlim(0, 1)
    ax_frac.set_yticks([])
    ax_frac.set_xlabel("fraction active")
    layer = getattr(stats, "layer", None)
    fig.suptitle(title or f"Filter responses{f' at {layer}' if layer else ''}: green consistent "
                 f"({len(consistent)}), orange image-specific ({len(specific)})", fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.85, bottom=0.12, top=0.94)
    return _finish(fig, show, tight=False)


def show_redundancy(redundancy, basis: Optional[str] = None, title: Optional[str] = None, figsize=None,
                    show: bool = True):
    """The similarity matrix of a :class:`cnnviz.FilterRedundancy` (``basis``: "activations"
    or "weights"; default: the one the groups came from), filters reordered so each group of
    near-duplicates is contiguous and boxed."""
    basis = basis or redundancy.basis
    sim = redundancy.activation_correlation if basis == "activations" else redundancy.weight_similarity
    if basis not in ("activations", "weights") or sim is None:
        raise ValueError(f"cnnviz: show_redundancy: no {basis!r} similarity in this result")
    c = sim.shape[0]
    grouped = [i for g in redundancy.groups for i in g]
    order = grouped + [i for i in range(c) if i not in set(grouped)]
    s = sim[order][:, order].numpy()
    fig = _figure(show, figsize or (7.5, 6.5))
    ax = fig.add_subplot()
    im = ax.imshow(s, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine" if basis == "weights" else "correlation")
    from matplotlib.patches import Rectangle

    start = 0
    for g in redundancy.groups:
        ax.add_patch(Rectangle((start - 0.5, start - 0.5), len(g), len(g), fill=False, edgecolor="black", lw=1.5))
        start += len(g)
    if c <= 64:
        ax.set_xticks(range(c))
        ax.set_xticklabels([str(i) for i in order], rotation=90, fontsize=6)
        ax.set_yticks(range(c))
        ax.set_yticklabels([str(i) for i in order], fontsize=6)
    eff = redundancy.effective_filters_activations if basis == "activations" else redundancy.effective_filters_weights
    layer = getattr(redundancy, "layer", None)
    ax.set_title(title or f"{'Activation correlation' if basis == 'activations' else 'Weight cosine'}"
                 f"{f' at {layer}' if layer else ''}: {len(redundancy.groups)} groups at >= {redundancy.threshold:g}, "
                 f"effective filters {eff:.1f} of {c}", fontsize=9)
    return _finish(fig, show)


def show_cka(result, title: Optional[str] = None, label_a: str = "model A", label_b: str = "model B",
             annotate: Optional[bool] = None, cmap: str = "magma", figsize=None, show: bool = True):
    """Heatmap of a :class:`cnnviz.CKAResult`: layers_a down, layers_b across, CKA in [0, 1]
    (values annotated when the matrix is small)."""
    m = result.matrix.numpy()
    la, lb = m.shape
    fig = _figure(show, figsize or (min(14.0, 3.0 + 0.45 * lb), min(14.0, 2.5 + 0.4 * la)))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap=cmap, vmin=0, vmax=1, origin="lower", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="CKA")
    ax.set_xticks(range(lb))
    ax.set_xticklabels(result.layers_b, rotation=90, fontsize=7)
    ax.set_yticks(range(la))
    ax.set_yticklabels(result.layers_a, fontsize=7)
    ax.set_xlabel(label_b)
    ax.set_ylabel(label_a)
    if annotate if annotate is not None else la * lb <= 100:
        for i in range(la):
            for j in range(lb):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if m[i, j] < 0.6 else "black")
    kind = "Linear" if result.kernel == "linear" else "RBF"
    ax.set_title(title or f"{kind} CKA ({result.samples} images)", fontsize=10)
    return _finish(fig, show)
