"""Inference plans: a small eval-mode ``nn.Module`` compiled once into TorchScript.

One small image through a small CNN (ResNet-20 on 32x32) costs per-op and per-module
overhead rather than arithmetic. A plan is a ``torch.jit.trace`` of the model: it runs
without calling back into Python (no module calls, no hooks; the native core captures
layers in it by name). The trace shares the model's parameters and buffers, so in-place
changes of their values (an optimizer step, ``load_state_dict``, edits through ``.data``)
reach it as they are; a replaced tensor or module (another object) makes a new plan.

A plan is used only where it gives the model's results: it is built for models in eval
mode with no hooks, whose forward traces without a TracerWarning (no data-dependent Python
control flow) and returns one tensor; its output is checked against the model's on every
new input shape (1e-5 relative); a call index (``name:k``) is captured from the model
itself. Plans are made only for small work (input elements per image times parameters
below 5e9, where overhead dominates); ``CNNVIZ_PLAN=0`` or
``cnnviz.set_inference_plans(False)`` turns them off.

Batch norm folded into the convolutions (a traced copy with fused weights) was measured
too and left out of these plans: it gained nothing measurable over the trace on ResNet-20
for a single pass with gradients, and a copy of the weights cannot see edits made through
``.data`` without a comparison per call (benchmarks/RESULTS.md, "Attribution").

**Forward plans** serve the methods that run the model forward without gradients on
batches of perturbed images (occlusion, Score-CAM's masked images, LIME,
deletion/insertion): ``forward_plan`` gives a callable running
``torch.jit.optimize_for_inference`` of the frozen trace (batch norm folded into the
convolutions, oneDNN's prepacked weights), which the bindings pair with the module itself
(captures, parameters, forwards with gradients). On ResNet-20 a batch of 32-64 CIFAR images
runs about 1.7x faster than the module, and occlusion whole calls about 3x; MobileNetV2 at
224x224 about 2.2x (RESULTS.md). Unlike the traces above they serve models of any work up
to FORWARD_MAX_PARAMETERS parameters (the copy holds the weights twice).
The copy is exact to rounding: every batch shape is checked against the model's own output
once (1e-5 relative), and every call compares the model's parameters and buffers with the
values frozen in (a few hundred microseconds for ResNet-20), so an edit made in any way,
``.data`` included, makes a new copy; a model whose values change again after that (a
training loop) runs as it is from then on. Otherwise the plans' eligibility above.
"""
from __future__ import annotations

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
    if not isinstance(enabled, bool):  # a string such as "off" would read as True
        raise TypeError(f"cnnviz: set_inference_plans takes True or False, got {enabled!r}")
    _enabled = enabled


def inference_plans_enabled() -> bool:
    """Whether calls may use inference plans (``set_inference_plans`` and ``CNNVIZ_PLAN``)."""
    value = os.environ.get("CNNVIZ_PLAN", "1").strip().lower()
    if value not in _ENV_VALUES:
        raise ValueError(f"cnnviz: CNNVIZ_PLAN must be 1/on/true or 0/off/false, got {value!r}")
    return _enabled and _ENV_VALUES[value]


_ENV_VALUES = {"1": True, "on": True, "true": True, "0": False, "off": False, "false": False}


class _Entry:
    """The plans of one model: per image shape a traced module (or None: not plannable),
    the input shapes verified against the model, the state key."""

    def __init__(self, state, elements: int) -> None:
        self.state = state
        self.elements = elements  # parameters' elements, for the size of the work
        self.traced: Dict[Tuple[int, ...], Optional[torch.jit.ScriptModule]] = {}
        self.verified: Dict[Tuple[int, ...], bool] = {}


def _walk(model: nn.Module) -> Tuple[tuple, bool]:
    """One pass over the modules (a lookup runs on every call, and ``modules()``,
    ``parameters()`` and ``buffers()`` each walk the tree again): what a plan depends on,
    and whether a module trains or has hooks. The key holds each module's identity and mode
    and each parameter's and buffer's identity: the trace holds these very tensors, so
    in-place edits and ``.data`` assignments reach it, and a replaced tensor (a new object;
    the old one, held by the trace, keeps its id from being reused) makes a new plan."""
    modules, tensors = [], []
    hooked = False
    stack, seen = [model], set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        modules.append((id(m), m.training))
        hooked = hooked or m.training or bool(m._forward_hooks) or bool(m._forward_pre_hooks)
        tensors.extend(map(id, m._parameters.values()))
        tensors.extend(map(id, m._buffers.values()))
        stack.extend(c for c in m._modules.values() if c is not None)
    return (tuple(tensors), tuple(modules)), hooked


def _eligible(model, x: torch.Tensor) -> bool:
    """The checks that need no walk over the modules."""
    if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule):
        return False
    if not inference_plans_enabled() or not isinstance(x, torch.Tensor) or x.dim() != 4:
        return False
    if x.dtype != torch.float32 or torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled():
        return False
    from torch.nn.modules import module as _m
    return not (_m._global_forward_hooks or _m._global_forward_pre_hooks)


def _build(model: nn.Module, x: torch.Tensor):
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = torch.jit.trace(model, x[:1].detach(), check_trace=False)
        if any(issubclass(w.category, torch.jit.TracerWarning) for w in caught):
            return None  # Python control flow read tensor values: a trace may not generalize
        return traced
    except Exception:  # noqa: BLE001 - any model the tracer cannot handle runs as it is
        return None


