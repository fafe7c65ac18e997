"""Inference plans: a small eval-mode ``nn.Module`` compiled once into TorchScript.

One small image through a small CNN (ResNet-20 on 32x32) costs per-op and per-module
overhead rather than arithmetic. A plan is a ``torch.jit.trace`` of a copy of the model with
each batch norm that directly follows a convolution folded into it (the batch norm becomes
``nn.Identity``, so every other module keeps its name and the native core captures layers
in it by name). It runs without Python and with fewer ops.

A plan is used only where it gives the model's results: it is built for models in eval
mode with no hooks, whose forward traces without a TracerWarning (no data-dependent Python
control flow) and returns one tensor; its output is checked against the model's on every
new input shape (1e-5 relative); a folded convolution or batch norm, or a call index, is
captured from the model itself. It is cached per model and input shape and rebuilt when a parameter or buffer changes (its storage, its
version counter, or a checksum of its values, so edits through ``.data`` are seen too).
Plans are made only for small work (input elements per image times parameters below
5e9, where overhead dominates); ``CNNVIZ_PLAN=0`` or ``cnnviz.set_inference_plans(False)``
turns them off.
"""
from __future__ import annotations

import copy
import os
import threading
import warnings
import weakref
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["set_inference_plans", "inference_plans_enabled"]

_SMALL_WORK = 5e9  # as detail::kSmallWork: per-image input elements times parameters
_lock = threading.RLock()
_plans: "weakref.WeakKeyDictionary[nn.Module, _Entry]" = weakref.WeakKeyDictionary()
_enabled = True


def set_inference_plans(enabled: bool) -> None:
    """Turns inference plans on (the default) or off for every later call."""
    global _enabled
    _enabled = bool(enabled)


def inference_plans_enabled() -> bool:
    """Whether calls may use inference plans (``set_inference_plans`` and ``CNNVIZ_PLAN``)."""
    return _enabled and os.environ.get("CNNVIZ_PLAN", "1") not in ("0", "off", "false")


class _Entry:
    """The plans of one model: per image shape a traced module (or None: not plannable),
    the input shapes verified against the model, the folded modules, the state key."""

    def __init__(self, state) -> None:
        self.state = state
        self.traced: Dict[Tuple[int, ...], Optional[torch.jit.ScriptModule]] = {}
        self.verified: Dict[Tuple[int, ...], bool] = {}
        self.folded: Dict[Tuple[int, ...], frozenset] = {}


def _tensors(model: nn.Module):
    return list(model.parameters()) + [b for b in model.buffers() if b is not None]


def _state(model: nn.Module, tensors) -> tuple:
    """What a plan depends on: each tensor's storage and version, a checksum of the floating
    point values (edits through ``.data`` bump no version), the modules and their modes."""
    floats = [t.detach().reshape(-1) for t in tensors if t.is_floating_point()]
    checksum = ()
    if floats:
        flat = torch.cat(floats).double()
        checksum = (float(flat.sum()), float(flat.square().sum()))
    return (tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors), checksum,
            tuple((id(m), m.training) for m in model.modules()))


def _eligible(model, x: torch.Tensor) -> bool:
    if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule):
        return False
    if not inference_plans_enabled() or not isinstance(x, torch.Tensor) or x.dim() != 4:
        return False
    if x.dtype != torch.float32 or torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled():
        return False
    from torch.nn.modules import module as _m
    if _m._global_forward_hooks or _m._global_forward_pre_hooks:
        return False
    for m in model.modules():
        if m.training or m._forward_hooks or m._forward_pre_hooks:
            return False
    return True


def _fold(model: nn.Module, x: torch.Tensor) -> Tuple[nn.Module, frozenset]:
    """A copy with each batch norm that consumes a convolution's output (the next module to
    run, each called once) folded into that convolution; returns the copy and the names of
    the folded convolutions and batch norms."""
    names = {m: n for n, m in model.named_modules()}
    calls, outputs, pairs = {}, {}, []
    order = []

    def conv_hook(mod, inp, out):
        calls[mod] = calls.get(mod, 0) + 1
        order.append(mod)
        outputs[id(out)] = mod

    def bn_hook(mod, inp):
        calls[mod] = calls.get(mod, 0) + 1
        src = outputs.get(id(inp[0]))
        if src is not None and order and order[-1] is src:
            pairs.append((src, mod))
        order.append(mod)

    handles = []
    try:
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                handles.append(m.register_forward_hook(conv_hook))
            elif isinstance(m, nn.BatchNorm2d):
                handles.append(m.register_forward_pre_hook(bn_hook))
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    pairs = [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1 and b.track_running_stats
             and b.running_mean is not None]
    clone = copy.deepcopy(model)
    folded = set()
    for conv, bn in pairs:
        cname, bname = names[conv], names[bn]
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(clone.get_submodule(cname), clone.get_submodule(bname))
        _replace(clone, cname, fused)
        _replace(clone, bname, nn.Identity())
        folded.update((cname, bname))
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone, frozenset(folded)


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _build(model: nn.Module, x: torch.Tensor):
    example = x[:1].detach()
    try:
        clone, folded = _fold(model, example)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = torch.jit.trace(clone, example, check_trace=False)
        if any(issubclass(w.category, torch.jit.TracerWarning) for w in caught):
            return None, frozenset()  # Python control flow read tensor values: a trace may not generalize
        return traced, folded
    except Exception:  # noqa: BLE001 - any model the tracer cannot handle runs as it is
        return None, frozenset()


def _verify(model: nn.Module, plan, x: torch.Tensor) -> bool:
    with torch.no_grad():
        expected, got = model(x), plan(x)
    if not isinstance(expected, torch.Tensor) or not isinstance(got, torch.Tensor) or expected.shape != got.shape:
        return False
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(got, expected, rtol=1e-5, atol=1e-5 * max(scale, 1e-12)))


def model_for(model, x: torch.Tensor, layers: Sequence[str] = ()):
    """The plan that serves a call on ``x`` (capturing ``layers``), or ``model`` itself."""
    if not _eligible(model, x):
        return model
    tensors = _tensors(model)
    per_image = x[0].numel()
    if per_image * max(1, sum(t.numel() for t in tensors if isinstance(t, nn.Parameter))) >= _SMALL_WORK:
        return model
    image = tuple(x.shape[1:])
    with _lock:
        state = _state(model, tensors)
        entry = _plans.get(model)
        if entry is None or entry.state != state:
            entry = _Entry(state)
            _plans[model] = entry
        if image not in entry.traced:
            entry.traced[image], entry.folded[image] = _build(model, x)
        plan = entry.traced[image]
        if plan is None:
            return model
        shape = tuple(x.shape)
        if shape not in entry.verified:
            entry.verified[shape] = _verify(model, plan, x.detach())
        if not entry.verified[shape]:
            return model
        folded = entry.folded[image]
    for layer in layers:
        if ":" in layer or layer in folded:
            return model
    return plan
