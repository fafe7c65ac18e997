"""cnnviz.alpha_norm, total_variation, euclidean_loss against plain autograd references."""
import math

import pytest
import torch

import cnnviz
from cnnviz import _C


# Independent references: the composed expressions, differentiated by autograd.
def ref_alpha(x, a):
    return x.abs().pow(a).sum()


def ref_tv(x, b):
    c = x[..., :-1, :-1]
    return ((x[..., :-1, 1:] - c).pow(2) + (x[..., 1:, :-1] - c).pow(2)).pow(b / 2).sum()


def ref_euclid(t, c):
    return (c - t).pow(2).sum() / t.pow(2).sum()


IMPLS = ["automatic", "composed"]  # the fused CPU kernels and the device fallback


def value_and_grad(f, x):
    x = x.detach().clone().requires_grad_(True)
    v = f(x)
    (g,) = torch.autograd.grad(v, x)
    return v, g


def assert_matches(f, ref, x, rtol):
    v, g = value_and_grad(f, x)
    vr, gr = value_and_grad(ref, x.double())
    assert v.dim() == 0 and v.dtype == x.dtype and g.dtype == x.dtype
    torch.testing.assert_close(v.double(), vr, rtol=rtol, atol=0)
    torch.testing.assert_close(g.double(), gr, rtol=rtol, atol=rtol * gr.abs().max().item())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [1, 1.5, 2, 3, 6, 0.7, 2.5, 9.25])
def test_alpha_norm_matches_reference(impl, dtype, alpha):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 13, dtype=dtype)
    rtol = 2e-4 if dtype == torch.float32 else 1e-10
    assert_matches(lambda t: _C.alpha_norm(t, alpha, impl), lambda t: ref_alpha(t, alpha), x, rtol)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta", [1, 2, 3, 6, 0.5, 1.5, 2.5])
@pytest.mark.parametrize("shape", [(2, 3, 9, 12), (3, 10, 7)])
def test_total_variation_matches_reference(impl, dtype, beta, shape):
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=dtype)
    rtol = 2e-4 if dtype == torch.float32 else 1e-10
    assert_matches(lambda t: _C.total_variation(t, beta, impl), lambda t: ref_tv(t, beta), x, rtol)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_euclidean_loss_matches_reference_in_both_arguments(impl, dtype):
    torch.manual_seed(2)
    t = torch.randn(2, 16, 5, 7, dtype=dtype, requires_grad=True)
    c = torch.randn(2, 16, 5, 7, dtype=dtype, requires_grad=True)
    v = _C.euclidean_loss(t, c, impl)
    g = torch.autograd.grad(v, (t, c))
    td, cd = (u.detach().double().requires_grad_(True) for u in (t, c))
    vr = ref_euclid(td, cd)
    gr = torch.autograd.grad(vr, (td, cd))
    rtol = 2e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(v.double(), vr, rtol=rtol, atol=0)
    for a, b in zip(g, gr):
        torch.testing.assert_close(a.double(), b, rtol=rtol, atol=rtol * b.abs().max().item())


