"""FGSM and PGD against plain-PyTorch references and on the pretrained MobileNetV2;
layer divergence against hooked activations."""
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

import cnnviz
from _attribution_nets import small_net

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def imagenet_batch(samples):
    imgs = [TF.to_tensor(TF.center_crop(TF.resize(Image.open(p).convert("RGB"), 256), 224)) for p, _ in samples]
    return (torch.stack(imgs) - MEAN) / STD


def fgsm_reference(model, x, label, eps):
    """FGSM written in pixels: normalize inside the forward, step, clamp."""
    pixels = (x * STD + MEAN).clone().requires_grad_(True)
    loss = F.cross_entropy(model((pixels - MEAN) / STD), label, reduction="sum")
    g = torch.autograd.grad(loss, pixels)[0]
    return (((pixels + eps * g.sign()).clamp(0, 1)) - MEAN) / STD


@pytest.fixture(scope="module")
def mobilenet_attacks(mobilenet, imagenet_samples):
    x = imagenet_batch(imagenet_samples)
    labels = torch.tensor([label for _, label in imagenet_samples])
    f = cnnviz.fgsm(mobilenet, x, eps=2 / 255)
    torch.manual_seed(0)
    p = cnnviz.pgd(mobilenet, x, eps=2 / 255, step=0.5 / 255, steps=5)
    return x, labels, f, p


def test_fgsm_and_pgd_fool_mobilenet(mobilenet_attacks):
    x, labels, f, p = mobilenet_attacks
    fgsm_flips = int(f.success.sum())
    pgd_flips = int(p.success.sum())
    # Measured: FGSM at 2/255 changes 19 of the 20 predictions, 5 PGD steps all 20.
    assert fgsm_flips >= 15, fgsm_flips
    assert pgd_flips > fgsm_flips or pgd_flips == 20, (fgsm_flips, pgd_flips)
    for r in (f, p):
        assert r.perturbation.abs().max() <= 2 / 255 + 1e-6
        pixels = r.adversarial * STD + MEAN
        assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
        torch.testing.assert_close(pixels - (x * STD + MEAN), r.perturbation, atol=1e-5, rtol=0)
        assert torch.equal(r.prediction_after, r.logits_after.argmax(1))
        assert torch.equal(r.success, r.prediction_after != r.target)
    assert torch.equal(f.target, f.prediction_before)


def test_fgsm_equals_reference(resnet20):
    torch.manual_seed(0)
    pixels = torch.rand(4, 3, 32, 32)
    x = (pixels - MEAN) / STD
    label = torch.tensor([0, 3, 5, 9])
    r = cnnviz.fgsm(resnet20, x, label, eps=8 / 255)
    torch.testing.assert_close(r.adversarial, fgsm_reference(resnet20, x, label, 8 / 255), rtol=1e-5, atol=1e-5)
    assert r.target.tolist() == label.tolist()
    # Targeted: the loss of the target class goes down.
    t = torch.tensor([1, 1, 1, 1])
    tr = cnnviz.fgsm(resnet20, x, t, eps=2 / 255, targeted=True)
    assert F.cross_entropy(tr.logits_after, t) < F.cross_entropy(tr.logits_before, t)


def test_pgd_targeted_and_projection(resnet20, cifar_samples):
    x = torch.stack([TF.to_tensor(Image.open(p).convert("RGB")) for p, _ in cifar_samples[:8]])
    x = (x - MEAN) / STD
    goal = torch.full((8,), 2)
    torch.manual_seed(0)
    r = cnnviz.pgd(resnet20, x, goal, eps=8 / 255, step=2 / 255, steps=10, targeted=True)
    assert int(r.success.sum()) >= 6
    assert torch.equal(r.success, r.prediction_after == 2)
    assert r.perturbation.abs().max() <= 8 / 255 + 1e-6
    # Without a random start and with one step PGD is FGSM with eps = step.
    one = cnnviz.pgd(resnet20, x, eps=8 / 255, step=3 / 255, steps=1, random_start=False)
    torch.testing.assert_close(one.adversarial, cnnviz.fgsm(resnet20, x, eps=3 / 255).adversarial)


