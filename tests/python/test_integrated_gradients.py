"""Integrated gradients: a plain-PyTorch reference, quadrature, baselines, completeness on
the pretrained networks."""
import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

import cnnviz
from _attribution_nets import input_grad, small_net

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load(path, size=None):
    img = Image.open(path).convert("RGB")
    if size:
        img = TF.center_crop(TF.resize(img, 256), size)
    return (TF.to_tensor(img).unsqueeze(0) - MEAN) / STD


def gaussian_blur_reference(x, sigma):
    """A 2-D Gaussian (radius ceil(3 sigma)) per channel, edges replicated."""
    r = int(np.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k2 = (k[:, None] * k[None, :]) / k.sum() ** 2
    c = x.shape[1]
    padded = F.pad(x.double(), (r, r, r, r), mode="replicate")
    return F.conv2d(padded, k2.expand(c, 1, -1, -1), groups=c).to(x.dtype)


def ig_reference(model, x, baseline, target, steps):
    """The trapezoid rule over `steps` equally spaced points, one point at a time."""
    total = torch.zeros_like(x)
    for i in range(steps):
        alpha = i / (steps - 1)
        w = (0.5 if i in (0, steps - 1) else 1.0) / (steps - 1)
        total += w * input_grad(model, baseline + alpha * (x - baseline), target)[0]
    return (x - baseline) * total


def test_equals_reference_and_batching():
    net = small_net()
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    r = cnnviz.integrated_gradients(net, x, [1, 3], steps=9, batch_size=4)
    torch.testing.assert_close(r.attribution, ig_reference(net, x, torch.zeros_like(x), [1, 3], 9))
    r1 = cnnviz.integrated_gradients(net, x, [1, 3], steps=9, batch_size=1)
    torch.testing.assert_close(r.attribution, r1.attribution)
    out = net(x).detach()
    torch.testing.assert_close(r.score, out[[0, 1], [1, 3]])
    torch.testing.assert_close(r.delta, r.attribution.sum((1, 2, 3)) - (r.score - r.baseline_score))
    torch.testing.assert_close(r.map, r.attribution.abs().mean(1))


def test_gauss_legendre_nodes_match_numpy():
    for n in (1, 2, 7, 32):
        nodes, weights = cnnviz._C._quadrature("gauss_legendre", n)
        z, w = np.polynomial.legendre.leggauss(n)
        np.testing.assert_allclose(sorted(nodes), sorted((z + 1) / 2), atol=1e-13)
        np.testing.assert_allclose(sorted(weights), sorted(w / 2), atol=1e-13)


def test_baselines():
    net = small_net(dtype=torch.float32)
    x = torch.randn(2, 3, 16, 16)
    black = cnnviz.integrated_gradients(net, x, 0, baseline="black", steps=2).baseline
    torch.testing.assert_close(black, ((0 - MEAN) / STD).expand_as(x))
    blur = cnnviz.integrated_gradients(net, x, 0, baseline="blur", blur_sigma=1.5, steps=2).baseline
    torch.testing.assert_close(blur, gaussian_blur_reference(x, 1.5), rtol=1e-5, atol=1e-5)
    uni = cnnviz.integrated_gradients(net, x, 0, baseline="uniform", steps=2).baseline
    pixels = uni * STD + MEAN
    assert pixels.min() >= 0 and pixels.max() <= 1 and pixels.std() > 0.2
    zero = cnnviz.integrated_gradients(net, x, 0, steps=2)
    assert zero.baseline.abs().max() == 0
    custom = torch.rand(3, 16, 16)
    r = cnnviz.integrated_gradients(net, x, 0, baseline=custom, steps=2)
    torch.testing.assert_close(r.baseline, custom.expand_as(x))
    per_sample = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(cnnviz.integrated_gradients(net, x, 0, baseline=per_sample, steps=2).baseline, per_sample)
    other = cnnviz.integrated_gradients(net, x, 0, baseline="black", steps=2, mean=[0.5], std=[0.5]).baseline
    assert torch.all(other == -1)


def test_bad_input():
    net = small_net()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="steps must be positive"):
        cnnviz.integrated_gradients(net, x, steps=0)
    with pytest.raises(ValueError, match="steps >= 2"):
        cnnviz.integrated_gradients(net, x, steps=1)
    with pytest.raises(ValueError, match="baseline must have shape"):
        cnnviz.integrated_gradients(net, x, baseline=torch.zeros(3, 7, 8))
    with pytest.raises(ValueError, match="baseline must have shape"):
        cnnviz.integrated_gradients(net, x, baseline=torch.zeros(3, 3, 8, 8))
    with pytest.raises(ValueError, match="baseline must be one of"):
        cnnviz.integrated_gradients(net, x, baseline="gray")
    with pytest.raises(ValueError, match="method must be one of"):
        cnnviz.integrated_gradients(net, x, method="simpson")
    with pytest.raises(ValueError, match="blur_sigma"):
        cnnviz.integrated_gradients(net, x, baseline="blur", blur_sigma=0)
    with pytest.raises(ValueError, match="mean and std need 1 or 3 values"):
        cnnviz.integrated_gradients(net, x, baseline="black", mean=[0.1, 0.2])
    with pytest.raises(IndexError):
        cnnviz.integrated_gradients(net, x, 5)
    with pytest.raises(ValueError, match="batch_size"):
        cnnviz.integrated_gradients(net, x, batch_size=0)


