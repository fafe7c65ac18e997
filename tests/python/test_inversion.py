"""cnnviz.invert / invert_layers / inversion_loss: the same steps as a plain PyTorch loop,
any layer by qualified name, deeper layers reconstruct worse, progress, Ctrl-C, errors."""
import inspect
import signal

import pytest
import torch

import cnnviz
from cnnviz import _C

from _optimization_nets import TinyNet, activation, no_parameter_grads, ref_inversion_loss, valid_range


@pytest.fixture
def net():
    return TinyNet()


def test_defaults_come_from_the_cpp_options():
    d = _C.InversionOptions()
    params = inspect.signature(cnnviz.invert).parameters
    for name in ("iterations", "optimizer", "learning_rate", "momentum", "alpha", "lambda_alpha", "tv_beta",
                 "lambda_tv", "init", "seed", "jitter", "clamp_pixels", "snapshot_every"):
        assert params[name].default == getattr(d, name), name
    # Adam converges on every sample model; the notebook's SGD(lr=1e3, momentum=0.9) is one
    # option away. The priors are the notebook's: alpha 6 / 1e-7, beta 2 / 1e-8.
    assert (d.optimizer, d.learning_rate, d.momentum) == ("adam", 0.1, 0.9)
    nb = _C.InversionOptions.notebook()
    assert (nb.optimizer, nb.learning_rate, nb.momentum) == ("sgd", 1e3, 0.9)
    assert (d.alpha, d.lambda_alpha, d.tv_beta, d.lambda_tv) == (6, 1e-7, 2, 1e-8)


@pytest.mark.parametrize("optimizer,lr,momentum", [("sgd", 0.3, 0.0), ("sgd", 0.3, 0.9), ("adam", 0.05, 0.9)])
def test_steps_equal_a_plain_pytorch_loop(net, optimizer, lr, momentum):
    """The gradient used is plain autograd's on the same objective: three steps of
    cnnviz.invert equal three steps of torch.optim on the objective written here."""
    x = torch.randn(1, 3, 16, 16)
    z0 = torch.randn(1, 3, 16, 16)
    la, alpha, lt, beta = 1e-3, 3.0, 1e-2, 1.5
    r = cnnviz.invert(net, x, "layer1.1", iterations=3, optimizer=optimizer, learning_rate=lr, momentum=momentum,
                      lambda_alpha=la, alpha=alpha, lambda_tv=lt, tv_beta=beta, init=z0, clamp_pixels=False)
    target = activation(net, x, "layer1.1").detach()
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.SGD([z], lr=lr, momentum=momentum) if optimizer == "sgd" else torch.optim.Adam([z], lr=lr)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = ref_inversion_loss(net, target, z, "layer1.1", la, alpha, lt, beta)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.testing.assert_close(r.image, z.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r.losses, torch.tensor(losses, dtype=torch.float64), rtol=1e-4, atol=1e-7)
    assert r.losses.dtype == torch.float64 and r.image.shape == x.shape
    assert r.final_loss == pytest.approx(
        ref_inversion_loss(net, target, z.detach(), "layer1.1", la, alpha, lt, beta).item(), rel=1e-4)
    # Gradients went to the image only.
    for p in net.parameters():
        p.grad = None
    cnnviz.invert(net, x, "layer2.0", iterations=2)
    assert no_parameter_grads(net)


def test_inversion_loss_is_the_plain_objective(net):
    x = torch.randn(2, 3, 16, 16)
    z = torch.randn(2, 3, 16, 16, requires_grad=True)
    loss = cnnviz.inversion_loss(net, x, z, "layer1.0.conv", lambda_alpha=1e-4, lambda_tv=1e-3)
    (g,) = torch.autograd.grad(loss, z)
    t = activation(net, x, "layer1.0.conv").detach()
    a = activation(net, z, "layer1.0.conv")
    # Per image: each reconstruction's gradient does not depend on the others.
    ref = sum((a[i] - t[i]).pow(2).sum() / t[i].pow(2).sum() for i in range(2))
    ref = ref + 1e-4 * z.abs().pow(6).sum() + 1e-3 * ((z[..., :-1, 1:] - z[..., :-1, :-1]).pow(2)
                                                     + (z[..., 1:, :-1] - z[..., :-1, :-1]).pow(2)).sum()
    (g_ref,) = torch.autograd.grad(ref, z)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-7)


