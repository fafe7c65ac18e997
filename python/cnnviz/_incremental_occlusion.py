"""Incremental occlusion (Nakandala et al., "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations", SIGMOD 2019) for ``torch.nn.Module`` models.

An occluding window changes only a rectangle of each layer's output: the window's projection
through the receptive fields of the layers before. The model is traced once with
``torch.fx`` (eval mode) and run once on the clean images with every intermediate value kept;
then, for a batch of windows, each layer recomputes only its changed rectangle, from a crop of
the clean input of that layer (padded once) with the previous layer's changed rectangle pasted
in. Every window of a batch gets a rectangle of the same size at each layer, so the crops of
all windows stack into one batch and each layer runs one call. The plan (trace, rules,
rectangles) is cached per model and input shape (``plan_for``).

Rules (how a node's changed rectangle follows from its inputs'):
  window       Conv2d (zeros padding; any stride, padding, dilation, groups), MaxPool2d,
               AvgPool2d (no ceil mode; padding only with count_include_pad), strided slices
               ``x[:, :, ::s, ::s]``: the outputs whose receptive field meets the rectangle.
  elementwise  batch norm in eval mode, activations, dropout in eval mode, channel-only
               ``F.pad``, and +, -, *, / of same-shape tensors (or with constants that do not
               vary over space): the union of the operands' rectangles.
  cat          ``torch.cat`` along channels: the union of the operands' rectangles.
Any other op (flatten, adaptive pooling, linear, ...) runs in full on the batch from there on
("materialized": the clean value with the rectangle pasted in), and so does a layer whose
rectangle would cover more than ``MATERIALIZE_FRACTION`` of its map, where cropping no longer
pays.

In-place ops (``ReLU(inplace=True)``, ``+=``) run out of place; a plan is refused where that
could change the result (an in-place op on the input, on a view, or on a value read again
later), and where modules carry hooks (which torch.fx does not trace)."""
from __future__ import annotations

import contextlib
import inspect
import math
import operator
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MATERIALIZE_FRACTION", "OcclusionFlops", "occlusion_flops", "IncrementalOcclusion",
           "IncrementalUnsupported", "plan_for", "prepare"]

#: A layer whose changed rectangle would cover more than this fraction of its map runs in full.
MATERIALIZE_FRACTION = 0.75
#: Automatic mode runs incrementally only where that saves at least this share of the FLOPs
#: and this many FLOPs per image: below, tracing and the per-layer bookkeeping cost more.
AUTO_MIN_SAVED_SHARE = 0.2
AUTO_MIN_SAVED_FLOPS = 2e9

# torch.fx patches torch.nn.Module.__call__ for the whole process while it traces: two traces
# at once corrupt each other, and a module called from another thread meanwhile runs through
# the tracer. Traces are serialized, and automatic mode traces only a model whose forward can
# reach AUTO_MIN_SAVED_FLOPS (small models, the ones run from many threads, are never traced).
_TRACE_LOCK = threading.Lock()


def _stage(name: str):
    """A torch.profiler range named `name` while a profiler runs (benchmarks' per-stage
    tables), nothing otherwise."""
    if torch.autograd._profiler_enabled():
        return torch.profiler.record_function("occlusion." + name)
    return contextlib.nullcontext()


class IncrementalUnsupported(ValueError):
    """The model cannot run incremental occlusion; the message says why."""


# ---------------------------------------------------------------------------------------
# Op tables

_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
                        nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
                        nn.PReLU, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)

# Spatially pointwise functions and methods: output (c, i, j) depends on inputs at (., i, j) only.
_ELEMENTWISE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
    operator.iadd, operator.isub, operator.imul, operator.itruediv,
    torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.abs, torch.exp, torch.relu, torch.sigmoid,
    torch.tanh, torch.clamp, torch.clip, torch.maximum, torch.minimum, torch.relu_,
    F.relu, F.relu6, F.hardtanh, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.sigmoid, F.tanh, F.softplus,
}
_ELEMENTWISE_METHODS = {"add", "sub", "mul", "div", "neg", "abs", "exp", "relu", "sigmoid", "tanh", "clamp",
                        "clamp_min", "clamp_max", "clip", "contiguous", "add_", "sub_", "mul_", "div_", "relu_",
                        "clamp_", "clamp_min_", "clamp_max_", "sigmoid_", "tanh_", "__add__", "__mul__",
                        "__sub__", "__truediv__", "__radd__", "__rmul__", "__iadd__", "__imul__"}
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout2d, F.alpha_dropout}
_OUT_OF_PLACE = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                 operator.itruediv: operator.truediv, torch.relu_: torch.relu}
_INPLACE_DUNDER = {"__iadd__": "__add__", "__isub__": "__sub__", "__imul__": "__mul__",
                   "__itruediv__": "__truediv__"}
_VIEW_FUNCTIONS = {torch.flatten, torch.reshape, torch.transpose, torch.permute, torch.squeeze, torch.unsqueeze,
                   torch.narrow, torch.chunk, torch.split, torch.unbind, torch.select, operator.getitem,
                   torch.t, torch.movedim, torch.swapaxes}
_VIEW_METHODS = {"view", "view_as", "reshape", "reshape_as", "flatten", "transpose", "permute", "squeeze",
                 "unsqueeze", "expand", "expand_as", "narrow", "select", "unfold", "t", "as_strided", "chunk",
                 "split", "unbind", "detach", "movedim", "swapaxes", "__getitem__", "contiguous"}


def _functional_of(mod: nn.Module):
    """Out-of-place functional form of an activation module that was built in place."""
    if isinstance(mod, nn.ReLU):
        return F.relu
    if isinstance(mod, nn.Hardtanh):  # also ReLU6
        return lambda x: F.hardtanh(x, mod.min_val, mod.max_val)
    if isinstance(mod, nn.LeakyReLU):
        return lambda x: F.leaky_relu(x, mod.negative_slope)
    if isinstance(mod, nn.ELU):
        return lambda x: F.elu(x, mod.alpha)
    if isinstance(mod, nn.CELU):
        return lambda x: F.celu(x, mod.alpha)
    simple = {nn.SELU: F.selu, nn.SiLU: F.silu, nn.Mish: F.mish, nn.Hardswish: F.hardswish,
              nn.Hardsigmoid: F.hardsigmoid}
    for cls, fn in simple.items():
        if isinstance(mod, cls):
            return fn
    if isinstance(mod, (nn.Dropout, nn.Dropout2d, nn.AlphaDropout)) and not mod.training:
        return lambda x: x
    return None


_SIGNATURES: Dict[Any, Optional[inspect.Signature]] = {}


def _signature(fn) -> Optional[inspect.Signature]:
    if fn not in _SIGNATURES:
        try:
            _SIGNATURES[fn] = inspect.signature(fn)
        except (TypeError, ValueError):
            _SIGNATURES[fn] = None
    return _SIGNATURES[fn]


def _bound(fn, args, kwargs) -> Optional[inspect.BoundArguments]:
    sig = _signature(fn)
    if sig is None:
        return None
    try:
        b = sig.bind(*args, **kwargs)
    except TypeError:
        return None
    b.apply_defaults()
    return b


