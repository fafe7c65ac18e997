"""cnnviz.maximize and top_filters: the same step as plain autograd through a Lucent-style
parameterization written here, objectives raised far above the start on pretrained
networks, one image per channel, progress, Ctrl-C, errors."""
import inspect
import signal

import pytest
import torch

import cnnviz
from cnnviz import _C

from _optimization_nets import (STD, TinyNet, activation, lucent_image, lucent_spectrum, no_parameter_grads,
                                normalize)


@pytest.fixture
def net():
    return TinyNet()


def test_defaults_come_from_the_cpp_options():
    d = _C.MaximizeOptions()
    params = inspect.signature(cnnviz.maximize).parameters
    for name in ("iterations", "optimizer", "learning_rate", "parameterization", "decay_power", "decorrelate",
                 "sigmoid", "transforms", "pad", "jitter", "scale_min", "scale_max", "rotate", "lambda_tv"):
        assert params[name].default == getattr(d, name), name
    assert params["size"].default == tuple(d.size)
    assert (d.parameterization, d.decorrelate, d.sigmoid, d.optimizer) == ("fourier", True, True, "adam")


def test_one_sgd_step_on_pixels_is_plain_autograd(net):
    """Pixels, no colour mixing, no sigmoid, no transforms: image = (p + 0.5 - mean) / std,
    so one SGD step moves the image by lr * g / std^2, g the plain-autograd gradient of the
    objective (channel mean minus priors) with respect to the image."""
    x0 = torch.randn(1, 3, 16, 16) * 0.5
    lr = 0.2
    r = cnnviz.maximize(net, "layer1.1", channel=3, iterations=1, optimizer="sgd", momentum=0.0, learning_rate=lr,
                        size=16, parameterization="pixel", decorrelate=False, sigmoid=False, transforms=False,
                        init_image=x0, lambda_tv=0.01, lambda_alpha=0.001, alpha=2)
    x = x0.clone().requires_grad_(True)
    tv = ((x[..., :-1, 1:] - x[..., :-1, :-1]).pow(2) + (x[..., 1:, :-1] - x[..., :-1, :-1]).pow(2)).sum()
    objective = activation(net, x, "layer1.1")[0, 3].mean() - 0.01 * tv - 0.001 * x.pow(2).sum()
    (g,) = torch.autograd.grad(objective, x)
    torch.testing.assert_close(r.image, x0 + lr * g / STD ** 2, rtol=1e-4, atol=1e-5)
    assert r.initial_objective[0].item() == pytest.approx(activation(net, x0, "layer1.1")[0, 3].mean().item(), rel=1e-4)
    assert no_parameter_grads(net)


def test_fourier_decorrelated_sigmoid_step_matches_a_lucent_style_reference(net):
    """The default parameterization against Lucent's fft_image + to_valid_rgb written in
    _optimization_nets: same start image, one SGD step in spectrum space."""
    x0 = normalize(torch.rand(1, 3, 16, 20) * 0.8 + 0.1)
    spectrum = lucent_spectrum(x0)
    torch.testing.assert_close(lucent_image(spectrum, 16, 20), x0, rtol=1e-4, atol=1e-4)
    lr = 0.5
    r = cnnviz.maximize(net, "layer1.1", channel=5, iterations=1, optimizer="sgd", momentum=0.0, learning_rate=lr,
                        size=(16, 20), transforms=False, init_image=x0)
    s = spectrum.clone().requires_grad_(True)
    v = activation(net, lucent_image(s, 16, 20), "layer1.1")[0, 5].mean()
    (g,) = torch.autograd.grad(v, s)
    expected = lucent_image((s + lr * g).detach(), 16, 20)
    torch.testing.assert_close(r.image, expected, rtol=1e-3, atol=1e-4)
    assert r.initial_objective[0].item() == pytest.approx(v.item(), rel=1e-3)


def test_a_mobilenet_channel_rises_far_above_the_start(mobilenet, data_dir):
    """top_filters picks the channels the cat photo excites most (challenge 2); maximize
    makes images (one per channel, one batch) whose activation of their channel, checked
    here with a forward hook, is far above the start image's and above the photo's."""
    cat = cnnviz.preprocess(cnnviz.load_image(f"{data_dir}/images/cat_chelsea.png"), size=80)
    top = cnnviz.top_filters(mobilenet, cat, "features.6", k=2)
    channels = top.channels[0].tolist()
    r = cnnviz.maximize(mobilenet, "features.6", channel=channels, iterations=25, size=80, seed=1)
    assert r.image.shape == (2, 3, 80, 80)
    act = activation(mobilenet, r.image, "features.6").mean((2, 3))
    on_cat = activation(mobilenet, cat, "features.6").mean((2, 3))[0]
    for i, c in enumerate(channels):
        assert act[i, c].item() == pytest.approx(r.objective[i].item(), rel=1e-3, abs=1e-4)
        # features.6 is a linear bottleneck (no ReLU): values are signed, of order 1.
        assert act[i, c] > r.initial_objective[i] + 1.5
        assert act[i, c] > 3 * on_cat[c]  # the photo's own top filters respond far less
        # Each image excites its own channel more than the other image does.
        assert act[i, c] > act[1 - i, c]
    assert r.losses[-1] < r.losses[0]
    assert no_parameter_grads(mobilenet)


def test_class_logits_of_a_cifar_resnet(resnet20):
    r = cnnviz.maximize(resnet20, logit=list(range(10)), iterations=40, size=32, pad=2, jitter=2, seed=0)
    with torch.no_grad():
        logits = resnet20(r.image)
    assert logits.argmax(1).tolist() == list(range(10))
    assert bool((r.objective > r.initial_objective + 1).all())


