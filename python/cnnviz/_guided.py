"""Guided backprop for a Python model: every ReLU's result passes through
``_C._positive_grad``, an identity whose backward drops negative gradients, so together
with the ReLU's own backward only positive gradients through active units flow.

``nn.ReLU``, ``nn.ReLU6`` and ``nn.Hardtanh`` call the functional forms, so a torch-function
mode covers modules, functional calls and in-place forms alike (an in-place call whose
result is discarded, like a bare ``x.relu_()``, keeps the plain backward).
"""
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import _C

_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
          F.relu6, F.hardtanh, F.hardtanh_}


class GuidedReluMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _RELUS and isinstance(out, torch.Tensor):
            return _C._positive_grad(out)
        return out
