"""Incremental occlusion (python/cnnviz/_incremental_occlusion.py) against full inference:
the native full path (incremental=False) and a per-window loop written here, on small
VGG-like nets, torchvision ResNet-18, MobileNetV2/V3, DenseNet-121 and the pretrained
ResNet-20; the fall-backs (untraceable and unsupported ops, train mode, hooks, TorchScript);
and the FLOP count against a count by hand."""
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image

import cnnviz
from cnnviz import _incremental_occlusion as io


def loop_occlusion(model, x, target, window, stride, baseline=0.0):
    """One occluded copy per window and image, through the whole model: scores (N, nh, nw)."""
    n, _, h, w = x.shape
    nh, nw = (h - window[0]) // stride[0] + 1, (w - window[1]) // stride[1] + 1
    scores = torch.zeros(n, nh, nw, dtype=x.dtype)
    with torch.no_grad():
        clean = model(x)[range(n), target]
        for i in range(nh):
            for j in range(nw):
                xo = x.clone()
                xo[:, :, i * stride[0]:i * stride[0] + window[0], j * stride[1]:j * stride[1] + window[1]] = baseline
                scores[:, i, j] = clean - model(xo)[range(n), target]
    return scores


class VggLike(nn.Module):
    """Every window rule: padding, stride, dilation, groups, 1x1, max/avg pooling (with
    padding and ceil mode), batch norm, in-place and functional activations, then a head."""

    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=2, dilation=2), nn.ReLU6(inplace=True),
            nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=4), nn.LeakyReLU(0.1),
            nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(12, 16, 1), nn.Hardswish(),
            nn.Conv2d(16, 16, (3, 2), padding=(1, 0)), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True))
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        x = F.silu(self.features(x)) * 0.5 + 0.1
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Branches(nn.Module):
    """Additions of regions of different sizes, a channel concatenation, a strided slice with
    channel padding (an option-A shortcut), and a constant per-channel scale."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 6, 5, padding=2)
        self.c = nn.Conv2d(6, 6, 1)
        self.d = nn.Conv2d(12, 8, 3, stride=2, padding=1)
        self.scale = nn.Parameter(torch.rand(1, 12, 1, 1) + 0.5)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        a = torch.relu(self.a(x))
        s = self.b(a) + self.c(a)
        s += a
        cat = torch.cat([s, a], dim=1) * self.scale
        short = F.pad(cat[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))
        y = self.d(cat)
        y = torch.cat([y, short[:, :4]], 1)
        return self.fc(y.mean((2, 3)))


class Unsupported(nn.Module):
    """torch.roll in the middle: regions up to it, full inference from it on."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        y = torch.roll(F.relu(self.a(x)), 1, dims=3)
        return self.fc(self.b(y).amax((2, 3)))


class Untraceable(nn.Module):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.a(x)
        if y.sum() > 0:
            y = y.relu()
        return self.fc(y.mean((2, 3)))


