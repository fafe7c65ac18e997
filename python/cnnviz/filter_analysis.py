"""Filters across many images: statistics (which filters fire for every image, which for
one), and redundancy (near-duplicate filters, the effective number of filters).

Both stream: ``images`` is an (N, C, H, W) tensor or any iterable of batches (a
``DataLoader`` yielding tensors or ``(images, labels)``), seen once, with memory independent
of the number of images. The accumulators behind them (:class:`FilterStatisticsAccumulator`,
:class:`ChannelCovarianceAccumulator`) expose ``update`` / ``merge`` / ``result`` and
``state_dict`` / ``from_state``: on torch.distributed, gather every rank's state
(``all_gather_object``), rebuild each with ``from_state`` and ``merge`` them.

The defaults shown in the signatures come from the C++ Options structs (``cnnviz._C``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from . import _C
from ._batches import Images, iter_batches, model_device
from ._options import fill_options
from ._progress import StreamStops

__all__ = [
    "FilterStatistics", "FilterStatisticsAccumulator", "filter_statistics", "FilterRedundancy",
    "ChannelCovarianceAccumulator", "filter_redundancy",
]

_FS = _C.FilterStatisticsOptions()
_FR = _C.FilterRedundancyOptions()


def _short(t: torch.Tensor, n: int = 8) -> str:
    values = t.tolist()
    if len(values) <= n:
        return str(values)
    return f"[{', '.join(map(str, values[:n]))}, ... ({len(values)} in all)]"


@dataclass(repr=False)
class FilterStatistics:
    """Statistics of a layer's C filters over ``count`` images. A filter's response to an
    image is its activation averaged over positions, m[n, c].

    - ``mean``, ``std`` (C,) float64: mean and sample std of m over images;
    - ``max`` (C,): the largest activation at any position of any image;
    - ``fraction_active`` (C,): share of images for which the filter is active (see
      :func:`filter_statistics`' ``threshold``);
    - ``selectivity`` (C,): Treves-Rolls sparsity of m over images in [0, 1] (0: the same
      response to every image, 1: one image only; meant for non-negative responses);
    - ``top_share`` (C,): the top image's share of the summed response (NaN where the sum is
      not positive);
    - ``top_values``, ``top_indices`` (C, k): each filter's k strongest images;
    - ``consistent``: filters active for at least ``consistent_fraction`` of the images,
      largest mean first; ``specific``: active for some image but at most
      ``specific_fraction`` of them, most selective first;
    - ``per_image`` (N, C) float32 m and ``per_image_indices`` (N,), when kept.
    """

    count: int
    mean: torch.Tensor
    std: torch.Tensor
    max: torch.Tensor
    fraction_active: torch.Tensor
    selectivity: torch.Tensor
    top_share: torch.Tensor
    top_values: torch.Tensor
    top_indices: torch.Tensor
    consistent: torch.Tensor
    specific: torch.Tensor
    per_image: Optional[torch.Tensor] = None
    per_image_indices: Optional[torch.Tensor] = None
    layer: Optional[str] = None
    #: Ctrl-C ended the stream: the statistics cover the ``count`` images seen.
    interrupted: bool = False

    @property
    def num_filters(self) -> int:
        return int(self.mean.shape[0])

    def __repr__(self) -> str:
        layer = f"layer={self.layer!r}, " if self.layer else ""
        return (f"FilterStatistics({layer}images={self.count}, filters={self.num_filters}, "
                f"consistent={_short(self.consistent)}, specific={_short(self.specific)}, "
                f"mean selectivity={self.selectivity.mean().item():.3f}, "
                f"per_image={'kept' if self.per_image is not None else 'not kept'})")


class FilterStatisticsAccumulator:
    """Streaming :class:`FilterStatistics` of one layer: ``update(activations)`` (or
    ``update_from_model(model, batch, layer)``), ``merge(other)``, ``result()``, and
    ``state_dict()`` / ``from_state(state, **options)`` to combine ranks of a distributed run
    (count and active counts add, means and M2 merge by Chan et al.'s parallel formula, top-k
    lists merge exactly, maxima by max)."""

    def __init__(self, *, threshold: float = _FS.threshold, relative: bool = _FS.relative, top_k: int = _FS.top_k,
                 consistent_fraction: float = _FS.consistent_fraction,
                 specific_fraction: float = _FS.specific_fraction, keep_per_image: bool = _FS.keep_per_image,
                 _native=None) -> None:
        self._options = fill_options(_C.FilterStatisticsOptions, locals())
        self._acc = _native if _native is not None else _C.FilterStatisticsAccumulator(self._options)
        self.layer: Optional[str] = None

    @property
    def count(self) -> int:
        """Images seen so far."""
        return self._acc.count

    def update(self, activations: torch.Tensor, indices: Optional[torch.Tensor] = None) -> None:
        """Adds a batch of activations (n, C, ...); ``indices`` (n,) names the images
        (default: the running count onwards)."""
        self._acc.update(activations, indices)

    def update_from_model(self, model, x: torch.Tensor, layer: str, indices: Optional[torch.Tensor] = None) -> None:
        """Runs ``model`` on the batch x (n, C, H, W) without autograd and adds ``layer``'s activations."""
        self.layer = layer
        self._acc.update_from_model(model, x, layer, indices)

    def merge(self, other: "FilterStatisticsAccumulator") -> "FilterStatisticsAccumulator":
        """Adds the images of ``other`` (same options); returns self."""
        self._acc.merge(other._acc)
        return self

    def result(self) -> FilterStatistics:
        stats = FilterStatistics(**self._acc.result(), layer=self.layer)
        if bool((stats.mean < 0).any()):
            warnings.warn(f"cnnviz: filter_statistics: some filters{f' of {self.layer}' if self.layer else ''} have "
                          "negative mean responses (a layer before its ReLU?): selectivity and top_share assume "
                          "non-negative responses; take the layer after the activation for them", RuntimeWarning,
                          stacklevel=3)
        return stats

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The state as tensors (``count``, ``mean``, ``m2``, ``max``, ``active``,
        ``top_values``, ``top_indices``, and ``per_image`` / ``per_image_indices`` when kept)."""
        return dict(self._acc.state())

    @classmethod
    def from_state(cls, state: Dict[str, torch.Tensor], **options) -> "FilterStatisticsAccumulator":
        """An accumulator holding ``state`` (from :meth:`state_dict`), with these options."""
        acc = cls(**options)
        acc._acc = _C.FilterStatisticsAccumulator.from_state(state, acc._options)
        return acc


def filter_statistics(model, images: Images, layer: str, *, threshold: float = _FS.threshold,
                      relative: bool = _FS.relative, top_k: int = _FS.top_k,
                      consistent_fraction: float = _FS.consistent_fraction,
                      specific_fraction: float = _FS.specific_fraction, keep_per_image: bool = _FS.keep_per_image,
                      batch_size: int = _FS.batch_size) -> FilterStatistics:
    """Per-filter statistics of ``layer`` over ``images``, in one streaming pass without autograd.

    ``images``: an (N, C, H, W) tensor (run in batches of ``batch_size``) or any iterable of
    batches. Images are indexed in the order seen (``top_indices`` refers to it).

    A filter is *active* for an image when its mean activation there exceeds ``threshold``
    times the image's mean over all the layer's filters (``relative=True``, the default:
    "above the layer's average for this image", which needs no knowledge of the layer's
    scale and works before or after a ReLU), or ``threshold`` itself with ``relative=False``
    (e.g. ``threshold=0`` after a ReLU: "fires anywhere in the image"). ``top_k`` strongest
    images are kept per filter; ``keep_per_image`` keeps the (N, C) responses (memory grows
    with N; :func:`cnnviz.plot.filter_statistics` needs them).

    Returns :class:`FilterStatistics`.
    """
    acc = FilterStatisticsAccumulator(threshold=threshold, relative=relative, top_k=top_k,
                                      consistent_fraction=consistent_fraction, specific_fraction=specific_fraction,
                                      keep_per_image=keep_per_image)
    device = model_device(model)
    with StreamStops("filter_statistics") as stream:
        for batch in stream.batches(iter_batches(images, batch_size, "filter_statistics", device)):
            acc.update_from_model(model, batch, layer)
    return stream.finish(acc.result())


# ---------------------------------------------------------------------------------------------
# Redundancy


@dataclass(repr=False)
class FilterRedundancy:
    """Redundancy of a layer's C filters.

    - ``weight_similarity`` (C, C) float64: cosine similarity of the flattened filter weights
      (None when the layer has no weight of 2-D or more);
    - ``activation_correlation`` (C, C) float64: Pearson correlation of the filters'
      activations, every position of every image a sample (None without images); constant
      (dead) filters get 0 off the diagonal and are listed in ``constant_filters``;
    - ``groups``: near-duplicate groups (2 or more filters joined where the similarity is at
      least ``threshold``; connected components), largest first, from ``basis``
      ("activations" when images were given, else "weights");
    - ``effective_filters_weights`` / ``effective_filters_activations``: the participation
      ratio (sum l)^2 / sum l^2 of the eigenvalues of those matrices: C for orthogonal or
      uncorrelated filters, 1 when all are copies (NaN where not available);
    - ``samples``: positions x images behind the correlation.
    """

    weight_similarity: Optional[torch.Tensor]
    activation_correlation: Optional[torch.Tensor]
    basis: str
    threshold: float
    groups: List[List[int]]
    effective_filters_weights: float
    effective_filters_activations: float
    constant_filters: torch.Tensor
    samples: int
    layer: Optional[str] = None
    #: Ctrl-C ended the stream of images: the correlation covers the batches seen.
    interrupted: bool = False

    @property
    def num_filters(self) -> int:
        m = self.activation_correlation if self.activation_correlation is not None else self.weight_similarity
        return int(m.shape[0])

    @property
    def similarity(self) -> torch.Tensor:
        """The matrix the groups come from."""
        return self.activation_correlation if self.basis == "activations" else self.weight_similarity

    def __repr__(self) -> str:
        layer = f"layer={self.layer!r}, " if self.layer else ""
        groups = self.groups if len(self.groups) <= 4 else self.groups[:4] + ["..."]
        return (f"FilterRedundancy({layer}filters={self.num_filters}, basis={self.basis!r}, "
                f"threshold={self.threshold}, groups={groups}, "
                f"effective_filters_weights={self.effective_filters_weights:.1f}, "
                f"effective_filters_activations={self.effective_filters_activations:.1f}, "
                f"constant_filters={self.constant_filters.numel()})")


class ChannelCovarianceAccumulator:
    """Streaming covariance of a layer's channels (every position of every image one sample
    of the C-vector; float64; Chan et al.'s pairwise merge): ``update`` /
    ``update_from_model`` / ``merge`` / ``covariance()`` / ``correlation()`` and
    ``state_dict`` / ``from_state`` (``count``, ``mean`` (C,), ``comoment`` (C, C))."""

    def __init__(self) -> None:
        self._acc = _C.ChannelCovarianceAccumulator()

    @property
    def count(self) -> int:
        return self._acc.count

    def update(self, activations: torch.Tensor) -> None:
        self._acc.update(activations)

    def update_from_model(self, model, x: torch.Tensor, layer: str) -> None:
        self._acc.update_from_model(model, x, layer)

    def merge(self, other: "ChannelCovarianceAccumulator") -> "ChannelCovarianceAccumulator":
        self._acc.merge(other._acc)
        return self

    def mean(self) -> torch.Tensor:
        return self._acc.mean()

    def covariance(self) -> torch.Tensor:
        return self._acc.covariance()

    def correlation(self) -> torch.Tensor:
        return self._acc.correlation()

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return dict(self._acc.state())

    @classmethod
    def from_state(cls, state: Dict[str, torch.Tensor]) -> "ChannelCovarianceAccumulator":
        acc = cls()
        acc._acc = _C.ChannelCovarianceAccumulator.from_state(state)
        return acc


def filter_redundancy(model, layer: str, images: Optional[Images] = None, threshold: float = _FR.threshold, *,
                      batch_size: int = _FR.batch_size) -> FilterRedundancy:
    """Which filters of ``layer`` duplicate each other.

    Always compares the filter weights (cosine similarity, when the layer has a weight of
    2-D or more, e.g. a Conv2d); given ``images`` (a tensor or an iterable of batches, one
    streaming pass), also the correlation of the filters' activations, which then decides
    the groups (two filters with different weights can still compute the same thing).
    Groups join filters whose similarity is at least ``threshold``.

    Returns :class:`FilterRedundancy`.
    """
    o = fill_options(_C.FilterRedundancyOptions, locals())
    cov = _C.ChannelCovarianceAccumulator()
    with StreamStops("filter_redundancy") as stream:
        if images is not None:
            for batch in stream.batches(iter_batches(images, batch_size, "filter_redundancy", model_device(model))):
                cov.update_from_model(model, batch, layer)
    r = _C.filter_redundancy(model, layer, cov, o)
    return stream.finish(FilterRedundancy(**r, layer=layer))