def test_layer_divergence_equals_hooks(resnet20):
    torch.manual_seed(0)
    clean = torch.randn(2, 3, 32, 32)
    adv = clean + 0.05 * torch.randn_like(clean)
    layers = ["conv1", "layer1", "layer3.2"]
    d = cnnviz.layer_divergence(resnet20, clean, adv, layers)
    assert list(d) == layers
    for name in layers:
        acts = []
        h = resnet20.get_submodule(name).register_forward_hook(lambda m, i, o: acts.append(o.detach()))
        with torch.no_grad():
            resnet20(clean), resnet20(adv)
        h.remove()
        ref = (acts[1] - acts[0]).flatten(1).norm(dim=1) / acts[0].flatten(1).norm(dim=1)
        torch.testing.assert_close(d[name], ref, rtol=1e-4, atol=1e-6)


def test_bad_input():
    net = small_net(dtype=torch.float32)
    mean = torch.tensor(cnnviz.IMAGENET_MEAN).view(1, 3, 1, 1)
    x = (torch.rand(2, 3, 8, 8) - mean) / torch.tensor(cnnviz.IMAGENET_STD).view(1, 3, 1, 1)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        cnnviz.fgsm(net, x, eps=-0.1)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        cnnviz.pgd(net, x, eps=-0.1)
    with pytest.raises(ValueError, match="steps must be positive"):
        cnnviz.pgd(net, x, steps=0)
    with pytest.raises(ValueError, match="targeted attack needs a target"):
        cnnviz.pgd(net, x, targeted=True)
    with pytest.raises(IndexError, match="out of range"):
        cnnviz.fgsm(net, x, 7)
    with pytest.raises(ValueError, match="mean and std need 1 or 3 values"):
        cnnviz.fgsm(net, x, mean=[0.5, 0.5], std=[0.5, 0.5])
    with pytest.raises(ValueError, match="differ in shape"):
        cnnviz.layer_divergence(net, x, x[:1], ["conv1"])
    with pytest.raises(ValueError, match="unknown layer"):
        cnnviz.layer_divergence(net, x, x, ["conv7"])


def test_wrappers_take_their_options_and_defaults_from_the_cpp_options():
    from _options_check import check_wrapper

    from cnnviz import _C

    check_wrapper(cnnviz.fgsm, _C.FgsmOptions)
    check_wrapper(cnnviz.pgd, _C.PgdOptions)
    # The progress callback is an argument of pgd, not a property of the options.
    assert "progress" not in _C.PgdOptions._fields
    assert _C.PgdOptions._fields == ("eps", "step", "steps", "random_start", "targeted", "mean", "std")


def test_pgd_steps_stopped_early_and_repr():
    torch.manual_seed(0)
    model = small_net()
    x = (torch.rand(2, 3, 8, 8, dtype=torch.float64) - MEAN.double()) / STD.double()
    full = cnnviz.pgd(model, x, steps=6, random_start=False)
    assert full.steps == 6 and not full.stopped_early and not full.interrupted
    assert cnnviz.fgsm(model, x).steps == 1
    # A progress callable that returns False after step 2: the result is the iterate after 2 steps.
    stopped = cnnviz.pgd(model, x, steps=6, random_start=False, progress=lambda i, total, loss: i < 2)
    two = cnnviz.pgd(model, x, steps=2, random_start=False)
    assert stopped.steps == 2 and stopped.stopped_early and not stopped.interrupted
    torch.testing.assert_close(stopped.adversarial, two.adversarial)
    text = repr(stopped)
    assert text.startswith("AdversarialResult(adversarial=(2, 3, 8, 8)") and "steps=2" in text, text
    assert text.endswith("stopped_early)"), text
    assert "steps: gradient steps taken" in cnnviz.AdversarialResult.__doc__


def test_layer_divergence_takes_one_name_or_several():
    torch.manual_seed(0)
    model = small_net()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    adv = x + 0.1 * torch.randn_like(x)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)][:2]
    both = cnnviz.layer_divergence(model, x, adv, names)
    one = cnnviz.layer_divergence(model, x, adv, names[0])
    assert list(both) == names and list(one) == names[:1]
    torch.testing.assert_close(one[names[0]], both[names[0]])
