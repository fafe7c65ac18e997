"""Models and activation capture: any ``torch.nn.Module``, a TorchScript module, or a
callable, with layers named as ``model.named_modules()`` names them.

``name`` means a module's last call in the forward pass, ``name:k`` its k-th call (0-based),
for modules that run several times (torchvision ResNet's shared ``relu``). Captured
tensors are live in the autograd graph; an in-place op after a captured layer changes
neither the captured value nor its gradient; hooks are always removed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from . import _C
from .zoo import info, labels_for

__all__ = ["layer_names", "summary", "capture", "feature_maps", "filter_weights", "predict",
           "LayerRow", "Summary", "FilterWeights", "Prediction"]

Model = Union[torch.nn.Module, torch.jit.ScriptModule]


def _check_batch(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"cnnviz: x must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    return x


def _layer_list(layers: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(layers, str):
        return [layers]
    layers = list(layers)
    if not all(isinstance(layer, str) for layer in layers):
        raise ValueError("cnnviz: layer names must be strings")
    return layers


def layer_names(model: Model, leaves_only: bool = False) -> List[str]:
    """Qualified names of the model's modules, in ``named_modules()`` order."""
    return [name for name, _, _, leaf in _C.layers(model) if leaf or not leaves_only]


class LayerRow(NamedTuple):
    name: str
    type: str
    output_shape: Tuple[int, ...]
    num_parameters: int
    is_leaf: bool


class Summary(list):
    """A list of :class:`LayerRow` that prints as a table (also in Jupyter).

    ``total_parameters`` is the model's parameter count. A slice or a filtered copy
    (``summary.where(lambda r: r.type == "Conv2d")``) keeps it, and prints the sum of its
    own rows as "parameters in these rows" next to the model's total, never as the total."""

    def __init__(self, rows=(), total_parameters: Optional[int] = None) -> None:
        super().__init__(rows)
        self.total_parameters = sum(r.num_parameters for r in self) if total_parameters is None \
            else int(total_parameters)

    def __getitem__(self, index):
        item = super().__getitem__(index)
        return Summary(item, self.total_parameters) if isinstance(index, slice) else item

    def where(self, predicate) -> "Summary":
        """The rows for which ``predicate(row)`` is true, as a Summary of the same model."""
        return Summary((r for r in self if predicate(r)), self.total_parameters)

    def _totals_line(self) -> str:
        return str(self).rstrip("\n").rsplit("\n", 1)[1]

    def __str__(self) -> str:
        return _C.format_summary([tuple(r) for r in self], self.total_parameters)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "<tr><th>layer</th><th>type</th><th>output shape</th><th>params</th></tr>"
        body = "".join(
            f"<tr><td><code>{r.name}</code></td><td>{r.type}</td>"
            f"<td>{tuple(r.output_shape) if r.output_shape else '(not run)'}</td>"
            f"<td style='text-align:right'>{r.num_parameters:,}</td></tr>" for r in self)
        return f"<table>{head}{body}</table><p>{self._totals_line()}</p>"


def summary(model: Model, input_size: Optional[Sequence[int]] = None, depth: Optional[int] = None) -> Summary:
    """Every module with its type, output shape for an input of ``input_size``
    ((C, H, W) or (N, C, H, W)) and parameter count, from one forward pass.

    ``input_size`` defaults to the model's (see :func:`cnnviz.zoo.info`), else (3, 224, 224).
    ``depth`` keeps the modules at most that many levels deep (1: the top-level children,
    "features.3" is level 2); a module at the cut counts the parameters of everything below
    it, so the rows still add up to the model's total."""
    if input_size is None:
        spec = info(model)
        input_size = spec.input_size if spec is not None and spec.input_size else (1, 3, 224, 224)
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise ValueError(f"cnnviz: depth must be a positive int or None, got {depth!r}")
    rows = [LayerRow(n, t, tuple(s), p, leaf)
            for n, t, s, p, leaf in _C.summary(model, [int(s) for s in input_size], depth or 0)]
    # A module at the depth cut counts everything below it: the rows add up to the model's total.
    return Summary(rows, sum(r.num_parameters for r in rows))


def capture(model: Model, x: torch.Tensor, layers: Union[str, Sequence[str]]) -> Dict[str, torch.Tensor]:
    """Activations of ``layers`` for the batch ``x`` (N, C, H, W), in request order, live in
    the autograd graph of ``x``; the forward stops after the last requested layer."""
    _, acts = _C.capture(model, _check_batch(x), _layer_list(layers))
    return acts


def feature_maps(model: Model, x: torch.Tensor,
                 layers: Optional[Union[str, Sequence[str]]] = None) -> Dict[str, torch.Tensor]:
    """Outputs of the named layers (or of every leaf layer) in one forward pass, without
    autograd: name -> tensor, e.g. (N, C', H', W') for conv layers."""
    return _C.feature_maps(model, _check_batch(x), [] if layers is None else _layer_list(layers))


@dataclass
class FilterWeights:
    weight: torch.Tensor           #: (O, I, kH, kW) as stored
    mean: torch.Tensor             #: (O, kH, kW) mean over input channels
    rgb: Optional[torch.Tensor]    #: (O, 3, kH, kW) in [0, 1] per filter, when I == 3


def filter_weights(model: Model, layer: str) -> FilterWeights:
    """The filters of a conv layer ready to show: raw, mean over input channels and (for
    layers reading RGB) each filter scaled to [0, 1] as a colour image."""
    return FilterWeights(*_C.filter_weights(model, layer))


class Prediction(NamedTuple):
    index: int
    label: str
    probability: float


def predict(model: Model, x: torch.Tensor, k: int = 5,
            labels: Union[str, Sequence[str], None] = "auto") -> Union[List[Prediction], List[List[Prediction]]]:
    """Top-``k`` classes by softmax probability. ``labels``: ``"auto"`` (the model's own
    class names when known, see :func:`cnnviz.zoo.info`, else ImageNet's), ``"imagenet"``,
    ``"cifar10"``, a list of names, or None (names are the indices). For a single image
    (1, C, H, W) returns one list, for a batch a list per image."""
    x = _check_batch(x)
    if isinstance(labels, str) and labels == "auto":
        spec = info(model)
        labels = spec.labels if spec is not None and spec.labels is not None else "imagenet"
    rows = _C.predict(model, x, int(k), labels_for(labels))
    out = [[Prediction(*p) for p in row] for row in rows]
    return out[0] if x.dim() == 4 and x.shape[0] == 1 else out