class ReusedInplace(nn.Module):
    """An in-place ReLU whose input is read again afterwards: out of place would differ."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.a(x)
        z = F.relu(y, inplace=True)
        return self.fc((z + y).mean((2, 3)))


def _net(cls, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return cls().to(dtype).eval()


def _both(model, x, target=None, **kw):
    inc = cnnviz.occlusion(model, x, target, incremental=True, **kw)
    full = cnnviz.occlusion(model, x, target, incremental=False, **kw)
    assert inc.incremental and not full.incremental
    return inc, full


@pytest.mark.parametrize("cls", [VggLike, Branches])
def test_small_nets_equal_full_inference_and_loop(cls):
    net = _net(cls)
    x = torch.randn(2, 3, 23, 21, dtype=torch.float64)
    inc, full = _both(net, x, [1, 2], window=(5, 4), stride=(3, 4), baseline=-0.3, batch_size=7)
    ref = loop_occlusion(net, x, [1, 2], (5, 4), (3, 4), -0.3)
    torch.testing.assert_close(inc.scores, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(inc.scores, full.scores, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(inc.map, full.map, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(inc.logits, full.logits)


def test_float32_random_net_within_rounding():
    # Random weights give drops near 1e-5 of the logits, so compare at the logits' scale here
    # (the relative 1e-5 check is on the pretrained models below, whose drops are real).
    net = _net(VggLike, torch.float32)
    x = torch.randn(2, 3, 32, 32)
    for score in ("logit", "probability"):
        inc, full = _both(net, x, window=6, stride=5, score=score)
        assert (inc.scores - full.scores).abs().max() <= 1e-6 * full.logits.abs().max()


def test_windows_at_every_border_and_strides_that_do_not_divide():
    net = _net(Branches)
    x = torch.randn(1, 3, 17, 19, dtype=torch.float64)
    for window, stride in [((17, 1), (1, 1)), ((1, 19), (7, 5)), ((4, 6), (13, 13)), ((3, 3), (2, 7))]:
        inc, full = _both(net, x, 0, window=window, stride=stride, batch_size=5)
        torch.testing.assert_close(inc.scores, loop_occlusion(net, x, [0], window, stride), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(inc.map, full.map, rtol=1e-9, atol=1e-12)


def test_several_images_batches_across_images():
    net = _net(VggLike)
    x = torch.randn(3, 3, 20, 20, dtype=torch.float64)
    inc, full = _both(net, x, [0, 3, 5], window=6, stride=4, batch_size=10)  # 16 windows per image
    torch.testing.assert_close(inc.scores, full.scores, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(inc.scores, loop_occlusion(net, x, [0, 3, 5], (6, 6), (4, 4)), rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "densenet121"])
def test_torchvision_models(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().double().eval()
    x = torch.randn(1, 3, 48, 48, dtype=torch.float64)
    inc, full = _both(model, x, 7, window=10, stride=8, batch_size=16)
    torch.testing.assert_close(inc.scores, full.scores, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(inc.map, full.map, rtol=1e-9, atol=1e-12)


def test_pretrained_resnet20_float32(resnet20, cifar_samples):
    path, label = cifar_samples[3]
    x = TF.normalize(TF.to_tensor(Image.open(path).convert("RGB")), [0.485, 0.456, 0.406],
                     [0.229, 0.224, 0.225]).unsqueeze(0)
    inc, full = _both(resnet20, x, label, window=8, stride=4)
    assert (inc.scores - full.scores).norm() / full.scores.norm() < 1e-5
    assert (inc.map - full.map).norm() / full.map.norm() < 1e-5


def test_pretrained_mobilenet_float32(mobilenet, imagenet_samples):
    path, label = imagenet_samples[0]
    x = cnnviz.preprocess(cnnviz.load_image(path), size=112)
    inc, full = _both(mobilenet, x, label, window=16, stride=12, batch_size=64)
    assert (inc.scores - full.scores).norm() / full.scores.norm() < 1e-5
    assert (inc.map - full.map).norm() / full.map.norm() < 1e-5


def test_auto_mode_runs_incrementally_only_where_it_pays():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2().eval()  # 64 windows, 13 GFLOP full, 8 incremental
    x = torch.randn(1, 3, 128, 128)
    auto = cnnviz.occlusion(model, x, window=16, stride=16)
    full = cnnviz.occlusion(model, x, window=16, stride=16, incremental=False)
    assert auto.incremental and not full.incremental
    assert (auto.scores - full.scores).abs().max() <= 1e-6 * full.logits.abs().max()
    small = _net(VggLike)  # a few MFLOP: tracing would cost more than it saves
    assert not cnnviz.occlusion(small, torch.randn(1, 3, 16, 16, dtype=torch.float64), window=4).incremental


def test_an_engine_failure_falls_back_to_full_inference(monkeypatch):
    net = _net(VggLike)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)

    def broken(self, n, rule, mode):
        raise RuntimeError("rule misjudged")

    monkeypatch.setattr(io._Batch, "_run_region", broken)
    monkeypatch.setattr(io, "AUTO_MIN_SAVED_FLOPS", 0.0)
    monkeypatch.setattr(io, "AUTO_MIN_SAVED_SHARE", 0.0)
    with pytest.warns(RuntimeWarning, match="rule misjudged"):
        auto = cnnviz.occlusion(net, x, window=4, stride=4)
    assert not auto.incremental
    torch.testing.assert_close(auto.scores, loop_occlusion(net, x, auto.target, (4, 4), (4, 4)))
    with pytest.raises(RuntimeError, match="rule misjudged"):
        cnnviz.occlusion(net, x, window=4, stride=4, incremental=True)


def test_unsupported_op_runs_the_rest_in_full():
    net = _net(Unsupported)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    plan = io.Plan(net, x)
    geo = io.geometry(plan, [(0, 0)], (4, 4))
    modes = {n.name: geo[n] for n in plan.nodes if n.op != "output"}
    assert isinstance(modes["a"], io.Region) and isinstance(modes["relu"], io.Region)
    assert modes["roll"] == io.FULL and modes["b"] == io.FULL
    inc, full = _both(net, x, window=4, stride=3)
    torch.testing.assert_close(inc.scores, loop_occlusion(net, x, inc.target, (4, 4), (3, 3)), rtol=1e-9,
                               atol=1e-12)


def test_untraceable_model_falls_back_or_refuses():
    net = _net(Untraceable)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    auto = cnnviz.occlusion(net, x, window=4, stride=4)
    assert not auto.incremental
    torch.testing.assert_close(auto.scores, loop_occlusion(net, x, auto.target, (4, 4), (4, 4)))
    with pytest.raises(ValueError, match="cannot trace the model with torch.fx"):
        cnnviz.occlusion(net, x, window=4, stride=4, incremental=True)


def test_reused_inplace_input_is_refused():
    net = _net(ReusedInplace)
    x = torch.randn(1, 3, 10, 10, dtype=torch.float64)
    with pytest.raises(ValueError, match="in-place op"):
        cnnviz.occlusion(net, x, window=3, stride=3, incremental=True)
    auto = cnnviz.occlusion(net, x, window=3, stride=3)
    assert not auto.incremental
    torch.testing.assert_close(auto.scores, loop_occlusion(net, x, auto.target, (3, 3), (3, 3)))


def test_train_mode_hooks_and_other_models_use_full_inference():
    net = _net(VggLike).train()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with pytest.warns(UserWarning, match="training mode"):
        r = cnnviz.occlusion(net, x, window=4, stride=4)
    assert not r.incremental
    with pytest.raises(ValueError, match="eval mode"):
        cnnviz.occlusion(net, x, window=4, stride=4, incremental=True)
    net.eval()
    handle = net.features[0].register_forward_hook(lambda m, i, o: None)
    try:
        assert not cnnviz.occlusion(net, x, window=4, stride=4).incremental
        with pytest.raises(ValueError, match="hooks"):
            cnnviz.occlusion(net, x, window=4, stride=4, incremental=True)
    finally:
        handle.remove()
    scripted = torch.jit.trace(net, x)
    assert not cnnviz.occlusion(scripted, x, window=4, stride=4).incremental
    with pytest.raises(ValueError, match="needs a torch.nn.Module"):
        cnnviz.occlusion(scripted, x, window=4, stride=4, incremental=True)
    with pytest.raises(ValueError, match="needs a torch.nn.Module"):
        cnnviz.occlusion(lambda t: net(t), x, window=4, stride=4, incremental=True)


def test_first_op_unsupported_is_refused():
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 3)).double().eval()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    assert not cnnviz.occlusion(net, x, window=2, stride=2).incremental
    with pytest.raises(ValueError, match="no layer it can compute by regions"):
        cnnviz.occlusion(net, x, window=2, stride=2, incremental=True)


def test_bad_input_keeps_the_native_errors():
    net = _net(VggLike)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="larger than the image"):
        cnnviz.occlusion(net, x, window=9, incremental=True)
    with pytest.raises(ValueError, match="stride must be positive"):
        cnnviz.occlusion(net, x, window=2, stride=0, incremental=True)
    with pytest.raises(ValueError, match="must be a batch"):
        cnnviz.occlusion(net, x[0], window=2, incremental=True)
    with pytest.raises(ValueError, match="NaN"):
        cnnviz.occlusion(net, x * float("nan"), window=2)
    with pytest.raises(ValueError, match="incremental must be None, True or False"):
        cnnviz.occlusion(net, x, window=2, incremental="yes")


def test_stop_after_the_first_batch_matches_full_inference():
    net = _net(VggLike)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    stop = lambda i, total, loss: False  # noqa: E731
    inc = cnnviz.occlusion(net, x, window=4, stride=4, batch_size=8, progress=stop, incremental=True)
    full = cnnviz.occlusion(net, x, window=4, stride=4, batch_size=8, progress=stop, incremental=False)
    assert inc.stopped_early and full.stopped_early
    torch.testing.assert_close(inc.scores, full.scores, rtol=1e-9, atol=1e-12)
    ref = loop_occlusion(net, x, inc.target, (4, 4), (4, 4)).flatten()  # 16 windows: 2 batches
    torch.testing.assert_close(inc.scores.flatten()[:8], ref[:8], rtol=1e-9, atol=1e-12)
    assert (inc.scores.flatten()[8:] == 0).all()


def _hand_flops(window, stride, size=12, cin=2, cout=3, classes=4):
    """One 3x3 padding-1 convolution, ReLU, global average pool, linear: by hand."""
    conv = 2 * cin * 9
    full_one = conv * cout * size * size + cout * size * size + cout * size * size + 2 * cout * classes
    positions = [(i, j) for i in range(0, size - window + 1, stride) for j in range(0, size - window + 1, stride)]
    inc = 0
    for i, j in positions:
        rows = min(size, i + window + 1) - max(0, i - 1)
        cols = min(size, j + window + 1) - max(0, j - 1)
        inc += (conv + 1) * cout * rows * cols + cout * size * size + 2 * cout * classes
    return len(positions), len(positions) * full_one, inc


def test_flops_match_a_count_by_hand():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(3, 4)).eval()
    for window, stride in [(3, 3), (4, 5), (12, 1)]:
        f = io.occlusion_flops(net, (2, 12, 12), window, stride)
        positions, full, inc = _hand_flops(window, stride)
        assert f.positions == positions
        assert f.full == pytest.approx(full)
        assert f.incremental == pytest.approx(inc)
        assert f.executed >= f.incremental and f.saving == pytest.approx(full / inc)


def test_flops_resnet18():
    torch.manual_seed(0)
    f = io.occlusion_flops(torchvision.models.resnet18().eval(), (3, 64, 64), 8, 4, batch_size=16)
    assert f.positions == 15 * 15 and f.full / f.positions == pytest.approx(1.82e9 * 64 * 64 / 224 / 224 * 2,
                                                                             rel=0.05)
    assert 1 < f.executed_saving <= f.saving


@pytest.mark.slow
def test_flops_vgg16_224():
    f = io.occlusion_flops(torchvision.models.vgg16().eval(), (3, 224, 224), 32, 16)
    assert f.positions == 169 and f.full / 169 == pytest.approx(30.9e9, rel=0.01)
    assert f.saving > 3


def test_flops_bad_input():
    net = _net(VggLike)
    with pytest.raises(ValueError, match="x_shape"):
        io.occlusion_flops(net, (2, 3, 8, 8), 2, 2)
    with pytest.raises(ValueError, match="larger than the image"):
        io.occlusion_flops(net, (3, 8, 8), 9, 2)
    with pytest.raises(ValueError, match="stride must be"):
        io.occlusion_flops(net, (3, 8, 8), 2, 0)
    with pytest.raises(ValueError, match="batch_size"):
        io.occlusion_flops(net, (3, 8, 8), 2, 2, batch_size=0)
    with pytest.raises(ValueError, match="eval mode"):
        io.occlusion_flops(_net(VggLike).train(), (3, 8, 8), 2, 2)


def test_auto_mode_never_traces_a_small_model(monkeypatch):
    # torch.fx patches nn.Module.__call__ process-wide while it traces, so a trace racing
    # other threads' forwards crashed them (tests/python/test_threads.py). Automatic mode
    # must decide "too small" before tracing; an explicit request still traces.
    from cnnviz import _incremental_occlusion as inc

    traced = []
    real = inc.fx.symbolic_trace
    monkeypatch.setattr(inc.fx, "symbolic_trace", lambda m, *a, **k: traced.append(m) or real(m, *a, **k))
    small = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.randn(1, 3, 16, 16)
    runner, why = inc.prepare(small, x, 4, 4, 8, required=False)
    assert runner is None and "too small" in why and not traced
    result = cnnviz.occlusion(small, x, target=0, window=4, stride=4)
    assert not result.incremental and not traced
    assert cnnviz.occlusion(small, x, target=0, window=4, stride=4, incremental=True).incremental and traced


# ---- the plan cache (trace, rules, rectangles per model and input shape) ----


class Gained(nn.Module):
    """A Python float read by the forward: torch.fx records its value as a constant, so the
    trace goes stale when it changes, which no fingerprint of modules and tensors can see."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.gain = 1.0

    def forward(self, x):
        return self.fc((torch.relu(self.a(x)) * self.gain).amax((2, 3)))


