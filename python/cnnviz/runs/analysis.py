"""Analysis jobs in a run: streaming accumulators over the whole dataset.

A job keeps its state as a dict of tensors. Each chunk starts from an empty state, and the
chunk's state is stored in the chunk file, so a restarted run reduces exactly the states an
uninterrupted one would. At the end each rank merges the states of its chunks in chunk
order, and the ranks' states are reduced with torch.distributed: all-reduced when the state
is a set of sums (``reduction = "sum"``), else gathered and merged in rank order.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np
import torch

State = Dict[str, torch.Tensor]


class AnalysisJob:
    """Base of analysis jobs. Subclasses set ``name`` and implement ``update`` and ``result``;
    ``merge`` defaults to a sum per key (right for states of sums and counts)."""

    kind = "analysis"
    name = "analysis"
    reduction = "sum"

    def __init__(self, group: str = None, **options: Any) -> None:
        self.group = group or self.name
        self.options = dict(options)

    def resolve(self, model, example: torch.Tensor) -> None:
        """Fills in what depends on the model (default layers); called once before the run."""

    def settings(self) -> Dict[str, Any]:
        return {"method": self.name, **self.options}

    def new_state(self) -> State:
        return {}

    def update(self, state: State, model, x: torch.Tensor, batch: Mapping[str, Any]) -> State:
        raise NotImplementedError

    def merge(self, a: State, b: State) -> State:
        if not a:
            return dict(b)
        if not b:
            return dict(a)
        if set(a) != set(b):
            raise ValueError(f"cnnviz: {self.group}: states with different keys {sorted(a)} / {sorted(b)}")
        return {k: a[k] + b[k] for k in a}

    def result(self, state: State) -> Dict[str, np.ndarray]:
        raise NotImplementedError


def _cnnviz():
    import cnnviz

    return cnnviz


def _arrays(result) -> Dict[str, np.ndarray]:
    """A result dataclass as arrays: tensors and numbers kept, names as bytes, None left out."""
    out: Dict[str, np.ndarray] = {}
    for key, value in vars(result).items():
        if value is None or key == "interrupted":  # a run resumes instead of returning partial results
            continue
        if isinstance(value, torch.Tensor):
            out[key] = value.detach().cpu().numpy()
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[key] = np.array([v.encode() for v in value], dtype=bytes)
        elif isinstance(value, (bool, int, float)):
            out[key] = np.asarray(value)
        elif isinstance(value, str):
            out[key] = np.bytes_(value.encode())
    return out


class _AccumulatorJob(AnalysisJob):
    """A job over one of the library's accumulators: its state round-trips through the
    accumulator (``_acc``), which merges and reduces it."""

    def _acc(self, state: State):
        raise NotImplementedError

    def merge(self, a: State, b: State) -> State:
        if not a or not b:
            return dict(a or b)
        return self._acc(a).merge(self._acc(b)).state_dict()

    def result(self, state: State) -> Dict[str, np.ndarray]:
        return _arrays(self._acc(state).result())


class FilterStatisticsJob(_AccumulatorJob):
    """``filter_statistics`` of one layer over the dataset (``cnnviz.FilterStatisticsAccumulator``;
    options as :func:`cnnviz.filter_statistics`: threshold, relative, top_k, ...). Top-k image
    indices are dataset indices. ``layer`` defaults to the CAM layer (the last spatial block)."""

    name = "filter_statistics"
    reduction = "merge"  # Welford moments, maxima and top-k lists merge, they do not add

    def __init__(self, group: str = None, layer: str = None, **options: Any) -> None:
        if options.get("keep_per_image"):
            raise ValueError("cnnviz: filter_statistics in a run cannot keep_per_image (memory would grow "
                             "with the dataset)")
        if not hasattr(_cnnviz(), "FilterStatisticsAccumulator"):
            raise ValueError("cnnviz: filter_statistics needs cnnviz.FilterStatisticsAccumulator, "
                             "which this build lacks")
        super().__init__(group, layer=layer, **options)

    def resolve(self, model, example: torch.Tensor) -> None:
        if self.options["layer"] is None:
            from .methods import default_cam_layer

            self.options["layer"] = default_cam_layer(model, example)

    def _acc(self, state: State):
        cls = _cnnviz().FilterStatisticsAccumulator
        opts = {k: v for k, v in self.options.items() if k != "layer"}
        return cls.from_state(state, **opts) if state else cls(**opts)

    def update(self, state: State, model, x: torch.Tensor, batch: Mapping[str, Any]) -> State:
        acc = self._acc(state)
        acc.update_from_model(model, x, self.options["layer"], batch["index"])
        return acc.state_dict()



class CKAJob(_AccumulatorJob):
    """Linear CKA between ``layers`` and ``layers_b`` (default: the same) of the model, or of
    ``model_b`` (another module taking the same inputs), from minibatch HSIC sums over the
    run's batches (``cnnviz.CKAAccumulator``). The sums are all-reduced over ranks."""

    name = "cka"
    reduction = "sum"

    def __init__(self, group: str = None, layers=None, layers_b=None, model_b=None, **options: Any) -> None:
        if not hasattr(_cnnviz(), "CKAAccumulator"):
            raise ValueError("cnnviz: cka needs cnnviz.CKAAccumulator, which this build lacks")
        if not layers:
            raise ValueError("cnnviz: cka needs layers=[...]")
        if options.get("kernel", "linear") != "linear":
            raise ValueError("cnnviz: cka in a run streams over batches: only the linear kernel does")
        # A comma-separated string (from the command line) or a list.
        layers = layers.split(",") if isinstance(layers, str) else list(layers)
        layers_b = layers_b.split(",") if isinstance(layers_b, str) else (list(layers_b) if layers_b else None)
        if model_b is not None and layers_b is None:
            raise ValueError("cnnviz: cka with model_b needs layers_b")
        super().__init__(group, layers=layers, layers_b=layers_b, **options)
        self.model_b = model_b

    def settings(self) -> Dict[str, Any]:
        s = super().settings()
        if self.model_b is not None:
            from .runner import _weights_digest

            s["model_b"] = f"{type(self.model_b).__name__}:{_weights_digest(self.model_b)}"
        return s

    def _acc(self, state: State):
        cls = _cnnviz().CKAAccumulator
        opts = {k: v for k, v in self.options.items() if k not in ("layers", "layers_b")}
        if state:
            return cls.from_state(state, self.options["layers"], self.options["layers_b"], **opts)
        return cls(self.options["layers"], self.options["layers_b"], **opts)

    def update(self, state: State, model, x: torch.Tensor, batch: Mapping[str, Any]) -> State:
        acc = self._acc(state)
        acc.update_from_models(model, self.model_b, x)
        return acc.state_dict()



ANALYSES = {"filter_statistics": FilterStatisticsJob, "cka": CKAJob}
