"""The analysis Options classes come from the C++ structs (one row each, bound by the options
bridge): every field is a keyword argument of its Python wrapper with the C++ default, or is
set by the wrapper from another argument (named here with the reason)."""
import inspect

import pytest
import torch

import cnnviz
from cnnviz import _C
from cnnviz import faithfulness, filter_analysis, layer_analysis, representation

# (Options class, wrapper, {field: why it is not a keyword of the same name})
CASES = [
    (_C.DeletionInsertionOptions, faithfulness.deletion_insertion,
     {"custom_baseline": "given as baseline=<tensor>"}),
    (_C.SanityCheckOptions, faithfulness.sanity_check, {"layers": "given as layers_from_top=<list of names>"}),
    (_C.LayerInformationOptions, layer_analysis.layer_information,
     {"inversion": "invert_layers' keyword arguments pass through **inversion",
      "ssim_data_range": "pixels: layer_information compares in [0, 1]",
      "ssim_reduction": "layer_information keeps one SSIM per image"}),
    (_C.AdversarialReportOptions, layer_analysis.adversarial_report,
     {"fgsm": "filled from eps, targeted, mean, std", "pgd": "filled from eps, step, steps, random_start, "
      "targeted, mean, std", "saliency": "filled from saliency_reduction"}),
    (_C.FilterStatisticsOptions, filter_analysis.filter_statistics, {}),
    (_C.FilterRedundancyOptions, filter_analysis.filter_redundancy, {}),
    (_C.CkaOptions, representation.cka, {}),
]


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("cls, fn, elsewhere", CASES, ids=[c[0].__name__ for c in CASES])
def test_every_field_is_a_keyword_with_the_cpp_default(cls, fn, elsewhere):
    params = inspect.signature(fn).parameters
    defaults = cls()
    assert len(cls._fields) == len(set(cls._fields))
    for name in cls._fields:
        if name in elsewhere:
            assert name not in params or params[name].kind == inspect.Parameter.VAR_KEYWORD, \
                f"{name} is both a keyword and set from another argument"
            continue
        assert name in params, f"{fn.__name__} lacks the keyword {name} of {cls.__name__}"
        default, cpp = _plain(params[name].default), _plain(getattr(defaults, name))
        assert default == cpp or (default is None and cpp == []), name  # None: C++'s empty list
    for name in elsewhere:
        assert name in cls._fields, f"{name} is no longer a field of {cls.__name__}"


def test_accumulator_keywords_match_their_options():
    params = inspect.signature(filter_analysis.FilterStatisticsAccumulator).parameters
    for name in _C.FilterStatisticsOptions._fields:
        if name != "batch_size":  # an accumulator is given batches
            assert params[name].default == getattr(_C.FilterStatisticsOptions(), name)
    params = inspect.signature(representation.CKAAccumulator).parameters
    for name in _C.CkaOptions._fields:
        if name != "batch_size":
            assert params[name].default == getattr(_C.CkaOptions(), name)


def test_options_read_write_and_repr():
    o = _C.DeletionInsertionOptions()
    o.steps, o.deletion_baseline, o.mean = 7, "black", [0.5, 0.5, 0.5]
    assert (o.steps, o.deletion_baseline, list(o.mean)) == (7, "black", [0.5, 0.5, 0.5])
    assert "steps=7" in repr(o) and "deletion_baseline='black'" in repr(o)
    assert "progress" not in o._fields  # progress= is an argument of the function
    with pytest.raises(ValueError, match="deletion_baseline must be one of"):
        o.deletion_baseline = "grey"
    li = _C.LayerInformationOptions()
    li.ssim_window_size, li.ssim_sigma = 7, 1.0
    assert (li.ssim_window_size, li.ssim_sigma) == (7, 1.0)
    assert li.inversion.init == "zeros"  # the nested InversionOptions is one object
    report = _C.AdversarialReportOptions()
    assert report.attack == "pgd" and report.saliency.reduction == "max"
    with pytest.raises(ValueError, match="attack must be one of"):
        report.attack = "cw"
    sc = _C.SanityCheckOptions()
    assert sc.layers_from_top is None
    sc.layers_from_top = 3
    assert sc.layers_from_top == 3


def test_wrappers_pass_their_keywords_through():
    """A changed keyword reaches the C++ struct (a written-out check of fill_options' use)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.randn(2, 3, 8, 8)
    r = cnnviz.deletion_insertion(net, x, torch.rand(2, 8, 8), steps=4, baseline="black")
    assert r.fractions.numel() == 5
    s = filter_analysis.filter_statistics(net, x, "1", top_k=1, keep_per_image=True)
    assert s.top_values.shape == (4, 1) and s.per_image.shape == (2, 4)
    c = representation.cka(net, None, torch.randn(8, 3, 8, 8), ["0", "1"], unbiased=False, batch_size=8)
    assert c.batches == 1 and not c.unbiased


def test_none_is_refused_where_it_would_quietly_mean_the_default():
    """``samples=None`` must not silently become 50: None is taken only by fields whose default
    is None and by the arguments a wrapper documents as "None: the default"."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(TypeError, match=r"samples=None is not accepted.*default is 50"):
        cnnviz.smooth_grad(net, x, samples=None)
    with pytest.raises(TypeError, match=r"batch_size=None is not accepted"):
        cnnviz.occlusion(net, x, window=4, stride=4, batch_size=None)
    with pytest.raises(TypeError, match=r"reduction=None"):
        cnnviz.saliency(net, x, reduction=None)
    # Documented None arguments keep working: IG's steps (None: the default 50), a grid's colormap.
    a = cnnviz.integrated_gradients(net, x, steps=None)
    b = cnnviz.integrated_gradients(net, x, steps=_C.IntegratedGradientsOptions().steps)
    assert torch.equal(a.attribution, b.attribution)
    assert cnnviz.make_grid(torch.rand(2, 1, 4, 4), colormap=None).shape[-1] == 3
    # A field whose default is None takes None (a tensor, an optional tolerance).
    assert cnnviz.integrated_gradients(net, x, tolerance=None).attribution.shape == x.shape


def test_cka_kernel_is_an_enum_and_nesting_is_explicit():
    o = _C.CkaOptions()
    assert o.kernel == "linear"
    o.kernel = "rbf"
    assert o.kernel == "rbf"
    with pytest.raises(ValueError, match="kernel must be one of 'linear', 'rbf'"):
        o.kernel = "poly"
    # SsimOptions has its own binding (ssim() uses it) and is still flattened in
    # LayerInformationOptions: the choice is declared, not an accident of binding order.
    assert "window_size" in _C.SsimOptions._fields
    assert [f for f in _C.LayerInformationOptions._fields if f.startswith("ssim_")] == \
        ["ssim_" + f for f in _C.SsimOptions._fields]
