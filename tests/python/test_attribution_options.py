"""The attribution wrappers and their C++ Options classes: every option is a keyword of its
wrapper (and nothing else is), every signature default is the Options default, and the
values reach C++ (a changed option changes the result as a reference computed here says)."""
import inspect

import pytest
import torch

import cnnviz
from cnnviz import _C
from _attribution_nets import input_grad, small_net

# Options class -> (wrapper, keywords of the wrapper that are not options, fields that are
# not keywords, {field: keyword} where the names differ).
CASES = {
    "SaliencyOptions": (cnnviz.saliency, set(), set(), {}),
    "SmoothGradOptions": (cnnviz.smooth_grad, {"progress"}, set(), {}),
    "GuidedBackpropOptions": (cnnviz.guided_backprop, set(), set(), {}),
    "GuidedGradCamOptions": (cnnviz.guided_grad_cam, {"layer"}, set(), {}),
    # grad_cam & co. take relu only; score_cam also batches.
    "CamOptions": (cnnviz.score_cam, {"layer", "targets", "progress"}, set(), {}),
    # A tensor `baseline` fills custom_baseline.
    "IntegratedGradientsOptions": (cnnviz.integrated_gradients, {"progress"}, {"custom_baseline"}, {}),
    "OcclusionOptions": (cnnviz.occlusion, {"progress", "incremental"}, set(), {}),
    # LIME's superpixels are the SlicOptions fields, flat.
    "LimeOptions": (cnnviz.lime, {"progress", "segments", "compactness", "slic_iterations"}, {"superpixels"}, {}),
    "SlicOptions": (cnnviz.slic, {"image"}, set(), {"iterations": "iterations"}),
}
POSITIONAL = {"model", "x", "target"}


def keywords(fn):
    return {n: p for n, p in inspect.signature(fn).parameters.items() if n not in POSITIONAL}


def as_plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


@pytest.mark.parametrize("name", sorted(CASES))
def test_fields_are_the_wrapper_keywords(name):
    fn, extra_kw, extra_fields, _ = CASES[name]
    cls = getattr(_C, name)
    fields = set(cls._fields)
    assert fields - extra_fields == set(keywords(fn)) - extra_kw, name
    assert len(cls._fields) == len(fields), "no field twice"


@pytest.mark.parametrize("name", sorted(CASES))
def test_signature_defaults_are_the_options_defaults(name):
    fn, _, _, _ = CASES[name]
    o = getattr(_C, name)()
    for kw, p in keywords(fn).items():
        if kw not in o._fields:
            continue
        # None means "the Options default" (integrated_gradients' steps, tolerance unset).
        if p.default is None:
            continue
        assert as_plain(p.default) == as_plain(getattr(o, kw)), (name, kw)


def test_lime_slic_keywords_default_to_slic_options():
    slic = _C.SlicOptions()
    params = keywords(cnnviz.lime)
    assert params["segments"].default == slic.segments
    assert params["compactness"].default == slic.compactness
    assert params["slic_iterations"].default == slic.iterations
    assert set(_C.SlicOptions._fields) == {"segments", "compactness", "iterations"}
    # The nested object reads and writes as a whole.
    o = _C.LimeOptions()
    s = _C.SlicOptions()
    s.segments = 7
    o.superpixels = s
    assert o.superpixels.segments == 7
    assert "superpixels=SlicOptions(segments=7" in repr(o)


def test_options_repr_and_enum_strings():
    o = _C.IntegratedGradientsOptions()
    assert o.method == "riemann_trapezoid" and o.reduction == "mean" and o.baseline == "zeros"
    assert o.mean == [0.485, 0.456, 0.406]
    assert repr(o).startswith("IntegratedGradientsOptions(steps=50, method='riemann_trapezoid'")
    with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean', 'max', got 'median'"):
        o.reduction = "median"
    with pytest.raises(ValueError, match="score must be one of 'logit', 'probability'"):
        _C.OcclusionOptions().score = "prob"


def test_values_reach_cpp():
    """A non-default option of each wrapper changes its result as expected."""
    net = small_net("module")
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    ref, _ = input_grad(net, x, [1, 2])
    torch.testing.assert_close(cnnviz.saliency(net, x, [1, 2], reduction="mean").map, ref.abs().mean(1))
    torch.testing.assert_close(cnnviz.guided_backprop(net, x, [1, 2], reduction="mean").map.shape,
                               torch.Size([2, 12, 12]))
    # smooth_grad with zero noise is the saliency, whatever the samples and batch size.
    sg = cnnviz.smooth_grad(net, x, [1, 2], samples=3, noise_level=0.0, batch_size=2, reduction="mean")
    torch.testing.assert_close(sg.attribution, ref)
    # occlusion: a 1-value window / stride is a square.
    occ = cnnviz.occlusion(net, x, [1, 2], window=4, stride=4, incremental=False)
    assert occ.scores.shape == (2, 3, 3)
    # integrated gradients: steps and method reach C++ (passes), tolerance switches modes.
    ig = cnnviz.integrated_gradients(net, x, [1, 2], steps=5, method="gauss_legendre")
    assert ig.passes.tolist() == [5, 5]
    ig = cnnviz.integrated_gradients(net, x, [1, 2], tolerance=0.5, initial_steps=3, max_passes=3)
    assert ig.passes.tolist() == [3, 3]
    # LIME: the SLIC keywords reach the nested options (grid cells count from segments).
    lim = cnnviz.lime(net, x, [1, 2], segmentation="grid", segments=4, samples=8)
    assert [w.numel() for w in lim.weights] == [4, 4]


def test_bad_option_values_are_refused_clearly():
    net = small_net("module")
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="reduction must be one of"):
        cnnviz.saliency(net, x, reduction="sum")
    with pytest.raises(ValueError, match="channel reduction must be max or mean, got none"):
        cnnviz.smooth_grad(net, x, samples=2, reduction="none")
    with pytest.raises(ValueError, match="method must be one of"):
        cnnviz.integrated_gradients(net, x, method="simpson")
    with pytest.raises(ValueError, match="segmentation must be one of"):
        cnnviz.lime(net, x, segmentation="quickshift")
    with pytest.raises(ValueError, match="window must have 1 or 2 values"):
        cnnviz.occlusion(net, x, window=(2, 2, 2), incremental=False)


def test_results_print_readably_and_carry_both_flags():
    net = small_net("module")
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    results = [
        cnnviz.saliency(net, x, [1, 2]),
        cnnviz.smooth_grad(net, x, [1, 2], samples=2),
        cnnviz.grad_cam(net, x, "conv3", [1, 2]),
        cnnviz.integrated_gradients(net, x, [1, 2], steps=3),
        cnnviz.occlusion(net, x, [1, 2], window=6, stride=6, incremental=False),
        cnnviz.lime(net, x, [1, 2], segmentation="grid", segments=4, samples=4),
    ]
    for r in results:
        assert r.stopped_early is False and r.interrupted is False, type(r).__name__
        text = repr(r)
        assert text.startswith(type(r).__name__ + "("), text
        assert "target=[1, 2]" in text, text
        assert "stopped_early" in type(r).__doc__ and "interrupted" in type(r).__doc__
    assert "map=(2, 12, 12)" in repr(results[0])
    assert "layer='conv3'" in repr(results[2].maps[0]) and "map=(2, 6, 6)" in repr(results[2].maps[0])
    assert "passes=[3, 3]" in repr(results[3])
    assert "scores=(2, 2, 2)" in repr(results[4])