def _verify(model: nn.Module, plan, x: torch.Tensor) -> bool:
    with torch.no_grad():
        expected, got = model(x), plan(x)
    if not isinstance(expected, torch.Tensor) or not isinstance(got, torch.Tensor) or expected.shape != got.shape:
        return False
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(got, expected, rtol=1e-5, atol=1e-5 * max(scale, 1e-12)))


def _state(model, x: torch.Tensor):
    """What a plan of ``model`` for ``x`` depends on (``_walk``), or None where no plan may
    serve the call (``_eligible``, training mode, hooks)."""
    if not _eligible(model, x):
        return None
    state, hooked = _walk(model)
    return None if hooked else state


def _entry(model: nn.Module, state) -> _Entry:
    """The model's plan entry for its current modules and tensors (held under _lock)."""
    entry = _plans.get(model)
    if entry is None or entry.state != state:
        entry = _Entry(state, sum(p.numel() for p in model.parameters()))
        _plans[model] = entry
    return entry


def model_for(model, x: torch.Tensor, layers: Sequence[str] = ()):
    """The plan that serves a call on ``x`` (capturing ``layers``), or ``model`` itself."""
    state = _state(model, x)
    if state is None:
        return model
    image = tuple(x.shape[1:])
    with _lock:
        entry = _entry(model, state)
        if x[0].numel() * max(1, entry.elements) >= _SMALL_WORK:
            return model
        if image not in entry.traced:
            entry.traced[image] = _build(model, x)
        plan = entry.traced[image]
        if plan is None:
            return model
        shape = tuple(x.shape)
        if shape not in entry.verified:
            entry.verified[shape] = _verify(model, plan, x.detach())
        if not entry.verified[shape]:
            return model
    if any(":" in layer for layer in layers):
        return model
    return plan


# ---------------------------------------------------------------------------------------
# Forward plans: frozen, optimized copies for no-grad forwards

#: Value changes after which a model's forward plans are no longer made (its weights keep
#: changing: building a copy costs more than the calls it would serve).
FORWARD_REBUILDS = 1
#: The largest model (parameter elements) copied: the copy and the values kept to compare
#: hold it twice (ResNet-50's 25.6 M: about 200 MB; VGG16's 138 M would take 1.1 GB).
FORWARD_MAX_PARAMETERS = 30_000_000
#: Image shapes whose copies are kept per model (each copy holds the weights), oldest dropped.
FORWARD_SHAPES_PER_MODEL = 4


class _Frozen:
    """A model's optimized copies per image shape, the values frozen into them, and the
    batch shapes checked against the model."""

    def __init__(self, state, tensors) -> None:
        self.state = state
        self.tensors = tensors                       # the model's live parameters and buffers
        self.values = [t.detach().clone() for t in tensors]
        self.modules: Dict[Tuple[int, ...], Optional[torch.jit.ScriptModule]] = {}
        self.verified: Dict[Tuple[int, ...], bool] = {}
        self.rebuilds = 0

    def fresh(self) -> bool:
        return all(torch.equal(a, b) for a, b in zip(self.tensors, self.values))


_frozen: "weakref.WeakKeyDictionary[nn.Module, _Frozen]" = weakref.WeakKeyDictionary()
_given_up: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _optimized(model: nn.Module, x: torch.Tensor):
    traced = _build(model, x)
    if traced is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    except Exception:  # noqa: BLE001 - a model the freezer cannot handle runs as it is
        return None


class ForwardPlan:
    """The model's no-grad forward through its optimized copy (``forward_plan``). A batch
    shape not seen before is checked against the model once; where it differs by more than
    1e-5 relative, that shape runs the model. The native core sees the model itself (its
    layers, parameters and captures) and calls this for the forwards it runs without
    gradients."""

    _cnnviz_forward_plan = True  # what the bindings look for

    def __init__(self, model: nn.Module, frozen: _Frozen, module) -> None:
        self.model, self.frozen, self.module = model, frozen, module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            shape = tuple(x.shape)
            ok = self.frozen.verified.get(shape)
            if ok is None:
                ok = _verify(self.model, self.module, x)
                with _lock:
                    self.frozen.verified[shape] = ok
            return self.module(x) if ok else self.model(x)


def forward_plan(model, x: torch.Tensor):
    """A callable for the no-grad forwards of a call on ``x`` (batches shaped like its
    images): a ``ForwardPlan`` where the model is eligible (as ``model_for``, any size of
    work, at most FORWARD_MAX_PARAMETERS parameters) and its values are those frozen in,
    else ``model`` itself."""
    state = _state(model, x)
    if state is None or x.device.type != "cpu" or model in _given_up:
        return model  # (oneDNN's optimized copy is a CPU affair)
    image = tuple(x.shape[1:])
    with _lock:
        entry = _entry(model, state)
        if entry.elements > FORWARD_MAX_PARAMETERS:
            return model
        frozen = _frozen.get(model)
        if frozen is not None and frozen.state == state and not frozen.fresh():
            if frozen.rebuilds >= FORWARD_REBUILDS:
                _given_up.add(model)
                del _frozen[model]
                return model
            rebuilds = frozen.rebuilds + 1
            frozen = None
        else:
            rebuilds = frozen.rebuilds if frozen is not None else 0
        if frozen is None or frozen.state != state:
            frozen = _Frozen(state, list(model.parameters()) + list(model.buffers()))
            frozen.rebuilds = rebuilds
            _frozen[model] = frozen
        if image not in frozen.modules:
            frozen.modules[image] = _optimized(model, x)
            while len(frozen.modules) > FORWARD_SHAPES_PER_MODEL:
                frozen.modules.pop(next(iter(frozen.modules)))
        module = frozen.modules[image]
    if module is None:
        return model
    return ForwardPlan(model, frozen, module)