def _is_inplace(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    if node.op == "call_function":
        if node.target in _OUT_OF_PLACE:
            return True
        b = _bound(node.target, node.args, node.kwargs)
        return b is not None and bool(b.arguments.get("inplace", False))
    if node.op == "call_method":
        name = node.target
        return name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("__"))
    return False


def _call(gm: fx.GraphModule, node: fx.Node, args: tuple, kwargs: dict):
    """Runs a node's op on the given values, in-place ops out of place."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if getattr(mod, "inplace", False):
            fn = _functional_of(mod)
            if fn is not None and len(args) == 1 and not kwargs:
                return fn(args[0])
            return mod(args[0].clone(), *args[1:], **kwargs)
        return mod(*args, **kwargs)
    if node.op == "call_function":
        fn = _OUT_OF_PLACE.get(node.target, node.target)
        if fn is node.target and not isinstance(fn, type):
            b = _bound(fn, args, kwargs)
            if b is not None and b.arguments.get("inplace", False):
                b.arguments["inplace"] = False
                return fn(*b.args, **b.kwargs)
        return fn(*args, **kwargs)
    if node.op == "call_method":
        name = _INPLACE_DUNDER.get(node.target, node.target)
        if name.endswith("_") and not name.startswith("__") and hasattr(torch.Tensor, name[:-1]):
            name = name[:-1]
        return getattr(args[0], name)(*args[1:], **kwargs)
    raise AssertionError(node.op)


# ---------------------------------------------------------------------------------------
# Rules


@dataclass
class _Window:
    """A sliding-window op: output o (per spatial dim) reads padded inputs [o s, o s + k)."""
    k: Tuple[int, int]       # effective extent dilation * (kernel - 1) + 1
    s: Tuple[int, int]
    p: Tuple[int, int]       # padding before the first row / column
    pad_value: float
    apply: Any               # crop (B, C, L, L') -> output (B, C', S, S'), no padding
    cost: float              # FLOPs per output element
    operand: fx.Node = None


@dataclass
class _Elementwise:
    operands: List[fx.Node]  # the input-dependent tensors, all of the output's shape
    cost: float = 1.0


@dataclass
class _Cat:
    operands: List[fx.Node]
    cost: float = 0.0


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_rule(mod: nn.Conv2d) -> Optional[_Window]:
    if mod.padding_mode != "zeros":
        return None
    kh, kw = mod.kernel_size
    dh, dw = mod.dilation
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            pad = (0, 0)
        else:  # "same" (stride 1): torch pads total // 2 before, the rest after
            pad = (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
    else:
        pad = _pair(mod.padding)

    def apply(crop):  # the module's current weights: a cached plan sees replaced parameters
        return F.conv2d(crop, mod.weight, mod.bias, mod.stride, 0, mod.dilation, mod.groups)

    return _Window((dh * (kh - 1) + 1, dw * (kw - 1) + 1), _pair(mod.stride), pad, 0.0, apply,
                   2.0 * mod.in_channels // mod.groups * kh * kw)


def _pool_rule(mod: nn.Module) -> Optional[_Window]:
    k, s = _pair(mod.kernel_size), _pair(mod.stride if mod.stride is not None else mod.kernel_size)
    p = _pair(mod.padding)
    if isinstance(mod, nn.MaxPool2d):
        if mod.return_indices:
            return None
        d = _pair(mod.dilation)
        ke = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        return _Window(ke, s, p, -math.inf,
                       lambda crop: F.max_pool2d(crop, k, s, 0, d), float(k[0] * k[1]))
    if mod.ceil_mode or (p != (0, 0) and not mod.count_include_pad):
        return None
    div = mod.divisor_override
    return _Window(k, s, p, 0.0, lambda crop: F.avg_pool2d(crop, k, s, 0, divisor_override=div),
                   float(k[0] * k[1]))


def _slice_rule(node: fx.Node) -> Optional[_Window]:
    """``x[:, :, ::s, ::s']``: a window of extent 1 and stride s."""
    idx = node.args[1]
    if not isinstance(idx, tuple) or len(idx) != 4:
        return None
    if any(not isinstance(i, slice) or i != slice(None) for i in idx[:2]):
        return None
    steps = []
    for i in idx[2:]:
        if not isinstance(i, slice) or i.start not in (None, 0) or i.stop is not None:
            return None
        steps.append(1 if i.step is None else i.step)
    if not all(isinstance(v, int) and v >= 1 for v in steps):
        return None
    sh, sw = steps
    return _Window((1, 1), (sh, sw), (0, 0), 0.0, lambda crop: crop[:, :, ::sh, ::sw], 0.0)


def _const_ok(t) -> bool:
    """A constant operand that is the same at every pixel (and for every item)."""
    if not isinstance(t, torch.Tensor):
        return True
    if t.dim() == 0:
        return True
    shape = t.shape
    return shape[-1] == 1 and (t.dim() < 2 or shape[-2] == 1) and (t.dim() < 4 or shape[0] == 1) and t.dim() <= 4


def _is_map(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 4


def _rule(gm: fx.GraphModule, node: fx.Node, cache: Dict[fx.Node, Any], dependent: set):
    out = cache.get(node)
    if not _is_map(out) or node.op not in ("call_module", "call_function", "call_method"):
        return None
    deps = [a for a in node.all_input_nodes if a in dependent]
    consts = [a for a in node.all_input_nodes if a not in dependent]
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if len(node.args) != 1 or node.kwargs or not _is_map(cache[node.args[0]]) or mod.training:
            return None
        if isinstance(mod, nn.Conv2d):
            rule = _conv_rule(mod)
        elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            rule = _pool_rule(mod)
        elif isinstance(mod, nn.BatchNorm2d) and mod.running_mean is not None:
            return _Elementwise([node.args[0]], 2.0)
        elif isinstance(mod, _ELEMENTWISE_MODULES) and (getattr(mod, "inplace", False) is False
                                                          or _functional_of(mod) is not None):
            return _Elementwise([node.args[0]])
        else:
            return None
        if rule is not None:
            rule.operand = node.args[0]
        return rule
    if node.target is operator.getitem or node.target == "__getitem__":
        rule = _slice_rule(node) if node.args[0] in dependent and _is_map(cache[node.args[0]]) else None
        if rule is not None:
            rule.operand = node.args[0]
        return rule
    if node.op == "call_function" and node.target in (torch.cat, torch.concat):
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim not in (1, -3) or not isinstance(tensors, (list, tuple)):
            return None
        if not all(isinstance(t, fx.Node) and t in dependent and _is_map(cache[t])
                   and cache[t].shape[2:] == out.shape[2:] for t in tensors):
            return None
        return _Cat(list(tensors))
    elementwise = (node.op == "call_function" and node.target in _ELEMENTWISE_FUNCTIONS) or (
        node.op == "call_method" and node.target in _ELEMENTWISE_METHODS)
    if node.op == "call_function" and node.target in _DROPOUT_FUNCTIONS:
        b = _bound(node.target, node.args, node.kwargs)
        elementwise = b is not None and b.arguments.get("training") is False
    same = lambda t: t.shape == out.shape  # noqa: E731
    if node.op == "call_function" and node.target is F.pad:
        # Padding channels only (ResNet option-A shortcuts) keeps pixels where they are.
        b = _bound(F.pad, node.args, node.kwargs)
        pad = b.arguments.get("pad") if b is not None else None
        elementwise = (isinstance(pad, (tuple, list)) and len(pad) >= 4 and all(v == 0 for v in pad[:4])
                       and len(pad) <= 6 and b.arguments.get("mode", "constant") == "constant")
        same = lambda t: t.shape[0] == out.shape[0] and t.shape[2:] == out.shape[2:]  # noqa: E731
    if not elementwise:
        return None
    if not all(_is_map(cache[a]) and same(cache[a]) for a in deps):
        return None
    if not all(_const_ok(cache[a]) for a in consts):
        return None
    return _Elementwise(deps)


# ---------------------------------------------------------------------------------------
# The plan: trace, clean pass, rules


def _check_model(model) -> None:
    if isinstance(model, torch.jit.ScriptModule) or not isinstance(model, nn.Module):
        raise IncrementalUnsupported(
            "cnnviz: incremental occlusion needs a torch.nn.Module (TorchScript models and callables "
            f"use full inference), got {type(model).__name__}")
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise IncrementalUnsupported(
            f"cnnviz: incremental occlusion needs a model in eval mode ({training[0]} is in training mode); "
            "call model.eval() first")
    hooked = [name or type(model).__name__ for name, m in model.named_modules()
              if m._forward_hooks or m._forward_pre_hooks]
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        hooked.append("every module (global hooks)")
    if hooked:
        raise IncrementalUnsupported(
            f"cnnviz: incremental occlusion cannot see through module hooks (on {hooked[0]}); "
            "remove them or pass incremental=False")


class Clean:
    """Every node's value for one clean image (1, C, H, W), and padded copies made on demand."""

    def __init__(self, values: Dict[fx.Node, Any], output: Any) -> None:
        self.values, self.output = values, output
        self.checked = False  # output compared with the model's own (IncrementalOcclusion)
        self._padded: Dict[tuple, torch.Tensor] = {}

    def padded(self, node: fx.Node, p: Tuple[int, int], extra: Tuple[int, int], value: float) -> torch.Tensor:
        """The node's map padded by p before and extra after (made once per image)."""
        key = (node, p, extra, value)
        t = self._padded.get(key)
        if t is None:
            t = F.pad(self.values[node], (p[1], extra[1], p[0], extra[0]), value=value)
            self._padded[key] = t
        return t


def _fingerprint(model: nn.Module) -> tuple:
    """What a plan depends on besides the model's class: which module, parameter and buffer
    objects sit where (a replaced one may not be the object the trace holds) and the modes.
    Parameter values are not part of it: a plan holds none (each call makes its own clean
    pass, and the rules read the modules' current weights)."""
    return (tuple((name, id(m), m.training) for name, m in model.named_modules()),
            tuple((name, id(p)) for name, p in model.named_parameters()),
            tuple((name, id(b)) for name, b in model.named_buffers()))


def _meta(value):
    """A tensor's shape and dtype without its data (what a cached plan keeps of x's values)."""
    return torch.empty(value.shape, dtype=value.dtype, device="meta") if isinstance(value, torch.Tensor) else value


class Plan:
    """A traced model and a rule per node, for inputs shaped like `x` (1, C, H, W); `cache`
    holds the shapes of x's clean values (meta tensors; other values as they were), `first`
    x's clean values themselves (dropped with `forget_first`), and `clean(image)` makes any
    image's. `fingerprint` is the model's at tracing; `geometry_of` caches the rectangles of
    a batch of windows."""

    #: Rectangle sets kept per plan (one per batch of windows seen; a call has few).
    GEOMETRY_CACHE = 512

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        _check_model(model)
        self.fingerprint = _fingerprint(model)
        try:
            with _TRACE_LOCK:
                gm = fx.symbolic_trace(model)
        except Exception as e:  # noqa: BLE001 - any trace failure means "not traceable"
            raise IncrementalUnsupported(
                f"cnnviz: incremental occlusion cannot trace the model with torch.fx ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); pass incremental=False") from None
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if not placeholders or any(not n.args for n in placeholders[1:]):
            raise IncrementalUnsupported("cnnviz: incremental occlusion needs a model whose forward takes one "
                                         "tensor (further arguments must have defaults)")
        self.input = placeholders[0]
        order = {n: i for i, n in enumerate(self.nodes)}
        for n in self.nodes:
            if n.op == "call_function" and n.target is operator.setitem:
                raise IncrementalUnsupported("cnnviz: incremental occlusion cannot follow item assignment "
                                             f"in the forward ({n.name})")
            if _is_inplace(gm, n):
                a = n.args[0] if n.args else None
                later = isinstance(a, fx.Node) and any(order[u] > order[n] for u in a.users)
                view = isinstance(a, fx.Node) and (
                    a.op == "placeholder" or (a.op == "call_function" and a.target in _VIEW_FUNCTIONS)
                    or (a.op == "call_method" and a.target in _VIEW_METHODS))
                if later or view:
                    raise IncrementalUnsupported(
                        f"cnnviz: incremental occlusion cannot run the in-place op {n.name} out of place "
                        "(its input is a view, the model's input, or read again later)")
        self.dependent = set()
        for n in self.nodes:
            if n is self.input or any(a in self.dependent for a in n.all_input_nodes):
                self.dependent.add(n)
        self.shape = tuple(x.shape)
        with torch.no_grad():
            self.first = self.clean(x)
        self.cache = self.first.values
        self.rules = {n: _rule(gm, n, self.cache, self.dependent) for n in self.nodes if n in self.dependent}
        self.rules.pop(self.input, None)
        self.cost = {n: self._cost(n) for n in self.nodes}
        self.cache = {n: _meta(v) for n, v in self.cache.items()}
        self._geometry: Dict[tuple, Dict[fx.Node, Any]] = {}
        self.decisions: Dict[tuple, Any] = {}  # automatic verdicts and schedules, per window setting
        self.lock = threading.Lock()

    def forget_first(self) -> Optional["Clean"]:
        """x's clean values, handed over once (a cached plan keeps no image's values)."""
        first, self.first = self.first, None
        return first

    def geometry_of(self, windows: Sequence[Tuple[int, int]], window: Tuple[int, int],
                    fraction: float) -> Dict[fx.Node, Any]:
        """geometry(self, windows, window, fraction), cached."""
        key = (tuple(windows), window, fraction)
        with self.lock:
            geo = self._geometry.get(key)
        if geo is None:
            geo = geometry(self, windows, window, fraction)
            with self.lock:
                if len(self._geometry) >= self.GEOMETRY_CACHE:
                    self._geometry.pop(next(iter(self._geometry)))
                self._geometry[key] = geo
        return geo

    def clean(self, x: torch.Tensor) -> Clean:
        """Every node's value for x, in-place ops run out of place."""
        with _stage("clean_pass"):
            return self._clean_pass(x)

    def _clean_pass(self, x: torch.Tensor) -> Clean:
        cache: Dict[fx.Node, Any] = {}
        for n in self.nodes:
            if n.op == "placeholder":
                value = x if n is self.input else n.args[0]
            elif n.op == "get_attr":
                value = self.gm
                for part in n.target.split("."):
                    value = getattr(value, part)
            elif n.op == "output":
                return Clean(cache, fx.node.map_arg(n.args[0], lambda a: cache[a]))
            else:
                value = _call(self.gm, n, fx.node.map_arg(n.args, lambda a: cache[a]),
                              fx.node.map_arg(n.kwargs, lambda a: cache[a]))
            cache[n] = value
        raise AssertionError("graph without output")

    def _cost(self, n: fx.Node) -> float:
        """FLOPs per output element of node n (multiply-adds count 2)."""
        rule = self.rules.get(n)
        if rule is not None:
            return rule.cost
        if n.op == "call_module":
            mod = self.gm.get_submodule(n.target)
            if isinstance(mod, (nn.Flatten, nn.Unflatten)):
                return 0.0
            if isinstance(mod, nn.Linear):
                return 2.0 * mod.in_features
            if isinstance(mod, nn.Conv2d):
                return 2.0 * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and n.all_input_nodes:
                src = self.cache.get(n.all_input_nodes[0])
                out = self.cache.get(n)
                if isinstance(src, torch.Tensor) and isinstance(out, torch.Tensor) and out.numel():
                    return src.numel() / out.numel()
        if n.op == "call_function" and n.target is F.adaptive_avg_pool2d:
            src, out = self.cache.get(n.args[0]), self.cache.get(n)
            if isinstance(src, torch.Tensor) and isinstance(out, torch.Tensor) and out.numel():
                return src.numel() / out.numel()
        if n.op == "call_function" and n.target in (torch.flatten, torch.reshape, operator.getitem):
            return 0.0
        if n.op == "call_method" and n.target in _VIEW_METHODS | {"size", "dim"}:
            return 0.0
        return 1.0


# ---------------------------------------------------------------------------------------
# Geometry: which rectangle of each node changes, per item of a batch

CONST, CLEAN, FULL = "const", "clean", "full"


@dataclass
class Region:
    """Changed rectangles of a (B, C, H, W) value: exact [lo, hi) per item and dimension (empty
    when lo >= hi), and the computed rectangle: the same size (s) for all items, at o."""
    lo: List[Tuple[int, int]]
    hi: List[Tuple[int, int]]
    o: List[Tuple[int, int]]
    s: Tuple[int, int]
    size: Tuple[int, int] = (0, 0)  # the map's (H, W)

    def same_place(self, other: "Region") -> bool:
        return self.s == other.s and self.o == other.o


def _fit(lo: List[Tuple[int, int]], hi: List[Tuple[int, int]], size: Tuple[int, int],
         fraction: float) -> Union[Region, str]:
    """The computed rectangle for exact rectangles lo/hi in a map of `size`."""
    live = [i for i in range(len(lo)) if lo[i][0] < hi[i][0] and lo[i][1] < hi[i][1]]
    if not live:
        return CLEAN
    s = tuple(max(hi[i][d] - lo[i][d] for i in live) for d in (0, 1))
    if s[0] * s[1] > fraction * size[0] * size[1]:
        return FULL
    o = []
    for i in range(len(lo)):
        if i in live:
            o.append(tuple(min(lo[i][d], size[d] - s[d]) for d in (0, 1)))
        else:
            o.append((0, 0))
    return Region(lo, hi, o, s, size)


def _window_region(r: Region, w: _Window, size: Tuple[int, int], fraction: float) -> Union[Region, str]:
    lo, hi = [], []
    for a, b in zip(r.lo, r.hi):
        if a[0] >= b[0] or a[1] >= b[1]:
            lo.append((0, 0)), hi.append((0, 0))
            continue
        ol = tuple(max(0, -((w.p[d] - w.k[d] + 1 + a[d]) // -w.s[d])) for d in (0, 1))
        oh = tuple(min(size[d], (b[d] - 1 + w.p[d]) // w.s[d] + 1) for d in (0, 1))
        lo.append(ol), hi.append(oh)
    return _fit(lo, hi, size, fraction)


def _union(regions: Sequence[Region], size: Tuple[int, int], fraction: float) -> Union[Region, str]:
    lo, hi = [], []
    for i in range(len(regions[0].lo)):
        live = [r for r in regions if r.lo[i][0] < r.hi[i][0] and r.lo[i][1] < r.hi[i][1]]
        if not live:
            lo.append((0, 0)), hi.append((0, 0))
            continue
        lo.append(tuple(min(r.lo[i][d] for r in live) for d in (0, 1)))
        hi.append(tuple(max(r.hi[i][d] for r in live) for d in (0, 1)))
    return _fit(lo, hi, size, fraction)


def geometry(plan: Plan, windows: Sequence[Tuple[int, int]], window: Tuple[int, int],
             fraction: float = MATERIALIZE_FRACTION) -> Dict[fx.Node, Union[Region, str]]:
    """Each node's mode for a batch of windows (top, left) of size `window`: CONST (does not
    depend on the input), CLEAN (unchanged), a Region, or FULL (computed on the whole batch)."""
    geo: Dict[fx.Node, Union[Region, str]] = {}
    h, w = plan.shape[2], plan.shape[3]
    for n in plan.nodes:
        if n.op == "output":
            break
        if n not in plan.dependent:
            geo[n] = CONST
        elif n is plan.input:
            lo = [tuple(t) for t in windows]
            hi = [(t + window[0], l + window[1]) for t, l in windows]
            geo[n] = _fit(lo, hi, (h, w), fraction)
        else:
            rule = plan.rules.get(n)
            if rule is None:
                geo[n] = FULL
                continue
            operands = [rule.operand] if isinstance(rule, _Window) else rule.operands
            modes = [geo[a] for a in operands]
            if any(m == FULL for m in modes):
                geo[n] = FULL
                continue
            regions = [m for m in modes if isinstance(m, Region)]
            size = tuple(plan.cache[n].shape[2:])
            if not regions:
                geo[n] = CLEAN
            elif isinstance(rule, _Window):
                geo[n] = _window_region(regions[0], rule, size, fraction)
            else:
                geo[n] = _union(regions, size, fraction)
    return geo


# ---------------------------------------------------------------------------------------
# Execution


def _runs(items: List[int]) -> List[Tuple[int, int]]:
    """Sorted indices as [lo, hi) runs of consecutive values."""
    runs: List[Tuple[int, int]] = []
    for i in items:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


_STAGE_NAMES = {_Window: "region_window", _Elementwise: "region_elementwise", _Cat: "region_cat"}


class _Batch:
    """One batch of windows over one image: item i is that image (clean values `clean`) with
    the window at windows[i] occluded (batch[i])."""

    def __init__(self, plan: Plan, clean: Clean, batch: torch.Tensor, windows, window, fraction) -> None:
        self.plan, self.clean, self.batch, self.b = plan, clean, batch, batch.shape[0]
        with _stage("geometry"):
            self.geo = plan.geometry_of(windows, window, fraction)
        self.values: Dict[fx.Node, Any] = {}
        self.full: Dict[fx.Node, Any] = {}

    def _crops(self, node: Optional[fx.Node], source: torch.Tensor, shift: Tuple[int, int], starts, length,
               per_item: bool = False) -> torch.Tensor:
        with _stage("crops"):
            return self._crops_of(node, source, shift, starts, length, per_item)

    def _crops_of(self, node: Optional[fx.Node], source: torch.Tensor, shift: Tuple[int, int], starts, length,
                  per_item: bool = False) -> torch.Tensor:
        """Crops (B, C, L, L') of `source` (one clean map of `node` (1, C, H', W'), padded by
        `shift`; with `per_item` one map per item) at padded `starts`, with `node`'s changed
        rectangle pasted in. One stack of the crops, then one copy per group of items whose
        rectangle sits at the same place in its crop (most of a batch): few kernels per layer,
        because each small kernel can wait on the thread pool of a busy machine."""
        out = torch.stack([source[i if per_item else 0, :, y:y + length[0], x:x + length[1]]
                           for i, (y, x) in enumerate(starts)])
        mode = self.geo[node] if node is not None else None
        if not isinstance(mode, Region):
            return out
        r = self.values[node]
        groups: Dict[tuple, List[int]] = {}
        for i, (y, x) in enumerate(starts):
            ry, rx = mode.o[i][0] + shift[0], mode.o[i][1] + shift[1]
            a0, a1 = max(ry, y), min(ry + mode.s[0], y + length[0])
            b0, b1 = max(rx, x), min(rx + mode.s[1], x + length[1])
            if a0 < a1 and b0 < b1:
                groups.setdefault((a0 - y, a1 - y, b0 - x, b1 - x, a0 - ry, a1 - ry, b0 - rx, b1 - rx), []).append(i)
        for (d0, d1, e0, e1, s0, s1, t0, t1), items in groups.items():
            if len(items) == self.b:
                out[:, :, d0:d1, e0:e1] = r[:, :, s0:s1, t0:t1]
            else:
                for lo, hi in _runs(items):
                    out[lo:hi, :, d0:d1, e0:e1] = r[lo:hi, :, s0:s1, t0:t1]
        return out

    def materialized(self, node: fx.Node):
        """The node's value for the whole batch."""
        mode = self.geo[node]
        if mode == CONST:
            return self.clean.values[node]
        if mode == FULL:
            return self.values[node]
        if node is self.plan.input:
            return self.batch
        value = self.full.get(node)
        if value is None:
            t = self.clean.values[node]
            if isinstance(mode, Region):
                size = tuple(t.shape[2:])
                value = self._crops(node, t, (0, 0), [(0, 0)] * self.b, size)
            else:
                value = t.expand((self.b,) + tuple(t.shape[1:])).contiguous()
            self.full[node] = value
        return value

    def _stand_in(self, node: fx.Node):
        """A meta tensor of the batch's shape, for ops that only read shapes (x.size(0))."""
        mode = self.geo[node]
        t = self.plan.cache[node]
        if mode in (CLEAN,) or isinstance(mode, Region) or node is self.plan.input:
            if isinstance(t, torch.Tensor):
                return torch.empty((self.b,) + tuple(t.shape[1:]), dtype=t.dtype, device="meta")
        return self.materialized(node)

    def _run_full(self, n: fx.Node):
        gm = self.plan.gm
        if not isinstance(self.plan.cache[n], torch.Tensor):
            try:
                return _call(gm, n, fx.node.map_arg(n.args, self._stand_in),
                             fx.node.map_arg(n.kwargs, self._stand_in))
            except Exception:  # noqa: BLE001 - ops that read values: run them on the real batch
                pass
        return _call(gm, n, fx.node.map_arg(n.args, self.materialized), fx.node.map_arg(n.kwargs, self.materialized))

    def _run_region(self, n: fx.Node, rule, mode: Region):
        plan = self.plan
        if isinstance(rule, _Window):
            src = rule.operand
            h_in, w_in = plan.cache[src].shape[2:]
            h_out, w_out = plan.cache[n].shape[2:]
            extra = tuple(max(0, (size_out - 1) * rule.s[d] + rule.k[d] - size_in - rule.p[d])
                          for d, (size_in, size_out) in enumerate(((h_in, h_out), (w_in, w_out))))
            padded = self.clean.padded(src, rule.p, extra, rule.pad_value)
            length = tuple((mode.s[d] - 1) * rule.s[d] + rule.k[d] for d in (0, 1))
            starts = [(o[0] * rule.s[0], o[1] * rule.s[1]) for o in mode.o]
            return rule.apply(self._crops(src, padded, rule.p, starts, length))
        operands = {}
        for a in rule.operands:
            m = self.geo[a]
            if isinstance(m, Region) and m.same_place(mode):
                operands[a] = self.values[a]
            else:
                operands[a] = self._crops(a, self.clean.values[a], (0, 0), mode.o, mode.s)
        if isinstance(rule, _Cat):
            tensors = n.args[0] if n.args else n.kwargs["tensors"]
            return torch.cat([operands[t] for t in tensors], 1)
        value = lambda a: operands[a] if a in operands else self.materialized(a)  # noqa: E731
        return _call(plan.gm, n, fx.node.map_arg(n.args, value), fx.node.map_arg(n.kwargs, value))

    def run(self):
        plan = self.plan
        for n in plan.nodes:
            if n.op == "output":
                return fx.node.map_arg(n.args[0], self.materialized)
            mode = self.geo[n]
            if mode in (CONST, CLEAN):
                continue
            if n is plan.input:
                if isinstance(mode, Region):
                    with _stage("crops"):
                        self.values[n] = self._crops(None, self.batch, (0, 0), mode.o, mode.s, per_item=True)
                else:
                    self.values[n] = self.batch
            elif isinstance(mode, Region):
                rule = plan.rules[n]
                with _stage(_STAGE_NAMES.get(type(rule), "region")):
                    self.values[n] = self._run_region(n, rule, mode)
            else:
                with _stage("full"):
                    self.values[n] = self._run_full(n)
        raise AssertionError("graph without output")


# ---------------------------------------------------------------------------------------
# FLOPs


def _node_flops(plan: Plan, n: fx.Node, mode, items: int) -> float:
    out = plan.cache.get(n)
    if mode in (CONST, CLEAN) or not isinstance(out, torch.Tensor) or n.op in ("placeholder", "get_attr"):
        return 0.0
    per_item = out[0].numel() if out.dim() > 0 and out.shape[0] == plan.shape[0] else out.numel()
    if isinstance(mode, Region):
        per_item = out.shape[1] * mode.s[0] * mode.s[1]
    return plan.cost[n] * per_item * items


@dataclass
class OcclusionFlops:
    """FLOPs of an occlusion run (multiply-adds count 2; every op counted, convolutions and
    linear layers dominate). ``full``: every window through the whole network; ``incremental``:
    each window's exactly affected regions (the theoretical cost); ``executed``: what the
    incremental engine runs, with its batching (the groups of `_schedule`, one rectangle size
    per group and layer) and layers over MATERIALIZE_FRACTION run in full. ``saving`` = full / incremental; ``executed_saving`` =
    full / executed. ``per_layer``: node name -> (full, incremental) for one image's windows."""
    positions: int
    full: float
    incremental: float
    executed: float
    per_layer: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    @property
    def saving(self) -> float:
        return self.full / self.incremental

    @property
    def executed_saving(self) -> float:
        return self.full / self.executed


def _executed_flops(plan: Plan, positions, window, batch_size: int, fraction: float) -> float:
    """FLOPs the engine runs for one image's windows: its schedule's groups (`_schedule`)."""
    return sum(_group_flops(plan, [positions[k] for k in g], window, fraction)
               for g in _schedule(plan, positions, window, batch_size, fraction))


def _group_flops(plan: Plan, windows, window, fraction: float) -> float:
    geo = plan.geometry_of(windows, window, fraction)
    return sum(_node_flops(plan, n, geo[n], len(windows)) for n in plan.nodes if n.op != "output")


#: What one more group of windows costs beyond its FLOPs, in FLOPs per weight of the layers
#: run on crops: a convolution reads its weights once per call, and on small crops that read
#: is a large part of its time (measured at 1 thread: VGG16 about 0.1 s and ResNet-18 about
#: 0.075 s per group on top of the FLOPs at about 55 GFLOP/s, some 380 FLOPs per weight each).
GROUP_COST_PER_WEIGHT = 400.0
#: Grids of windows needing more batches than this run in order: their border windows are a
#: small share, and costing the tilings would take seconds.
MAX_SCHEDULED_GROUPS = 128


def _split(order: List[int], k: int) -> List[List[int]]:
    return [order[i * len(order) // k:(i + 1) * len(order) // k] for i in range(k)]


class _Extents:
    """Each node's exact rectangle extent for every window row (heights) and window column
    (widths) of a window grid: rectangle extents are separable (a window's rows decide its
    rectangles' heights, its columns their widths), so one geometry per row and per column
    gives the executed FLOPs of any group of windows without a geometry per group."""

    def __init__(self, plan: Plan, positions: List[Tuple[int, int]], window: Tuple[int, int],
                 fraction: float) -> None:
        self.plan, self.positions, self.fraction = plan, positions, fraction
        self.tops, self.lefts = sorted({p[0] for p in positions}), sorted({p[1] for p in positions})
        self.nodes = [n for n in plan.nodes if n.op != "output"]
        self.extent = {}  # (dim, top or left) -> node -> extent (0: unchanged), or CONST / FULL
        for d, values in ((0, self.tops), (1, self.lefts)):
            for v in values:
                geo = geometry(plan, [(v, self.lefts[0]) if d == 0 else (self.tops[0], v)], window, math.inf)
                self.extent[d, v] = {n: (m.hi[0][d] - m.lo[0][d]) if isinstance(m, Region) else 0 if m == CLEAN
                                     else m for n, m in geo.items()}
        self.operands = {n: ([r.operand] if isinstance(r, _Window) else r.operands) for n, r in plan.rules.items()
                         if r is not None}
        self.full_flops = {n: _node_flops(plan, n, FULL, 1) for n in self.nodes}

    def flops(self, group: List[int]) -> float:
        """What _group_flops gives for the windows `group` (indices into positions)."""
        plan, first = self.plan, self.extent[0, self.tops[0]]
        rows = {self.positions[k][0] for k in group}
        cols = {self.positions[k][1] for k in group}
        total, full = 0.0, set()
        for n in self.nodes:
            if first[n] == CONST:
                continue
            if first[n] == FULL or any(a in full for a in self.operands.get(n, ())):
                full.add(n)
                total += self.full_flops[n] * len(group)
                continue
            out = plan.cache[n]
            sh, sw = max(self.extent[0, r][n] for r in rows), max(self.extent[1, c][n] for c in cols)
            if sh * sw > self.fraction * out.shape[2] * out.shape[3]:
                full.add(n)
                total += self.full_flops[n] * len(group)
            elif n is not plan.input:
                total += plan.cost[n] * out.shape[1] * sh * sw * len(group)
        return total

    def size(self, d: int, v: int) -> float:
        """FLOPs-weighted extent of window row (d = 0) or column (d = 1) v's rectangles."""
        return sum(self.plan.cost[n] * self.plan.cache[n].shape[1] * e for n, e in self.extent[d, v].items()
                   if isinstance(e, int) and n is not self.plan.input)


def _schedule(plan: Plan, positions: List[Tuple[int, int]], window: Tuple[int, int], batch_size: int,
              fraction: float) -> List[List[int]]:
    """How one image's windows (indices into `positions`) are grouped into batches of at most
    batch_size. A group computes every layer's rectangle at the largest size among its
    windows, so windows near a border (whose rectangles the border clips) waste work in a
    group of interior ones. Candidates: the windows in order (the native loop's chunks), and
    tilings of the window grid after sorting its rows and its columns by their rectangles'
    size (kr bands of rows x kc bands of columns); the one chosen minimizes the FLOPs
    (`_Extents`) plus GROUP_COST_PER_WEIGHT per group. Cached per plan."""
    key = ("schedule", tuple(positions), window, batch_size, fraction)
    cached = plan.decisions.get(key)
    if cached is not None:
        return cached
    order = list(range(len(positions)))
    chunks = -(-len(order) // batch_size)
    natural = [order[k * len(order) // chunks:(k + 1) * len(order) // chunks] for k in range(chunks)]
    if chunks == 1 or chunks > MAX_SCHEDULED_GROUPS:
        plan.decisions[key] = natural
        return natural
    ext = _Extents(plan, positions, window, fraction)
    if len(positions) != len(ext.tops) * len(ext.lefts):
        plan.decisions[key] = natural
        return natural
    weights = sum(plan.gm.get_submodule(n.target).weight.numel() for n in ext.nodes
                  if n.op == "call_module" and isinstance(plan.rules.get(n), _Window)
                  and isinstance(plan.gm.get_submodule(n.target), nn.Conv2d))
    per_group = GROUP_COST_PER_WEIGHT * weights
    index = {p: k for k, p in enumerate(positions)}
    rows = sorted(ext.tops, key=lambda v: -ext.size(0, v))
    cols = sorted(ext.lefts, key=lambda v: -ext.size(1, v))
    best, best_cost = natural, sum(ext.flops(g) for g in natural) + per_group * len(natural)
    # Each band height once, with the fewest bands giving it (more bands of that height only add groups).
    talls = {-(-len(rows) // kr): kr for kr in range(len(rows), 0, -1)}
    for tall, kr in sorted(talls.items()):
        kc_min = next((kc for kc in range(1, len(cols) + 1) if tall * -(-len(cols) // kc) <= batch_size), None)
        if kc_min is None:
            continue
        for kc in range(kc_min, min(kc_min + 2, len(cols) + 1)):
            groups = [sorted(index[(r, c)] for r in rb for c in cb) for rb in _split(rows, kr)
                      for cb in _split(cols, kc)]
            cost = sum(ext.flops(g) for g in groups) + per_group * len(groups)
            if cost < best_cost:
                best, best_cost = groups, cost
    plan.decisions[key] = best
    return best


def _positions(h: int, w: int, window: Tuple[int, int], stride: Tuple[int, int]) -> List[Tuple[int, int]]:
    return [(i, j) for i in range(0, h - window[0] + 1, stride[0]) for j in range(0, w - window[1] + 1, stride[1])]


def _two(v, name: str) -> Tuple[int, int]:
    t = (int(v), int(v)) if isinstance(v, int) else tuple(int(i) for i in v)
    if len(t) == 1:
        t = (t[0], t[0])
    if len(t) != 2 or t[0] < 1 or t[1] < 1:
        raise ValueError(f"cnnviz: {name} must be one or two positive integers, got {v}")
    return t


def occlusion_flops(model: nn.Module, x_shape: Sequence[int], window: Union[int, Sequence[int]] = 16,
                    stride: Union[int, Sequence[int]] = 8, batch_size: int = 32,
                    fraction: float = MATERIALIZE_FRACTION) -> OcclusionFlops:
    """FLOPs of occlusion on one image of shape ``x_shape`` ((C, H, W) or (1, C, H, W)) with
    full inference and incrementally (see ``OcclusionFlops``). Runs the model once on zeros;
    raises ``ValueError`` when the model cannot run incrementally (and says why)."""
    shape = tuple(int(v) for v in x_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise ValueError(f"cnnviz: x_shape must be (C, H, W) or (1, C, H, W), got {tuple(x_shape)}")
    window, stride = _two(window, "window"), _two(stride, "stride")
    if window[0] > shape[2] or window[1] > shape[3]:
        raise ValueError(f"cnnviz: the occlusion window {window} is larger than the image {shape[2:]}")
    if batch_size < 1:
        raise ValueError(f"cnnviz: batch_size must be positive, got {batch_size}")
    dtype = next((p.dtype for p in model.parameters()), torch.float32) if isinstance(model, nn.Module) else None
    plan = plan_for(model, torch.zeros(shape, dtype=dtype or torch.float32))[0]
    positions = _positions(shape[2], shape[3], window, stride)
    nodes = [n for n in plan.nodes if n.op != "output"]
    full_per = {n: _node_flops(plan, n, FULL, 1) for n in nodes}
    incremental, per_layer = 0.0, {n.name: [len(positions) * full_per[n], 0.0] for n in nodes}
    for pos in positions:
        geo = geometry(plan, [pos], window, math.inf)
        for n in nodes:
            f = _node_flops(plan, n, geo[n], 1)
            incremental += f
            per_layer[n.name][1] += f
    executed = _executed_flops(plan, positions, window, batch_size, fraction)
    full = len(positions) * sum(full_per.values())
    return OcclusionFlops(len(positions), full, incremental, executed,
                          {k: (v[0], v[1]) for k, v in per_layer.items()})


# ---------------------------------------------------------------------------------------
# The model the native occlusion loop calls


class IncrementalOcclusion:
    """A callable standing in for the model in the native occlusion loop. The loop's first
    call (x itself, for the clean scores) runs the model; later calls get the loop's occluded
    batches (item k is window position k % P of image k // P, in order, the window set to
    `baseline`). Each image's windows are computed in the groups of its schedule
    (`_schedule`: windows with rectangles of similar sizes together), a group when the loop
    first asks for one of its windows, the other windows' outputs kept until asked for; the
    clean values of one image are kept at a time. Each image's traced clean output is checked
    against the model's own (the first call's) before its windows use it; where they differ
    (behaviour the trace cannot see), that and every later batch run in full. A batch that is
    not the expected occlusion of x (which the loop never makes) runs in full too, so the
    result never depends on that order being kept."""

    def __init__(self, model: nn.Module, plan: Plan, x: torch.Tensor, window: Tuple[int, int],
                 stride: Tuple[int, int], fraction: float = MATERIALIZE_FRACTION, required: bool = False,
                 first: Optional[Clean] = None, baseline: float = 0.0, batch_size: int = 32) -> None:
        self.model, self.plan, self.x, self.window, self.fraction = model, plan, x, window, fraction
        self.required, self.baseline = required, baseline
        self.cached = first is None  # the plan came from the cache (traced for an earlier call)
        self.positions = _positions(x.shape[2], x.shape[3], window, stride)
        self.groups = _schedule(plan, self.positions, window, batch_size, fraction)
        self.group_of = {k: g for g in self.groups for k in g}
        self.seen = 0
        self.clean_returned = False
        self.eager: Any = None     # the model's own output on x (the loop's first call)
        self.images: Dict[int, Clean] = {0: first} if first is not None else {}
        self.ready: Dict[Tuple[int, int], Any] = {}  # (image, position) -> its output, computed ahead
        self.disabled = ""         # why the engine stopped: later batches run in full
        self.batches = 0           # groups computed incrementally
        self.full_batches = 0      # batches that ran in full (unexpected content, or disabled)

    def _full(self, batch: torch.Tensor):
        self.full_batches += 1
        with _stage("model_full_batch"):
            return self.model(batch)

    def _clean(self, u: int) -> Clean:
        """Image u's clean values (items come in image order: one image kept at a time),
        checked against the model's own output on it."""
        if u not in self.images:
            self.images = {u: self.plan.clean(self.x[u:u + 1])}
        clean = self.images[u]
        if not clean.checked:
            if self.eager is not None:
                eager = [t[u:u + 1] if t.dim() > 0 and t.shape[0] == self.x.shape[0] else t
                         for t in _tensors(self.eager)]
            else:
                eager = _tensors(self.model(self.x[u:u + 1]))
            _check_same_output(_tensors(clean.output), eager, u)
            clean.checked = True
        return clean

    def _occluded(self, img: List[int], windows) -> torch.Tensor:
        """x's images `img` with `windows` set to the baseline, as the native loop makes them."""
        batch = self.x.index_select(0, torch.tensor(img, device=self.x.device))
        for i, (y, x) in enumerate(windows):
            batch[i, :, y:y + self.window[0], x:x + self.window[1]] = self.baseline
        return batch

    def _compute(self, u: int, group: List[int]) -> None:
        windows = [self.positions[k] for k in group]
        out = _Batch(self.plan, self._clean(u), self._occluded([u] * len(group), windows), windows, self.window,
                     self.fraction).run()
        self.batches += 1
        for i, k in enumerate(group):
            self.ready[u, k] = _take(out, i, len(group))

    def __call__(self, batch: torch.Tensor):
        with torch.no_grad():
            if not self.clean_returned:
                self.clean_returned = True
                with _stage("model_on_x"):
                    out = self.model(batch)
                if isinstance(batch, torch.Tensor) and batch.shape == self.x.shape and torch.equal(batch, self.x):
                    self.eager = out
                    self._guarded(self._first_image)  # a trace that disagrees is known before any window
                return out
            b, p = batch.shape[0], len(self.positions)
            if self.disabled or batch.dim() != 4 or batch.shape[1:] != self.x.shape[1:] \
                    or self.seen + b > self.x.shape[0] * p:
                return self._full(batch)
            items = [(k // p, k % p) for k in range(self.seen, self.seen + b)]
            self.seen += b
            with _stage("batch_check"):
                expected = torch.equal(batch, self._occluded([u for u, _ in items],
                                                             [self.positions[k] for _, k in items]))
            if not expected:
                return self._full(batch)

            def incremental():
                outputs = []
                for u, k in items:
                    if (u, k) not in self.ready:
                        self.ready = {key: v for key, v in self.ready.items() if key[0] >= u}  # earlier images: done
                        self._compute(u, self.group_of[k])
                    outputs.append(self.ready.pop((u, k)))
                return _cat(outputs)

            out = self._guarded(incremental)
            if self.disabled:
                return self._full(batch)
            return out

    def _first_image(self) -> None:
        """Image 0's clean values, checked; a cached plan that disagrees is traced again once
        (the model changed in a way its fingerprint cannot see, e.g. a Python attribute the
        trace had read as a constant)."""
        try:
            self._clean(0)
        except IncrementalUnsupported:
            if not self.cached:
                raise
            self.plan, first = plan_for(self.model, self.x[:1], retrace=True)
            self.cached, self.images = False, {0: first}
            self._clean(0)

    def _guarded(self, fn):
        """fn(), or (on any failure, unless required) a warning and full inference from here on."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - an op the rules misjudged: full inference is always right
            if self.required:
                raise
            self.disabled = f"{type(e).__name__}: {e}"
            warnings.warn(f"cnnviz: incremental occlusion failed ({self.disabled}); the remaining windows run "
                          "full inference", RuntimeWarning, stacklevel=3)
            return None


def _take(output: Any, i: int, n: int):
    """Item i of a model output for n items (tensors, or tuples/lists/dicts of them)."""
    if isinstance(output, torch.Tensor):
        return output[i:i + 1] if output.dim() > 0 and output.shape[0] == n else output
    if isinstance(output, dict):
        return {k: _take(v, i, n) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(_take(v, i, n) for v in output)
    return output


def _cat(outputs: List[Any]):
    """Concatenates model outputs (tensors, or tuples/lists/dicts of them) along the batch."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outputs)
    if isinstance(first, dict):
        return {k: _cat([o[k] for o in outputs]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_cat([o[i] for o in outputs]) for i in range(len(first)))
    return first


# Plans per model (weakly: a model that goes away takes its plans along), per input shape.
_PLANS: "weakref.WeakKeyDictionary[nn.Module, Dict[tuple, Union[Plan, IncrementalUnsupported]]]" = \
    weakref.WeakKeyDictionary()
_PLANS_LOCK = threading.Lock()
#: Plans kept per model (input shapes, dtypes, devices), oldest dropped first.
PLANS_PER_MODEL = 4


def plan_for(model: nn.Module, x: torch.Tensor, retrace: bool = False) -> Tuple[Plan, Optional[Clean]]:
    """The plan of `model` for inputs shaped like x (1, C, H, W), traced once and cached per
    model, input shape, dtype and device; and x's clean values where this call traced it (None
    for a cached plan). The mode and hooks are checked on every call; a plan is made again
    where the model's modules, parameters or buffers were replaced by other objects or a
    module's mode changed since (`_fingerprint`), or with `retrace`. A model that cannot be
    traced or followed is remembered too: the same IncrementalUnsupported is raised without
    tracing again. Raises ValueError for an x that is not one floating-point image."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1 or not x.is_floating_point() \
            or x.numel() == 0:
        raise ValueError("cnnviz: plan_for needs one floating-point image (1, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    _check_model(model)
    key = (tuple(x.shape), x.dtype, x.device)
    fingerprint = _fingerprint(model)
    with _PLANS_LOCK:
        cached = _PLANS.get(model, {}).get(key)
    if cached is not None and cached.fingerprint == fingerprint and not retrace:
        if isinstance(cached, IncrementalUnsupported):
            raise IncrementalUnsupported(str(cached))
        return cached, None
    try:
        plan, first = Plan(model, x), None
        first = plan.forget_first()
    except IncrementalUnsupported as e:
        e.fingerprint = fingerprint
        plan = e
    with _PLANS_LOCK:
        plans = _PLANS.setdefault(model, {})
        plans.pop(key, None)
        plans[key] = plan
        while len(plans) > PLANS_PER_MODEL:
            plans.pop(next(iter(plans)))
    if isinstance(plan, IncrementalUnsupported):
        raise IncrementalUnsupported(str(plan))
    return plan, first


def prepare(model, x: torch.Tensor, window, stride, batch_size, required: bool, baseline: float = 0.0
            ) -> Tuple[Optional[IncrementalOcclusion], str]:
    """The incremental stand-in for ``model`` on x, or (None, why not). With ``required`` a
    model that cannot run incrementally raises ``ValueError`` (IncrementalUnsupported);
    without, it is also None where it would save too little to pay for itself. Inputs the
    native loop rejects (shapes, windows, batch size) return None so that its error is raised.
    The plan (trace, rules, rectangles, the automatic verdict) is cached per model and input
    shape (``plan_for``); x's clean pass runs on every call."""
    try:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point() or x.numel() == 0:
            return None, "x is not a (N, C, H, W) floating-point batch"
        try:
            win, st = _two(window, "window"), _two(stride, "stride")
        except (TypeError, ValueError):
            return None, "bad window or stride"
        if win[0] > x.shape[2] or win[1] > x.shape[3]:
            return None, "window larger than the image"
        if not bool(torch.isfinite(x).all()):
            return None, "x is not finite"
        if not isinstance(batch_size, int) or batch_size < 1:
            return None, "bad batch size"
        x = x.detach()
        if not required and _forward_flops_bound(model, x) < AUTO_MIN_SAVED_FLOPS:
            return None, "the model is too small for incremental occlusion to pay off"
        plan, first = plan_for(model, x[:1])
        positions = _positions(x.shape[2], x.shape[3], win, st)
        if not any(isinstance(m, Region) for n, m in plan.geometry_of(positions[:1], win, math.inf).items()
                   if n is not plan.input):
            raise IncrementalUnsupported("cnnviz: incremental occlusion found no layer it can compute by "
                                         "regions in this model (the first op already needs the whole input)")
        if not required:
            key = (win, st, batch_size)
            why = plan.decisions.get(key)
            if why is None:
                full = len(positions) * sum(_node_flops(plan, n, FULL, 1) for n in plan.nodes if n.op != "output")
                saved = full - _executed_flops(plan, positions, win, batch_size, MATERIALIZE_FRACTION)
                why = "" if saved >= AUTO_MIN_SAVED_SHARE * full and saved >= AUTO_MIN_SAVED_FLOPS else (
                    f"incremental occlusion would save {saved / 1e9:.2g} of {full / 1e9:.2g} GFLOP per image")
                plan.decisions[key] = why
            if why:
                return None, why
        return IncrementalOcclusion(model, plan, x, win, st, required=required, first=first, baseline=baseline,
                                    batch_size=batch_size), ""
    except IncrementalUnsupported as e:
        if required:
            raise
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - the model's own errors come again from the full path
        if required:
            raise
        return None, f"{type(e).__name__}: {e}"


def _forward_flops_bound(model, x: torch.Tensor) -> float:
    """An upper bound of one image's forward FLOPs that needs no trace: 2 x parameters x
    pixels (a weight is used at most once per output position, and a classifier's maps are
    no larger than its input). Infinite when the model has no parameters to count."""
    try:
        params = sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - not an nn.Module: the trace decides
        return math.inf
    return 2.0 * params * x.shape[2] * x.shape[3] if params else math.inf


def _check_same_output(traced: List[torch.Tensor], eager: List[torch.Tensor], image: int) -> None:
    """The traced, out-of-place graph must give the model's own output on an image (to the
    rounding of a batch of one against the batch of all images)."""
    ok = len(traced) == len(eager) and all(
        u.shape == v.shape and torch.allclose(u, v, rtol=1e-4, atol=1e-5 * float(v.abs().max()) if v.numel() else 0.0,
                                              equal_nan=True)
        for u, v in zip(traced, eager))
    if not ok:
        raise IncrementalUnsupported(f"cnnviz: incremental occlusion's traced graph does not reproduce the "
                                     f"model's output on image {image} (data-dependent behaviour torch.fx cannot "
                                     "see); pass incremental=False")


def _tensors(value) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if hasattr(value, "logits"):
        return _tensors(value.logits)
    return []
