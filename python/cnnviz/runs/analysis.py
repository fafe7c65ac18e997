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
