"""The optimization loops' options: every field of a C++ Options class is a keyword of its
Python wrapper with the same default (the bridge fills it from the wrapper's arguments),
the loop rows are declared once (same names, same order, each loop's own defaults), the
normalization row reads as ``mean``/``std``, and every result of the area carries
``stopped_early`` and ``interrupted``."""
import inspect

import pytest
import torch

import cnnviz
from cnnviz import _C

from _optimization_nets import TinyNet
from _options_check import check_wrapper

LOOP = ("iterations", "learning_rate", "seed", "jitter", "mean", "std", "snapshot_every", "on_snapshot")

# Fields a wrapper takes under another name: invert's ``init`` is a name or a start tensor
# (init_image); ``batch_layers`` belongs to invert_layers only.
WRAPPERS = [
    (_C.InversionOptions, cnnviz.invert, {"init_image", "batch_layers"}),
    (_C.InversionOptions, cnnviz.invert_layers, {"init_image"}),
    (_C.MaximizeOptions, cnnviz.maximize, set()),
    (_C.DeepDreamOptions, cnnviz.deep_dream, set()),
]
# Keywords of the wrappers that are not option fields: the call's own arguments.
CALL_ARGS = {"model", "x", "layer", "layers", "channel", "position", "logit", "direction", "settings", "progress"}


def _as_plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


@pytest.mark.parametrize("cls,fn,elsewhere", WRAPPERS, ids=lambda v: getattr(v, "__name__", ""))
def test_fields_match_the_wrapper_keywords_and_defaults(cls, fn, elsewhere):
    params = inspect.signature(fn).parameters
    defaults = cls()
    fields = set(cls._fields)
    assert fields - set(params) == elsewhere
    assert set(params) - fields - CALL_ARGS - {"init"} == set(), "wrapper keywords that reach no option"
    for name in fields & set(params):
        if name == "init" or name == "on_snapshot":
            continue
        assert _as_plain(params[name].default) == _as_plain(getattr(defaults, name)), name
    assert params["on_snapshot"].default is None and defaults.on_snapshot is None
    # progress reaches C++ through the call, never through the options.
    assert "progress" not in fields and "progress" in params
    check_wrapper(fn, cls, not_arguments=tuple(elsewhere))  # the bridge's shared check, repr included


def test_the_loop_rows_are_declared_once():
    fields = {cls.__name__: cls._fields for cls in (_C.InversionOptions, _C.MaximizeOptions, _C.DeepDreamOptions)}
    for name, f in fields.items():
        assert f[:len(LOOP)] == LOOP, name
    for cls in (_C.InversionOptions, _C.MaximizeOptions):
        assert {"optimizer", "momentum", "alpha", "lambda_alpha", "tv_beta", "lambda_tv"} <= set(cls._fields)
    # Each loop keeps its own defaults for the shared rows.
    inv, mx, dd = _C.InversionOptions(), _C.MaximizeOptions(), _C.DeepDreamOptions()
    assert (inv.iterations, mx.iterations, dd.iterations) == (200, 256, 10)
    assert (inv.learning_rate, mx.learning_rate, dd.learning_rate) == (0.1, 0.05, 0.02)
    assert (inv.jitter, mx.jitter, dd.jitter) == (0, 8, 32)
    for o in (inv, mx, dd):
        assert (o.mean, o.std) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert "mean=[0.485" in repr(mx) and "iterations=256" in repr(mx)


def test_mean_and_std_reach_the_loops():
    """The normalization row: identity statistics keep deep_dream and invert in [0, 1] and
    make maximize's images the sigmoid's output, in [0, 1]."""
    net = TinyNet()
    x = torch.rand(1, 3, 16, 16)
    kw = dict(mean=(0.0,), std=(1.0,))
    dream = cnnviz.deep_dream(net, x, "layer1.0", iterations=3, octaves=1, learning_rate=0.5, **kw)
    assert 0 <= float(dream.image.min()) and float(dream.image.max()) <= 1 + 1e-6
    inv = cnnviz.invert(net, x, "stem", iterations=3, learning_rate=1.0, **kw)
    assert 0 <= float(inv.image.min()) and float(inv.image.max()) <= 1
    mx = cnnviz.maximize(net, "layer1.0", channel=1, iterations=2, size=16, **kw)
    assert 0 <= float(mx.image.min()) and float(mx.image.max()) <= 1
    with pytest.raises(ValueError, match="deep_dream: std must be positive"):
        cnnviz.deep_dream(net, x, "layer1.0", std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="invert: mean and std need 1 or 3 values"):
        cnnviz.invert(net, x, "stem", mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="maximize: seed must be >= 0"):
        cnnviz.maximize(net, "layer1.0", channel=1, seed=-1)


def test_every_result_has_stopped_early_and_interrupted():
    net = TinyNet()
    x = torch.randn(1, 3, 16, 16)
    results = [
        cnnviz.invert(net, x, "stem", iterations=2),
        *cnnviz.invert_layers(net, x, ["stem", "layer1.0"], iterations=2).values(),
        cnnviz.maximize(net, "layer1.0", channel=0, iterations=2, size=16),
        cnnviz.deep_dream(net, x, "layer1.0", iterations=2, octaves=1),
        cnnviz.top_filters(net, x, "layer1.0", k=2),
    ]
    for r in results:
        assert r.stopped_early is False and r.interrupted is False, type(r).__name__
    stopped = cnnviz.deep_dream(net, x, "layer1.0", iterations=4, octaves=1, progress=lambda s, t, l: s < 2)
    assert stopped.stopped_early and stopped.losses.shape == (2,)


def test_deep_dream_keeps_its_snapshots():
    net = TinyNet()
    x = torch.randn(1, 3, 16, 16)
    seen = []
    r = cnnviz.deep_dream(net, x, "layer1.0", iterations=3, octaves=2, octave_scale=2.0, snapshot_every=2,
                          on_snapshot=lambda step, img: seen.append((step, img)))
    assert r.snapshot_steps == [2, 4, 6] == [s for s, _ in seen]
    for (_, a), b in zip(seen, r.snapshots):
        assert torch.equal(a, b)
    assert r.snapshots[0].shape[-1] == 8 and r.snapshots[-1].shape[-1] == 16  # each at its octave's size
    torch.testing.assert_close(r.snapshots[-1], r.image)


def test_top_filters_reduction_is_a_string_and_none_is_refused():
    net = TinyNet()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match="reduction must be mean or max"):
        cnnviz.top_filters(net, x, "layer1.0", reduction="none")
    with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean', 'max', got 'median'"):
        cnnviz.top_filters(net, x, "layer1.0", reduction="median")