def completeness(model, x, steps=64, **kw):
    r = cnnviz.integrated_gradients(model, x, steps=steps, **kw)
    return (r.delta.abs() / (r.score - r.baseline_score).abs()).max().item()


def test_completeness_resnet20(resnet20, cifar_samples):
    """ReLU networks are piecewise linear along the path, so the quadrature error falls
    only like 1/steps and varies with the image: on the 20 CIFAR-10 samples, 64 steps give
    a median |delta| below 1% (at most ~3%), 256 steps below 1% on every image; the worst
    image's delta is the plain double-precision loop's own, i.e. quadrature, not cnnviz."""
    x = torch.cat([load(p) for p, _ in cifar_samples])
    rel = {}
    for method in ("riemann_trapezoid", "gauss_legendre"):
        r = cnnviz.integrated_gradients(resnet20, x, method=method, steps=64, batch_size=256)
        rel[method] = r.delta.abs() / (r.score - r.baseline_score).abs()
        assert rel[method].max() < 0.04, method
    assert rel["riemann_trapezoid"].median() < 0.01
    assert completeness(resnet20, x, steps=256, batch_size=256) < 0.01

    worst = int(rel["riemann_trapezoid"].argmax())
    model = copy.deepcopy(resnet20).double()
    xd = x[worst:worst + 1].double()
    target = int(r.target[worst])
    ref = ig_reference(model, xd, torch.zeros_like(xd), [target], 64)
    with torch.no_grad():
        gap = model(xd)[0, target] - model(torch.zeros_like(xd))[0, target]
    ref_rel = ((ref.sum() - gap).abs() / gap.abs()).item()
    assert ref_rel == pytest.approx(rel["riemann_trapezoid"][worst].item(), rel=0.02)


def test_completeness_mobilenet(mobilenet, imagenet_samples):
    x = load(imagenet_samples[0][0], 224)
    assert completeness(mobilenet, x, method="riemann_trapezoid", batch_size=32) < 0.01


def test_blur_baseline_is_scipy_gaussian_filter_with_nearest_edges():
    """docs/attribution.md: the blur baseline replicates edges, as scipy.ndimage's
    gaussian_filter(mode="nearest"); reflecting borders would differ near the edges."""
    ndimage = pytest.importorskip("scipy.ndimage")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 20, 24, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 20 * 24, 2)).double().eval()
    blur = cnnviz.integrated_gradients(net, x, 0, baseline="blur", blur_sigma=2.0, steps=2).baseline
    ref = np.stack([ndimage.gaussian_filter(x[0, c].numpy(), 2.0, mode="nearest", truncate=3.0) for c in range(3)])
    np.testing.assert_allclose(blur[0].numpy(), ref, atol=1e-10)
    reflect = np.stack([ndimage.gaussian_filter(x[0, c].numpy(), 2.0, mode="reflect", truncate=3.0)
                        for c in range(3)])
    assert np.abs(blur[0].numpy() - reflect).max() > 1e-3