def test_loss_falls_clamped_and_deterministic(net):
    x = torch.randn(1, 3, 20, 20).clamp(-2, 2)
    kw = dict(iterations=40, optimizer="adam", learning_rate=0.1, seed=3)
    a = cnnviz.invert(net, x, "layer1.1", **kw)
    assert a.losses[-1] < 0.3 * a.losses[0] and a.final_loss < 0.3 * a.losses[0]
    lo, hi = valid_range()
    assert bool((a.image >= lo - 1e-6).all()) and bool((a.image <= hi + 1e-6).all())
    b = cnnviz.invert(net, x, "layer1.1", **kw)
    assert torch.equal(a.image, b.image)
    c = cnnviz.invert(net, x, "layer1.1", **{**kw, "seed": 4})
    assert not torch.allclose(a.image, c.image)
    jittered = [cnnviz.invert(net, x, "layer1.1", iterations=5, jitter=2, seed=s).image for s in (5, 5, 6)]
    assert torch.equal(jittered[0], jittered[1]) and not torch.allclose(jittered[0], jittered[2])
    z = cnnviz.invert(net, x, "layer1.1", iterations=1, learning_rate=1e-12, init="zeros")
    assert z.image.abs().max() < 1e-6
    snap = cnnviz.invert(net, x, "layer1.1", iterations=6, snapshot_every=3)
    assert snap.snapshot_steps == [3, 6] and len(snap.snapshots) == 2
    assert torch.equal(snap.snapshots[-1], snap.image)
    seen = []
    live = cnnviz.invert(net, x, "layer1.1", iterations=6, snapshot_every=3,
                         on_snapshot=lambda step, img: seen.append((step, img)))
    assert [s for s, _ in seen] == [3, 6]
    assert all(torch.equal(img, ref) for (_, img), ref in zip(seen, live.snapshots))
    with pytest.raises(ValueError, match="snapshot_every"):
        cnnviz.invert(net, x, "layer1.1", iterations=2, on_snapshot=lambda s, i: None)
    with pytest.raises(ValueError, match="callable"):
        cnnviz.invert(net, x, "layer1.1", iterations=2, snapshot_every=1, on_snapshot=3)


def test_any_layer_of_a_resnet_by_qualified_name(resnet20, cifar_samples):
    x = cnnviz.preprocess(cnnviz.load_image(cifar_samples[0][0]), size=32)
    r = cnnviz.invert(resnet20, x, "layer3.1", iterations=25, optimizer="adam", learning_rate=0.1)
    assert r.losses[-1] < 0.5 * r.losses[0]
    assert no_parameter_grads(resnet20)


def test_invert_layers_shares_the_target_pass_and_batches(net):
    x = torch.randn(2, 3, 16, 16)
    layers = ["stem", "layer1.1", "layer2.0.conv"]
    kw = dict(iterations=4, learning_rate=50.0, jitter=1)
    one_by_one = cnnviz.invert_layers(net, x, layers, **kw)
    batched = cnnviz.invert_layers(net, x, layers, batch_layers=True, **kw)
    assert list(one_by_one) == layers and list(batched) == layers
    for layer in layers:
        torch.testing.assert_close(one_by_one[layer].image, batched[layer].image, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(one_by_one[layer].image, cnnviz.invert(net, x, layer, **kw).image)


def test_deeper_layers_reconstruct_worse(mobilenet, data_dir):
    """On the pretrained MobileNetV2 and a cat photo, reconstructions from deeper layers are
    further from the original: pixel MSE (normalized space) rises and SSIM (on the
    deprocessed 8-bit images) falls with depth."""
    x = cnnviz.preprocess(cnnviz.load_image(f"{data_dir}/images/cat_chelsea.png"), size=112)
    layers = ["features.1", "features.4", "features.14"]
    results = cnnviz.invert_layers(mobilenet, x, layers, iterations=50, optimizer="adam", learning_rate=0.1)
    mse = [(results[l].image - x).pow(2).mean().item() for l in layers]
    original = cnnviz.deprocess(x)
    ssim = [cnnviz.ssim(cnnviz.deprocess(results[l].image), original).item() for l in layers]
    assert mse[0] < mse[1] < mse[2], mse
    assert ssim[0] > ssim[1] > ssim[2], ssim
    assert mse[2] > 1.5 * mse[0]


def test_progress_callback_and_stop(net):
    x = torch.randn(1, 3, 16, 16)
    seen = []

    def cb(step, total, loss):
        seen.append((step, total))
        return step < 3

    r = cnnviz.invert(net, x, "layer1.1", iterations=10, progress=cb)
    assert seen == [(1, 10), (2, 10), (3, 10)]
    assert r.stopped_early and not r.interrupted and len(r.losses) == 3
    r = cnnviz.invert(net, x, "layer1.1", iterations=3, progress=True)  # a tqdm bar
    assert len(r.losses) == 3
    totals = set()
    cnnviz.invert_layers(net, x, ["stem", "layer1.0"], iterations=2, progress=lambda s, t, l: totals.add(t))
    assert totals == {4}


def test_ctrl_c_returns_the_partial_result_with_a_warning(net):
    x = torch.randn(1, 3, 16, 16)

    def press_ctrl_c(step, total, loss):
        if step == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.warns(RuntimeWarning, match="interrupted"):
        r = cnnviz.invert(net, x, "layer1.1", iterations=50, progress=press_ctrl_c)
    assert r.interrupted and r.stopped_early
    assert 2 <= len(r.losses) < 50
    assert r.image.shape == x.shape


def test_bad_input_gets_clear_errors(net):
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="unknown layer 'layer1.7'; closest names: layer1"):
        cnnviz.invert(net, x, "layer1.7")
    with pytest.raises(ValueError, match="iterations must be positive"):
        cnnviz.invert(net, x, "stem", iterations=0)
    for lr in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="learning_rate"):
            cnnviz.invert(net, x, "stem", learning_rate=lr)
    with pytest.raises(ValueError, match="optimizer must be one of 'sgd', 'adam'"):
        cnnviz.invert(net, x, "stem", optimizer="lbfgs")
    with pytest.raises(ValueError, match="init must be one of"):
        cnnviz.invert(net, x, "stem", init="ones")
    with pytest.raises(ValueError, match="init_image must have x's shape"):
        cnnviz.invert(net, x, "stem", init=torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="must be a batch"):
        cnnviz.invert(net, x[0], "stem")
    with pytest.raises(ValueError, match="NaN"):
        cnnviz.invert(net, torch.full_like(x, float("nan")), "stem")
    with pytest.raises(ValueError, match="wrong channel count"):
        cnnviz.invert(net, torch.randn(1, 4, 16, 16), "stem")
    with pytest.raises(ValueError, match="empty"):
        cnnviz.invert_layers(net, x, [])
    with pytest.raises(ValueError, match="diverged"):
        cnnviz.invert(net, x, "layer1.1", learning_rate=1e30, clamp_pixels=False)


