"""Representation similarity: centered kernel alignment (CKA, Kornblith et al. 2019)
between every pair of layers of two models, or within one.

Linear CKA streams over a DataLoader from minibatch HSIC estimates (Nguyen et al. 2021,
"Do wide and deep networks learn the same things?"):

    CKA(a, b) = sum_i HSIC(K_i, L_i) / sqrt(sum_i HSIC(K_i, K_i) * sum_i HSIC(L_i, L_i))

over batches i, K_i and L_i the batch's Gram matrices of layers a and b. With the unbiased
HSIC estimator (the default) the result converges to the full-data CKA whatever the batch
size; memory is bounded by one batch. The state of :class:`CKAAccumulator` is three sums:
all-reduce them across ranks of a distributed run.

The defaults shown in the signatures come from the C++ Options struct (``cnnviz._C``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from . import _C
from ._batches import Images, iter_batches, model_device
from ._options import fill_options
from ._progress import StreamStops

__all__ = ["CKAResult", "CKAAccumulator", "cka"]

_CKA = _C.CkaOptions()


@dataclass(repr=False)
class CKAResult:
    """CKA between ``layers_a`` (rows) and ``layers_b`` (columns).

    - ``matrix`` (La, Lb) float64 (NaN where a layer does not vary over the images);
    - ``hsic_ab`` (La, Lb), ``hsic_aa`` (La,), ``hsic_bb`` (Lb,): the summed HSIC estimates;
    - ``batches``, ``samples``; ``skipped_samples``: images of batches too small for the
      estimator (fewer than 4 for the unbiased one), left out.
    """

    matrix: torch.Tensor
    hsic_ab: torch.Tensor
    hsic_aa: torch.Tensor
    hsic_bb: torch.Tensor
    batches: int
    samples: int
    skipped_samples: int
    layers_a: List[str]
    layers_b: List[str]
    kernel: str = _CKA.kernel
    unbiased: bool = _CKA.unbiased
    #: Ctrl-C ended the stream: the estimate covers the ``samples`` seen.
    interrupted: bool = False

    def __repr__(self) -> str:
        la, lb = len(self.layers_a), len(self.layers_b)
        if la <= 6 and lb <= 6:
            rows = "\n".join(f"  {a:>16s} " + " ".join(f"{v:6.3f}" for v in row.tolist())
                             for a, row in zip(self.layers_a, self.matrix))
            body = "\n" + rows
        else:
            body = f" min {self.matrix.nan_to_num(2).min().item():.3f}, max {self.matrix.nan_to_num(-1).max().item():.3f}"
        return (f"CKAResult({la}x{lb} layers, kernel={self.kernel!r}, samples={self.samples} in {self.batches} "
                f"batches, skipped={self.skipped_samples}):{body}")


class CKAAccumulator:
    """Streaming CKA between La layers and Lb layers: ``update(acts_a, acts_b)`` with one
    (n, ...) activation per layer, all of the same n (``acts_b=None``: within the same
    layers), ``update_from_models``, ``merge``, ``result()``, and ``state_dict`` /
    ``from_state`` (``hsic_ab``, ``hsic_aa``, ``hsic_bb``, ``batches``, ``samples``,
    ``skipped``: plain sums, so an all-reduce with SUM combines ranks)."""

    def __init__(self, layers_a: Sequence[str], layers_b: Optional[Sequence[str]] = None, *,
                 kernel: str = _CKA.kernel, rbf_sigma: float = _CKA.rbf_sigma, unbiased: bool = _CKA.unbiased) -> None:
        self.layers_a = list(layers_a)
        self.layers_b = list(layers_b) if layers_b is not None else list(self.layers_a)
        self.kernel, self.unbiased = kernel, unbiased
        self._options = fill_options(_C.CkaOptions, locals())
        self._acc = _C.CkaAccumulator(len(self.layers_a), len(self.layers_b), self._options)

    def update(self, acts_a: Sequence[torch.Tensor], acts_b: Optional[Sequence[torch.Tensor]] = None) -> None:
        self._acc.update(list(acts_a), list(acts_b) if acts_b is not None else [])

    def update_from_models(self, model_a, model_b, x: torch.Tensor) -> None:
        """Runs each model once on x (n, C, H, W), capturing all its layers in that forward
        (``model_b=None``: model_a for both lists)."""
        self._acc.update_from_models(model_a, model_b, x, self.layers_a, self.layers_b)

    def merge(self, other: "CKAAccumulator") -> "CKAAccumulator":
        self._acc.merge(other._acc)
        return self

    def result(self) -> CKAResult:
        return CKAResult(**self._acc.result(), layers_a=self.layers_a, layers_b=self.layers_b, kernel=self.kernel,
                         unbiased=self.unbiased)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return dict(self._acc.state())

    @classmethod
    def from_state(cls, state: Dict[str, torch.Tensor], layers_a: Sequence[str],
                   layers_b: Optional[Sequence[str]] = None, **options) -> "CKAAccumulator":
        acc = cls(layers_a, layers_b, **options)
        acc._acc = _C.CkaAccumulator.from_state(state, acc._options)
        return acc


def cka(model_a, model_b, images: Images, layers_a: Sequence[str], layers_b: Optional[Sequence[str]] = None, *,
        kernel: str = _CKA.kernel, rbf_sigma: float = _CKA.rbf_sigma, unbiased: bool = _CKA.unbiased,
        batch_size: int = _CKA.batch_size) -> CKAResult:
    """CKA between every layer of ``layers_a`` (of ``model_a``) and every layer of
    ``layers_b`` (of ``model_b``; ``model_b=None``: of model_a; ``layers_b=None``: layers_a).

    ``images``: an (N, C, H, W) tensor (run in batches of ``batch_size``) or any iterable of
    batches, seen once; each model runs one forward per batch for all its layers. Both
    models see the same images, so they must take the same input size and normalization.

    ``kernel="linear"`` streams; ``kernel="rbf"`` (bandwidth ``rbf_sigma`` times the median
    distance) needs all images in one batch. ``unbiased=False`` uses the biased HSIC: on one
    batch that is the textbook ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F).

    Returns :class:`CKAResult`; ``matrix[i, j]`` is CKA(layers_a[i], layers_b[j]).
    """
    layers_a = [layers_a] if isinstance(layers_a, str) else list(layers_a)
    if isinstance(layers_b, str):
        layers_b = [layers_b]
    if not layers_a or (layers_b is not None and not list(layers_b)):
        raise ValueError("cnnviz: cka: the layer lists must not be empty")
    if model_b is None and layers_b is None:
        layers_b = layers_a
    elif layers_b is None:
        raise ValueError("cnnviz: cka: give layers_b for model_b")
    acc = CKAAccumulator(layers_a, layers_b, kernel=kernel, rbf_sigma=rbf_sigma, unbiased=unbiased)
    if kernel == "rbf" and not isinstance(images, torch.Tensor):
        raise ValueError("cnnviz: cka: the RBF kernel needs all images in one tensor (its bandwidth depends on "
                         "the batch); use the linear kernel to stream a DataLoader")
    step = images.shape[0] if kernel == "rbf" else batch_size
    device = model_device(model_a)
    with StreamStops("cka") as stream:
        for batch in stream.batches(iter_batches(images, step, "cka", device)):
            acc.update_from_models(model_a, model_b, batch)
    return stream.finish(acc.result())