class Counting(torch.nn.Module):
    """Records the rows of every forward pass (and whether it builds a graph)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.passes = []

    def forward(self, x):
        self.passes.append((x.shape[0], torch.is_grad_enabled()))
        return self.net(x)


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gauss_legendre"])
def test_delta_rows_ride_with_the_path(method):
    net = small_net()
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    counting = Counting(net).eval()
    cnnviz.set_inference_plans(False)
    try:
        r = cnnviz.integrated_gradients(counting, x, steps=8, batch_size=16, method=method)
    finally:
        cnnviz.set_inference_plans(True)
    # One pass of 16 path rows (trapezoid: x and the baseline are path points), or 2 + 2 + 16
    # (Gauss-Legendre: x and the baseline in front); no separate forward for the delta.
    assert counting.passes == [(16, True)] if method == "riemann_trapezoid" else [(20, True)]
    out, base = net(x).detach(), net(torch.zeros_like(x)).detach()
    target = out.argmax(1)
    torch.testing.assert_close(r.target, target)
    torch.testing.assert_close(r.logits, out)
    torch.testing.assert_close(r.score, out.gather(1, target.view(-1, 1)).squeeze(1))
    torch.testing.assert_close(r.baseline_score, base.gather(1, target.view(-1, 1)).squeeze(1))
    if method == "riemann_trapezoid":
        torch.testing.assert_close(r.attribution, ig_reference(net, x, torch.zeros_like(x), target.tolist(), 8))


def test_delta_complete_when_stopped_after_the_first_batch():
    net = small_net()
    x = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    r = cnnviz.integrated_gradients(net, x, 1, steps=6, batch_size=4, progress=lambda i, n, v: False)
    assert r.stopped_early
    base = net(torch.zeros_like(x)).detach()[:, 1]
    torch.testing.assert_close(r.baseline_score, base)   # the baseline's rows had not run
    torch.testing.assert_close(r.score, net(x).detach()[:, 1])


# Error-controlled mode (tolerance=...).

class Curved(torch.nn.Module):
    """Two smooth class scores, strongly curved along the path for inputs of unit scale and
    nearly linear for small ones; counts the rows it sees with and without autograd."""

    def __init__(self, shape=(3, 6, 6), seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(2, *shape, generator=g, dtype=torch.float64))
        self.grad_rows = self.plain_rows = 0

    def forward(self, x):
        if x.requires_grad:
            self.grad_rows += x.shape[0]
        else:
            self.plain_rows += x.shape[0]
        return torch.stack([torch.tanh(3 * x * self.w[0]).sum((1, 2, 3)),
                            torch.sin(2 * x * self.w[1]).sum((1, 2, 3))], 1)


def trapezoid_reference(model, x, target, points=1025):
    """IG by the trapezoid rule on `points` equally spaced points, all of an image's points in
    one plain autograd call (zeros baseline)."""
    out = []
    a = torch.linspace(0, 1, points, dtype=x.dtype).view(-1, 1, 1, 1)
    w = torch.full((points,), 1.0 / (points - 1), dtype=x.dtype)
    w[0] = w[-1] = 0.5 / (points - 1)
    for i in range(x.shape[0]):
        path = (a * x[i:i + 1]).requires_grad_(True)
        g, = torch.autograd.grad(model(path)[:, target[i]].sum(), path)
        out.append(x[i] * (g * w.view(-1, 1, 1, 1)).sum(0))
    return torch.stack(out)


def relative_gap(model, x, r):
    """|sum(attribution) - (f(x) - f(0))| / |f(x) - f(0)| from plain forwards."""
    with torch.no_grad():
        t = r.target.view(-1, 1)
        gap = (model(x).gather(1, t) - model(torch.zeros_like(x)).gather(1, t)).squeeze(1)
    return (r.attribution.sum((1, 2, 3)) - gap).abs() / gap.abs()


def test_tolerance_completeness_passes_and_reference():
    torch.manual_seed(1)
    model = Curved()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    x[2] *= 0.01  # nearly linear along its path: converges on the first grid
    tol = 1e-3
    r = cnnviz.integrated_gradients(model, x, 0, tolerance=tol, batch_size=5)
    # One forward+backward row per reported pass; the endpoints are forward-only rows.
    assert model.grad_rows == int(r.passes.sum())
    assert model.plain_rows == 2 * x.shape[0]
    assert (relative_gap(model, x, r) <= tol).all()
    assert r.converged.all() and (r.relative_error <= tol).all()
    assert int(r.passes[2]) == cnnviz._C.IntegratedGradientsOptions().initial_steps
    assert int(r.passes[0]) > int(r.passes[2])
    ref = trapezoid_reference(model, x, [0] * 4)
    rel = (r.attribution - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    assert rel.max() < 0.01
    # Each image gets what it gets alone: sharing batches across images changes nothing.
    alone = cnnviz.integrated_gradients(model, x[:1], 0, tolerance=tol)
    assert int(alone.passes[0]) == int(r.passes[0])
    torch.testing.assert_close(alone.attribution[0], r.attribution[0])


def test_tolerance_on_relu_net_beats_fixed_steps():
    """A ReLU network's integrand is a staircase: the adaptive mode meets 1% on every image
    and, per image, never needs more points than the fixed grid that meets it on all."""
    net = small_net()
    torch.manual_seed(2)
    x = torch.randn(6, 3, 10, 10, dtype=torch.float64) * torch.tensor([0.3, 1, 3, 1, 0.5, 2],
                                                                       dtype=torch.float64).view(-1, 1, 1, 1)
    r = cnnviz.integrated_gradients(net, x, tolerance=0.01, batch_size=64)
    assert r.converged.all()
    assert (relative_gap(net, x, r) <= 0.01).all()
    ref = trapezoid_reference(net, x, r.target.tolist())
    rel = (r.attribution - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    assert rel.max() < 0.1
    fixed = next(n for n in (9, 17, 33, 65, 129, 257, 513, 1025)
                 if (relative_gap(net, x, cnnviz.integrated_gradients(net, x, r.target, steps=n, batch_size=256))
                     <= 0.01).all())
    assert int(r.passes.sum()) < x.shape[0] * fixed


def test_tolerance_budget_exhausted_warns():
    model = Curved()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match=r"2 of 2 images .* did not reach tolerance 1e-09 within max_passes=12"):
        r = cnnviz.integrated_gradients(model, x, 0, tolerance=1e-9, max_passes=12)
    assert not r.converged.any()
    assert (r.passes <= 12).all() and (r.relative_error > 1e-9).all()
    torch.testing.assert_close(r.delta, r.attribution.sum((1, 2, 3)) - (r.score - r.baseline_score))
    # Stopped by the progress callback: a partial result, no convergence warning.
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = cnnviz.integrated_gradients(model, x, 0, tolerance=1e-3, batch_size=3,
                                        progress=lambda i, n, v: calls.append((i, n)) or len(calls) < 2)
    assert s.stopped_early and int(s.passes.sum()) == 6
    assert calls[0] == (3, 2 * cnnviz._C.IntegratedGradientsOptions().max_passes)


def test_fixed_steps_report_passes():
    model = Curved()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    r = cnnviz.integrated_gradients(model, x, 0, steps=7)
    assert r.passes.tolist() == [7, 7, 7] and r.converged is None and r.relative_error is None
    assert model.grad_rows == 21


def test_tolerance_bad_input():
    model = Curved()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    for bad in (0, -0.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tolerance must be a positive finite number"):
            cnnviz.integrated_gradients(model, x, tolerance=bad)
    with pytest.raises(TypeError, match="tolerance must be a number"):
        cnnviz.integrated_gradients(model, x, tolerance="0.01")
    with pytest.raises(ValueError, match=r"max_passes \(4\) must be at least initial_steps \(9\)"):
        cnnviz.integrated_gradients(model, x, tolerance=0.01, max_passes=4)
    with pytest.raises(ValueError, match="initial_steps must be at least 2"):
        cnnviz.integrated_gradients(model, x, tolerance=0.01, initial_steps=1)
    with pytest.raises(ValueError, match="give one of them"):
        cnnviz.integrated_gradients(model, x, tolerance=0.01, steps=50)
    with pytest.raises(ValueError, match="method applies to fixed steps only"):
        cnnviz.integrated_gradients(model, x, tolerance=0.01, method="gauss_legendre")


def test_tolerance_resnet20(resnet20, cifar_samples):
    """The pretrained ResNet-20 on 4 CIFAR-10 samples (all 20 in benchmarks/compare_ig_adaptive.py)."""
    x = torch.cat([load(p) for p, _ in cifar_samples[:4]])
    r = cnnviz.integrated_gradients(resnet20, x, tolerance=0.01, batch_size=64)
    assert r.converged.all()
    assert (relative_gap(resnet20, x, r) <= 0.01).all()