def test_neuron_and_direction_objectives(net):
    r = cnnviz.maximize(net, "layer1.1", channel=[1, 4], position=(2, 3), iterations=25, size=16, pad=2, jitter=1)
    act = activation(net, r.image, "layer1.1")
    torch.testing.assert_close(r.objective, torch.stack([act[0, 1, 2, 3], act[1, 4, 2, 3]]), rtol=1e-4, atol=1e-5)
    assert bool((r.objective > r.initial_objective + 0.5).all())
    d = torch.rand(2, 16)  # layer2.0 follows a ReLU: a direction with negative weight only could not rise
    r = cnnviz.maximize(net, "layer2.0", direction=d, iterations=25, size=16, pad=2, jitter=1, learning_rate=0.1)
    act = activation(net, r.image, "layer2.0")
    unit = d / d.norm(dim=1, keepdim=True)
    torch.testing.assert_close(r.objective, (act * unit[:, :, None, None]).sum(1).mean((1, 2)), rtol=1e-4, atol=1e-5)
    assert bool((r.objective > r.initial_objective + 0.5).all())


def test_top_filters_equals_a_hook_and_topk(net):
    x = torch.randn(3, 3, 16, 16)
    act = activation(net, x, "layer1.0")
    for reduction, stat in (("mean", act.mean((2, 3))), ("max", act.amax((2, 3)))):
        top = cnnviz.top_filters(net, x, "layer1.0", k=4, reduction=reduction)
        ref = stat.topk(4, dim=1)  # per image
        assert torch.equal(top.channels, ref.indices)
        torch.testing.assert_close(top.scores, ref.values.double(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="exceeds the 8 channels"):
        cnnviz.top_filters(net, x, "layer1.0", k=9)
    with pytest.raises(ValueError, match="k must be at least 1"):
        cnnviz.top_filters(net, x, "layer1.0", k=0)
    with pytest.raises(ValueError, match="reduction"):
        cnnviz.top_filters(net, x, "layer1.0", reduction="median")
    with pytest.raises(ValueError, match="unknown layer"):
        cnnviz.top_filters(net, x, "layer9")


def test_deterministic_progress_and_ctrl_c(net):
    kw = dict(iterations=4, size=16)
    a = cnnviz.maximize(net, "layer1.1", channel=0, seed=2, **kw)
    b = cnnviz.maximize(net, "layer1.1", channel=0, seed=2, **kw)
    c = cnnviz.maximize(net, "layer1.1", channel=0, seed=3, **kw)
    assert torch.equal(a.image, b.image) and not torch.allclose(a.image, c.image)
    r = cnnviz.maximize(net, "layer1.1", channel=0, iterations=10, size=16, progress=lambda s, t, l: s < 3)
    assert r.stopped_early and len(r.losses) == 3
    r = cnnviz.maximize(net, "layer1.1", channel=0, iterations=2, size=16, progress=True, snapshot_every=1)
    assert r.snapshot_steps == [1, 2]
    seen = []
    r = cnnviz.maximize(net, "layer1.1", channel=[0, 1], iterations=4, size=16, snapshot_every=2,
                        on_snapshot=lambda step, img: seen.append((step, img)))
    assert [s for s, _ in seen] == r.snapshot_steps == [2, 4]
    assert seen[-1][1].shape == (2, 3, 16, 16) and torch.equal(seen[-1][1], r.snapshots[-1])

    def press_ctrl_c(step, total, loss):
        if step == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.warns(RuntimeWarning, match="maximize interrupted"):
        r = cnnviz.maximize(net, "layer1.1", channel=0, iterations=50, size=16, progress=press_ctrl_c)
    assert r.interrupted and len(r.losses) < 50 and r.image.shape == (1, 3, 16, 16)


def test_bad_input_gets_clear_errors(net):
    kw = dict(iterations=2, size=16)
    with pytest.raises(IndexError, match="channel 8 is out of range for layer 'layer1.0' with 8 channels"):
        cnnviz.maximize(net, "layer1.0", channel=8, **kw)
    with pytest.raises(IndexError, match="class 5 is out of range"):
        cnnviz.maximize(net, logit=5, **kw)
    with pytest.raises(IndexError, match="outside the"):
        cnnviz.maximize(net, "layer1.0", channel=0, position=(40, 0), **kw)
    with pytest.raises(ValueError, match="unknown layer"):
        cnnviz.maximize(net, "layer3", channel=0, **kw)
    with pytest.raises(ValueError, match="exactly one of"):
        cnnviz.maximize(net, "layer1.0", channel=0, logit=1, **kw)
    with pytest.raises(ValueError, match="exactly one of"):
        cnnviz.maximize(net, "layer1.0", **kw)
    with pytest.raises(ValueError, match="needs a layer name"):
        cnnviz.maximize(net, channel=0, **kw)
    with pytest.raises(ValueError, match="the direction has 3 entries"):
        cnnviz.maximize(net, "layer1.0", direction=torch.randn(3), **kw)
    with pytest.raises(ValueError, match="iterations must be positive"):
        cnnviz.maximize(net, "layer1.0", channel=0, iterations=0, size=16)
    with pytest.raises(ValueError, match="learning_rate"):
        cnnviz.maximize(net, "layer1.0", channel=0, learning_rate=float("nan"), **kw)
    with pytest.raises(ValueError, match="parameterization must be one of 'pixel', 'fourier'"):
        cnnviz.maximize(net, "layer1.0", channel=0, parameterization="cppn", **kw)
    with pytest.raises(ValueError, match="init_image must be"):
        cnnviz.maximize(net, "layer1.0", channel=0, init_image=torch.zeros(1, 3, 8, 8), **kw)
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(4), torch.nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match="smaller than the layer needs"):
        cnnviz.maximize(tiny, "2", channel=0, iterations=2, size=2, transforms=False)
