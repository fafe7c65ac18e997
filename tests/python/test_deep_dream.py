"""cnnviz.deep_dream: one step equals plain autograd, octaves raise the layer's activation
energy on a real photo, valid pixels, determinism, progress, Ctrl-C, errors."""
import inspect
import signal

import pytest
import torch

import cnnviz
from cnnviz import _C

from _optimization_nets import TinyNet, activation, no_parameter_grads, valid_range


@pytest.fixture
def net():
    return TinyNet()


def test_defaults_come_from_the_cpp_options():
    d = _C.DeepDreamOptions()
    params = inspect.signature(cnnviz.deep_dream).parameters
    for name in ("iterations", "octaves", "octave_scale", "learning_rate", "jitter", "grad_blur_sigma",
                 "clamp_pixels", "seed", "snapshot_every"):
        assert params[name].default == getattr(d, name), name


def test_one_step_is_normalized_gradient_ascent(net):
    x = torch.randn(2, 3, 16, 16)
    r = cnnviz.deep_dream(net, x, "layer1.1", iterations=1, octaves=1, jitter=0, clamp_pixels=False, learning_rate=0.1)
    z = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(activation(net, z, "layer1.1").pow(2).mean(), z)
    expected = x + 0.1 * g / g.abs().mean((1, 2, 3), keepdim=True)  # normalized per image
    torch.testing.assert_close(r.image, expected, rtol=1e-4, atol=1e-5)
    assert no_parameter_grads(net)


def test_dreaming_raises_the_activation_energy_of_a_photo(mobilenet, data_dir):
    x = cnnviz.preprocess(cnnviz.load_image(f"{data_dir}/images/cat_chelsea.png"), size=96)
    layer = "features.7"
    r = cnnviz.deep_dream(mobilenet, x, layer, iterations=4, octaves=3, jitter=8)
    assert r.image.shape == x.shape and len(r.losses) == 12
    energy = lambda t: activation(mobilenet, t, layer).pow(2).mean().item()  # noqa: E731
    assert energy(r.image) > 1.5 * energy(x)
    lo, hi = valid_range()
    assert bool((r.image >= lo - 1e-5).all()) and bool((r.image <= hi + 1e-5).all())
    # Still recognisably the photo: the dream adds detail, it does not replace the image.
    assert cnnviz.ssim(cnnviz.deprocess(r.image), cnnviz.deprocess(x)).item() > 0.2


def test_deterministic_layers_progress_and_ctrl_c(net):
    x = torch.randn(1, 3, 24, 24)
    kw = dict(iterations=3, octaves=2, jitter=3)
    a = cnnviz.deep_dream(net, x, "layer1.1", seed=1, **kw)
    assert torch.equal(a.image, cnnviz.deep_dream(net, x, "layer1.1", seed=1, **kw).image)
    assert not torch.allclose(a.image, cnnviz.deep_dream(net, x, "layer1.1", seed=2, **kw).image)
    assert cnnviz.deep_dream(net, x, ["stem", "layer2.0"], **kw).image.shape == x.shape
    r = cnnviz.deep_dream(net, x, "layer1.1", progress=lambda s, t, l: s < 2, **kw)
    assert r.stopped_early and len(r.losses) == 2 and r.image.shape == x.shape
    assert len(cnnviz.deep_dream(net, x, "layer1.1", progress=True, **kw).losses) == 6
    seen = []
    r = cnnviz.deep_dream(net, x, "layer1.1", snapshot_every=3, on_snapshot=lambda s, img: seen.append((s, img)), **kw)
    assert [s for s, _ in seen] == [3, 6]
    assert seen[0][1].shape[2] < x.shape[2] and torch.equal(seen[1][1], r.image)

    def press_ctrl_c(step, total, loss):
        if step == 1:
            signal.raise_signal(signal.SIGINT)

    with pytest.warns(RuntimeWarning, match="deep_dream interrupted"):
        r = cnnviz.deep_dream(net, x, "layer1.1", iterations=20, octaves=2, progress=press_ctrl_c)
    assert r.interrupted and len(r.losses) < 40 and r.image.shape == x.shape


def test_bad_input_gets_clear_errors(net):
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="unknown layer"):
        cnnviz.deep_dream(net, x, "layer7")
    with pytest.raises(ValueError, match="empty"):
        cnnviz.deep_dream(net, x, [])
    with pytest.raises(ValueError, match="octaves must be at least 1"):
        cnnviz.deep_dream(net, x, "stem", octaves=0)
    with pytest.raises(ValueError, match="octave_scale"):
        cnnviz.deep_dream(net, x, "stem", octave_scale=0.5)
    with pytest.raises(ValueError, match="iterations must be positive"):
        cnnviz.deep_dream(net, x, "stem", iterations=0)
    with pytest.raises(ValueError, match="learning_rate"):
        cnnviz.deep_dream(net, x, "stem", learning_rate=float("inf"))
    with pytest.raises(ValueError, match="to nothing"):
        cnnviz.deep_dream(net, x, "stem", octaves=12, octave_scale=2)
    with pytest.raises(ValueError, match="must be a batch"):
        cnnviz.deep_dream(net, x[0], "stem")
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(4), torch.nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match="smaller than the layer needs"):
        cnnviz.deep_dream(tiny, torch.randn(1, 3, 8, 8), "2", octaves=3, octave_scale=2)