def _counting_trace(monkeypatch):
    traced = []
    real = io.fx.symbolic_trace
    monkeypatch.setattr(io.fx, "symbolic_trace", lambda m, *a, **k: traced.append(m) or real(m, *a, **k))
    return traced


def _incremental_equals_loop(net, x, window=4, stride=4):
    r = cnnviz.occlusion(net, x, window=window, stride=stride, incremental=True)
    assert r.incremental
    torch.testing.assert_close(r.scores, loop_occlusion(net, x, r.target, _two(window), _two(stride)),
                               rtol=1e-9, atol=1e-12)
    return r


def _two(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def test_plan_is_cached_per_model_and_input_shape(monkeypatch):
    traced = _counting_trace(monkeypatch)
    net = _net(Branches)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    _incremental_equals_loop(net, x)
    assert len(traced) == 1
    _incremental_equals_loop(net, torch.randn(2, 3, 12, 12, dtype=torch.float64), window=3, stride=2)
    assert len(traced) == 1  # other images, windows, strides, batch count: the same plan
    _incremental_equals_loop(net, torch.randn(1, 3, 16, 12, dtype=torch.float64))
    assert len(traced) == 2  # another input shape: another plan
    _incremental_equals_loop(net, x)
    assert len(traced) == 2  # both kept
    other = _net(Branches, seed=1)
    _incremental_equals_loop(other, x)
    assert len(traced) == 3  # per model object


def test_plan_cache_follows_weight_changes_without_tracing_again(monkeypatch):
    traced = _counting_trace(monkeypatch)
    net = _net(VggLike)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    before = _incremental_equals_loop(net, x)
    net.load_state_dict(_net(VggLike, seed=3).state_dict())  # in place: values only
    with torch.no_grad():
        net.features[3].weight.mul_(-2.0)
    after = _incremental_equals_loop(net, x)
    assert len(traced) == 1 and not torch.allclose(before.scores, after.scores)


def test_plan_cache_is_invalidated_by_replaced_modules_parameters_and_mode(monkeypatch):
    traced = _counting_trace(monkeypatch)
    net = _net(Branches)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    _incremental_equals_loop(net, x)
    net.scale = nn.Parameter(torch.rand(1, 12, 1, 1, dtype=torch.float64) + 2.0)  # a get_attr tensor
    _incremental_equals_loop(net, x)
    assert len(traced) == 2
    net.b.weight = nn.Parameter(torch.randn_like(net.b.weight))
    _incremental_equals_loop(net, x)
    assert len(traced) == 3
    net.c = nn.Conv2d(6, 6, 1).double().eval()
    _incremental_equals_loop(net, x)
    assert len(traced) == 4
    net.train()
    with pytest.raises(ValueError, match="eval mode"):
        cnnviz.occlusion(net, x, window=4, stride=4, incremental=True)
    net.eval()
    _incremental_equals_loop(net, x)
    assert len(traced) == 4  # back in the modes it was traced in: the same plan serves
    net.a.train()
    with pytest.raises(ValueError, match=r"eval mode \(a is in training mode\)"):
        cnnviz.occlusion(net, x, window=4, stride=4, incremental=True)


def test_a_stale_trace_is_caught_by_the_output_check_and_traced_again(monkeypatch):
    traced = _counting_trace(monkeypatch)
    net = _net(Gained)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    _incremental_equals_loop(net, x)
    net.gain = -3.0  # the cached trace multiplies by 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _incremental_equals_loop(net, x)
    assert len(traced) == 2


def test_a_trace_that_disagrees_runs_in_full_or_refuses(monkeypatch):
    net = _net(Gained)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    real = io.Plan.clean

    def wrong(self, image):
        clean = real(self, image)
        clean.output = clean.output + 1.0
        return clean

    monkeypatch.setattr(io.Plan, "clean", wrong)
    monkeypatch.setattr(io, "AUTO_MIN_SAVED_FLOPS", 0.0)
    monkeypatch.setattr(io, "AUTO_MIN_SAVED_SHARE", 0.0)
    with pytest.warns(RuntimeWarning, match="does not reproduce the model's output on image 0"):
        auto = cnnviz.occlusion(net, x, window=4, stride=4)
    assert not auto.incremental
    torch.testing.assert_close(auto.scores, loop_occlusion(net, x, auto.target, (4, 4), (4, 4)))
    with pytest.raises(ValueError, match="does not reproduce"):
        cnnviz.occlusion(net, x, window=4, stride=4, incremental=True)


def test_plans_go_with_their_model():
    import gc
    import weakref

    net = _net(VggLike)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    _incremental_equals_loop(net, x)
    assert net in io._PLANS
    gone = weakref.ref(net)
    del net
    gc.collect()
    assert gone() is None and len([m for m in io._PLANS if m is not None]) == len(io._PLANS)


def test_untraceable_verdict_is_cached(monkeypatch):
    traced = _counting_trace(monkeypatch)
    net = _net(Untraceable)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    for _ in range(2):
        with pytest.raises(ValueError, match="cannot trace the model with torch.fx"):
            cnnviz.occlusion(net, x, window=4, stride=4, incremental=True)
    assert len(traced) == 1


def test_plan_for_bad_input():
    net = _net(VggLike)
    with pytest.raises(ValueError, match=r"one floating-point image \(1, C, H, W\), got \(2, 3, 8, 8\)"):
        io.plan_for(net, torch.randn(2, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="one floating-point image"):
        io.plan_for(net, torch.zeros(1, 3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="eval mode"):
        io.plan_for(_net(VggLike).train(), torch.randn(1, 3, 8, 8, dtype=torch.float64))


# ---- the schedule: which windows run together ----


@pytest.mark.parametrize("case", [
    (Branches, (1, 3, 17, 19), (3, 3), (2, 2), 7),
    (VggLike, (1, 3, 20, 20), (6, 6), (2, 3), 5),
    ("resnet18", (1, 3, 64, 64), (8, 8), (4, 4), 16),
])
def test_schedule_partitions_the_windows_and_its_estimate_is_exact(case):
    cls, shape, window, stride, batch = case
    if isinstance(cls, str):
        torch.manual_seed(0)
        net = getattr(torchvision.models, cls)().eval()
        x = torch.randn(shape)
    else:
        net, x = _net(cls), torch.randn(shape, dtype=torch.float64)
    plan = io.plan_for(net, x)[0]
    positions = io._positions(shape[2], shape[3], window, stride)
    groups = io._schedule(plan, positions, window, batch, io.MATERIALIZE_FRACTION)
    assert sorted(k for g in groups for k in g) == list(range(len(positions)))
    assert all(1 <= len(g) <= batch for g in groups)
    ext = io._Extents(plan, positions, window, io.MATERIALIZE_FRACTION)
    gen = torch.Generator().manual_seed(1)
    subsets = groups + [torch.randperm(len(positions), generator=gen)[:int(m)].tolist() for m in (1, 3, batch, 40)]
    for g in subsets:  # the separable estimate against a geometry of the group itself
        assert ext.flops(g) == pytest.approx(io._group_flops(plan, [positions[k] for k in g], window,
                                                             io.MATERIALIZE_FRACTION), rel=1e-12)
    f = io.occlusion_flops(net, shape, window, stride, batch_size=batch)
    assert f.executed == pytest.approx(sum(ext.flops(g) for g in groups), rel=1e-12)


def test_vgg16_schedule_executes_closer_to_theory():
    torch.manual_seed(0)
    net = torchvision.models.vgg16().eval()
    plan = io.plan_for(net, torch.zeros(1, 3, 224, 224))[0]
    positions = io._positions(224, 224, (32, 32), (16, 16))
    natural = [list(range(k * 169 // 6, (k + 1) * 169 // 6)) for k in range(6)]  # the windows in order
    ext = io._Extents(plan, positions, (32, 32), io.MATERIALIZE_FRACTION)
    groups = io._schedule(plan, positions, (32, 32), 32, io.MATERIALIZE_FRACTION)
    full = 169 * sum(io._node_flops(plan, n, io.FULL, 1) for n in ext.nodes)
    in_order, scheduled = full / sum(map(ext.flops, natural)), full / sum(map(ext.flops, groups))
    assert in_order == pytest.approx(5.50, abs=0.01) and scheduled > 5.85 and len(groups) <= 8


def test_windows_computed_ahead_with_a_baseline_equal_the_loop(monkeypatch):
    monkeypatch.setattr(io, "GROUP_COST_PER_WEIGHT", 0.0)  # as many groups as saves FLOPs: far from in order
    net = _net(Branches)
    x = torch.randn(2, 3, 16, 15, dtype=torch.float64)
    runner, _ = io.prepare(net, x, 3, 2, 4, required=True, baseline=0.7)
    assert runner.groups != [list(range(k, min(k + 4, 49))) for k in range(0, 49, 4)]
    inc = cnnviz.occlusion(net, x, [1, 2], window=3, stride=2, baseline=0.7, batch_size=4, incremental=True)
    assert inc.incremental
    torch.testing.assert_close(inc.scores, loop_occlusion(net, x, [1, 2], (3, 3), (2, 2), baseline=0.7),
                               rtol=1e-9, atol=1e-12)


def test_a_batch_that_is_not_the_expected_occlusion_runs_in_full():
    net = _net(VggLike)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    runner, _ = io.prepare(net, x, 4, 4, 4, required=True, baseline=0.0)
    with torch.no_grad():
        torch.testing.assert_close(runner(x), net(x))
        batch = runner._occluded([0] * 4, runner.positions[:4])
        batch[2, 0, 15, 15] += 1.0  # outside every window of this batch
        torch.testing.assert_close(runner(batch), net(batch), rtol=1e-12, atol=1e-12)
        assert runner.full_batches == 1 and runner.batches == 0
        good = runner._occluded([0] * 4, runner.positions[4:8])
        torch.testing.assert_close(runner(good), net(good), rtol=1e-9, atol=1e-12)
        assert runner.batches >= 1 and runner.full_batches == 1