def test_hand_computed_values():
    x = torch.tensor([[[0.0, 1.0], [3.0, 5.0]]], dtype=torch.float64, requires_grad=True)
    v = cnnviz.total_variation(x, 2)  # the one term: (1 - 0)^2 + (3 - 0)^2
    assert v.item() == pytest.approx(10)
    (g,) = torch.autograd.grad(v, x)
    assert g.tolist() == [[[-8.0, 2.0], [6.0, 0.0]]]
    assert cnnviz.total_variation(x, 1).item() == pytest.approx(math.sqrt(10))
    assert cnnviz.alpha_norm(torch.tensor([1.0, -2.0]), 3).item() == pytest.approx(9)
    t = torch.tensor([3.0, 4.0])
    assert cnnviz.euclidean_loss(t, torch.zeros(2)).item() == pytest.approx(1)
    assert cnnviz.euclidean_loss(t, 2 * t).item() == pytest.approx(1)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_and_gradgradcheck_in_double(impl):
    torch.manual_seed(3)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    cases = [
        (lambda x: _C.alpha_norm(x, 6, impl), (x,)),
        (lambda x: _C.alpha_norm(x, 2.5, impl), (x,)),
        (lambda x: _C.alpha_norm(x, 1.3, impl), (x,)),
        (lambda x: _C.total_variation(x, 2, impl), (x,)),
        (lambda x: _C.total_variation(x, 1, impl), (x,)),
        (lambda x: _C.total_variation(x, 1.7, impl), (x,)),
        (lambda x: _C.total_variation(x[0], 3, impl), (x,)),
        (lambda t, x: _C.euclidean_loss(t, x, impl), (t, x)),
    ]
    for f, inputs in cases:
        assert torch.autograd.gradcheck(f, inputs)
        # Double backward runs the composed expressions, also after the fused forward.
        assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zeros_give_zero_gradient_without_nan(impl, dtype):
    x = torch.tensor([0.0, 0.0, 1.5, -2.0, 0.0], dtype=dtype)
    for a in (0.3, 0.5, 1, 1.5):
        _, g = value_and_grad(lambda t: _C.alpha_norm(t, a, impl), x)
        assert torch.isfinite(g).all()
        assert g[0] == 0 and g[1] == 0 and g[4] == 0
        assert g[2].item() == pytest.approx(a * 1.5 ** (a - 1), rel=1e-5)
        assert g[3].item() == pytest.approx(-a * 2.0 ** (a - 1), rel=1e-5)
    flat = torch.full((1, 3, 6, 5), 0.25, dtype=dtype)
    ramp = flat.clone()
    ramp[..., 3:, :] = torch.arange(15, dtype=dtype).view(3, 5)  # flat top, varying bottom
    for b in (0.5, 1, 1.5, 2):
        v, g = value_and_grad(lambda t: _C.total_variation(t, b, impl), flat)
        assert v.item() == 0 and (g == 0).all()
        v, g = value_and_grad(lambda t: _C.total_variation(t, b, impl), ramp)
        assert torch.isfinite(v) and torch.isfinite(g).all()
        _, gr = value_and_grad(lambda t: ref_tv(t, b), ramp.double())
        torch.testing.assert_close(g[..., 4:, :].double(), gr[..., 4:, :], rtol=1e-4, atol=1e-6)


def test_tiny_differences_do_not_overflow_in_float():
    for tiny in (1e-20, 1e-30):  # squares are denormal or 0 in float
        x = torch.zeros(1, 1, 3, 3)
        x[0, 0, 1, 1] = tiny
        for b in (0.5, 1, 1.5):
            _, g = value_and_grad(lambda t: cnnviz.total_variation(t, b), x)
            assert torch.isfinite(g).all()


def test_results_are_zero_dim_and_connected_to_autograd():
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    t = torch.randn(1, 3, 8, 8)
    loss = cnnviz.euclidean_loss(t, x * 3) + 1e-3 * cnnviz.alpha_norm(x, 6) + 1e-2 * cnnviz.total_variation(x, 2)
    assert loss.dim() == 0 and loss.requires_grad and loss.grad_fn is not None
    loss.backward()  # into the leaf's .grad, as the notebook does
    xr = x.detach().clone().requires_grad_(True)
    ref = ref_euclid(t, xr * 3) + 1e-3 * ref_alpha(xr, 6) + 1e-2 * ref_tv(xr, 2)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-6)
    # Without grad requirements (or under no_grad) the results are plain tensors.
    assert not cnnviz.alpha_norm(t, 2).requires_grad
    with torch.no_grad():
        assert cnnviz.total_variation(x, 2).grad_fn is None


def test_non_contiguous_inputs():
    torch.manual_seed(4)
    base = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    for x in (base.to(memory_format=torch.channels_last), base.transpose(2, 3), base[:, :, ::2, 1::2]):
        assert not x.is_contiguous()
        assert_matches(lambda t: cnnviz.total_variation(t, 1.5), lambda t: ref_tv(t, 1.5), x, 1e-10)
        assert_matches(lambda t: cnnviz.alpha_norm(t, 6), lambda t: ref_alpha(t, 6), x, 1e-10)
        torch.testing.assert_close(cnnviz.euclidean_loss(x.contiguous() + 1, x), ref_euclid(x + 1, x))


def test_half_precision_runs_in_float():
    torch.manual_seed(5)
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.randn(1, 3, 16, 16).to(dtype).requires_grad_(True)
        v = cnnviz.total_variation(x, 2)
        assert v.dtype == torch.float32
        (g,) = torch.autograd.grad(v, x)
        assert g.dtype == dtype
        xf = x.detach().float().requires_grad_(True)
        vr = ref_tv(xf, 2)
        (gr,) = torch.autograd.grad(vr, xf)
        torch.testing.assert_close(v, vr, rtol=1e-5, atol=0)
        torch.testing.assert_close(g.float(), gr, rtol=2e-2, atol=2e-2)