def test_an_image_too_small_for_the_layer():
    # A 3 x 3 image cannot go through a 4 x 4 pooling: the model's own error is rethrown
    # with the input shape and the layer.
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(4), torch.nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match=r"input of shape \[1, 3, 3, 3\] while computing layer '2' "
                                         r"\(is the image smaller than the layer needs"):
        cnnviz.invert(model, torch.randn(1, 3, 3, 3), "2", iterations=2)


def test_default_settings_converge_where_the_notebooks_saturate(resnet20, cifar_samples):
    """The default (Adam, lr 0.1) reconstructs ResNet-20's layer2 closely; the notebook's
    SGD at lr 1e3 (``settings="notebook"``) pins the image to the clamp and stalls."""
    x = cnnviz.preprocess(cnnviz.load_image(cifar_samples[0][0]), model=resnet20)
    default = cnnviz.invert(resnet20, x, "layer2", iterations=100)
    notebook = cnnviz.invert(resnet20, x, "layer2", iterations=100, settings="notebook")
    assert default.feature_loss < 0.1, default
    assert notebook.feature_loss > 3 * default.feature_loss, (default, notebook)
    # The feature loss is reported apart from the priors, and they add up to final_loss.
    for r in (default, notebook):
        assert r.prior_loss > 0
        assert abs(r.feature_loss + r.prior_loss - r.final_loss) < 1e-9 * max(1.0, abs(r.final_loss))
    # An argument given explicitly (not at its default) wins over the settings.
    mixed = cnnviz.invert(resnet20, x, "layer2", iterations=3, settings="notebook", learning_rate=500.0)
    ref = cnnviz.invert(resnet20, x, "layer2", iterations=3, optimizer="sgd", learning_rate=500.0, momentum=0.9)
    assert torch.equal(mixed.image, ref.image)
    with pytest.raises(ValueError, match="settings must be one of"):
        cnnviz.invert(resnet20, x, "layer2", settings="fast")


def test_feature_loss_is_the_euclidean_term(net):
    """feature_loss against a direct computation of the normalized Euclidean distance."""
    x = torch.randn(1, 3, 16, 16)
    r = cnnviz.invert(net, x, "layer1.1", iterations=3)
    target, current = activation(net, x, "layer1.1"), activation(net, r.image, "layer1.1")
    ref = ((current - target) ** 2).sum() / (target ** 2).sum()
    assert r.feature_loss == pytest.approx(ref.item(), rel=1e-5)


def test_default_settings_converge_on_mobilenet(mobilenet, data_dir):
    x = cnnviz.preprocess(cnnviz.load_image(f"{data_dir}/images/cat_chelsea.png"), size=112)
    default = cnnviz.invert(mobilenet, x, "features.6", iterations=40)
    notebook = cnnviz.invert(mobilenet, x, "features.6", iterations=40, settings="notebook")
    # After 40 steps (measured: 0.26 against 0.47).
    assert default.feature_loss < 0.7 * notebook.feature_loss, (default, notebook)
