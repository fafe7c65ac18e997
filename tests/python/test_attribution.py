"""Gradient maps: saliency, SmoothGrad, guided backprop, guided Grad-CAM; targets; the
model-randomization sanity check of Adebayo et al. (2018)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr

import cnnviz
from _attribution_nets import guided_copy, input_grad, small_net

KINDS = ["module", "inplace", "functional"]


def cifar_batch(cifar_samples, n):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    imgs = []
    for path, _ in cifar_samples[:n]:
        a = torch.tensor(list(Image.open(path).convert("RGB").getdata()), dtype=torch.float32)
        imgs.append((a.view(32, 32, 3).permute(2, 0, 1) / 255 - mean) / std)
    return torch.stack(imgs)


@pytest.mark.parametrize("kind", KINDS)
def test_saliency_equals_autograd(kind):
    net = small_net(kind)
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    r = cnnviz.saliency(net, x, [4, 0, 2])
    ref, out = input_grad(small_net("module"), x, [4, 0, 2])
    torch.testing.assert_close(r.attribution, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r.map, ref.abs().amax(1))
    torch.testing.assert_close(r.logits, out.detach())
    assert r.target.tolist() == [4, 0, 2]
    mean_map = cnnviz.saliency(net, x, [4, 0, 2], reduction="mean").map
    torch.testing.assert_close(mean_map, ref.abs().mean(1))
    # Inputs only: no parameter gradients, flags and hooks left as they were.
    assert all(p.grad is None and p.requires_grad for p in net.parameters())
    assert not any(m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("kind", KINDS)
def test_guided_backprop_equals_hand_written_rule(kind):
    net = small_net(kind)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    r = cnnviz.guided_backprop(net, x, 3)
    ref, _ = input_grad(guided_copy(small_net("module")), x, 3)
    torch.testing.assert_close(r.attribution, ref, rtol=1e-10, atol=1e-12)
    # It differs from the plain gradient (negative gradients were dropped).
    assert not torch.allclose(r.attribution, cnnviz.saliency(net, x, 3).attribution)


def test_traced_model_matches_module():
    net = small_net("functional")
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    traced = torch.jit.trace(net, x)
    for fn in (cnnviz.saliency, cnnviz.guided_backprop):
        torch.testing.assert_close(fn(traced, x, 1).attribution, fn(net, x, 1).attribution, rtol=1e-10, atol=1e-12)


def test_targets():
    net = small_net()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    predicted = net(x).argmax(1)
    assert cnnviz.saliency(net, x).target.tolist() == predicted.tolist()
    assert cnnviz.saliency(net, x, 2).target.tolist() == [2, 2, 2]
    assert cnnviz.saliency(net, x, torch.tensor([1, 2, 3])).target.tolist() == [1, 2, 3]
    assert cnnviz.saliency(net, x, (0, 1, 0)).target.tolist() == [0, 1, 0]
    with pytest.raises(IndexError, match="out of range"):
        cnnviz.saliency(net, x, 5)
    with pytest.raises(IndexError, match="out of range"):
        cnnviz.saliency(net, x, [0, -1, 0])
    with pytest.raises(ValueError, match="2 targets for a batch of 3"):
        cnnviz.saliency(net, x, [0, 1])
    with pytest.raises(ValueError, match="bool"):
        cnnviz.saliency(net, x, True)
    with pytest.raises(ValueError, match="integers"):
        cnnviz.saliency(net, x, torch.tensor([0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        cnnviz.saliency(net, x, reduction="median")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cnnviz.saliency(net, x[0])
    with pytest.raises(ValueError, match="NaN"):
        cnnviz.saliency(net, x * float("nan"))


def test_smooth_grad():
    net = small_net()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    # Without noise it is the gradient, whatever the batching.
    r = cnnviz.smooth_grad(net, x, 1, samples=7, noise_level=0.0, batch_size=3)
    torch.testing.assert_close(r.attribution, input_grad(net, x, 1)[0])
    # The noise's standard deviation is noise_level * (max - min) of each image.
    seen = []

    def recording(inp):
        seen.append(inp.detach().clone())
        return net(inp)

    x = torch.cat([x[:1], 3 * x[1:]])
    cnnviz.smooth_grad(recording, x, 0, samples=40, noise_level=0.2, batch_size=16)
    # 80 noisy copies in batches of 16, the 2 clean images in front of the first
    assert [b.shape[0] for b in seen] == [18, 16, 16, 16, 16]
    batches = torch.cat(seen)
    torch.testing.assert_close(batches[:2], x, rtol=0, atol=0)  # the clean forward rides in front
    batches = batches[2:]
    assert batches.shape[0] == 80
    for i in range(2):
        noise = batches[i::2] - x[i]  # samples alternate between the two images
        expected = 0.2 * (x[i].max() - x[i].min())
        assert abs(noise.std().item() / expected.item() - 1) < 0.02
    # Averaging noisy gradients approaches a reference loop with its own noise draws.
    net32 = small_net(dtype=torch.float32)
    xs = torch.randn(1, 3, 8, 8)
    ours = cnnviz.smooth_grad(net32, xs, 2, samples=400, noise_level=0.1, batch_size=100).attribution
    sigma = 0.1 * (xs.max() - xs.min())
    ref = sum(input_grad(net32, xs + sigma * torch.randn_like(xs), 2)[0] for _ in range(400)) / 400
    assert F.cosine_similarity(ours.flatten(), ref.flatten(), dim=0) > 0.97
    with pytest.raises(ValueError, match="samples"):
        cnnviz.smooth_grad(net, x, samples=0)
    with pytest.raises(ValueError, match="noise_level"):
        cnnviz.smooth_grad(net, x, noise_level=-0.1)
    with pytest.raises(ValueError, match="batch_size"):
        cnnviz.smooth_grad(net, x, batch_size=0)


def test_guided_grad_cam():
    net = small_net()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    r = cnnviz.guided_grad_cam(net, x, "conv2", 1)
    gb = cnnviz.guided_backprop(net, x, 1).attribution
    cam = cnnviz.grad_cam(net, x, "conv2", 1).upsampled
    torch.testing.assert_close(r.attribution, gb * cam.unsqueeze(1))
    torch.testing.assert_close(r.map, r.attribution.abs().amax(1))


def test_sanity_check_randomized_top_layers(resnet20, cifar_samples):
    """Adebayo et al.: re-initializing the top layers must change the maps."""
    x = cifar_batch(cifar_samples, 4)
    labels = [label for _, label in cifar_samples[:4]]
    randomized = copy.deepcopy(resnet20)
    torch.manual_seed(123)
    for name, m in randomized.named_modules():
        if name == "linear" or name.startswith("layer3"):
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    maps = {
        "saliency": lambda model, x, t: cnnviz.saliency(model, x, t).map,
        "grad_cam": lambda model, x, t: cnnviz.grad_cam(model, x, "layer3", t).upsampled,
    }
    for name, fn in maps.items():
        a, b = fn(resnet20, x, labels), fn(randomized, x, labels)
        rhos = [spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).correlation for i in range(4)]
        rhos = [0.0 if r != r else r for r in rhos]  # a constant map has no rank correlation
        assert max(rhos) < 0.6, (name, rhos)
        # The same weights give the same map.
        again = fn(resnet20, x[:1], labels[0])
        assert spearmanr(a[0].flatten().numpy(), again.flatten().numpy()).correlation > 0.999


def test_results_print_their_shapes_and_document_their_fields():
    import inspect

    from cnnviz import _C, _results

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.rand(1, 3, 8, 8)
    r = cnnviz.saliency(net, x, 2)
    assert repr(r).startswith("Attribution(attribution=(1, 3, 8, 8), map=(1, 8, 8), target=[2], ")
    cam = cnnviz.grad_cam(net, x, "0")
    assert repr(cam).startswith("CamResult(maps=[CamMap(layer='0', target=[2], map=(1, 8, 8), upsampled=(1, 8, 8))], "
                                "num_targets=1, logits=")
    assert "interrupted" not in repr(r) and "stopped_early" not in repr(r)
    for name, (_, fields) in _results.RESULTS.items():
        cls = getattr(_C, name)
        doc = inspect.getdoc(cls)
        for field in fields:
            assert f"{field}:" in doc, (name, field)
            assert hasattr(cls, field), (name, field)
        # Every result of a loop reports both ways it can end early.
        assert hasattr(cls, "interrupted") == hasattr(cls, "stopped_early"), name
        assert ("interrupted" in doc) == hasattr(cls, "interrupted"), name
