"""cnnviz.metrics: SSIM against a plain numpy/scipy version of Wang et al., PSNR against its
formula, identities, gradients, bad input."""
import os

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

import cnnviz


def reference_ssim_2d(x: np.ndarray, y: np.ndarray, data_range: float, win: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004 on one channel: 2-D Gaussian window (MATLAB's fspecial), 'valid'
    filtering, C1 = (0.01 L)^2, C2 = (0.03 L)^2, mean of the SSIM map."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    r = np.arange(win) - (win - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    w = g / g.sum()
    filt = lambda a: correlate2d(a, w, mode="valid")  # noqa: E731
    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx**2
    vy = filt(y * y) - my**2
    cxy = filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def reference_ssim_hwc(x, y, data_range, **kw):
    return float(np.mean([reference_ssim_2d(x[..., c], y[..., c], data_range, **kw) for c in range(x.shape[2])]))


@pytest.fixture(scope="module")
def photo():
    try:
        path = os.path.join(cnnviz.data_dir(), "images", "astronaut.png")
    except FileNotFoundError:
        path = None
    if path is None or not os.path.exists(path):
        pytest.skip("sample data not found: set CNNVIZ_DATA")
    return cnnviz.load_image(path)[100:196, 150:230].contiguous()  # 96 x 80 crop


def test_ssim_matches_reference_on_a_real_photo(photo):
    rng = np.random.default_rng(0)
    a = photo.numpy()
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    blurred = cnnviz.resize_image(cnnviz.resize_image(photo, (24, 20)), (96, 80)).numpy()
    for b in (noisy, blurred):
        ref = reference_ssim_hwc(a, b, 255.0)
        got = cnnviz.ssim(a, b).item()  # numpy inputs, uint8 -> data range 255
        assert got == pytest.approx(ref, abs=1e-5)
        assert 0 < got < 1
    # The same images as a float batch in [0, 1].
    fa = torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255
    fb = torch.from_numpy(noisy).permute(2, 0, 1)[None].double() / 255
    assert cnnviz.ssim(fa, fb).item() == pytest.approx(reference_ssim_hwc(a, noisy, 255.0), abs=1e-9)
    # JPEG at lower quality is less similar.
    q = [cnnviz.ssim(cnnviz.decode_image(cnnviz.encode_image(photo, "jpeg", quality=k)), photo).item() for k in (10, 50, 95)]
    assert q[0] < q[1] < q[2] < 1


def test_ssim_batches_windows_and_reductions():
    torch.manual_seed(0)
    a = torch.rand(3, 2, 24, 20, dtype=torch.float64)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    per = cnnviz.ssim(a, b, reduction="none")
    assert per.shape == (3,)
    for n in range(3):
        ref = np.mean([reference_ssim_2d(a[n, c].numpy(), b[n, c].numpy(), 1.0) for c in range(2)])
        assert per[n].item() == pytest.approx(ref, abs=1e-9)
    assert cnnviz.ssim(a, b).item() == pytest.approx(per.mean().item())
    got = cnnviz.ssim(a[0, 0], b[0, 0], window_size=7, sigma=1.0).item()
    assert got == pytest.approx(reference_ssim_2d(a[0, 0].numpy(), b[0, 0].numpy(), 1.0, 7, 1.0), abs=1e-9)
    # data_range scales the constants: values in [0, 255] with data_range 255 = values in [0, 1].
    assert cnnviz.ssim(a * 255, b * 255, data_range=255).item() == pytest.approx(cnnviz.ssim(a, b).item())
    smap = cnnviz.ssim_map(a, b)
    assert smap.shape == (3, 2, 14, 10)
    assert smap.mean().item() == pytest.approx(cnnviz.ssim(a, b).item())


def test_identities():
    torch.manual_seed(1)
    a = torch.rand(2, 3, 16, 16)
    assert cnnviz.ssim(a, a).item() == pytest.approx(1.0, abs=1e-6)
    assert cnnviz.psnr(a, a).item() == float("inf")
    assert cnnviz.ssim(a, a.clone(), reduction="none").tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    u = (a[0].permute(1, 2, 0) * 255).to(torch.uint8)
    assert cnnviz.ssim(u, u).item() == pytest.approx(1.0, abs=1e-6)


def test_psnr_against_its_formula():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert cnnviz.psnr(a, b).item() == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-6)
    fa, fb = a / 255.0, b / 255.0
    assert cnnviz.psnr(fa, fb).item() == pytest.approx(10 * np.log10(1 / mse * 255**2), rel=1e-9)
    x = torch.zeros(3, 1, 4, 4, dtype=torch.float64)
    y = x + torch.tensor([0.1, 0.01, 0.0], dtype=torch.float64).view(3, 1, 1, 1)
    per = cnnviz.psnr(x, y, reduction="none")
    assert per[:2].tolist() == pytest.approx([20.0, 40.0])
    assert per[2].item() == float("inf")
    assert cnnviz.psnr(x * 255, y * 255, data_range=255)[()].item() == float("inf")  # mean with an inf


def test_ssim_gradient():
    torch.manual_seed(3)
    a = torch.rand(1, 1, 12, 13, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 1, 12, 13, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: cnnviz.ssim(t, b), (a,), eps=1e-6, atol=1e-6)
    # As a loss, a few gradient steps make an image more similar.
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    target = torch.rand(1, 3, 16, 16)
    start = cnnviz.ssim(x, target).item()
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        (1 - cnnviz.ssim(x, target)).backward()
        opt.step()
    assert cnnviz.ssim(x, target).item() > start + 0.2


def test_accepts_pil_images():
    from PIL import Image

    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert cnnviz.ssim(Image.fromarray(a), a).item() == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="differ in shape"):
        cnnviz.ssim(a, torch.rand(1, 3, 16, 15))
    with pytest.raises(ValueError, match="differ in dtype"):
        cnnviz.ssim(a, a.double())
    with pytest.raises(ValueError, match="smaller than the window"):
        cnnviz.ssim(torch.rand(1, 1, 8, 30), torch.rand(1, 1, 8, 30))
    with pytest.raises(ValueError):
        cnnviz.ssim(a, a, window_size=4)
    with pytest.raises(ValueError):
        cnnviz.ssim(a, a, sigma=-1)
    with pytest.raises(ValueError):
        cnnviz.ssim(a, a, data_range=0)
    with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean', 'max', got 'sum'"):
        cnnviz.ssim(a, a, reduction="sum")
    # max is a Reduction, but not one a similarity over images has.
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'none', got 'max'"):
        cnnviz.ssim(a, a, reduction="max")
    with pytest.raises(ValueError, match="psnr: reduction must be 'mean' or 'none'"):
        cnnviz.psnr(a, a, reduction="max")
    with pytest.raises(ValueError, match="channels-first"):
        cnnviz.ssim(torch.rand(3, 16, 16), torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="NaN"):
        cnnviz.ssim(torch.full((16, 16), float("nan")), torch.rand(16, 16))
    with pytest.raises(ValueError):
        cnnviz.psnr(torch.zeros(4, 4, dtype=torch.int64), torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError):
        cnnviz.psnr(a, a, data_range=-1)
    with pytest.raises(ValueError):
        cnnviz.psnr(torch.rand(5), torch.rand(5))
    with pytest.raises(TypeError):
        cnnviz.psnr([1, 2], [1, 2])


def test_wrappers_take_their_options_and_defaults_from_the_cpp_options():
    from _options_check import check_wrapper

    from cnnviz import _C

    check_wrapper(cnnviz.ssim, _C.SsimOptions)
    check_wrapper(cnnviz.ssim_map, _C.SsimOptions, not_arguments=("reduction",))  # a map is not reduced
    check_wrapper(cnnviz.psnr, _C.PsnrOptions)
    o = _C.SsimOptions()
    assert (o.window_size, o.sigma, o.k1, o.k2, o.data_range, o.reduction) == (11, 1.5, 0.01, 0.03, None, "mean")
    # Options set on the class are the ones used: a 7-wide window gives a 10x10 map of 16x16.
    o.window_size = 7
    assert _C.ssim_map(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), o).shape == (1, 1, 10, 10)
    with pytest.raises(ValueError, match="reduction must be one of"):
        o.reduction = "median"
