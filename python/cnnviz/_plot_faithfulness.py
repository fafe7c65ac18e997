"""Figures for the analyses of :mod:`cnnviz.faithfulness` and :mod:`cnnviz.layer_analysis`
(re-exported by :mod:`cnnviz.plot`).

Each function builds a matplotlib ``Figure`` with the object API and returns it: Jupyter
shows a returned figure once as the cell's result; elsewhere call ``fig.savefig(path)``.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch

from . import image as _image

__all__ = ["show_layer_information", "show_deletion_insertion", "show_sanity_check", "show_adversarial_report"]


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _pixels(x: torch.Tensor, i: int, mean, std) -> np.ndarray:
    """An (H, W, 3) uint8 array of sample i of a normalized batch."""
    return _image.deprocess(x[i:i + 1].detach().cpu().float(), list(mean), list(std)).numpy()


def _show(ax, data, title=None, cmap=None):
    ax.imshow(data, cmap=cmap)
    if title:
        ax.set_title(title, fontsize=8)
    ax.axis("off")


def _label(index: int, labels: Optional[Sequence[str]]) -> str:
    return labels[index] if labels and 0 <= index < len(labels) else str(index)


def _title_and_input(fig, ax, grid, title, x, index, mean, std) -> int:
    """Titles the plot ``ax`` and puts the input thumbnail first on the grid's second row
    when ``x`` is given; returns the first free column of that row."""
    if title:
        ax.set_title(title)
    if x is None:
        return 0
    _show(fig.add_subplot(grid[1, 0]), _pixels(x, index, mean, std), "input")
    return 1


def show_layer_information(info, x: Optional[torch.Tensor] = None, index: int = 0, *,
                           mean: Sequence[float] = _image.IMAGENET_MEAN, std: Sequence[float] = _image.IMAGENET_STD,
                           title: Optional[str] = "How much of the image each layer keeps", figsize=None):
    """SSIM and PSNR of each layer's inversion against the input, by depth, with the
    inversions of sample ``index`` as thumbnails (the input ``x`` first when given) and the
    bottleneck marked. ``info``: a ``LayerInformation``."""
    layers = list(info.layers)
    if not layers:
        raise ValueError("cnnviz: show_layer_information: the result has no layers")
    n = len(layers)
    thumbs = n + (1 if x is not None else 0)
    fig = _figure(figsize or (max(6.0, 1.6 * thumbs), 5.6))
    grid = fig.add_gridspec(2, thumbs, height_ratios=[2.2, 1])
    ax = fig.add_subplot(grid[0, :])
    depth = np.arange(n)
    ssim = info.ssim[:, index].numpy()
    psnr = info.psnr[:, index].numpy()
    ax.plot(depth, ssim, "o-", color="tab:blue", label="SSIM")
    ax.set_ylabel("SSIM", color="tab:blue")
    ax.set_ylim(min(0.0, float(ssim.min()) - 0.05), 1.0)
    twin = ax.twinx()
    twin.plot(depth, psnr, "s--", color="tab:orange", label="PSNR")
    twin.set_ylabel("PSNR (dB)", color="tab:orange")
    b = int(info.bottleneck)
    if b >= 0:
        ax.axvline(b, color="tab:red", alpha=0.3, linewidth=6)
        ax.annotate(f"bottleneck\n(-{float(info.ssim_drop[b]):.2f} SSIM)", (b, ssim[b]), textcoords="offset points",
                    xytext=(8, 8), color="tab:red", fontsize=8)
    sizes = [f"{l}\n{int(c)}x{int(h)}x{int(w)}" for l, c, h, w in zip(layers, info.channels, info.height, info.width)]
    ax.set_xticks(depth)
    ax.set_xticklabels(sizes, fontsize=7)
    ax.set_xlim(-0.5, n - 0.5)
    ax.grid(alpha=0.3)
    col = _title_and_input(fig, ax, grid, title, x, index, mean, std)
    for l, inv in enumerate(info.inversions):
        _show(fig.add_subplot(grid[1, col + l]), _pixels(inv.image, index, mean, std),
              f"{layers[l]}\nSSIM {ssim[l]:.2f}")
    fig.tight_layout()
    return fig


def show_deletion_insertion(results, index: Optional[int] = None, *, title: Optional[str] = None, figsize=None):
    """Deletion and insertion curves side by side, the AUC in each legend entry.

    ``results``: one ``DeletionInsertionResult`` or ``{name: result}`` to compare methods
    (e.g. Grad-CAM against a random map). ``index``: one sample, or None for the mean over
    the batch (with the per-sample curves faint)."""
    items = dict(results) if isinstance(results, Mapping) else {"map": results}
    if not items:
        raise ValueError("cnnviz: show_deletion_insertion: no results")
    fig = _figure(figsize or (10, 3.8))
    axes = fig.subplots(1, 2)
    for k, (name, r) in enumerate(items.items()):
        color = f"C{k}"
        fr = r.fractions.numpy()
        for ax, curve, auc in ((axes[0], r.deletion, r.deletion_auc), (axes[1], r.insertion, r.insertion_auc)):
            c = curve.double().numpy()
            if index is None:
                for row in c:
                    ax.plot(fr, row, color=color, alpha=0.12, linewidth=0.8)
                y, a = c.mean(0), float(auc.mean())
            else:
                y, a = c[index], float(auc[index])
            ax.plot(fr, y, color=color, linewidth=2, label=f"{name} (AUC {a:.3f})")
    for ax, what, better in ((axes[0], "Deletion", "lower"), (axes[1], "Insertion", "higher")):
        ax.set_title(f"{what} ({better} AUC is better)")
        ax.set_xlabel("fraction of pixels " + ("removed" if what == "Deletion" else "inserted"))
        ax.set_ylabel("score of the target class")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_sanity_check(result, x: Optional[torch.Tensor] = None, index: int = 0, *, max_maps: int = 6,
                      mean: Sequence[float] = _image.IMAGENET_MEAN, std: Sequence[float] = _image.IMAGENET_STD,
                      title: Optional[str] = "Model-parameter randomization (cascading from the output)",
                      figsize=None):
    """Rank correlation (and SSIM) with the original map per randomization step, the mean
    over the batch bold and each sample faint, above the maps of sample ``index``: the
    original and up to ``max_maps`` steps spread over the cascade (``x`` first when given)."""
    steps = list(result.steps)
    if not steps:
        raise ValueError("cnnviz: show_sanity_check: the result has no steps")
    s = len(steps)
    shown = sorted(set(np.linspace(0, s - 1, min(max_maps, s)).round().astype(int).tolist()))
    thumbs = 1 + len(shown) + (1 if x is not None else 0)
    fig = _figure(figsize or (max(7.0, 1.7 * thumbs), 5.8))
    grid = fig.add_gridspec(2, thumbs, height_ratios=[2, 1])
    ax = fig.add_subplot(grid[0, :])
    k = np.arange(1, s + 1)
    rho = result.rank_correlation.double().numpy()
    for row in rho.T:
        ax.plot(k, row, color="C0", alpha=0.15, linewidth=0.8)
    ax.plot(k, rho.mean(1), "o-", color="C0", linewidth=2, label="Spearman rank correlation")
    if result.ssim is not None:
        ax.plot(k, result.ssim.double().numpy().mean(1), "s--", color="C1", linewidth=1.5, label="SSIM")
    ax.axhline(0, color="k", linewidth=0.6)
    ax.set_xticks(k)
    ax.set_xticklabels(steps, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("randomized down to (cumulative)")
    ax.set_ylabel("similarity to the original map")
    ax.set_ylim(min(-0.2, float(np.nanmin(rho)) - 0.05), 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    col = _title_and_input(fig, ax, grid, title, x, index, mean, std)
    _show(fig.add_subplot(grid[1, col]), result.original[index].float().numpy(), "original", "viridis")
    for j, step in enumerate(shown):
        _show(fig.add_subplot(grid[1, col + 1 + j]), result.maps[step, index].float().numpy(),
              f"to {steps[step]}\nrho {rho[step, index]:.2f}", "viridis")
    fig.tight_layout()
    return fig


def show_adversarial_report(report, x: torch.Tensor, index: int = 0, *,
                            labels: Union[None, str, Sequence[str]] = "imagenet", amplify: Optional[float] = None,
                            mean: Sequence[float] = _image.IMAGENET_MEAN, std: Sequence[float] = _image.IMAGENET_STD,
                            figsize=None):
    """The notebook's challenge 4 on one figure, for sample ``index`` of the clean batch
    ``x``: the clean and adversarial images with their predictions, the perturbation
    (amplified to the full range unless ``amplify`` is given), the saliency maps before and
    after with their rank correlation, and each layer's divergence. ``labels``: "imagenet",
    "cifar10", a list of class names, or None."""
    from .zoo import labels_for

    names = labels_for(labels) if labels is not None else []
    a = report.attack
    fig = _figure(figsize or (14, 6.2))
    grid = fig.add_gridspec(2, 5, height_ratios=[1.2, 1])
    before, after = int(a.prediction_before[index]), int(a.prediction_after[index])
    pb = float(report.probabilities_before[index, before])
    pa = float(report.probabilities_after[index, after])
    _show(fig.add_subplot(grid[0, 0]), _pixels(x, index, mean, std), f"clean: {_label(before, names)}\np={pb:.2f}")
    _show(fig.add_subplot(grid[0, 1]), _pixels(a.adversarial, index, mean, std),
          f"adversarial: {_label(after, names)}\np={pa:.2f}")
    pert = a.perturbation[index].detach().float().permute(1, 2, 0).numpy()
    eps = float(np.abs(pert).max()) or 1.0
    scale = amplify if amplify is not None else 0.5 / eps
    _show(fig.add_subplot(grid[0, 2]), np.clip(0.5 + scale * pert, 0, 1),
          f"perturbation x{scale:.0f}\n(max {eps * 255:.1f}/255)")
    sb, sa = report.saliency_before.map[index].float().numpy(), report.saliency_after.map[index].float().numpy()
    _show(fig.add_subplot(grid[0, 3]), sb, f"saliency before\n(class {_label(int(a.target[index]), names)})", "hot")
    _show(fig.add_subplot(grid[0, 4]), sa, f"saliency after\nrank corr. {float(report.saliency_correlation[index]):.2f}",
          "hot")
    ax = fig.add_subplot(grid[1, :])
    layers = list(report.layers)
    if layers:
        d = report.divergence[:, index].double().numpy()
        bars = ax.bar(np.arange(len(layers)), d, color="C0")
        m = int(np.argmax(d))
        bars[m].set_color("tab:red")
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels(layers, rotation=70, ha="right", fontsize=6 if len(layers) > 30 else 8)
        ax.set_ylabel("||A(adv) - A(x)|| / ||A(x)||")
        ax.set_title(f"Layer divergence (most affected: {layers[m]})", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no layers measured", ha="center")
    fig.tight_layout()
    return fig
