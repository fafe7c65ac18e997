"""Notices whether a forward pass reads tensor values into Python (``bool(t)``, ``t.item()``,
``int(t)``, ``t.tolist()``, ...) or makes shapes from values (``nonzero``, ``unique``, ...):
the only ways, besides the input's shape, by which an input decides how often a module
runs. A capture may stop a forward early at a layer's last call only when the number of
calls was learnt from a forward that did neither (see PyModel::capture). Torch-function
modes are per thread, so other threads' forwards are not seen.
"""
import torch
from torch.overrides import TorchFunctionMode

_READS = {"__bool__", "item", "__int__", "__float__", "__index__", "__complex__", "tolist", "numpy",
          "equal", "allclose", "is_nonzero", "nonzero", "argwhere", "masked_select", "unique",
          "unique_consecutive", "bincount", "repeat_interleave"}


class ValueReadMode(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.read = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not self.read and getattr(func, "__name__", None) in _READS:
            self.read = True
        return func(*args, **(kwargs or {}))
