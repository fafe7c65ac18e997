"""Tensors to pictures for the web page and the report: PNG data URLs, colored maps, grids.

Everything goes through cnnviz's own encoder and colormaps, so the page and the report show
what ``cnnviz.plot`` shows.
"""
from __future__ import annotations

import base64
from typing import List, Optional, Sequence

import torch

import cnnviz


def data_url(image: torch.Tensor) -> str:
    """An (H, W, 3) uint8 image (or (H, W) float map in [0, 1]) as a PNG data URL."""
    return "data:image/png;base64," + base64.b64encode(cnnviz.encode_image(image, "png")).decode("ascii")


def show_input(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A normalized model input (1, 3, H, W) back to an (H, W, 3) uint8 image."""
    return cnnviz.deprocess(x[:1].detach().float().cpu(), mean=mean, std=std)


def heat(map2d: torch.Tensor, cmap: str, symmetric: bool = False) -> torch.Tensor:
    """A (H, W) map colored with ``cmap`` (min-max, or centered on 0)."""
    return cnnviz.colormap(map2d.detach().float().cpu(), cmap, symmetric=symmetric)


def channel_grid(act: torch.Tensor, channels: Sequence[int], cmap: str, nrow: Optional[int] = None) -> torch.Tensor:
    """Channels of one activation (C, h, w), each colored with its own range, as one grid."""
    maps = [act[c].detach().float().cpu() for c in channels]
    n = nrow or max(1, min(8, len(maps)))
    pad = 1 if act.shape[-1] < 16 else 2
    return cnnviz.make_grid(maps, nrow=n, padding=pad, normalize=True, scale_each=True, colormap=cmap)


def filter_grid(weights, channels: Sequence[int], cmap: str) -> torch.Tensor:
    """Filters of a conv layer (cnnviz.FilterWeights): RGB when the layer reads the image,
    else the mean over input channels colored with ``cmap``."""
    if weights.rgb is not None:
        tiles: List[torch.Tensor] = [weights.rgb[c].float() for c in channels]
        return cnnviz.make_grid(tiles, nrow=min(8, len(tiles)), padding=1)
    tiles = [weights.mean[c].float() for c in channels]
    return cnnviz.make_grid(tiles, nrow=min(8, len(tiles)), padding=1, normalize=True, scale_each=True,
                            colormap=cmap)


def perturbation_image(p: torch.Tensor) -> torch.Tensor:
    """An adversarial perturbation (1, 3, H, W) in pixels, stretched to show its sign:
    gray is 0, the extremes are +-max|p|."""
    q = p[0].detach().float().cpu()
    m = q.abs().max().clamp_min(1e-12)
    return ((q / m + 1) / 2).permute(1, 2, 0).contiguous()