def test_bad_input():
    x = torch.randn(1, 3, 4, 4)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha must be a positive"):
            cnnviz.alpha_norm(x, bad)
        with pytest.raises(ValueError, match="beta must be a positive"):
            cnnviz.total_variation(x, bad)
    for impl in IMPLS:
        nan = x.clone()
        nan[0, 1, 2, 2] = float("nan")
        with pytest.raises(ValueError, match="x contains NaN or infinity"):
            _C.alpha_norm(nan, 2, impl)
        with pytest.raises(ValueError, match="x contains NaN or infinity"):
            _C.total_variation(nan, 2, impl)
        corner = x.clone()
        corner[0, 2, 3, 3] = float("inf")  # enters no term, still rejected
        with pytest.raises(ValueError, match="NaN or infinity"):
            _C.total_variation(corner, 1, impl)
        with pytest.raises(ValueError, match="current contains NaN"):
            _C.euclidean_loss(x, nan, impl)
        with pytest.raises(ValueError, match="target contains NaN"):
            _C.euclidean_loss(nan, x, impl)
        with pytest.raises(ValueError, match="target is all zeros"):
            _C.euclidean_loss(torch.zeros(3), torch.ones(3), impl)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(C, H, W\)"):
        cnnviz.total_variation(torch.randn(4, 4), 2)
    with pytest.raises(ValueError, match="got shape"):
        cnnviz.total_variation(torch.randn(1, 1, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="differ in shape"):
        cnnviz.euclidean_loss(torch.randn(2, 3), torch.randn(3, 2))
    with pytest.raises(TypeError, match="differ in dtype"):
        cnnviz.euclidean_loss(torch.randn(2, 3), torch.randn(2, 3, dtype=torch.float64))
    for dtype in (torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64):
        xi = torch.ones(1, 3, 4, 4, dtype=dtype)
        with pytest.raises(TypeError, match="floating-point"):
            cnnviz.alpha_norm(xi, 2)
        with pytest.raises(TypeError, match="floating-point"):
            cnnviz.total_variation(xi, 2)
        with pytest.raises(TypeError, match="floating-point"):
            cnnviz.euclidean_loss(xi, xi)
    with pytest.raises(ValueError, match="is empty"):
        cnnviz.alpha_norm(torch.empty(0, 3), 2)
    with pytest.raises(ValueError, match="is empty"):
        cnnviz.total_variation(torch.empty(0, 3, 4, 4), 2)
    with pytest.raises(TypeError):
        cnnviz.alpha_norm([1.0, 2.0], 2)  # not a tensor
    with pytest.raises(ValueError, match="impl must be"):
        _C.alpha_norm(x, 2, "fast")
    with pytest.raises(ValueError, match="CPU float or double"):
        _C.alpha_norm(x.half(), 2, "fused")
    # A finite input whose value overflows is not an error.
    assert math.isinf(cnnviz.alpha_norm(torch.full((4,), 1e30), 2).item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_the_composed_path():
    torch.manual_seed(6)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(2, 3, 13, 11, device="cuda", dtype=dtype)
        t = torch.randn(2, 3, 13, 11, device="cuda", dtype=dtype)
        rtol = 1e-4 if dtype == torch.float32 else 1e-10
        for a in (1, 2.5, 6, 9.3):
            assert_matches(lambda u: cnnviz.alpha_norm(u, a), lambda u: ref_alpha(u, a), x, rtol)
        for b in (0.5, 1, 2, 3):
            assert_matches(lambda u: cnnviz.total_variation(u, b), lambda u: ref_tv(u, b), x, rtol)
        assert_matches(lambda u: cnnviz.euclidean_loss(t, u), lambda u: ref_euclid(t.double(), u), x, rtol)
    x = torch.randn(1, 2, 5, 6, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda u: cnnviz.total_variation(u, 1.5), (x,))
    flat = torch.zeros(1, 3, 8, 8, device="cuda")
    _, g = value_and_grad(lambda u: cnnviz.total_variation(u, 1) + cnnviz.alpha_norm(u, 0.5), flat)
    assert (g == 0).all()
    with pytest.raises(ValueError, match="NaN or infinity"):
        cnnviz.alpha_norm(torch.tensor([1.0, float("nan")], device="cuda"), 2)
    with pytest.raises(ValueError, match="different devices"):
        cnnviz.euclidean_loss(torch.ones(3, device="cuda"), torch.ones(3))
