"""Capture on real architectures against plain-PyTorch hooks written here."""
import copy
import os

import pytest
import torch
import torch.nn as nn
import torchvision

import cnnviz

ARCHS = {
    # name: (constructor, input size, layers to capture)
    "vgg16": (torchvision.models.vgg16, 64, ["features.0", "features.17", "features.28", "classifier.3"]),
    "resnet18": (torchvision.models.resnet18, 64, ["conv1", "layer1.0.relu:0", "layer1.0.relu", "layer3.1", "fc"]),
    "resnet50": (torchvision.models.resnet50, 64, ["layer2.3.conv3", "layer4", "avgpool"]),
    "densenet121": (torchvision.models.densenet121, 64, ["features.denseblock2", "features.transition2.conv", "classifier"]),
    "mobilenet_v2": (torchvision.models.mobilenet_v2, 64, ["features.2.conv.0", "features.18", "classifier.1"]),
    "googlenet": (lambda: torchvision.models.googlenet(init_weights=False, aux_logits=False), 64,
                  ["inception3a", "inception4e.branch2.1", "fc"]),
    "efficientnet_b0": (torchvision.models.efficientnet_b0, 64, ["features.3.0.block.1", "features.8", "classifier.1"]),
}


def hook_reference(model, x, names):
    """Every call's output of each named module, via plain forward hooks."""
    calls = {n: [] for n in names}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: calls[n].append(o.detach().clone())) for n in names]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, calls


def request_ref(calls, spelled):
    name, _, k = spelled.partition(":")
    return calls[name][int(k) if k else -1]


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request):
    ctor, size, layers = ARCHS[request.param]
    torch.manual_seed(0)
    return request.param, ctor().eval(), torch.randn(2, 3, size, size), layers


def test_capture_equals_hooks(arch):
    _, model, x, layers = arch
    ref_out, calls = hook_reference(model, x, sorted({s.split(":")[0] for s in layers}))
    acts = cnnviz.capture(model, x, layers)
    assert list(acts) == layers
    for s in layers:
        assert torch.equal(acts[s], request_ref(calls, s)), s
    logits = cnnviz.predict(model, x, k=3, labels=None)
    probs = ref_out.softmax(1)
    assert len(logits) == 2
    assert logits[1][0].probability == pytest.approx(float(probs[1].max()), rel=1e-5)
    assert float(probs[1, logits[1][0].index]) == pytest.approx(float(probs[1].max()), rel=1e-5)


def test_script_model_equals_py_model(arch):
    _, model, x, layers = arch
    traced = torch.jit.trace(model, x, check_trace=False)
    py = cnnviz.capture(model, x, layers)
    js = cnnviz.capture(traced, x, layers)
    assert list(js) == layers
    for s in layers:
        torch.testing.assert_close(js[s], py[s], rtol=1e-4, atol=1e-5)


def test_shared_relu_calls():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    _, calls = hook_reference(model, x, ["layer1.0.relu"])
    assert len(calls["layer1.0.relu"]) == 2
    acts = cnnviz.capture(model, x, ["layer1.0.relu:0", "layer1.0.relu:1", "layer1.0.relu"])
    assert torch.equal(acts["layer1.0.relu:0"], calls["layer1.0.relu"][0])
    assert torch.equal(acts["layer1.0.relu:1"], calls["layer1.0.relu"][1])
    assert torch.equal(acts["layer1.0.relu"], calls["layer1.0.relu"][1])
    with pytest.raises(IndexError, match="ran 2 time"):
        cnnviz.capture(model, x, ["layer1.0.relu:2"])
    traced = torch.jit.trace(model, x)
    t = cnnviz.capture(traced, x, ["layer1.0.relu:0", "layer1.0.relu"])
    torch.testing.assert_close(t["layer1.0.relu:0"], calls["layer1.0.relu"][0])
    torch.testing.assert_close(t["layer1.0.relu"], calls["layer1.0.relu"][1])


def _vgg_small():
    torch.manual_seed(1)
    return torchvision.models.vgg16().eval()


def test_inplace_relu_does_not_corrupt_capture_or_gradient():
    model = _vgg_small()
    assert isinstance(model.features[29], nn.ReLU) and model.features[29].inplace
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    # Reference without in-place ops, gradients by retain_grad.
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    keep = {}
    h = ref.features[28].register_forward_hook(lambda m, i, o: keep.setdefault("a", o))
    ref_out = ref(x)
    h.remove()
    keep["a"].retain_grad()
    ref_out[0, 3].backward()
    acts = cnnviz.capture(model, x, ["features.28"])
    assert (acts["features.28"] < 0).any(), "the conv output has negatives: in-place ReLU must not clip them"
    torch.testing.assert_close(acts["features.28"], keep["a"].detach())
    for m in (model, torch.jit.trace(model, x.detach())):
        out, a = cnnviz._C.capture(m, x, ["features.28"], True, False)
        g, = torch.autograd.grad(out[0, 3], a["features.28"])
        torch.testing.assert_close(g, keep["a"].grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a["features.28"], keep["a"].detach(), rtol=1e-5, atol=1e-5)


class SometimesInPlace(nn.Module):
    """conv -> relu, in place only when ``inplace`` is set: the first forward teaches the
    capture that no copy is needed, the second one breaks that."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.inplace = False

    def forward(self, x):
        y = self.conv(x)
        return (y.relu_() if self.inplace else y.relu()).sum((2, 3))


def test_capture_copies_only_what_is_written_in_place():
    model = SometimesInPlace()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    expected = model.conv(x)
    for inplace in (False, False, True, True):
        model.inplace = inplace
        out, a = cnnviz._C.capture(model, x, ["conv"], True, False)
        assert (a["conv"] < 0).any()
        torch.testing.assert_close(a["conv"], expected)
        g, = torch.autograd.grad(out.sum(), a["conv"])
        torch.testing.assert_close(g, (expected > 0).to(g.dtype))


class Boom(nn.Module):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def forward(self, x):
        raise self.exc


def _all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_hooks_removed_after_exception(exc):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Boom(exc))
    with pytest.raises(type(exc)):
        cnnviz.capture(model, torch.randn(1, 3, 8, 8), ["0", "2"])
    assert _all_hooks(model) == 0
    with pytest.raises(type(exc)):
        cnnviz._C.capture(model, torch.randn(1, 3, 8, 8), ["1"], True, True)
    assert _all_hooks(model) == 0


def test_state_left_as_found():
    model = torchvision.models.resnet18()
    model.train()
    model.fc.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    acts = cnnviz.capture(model, x, ["layer2"])
    acts["layer2"].sum().backward()
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert x.grad is not None


def test_forward_stops_at_last_requested_layer():
    seen = []
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    model[2].register_forward_hook(lambda m, i, o: seen.append("2"))
    x = torch.randn(1, 3, 8, 8)
    model(x)
    seen.clear()
    cnnviz.capture(model, x, ["0", "1"])  # first capture: counts calls, runs fully
    seen.clear()
    cnnviz.capture(model, x, ["1"])
    assert seen == [], "layers after the last requested one must not run"


def test_bad_input():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown layer 'layer5'.*closest names: layer"):
        cnnviz.capture(model, x, ["layer5"])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cnnviz.capture(model, torch.randn(3, 32, 32), ["layer1"])
    with pytest.raises(RuntimeError, match="channels"):
        cnnviz.capture(model, torch.randn(1, 1, 32, 32), ["layer1"])
    with pytest.raises(ValueError, match="torch.nn.Module"):
        cnnviz.capture("resnet", x, ["layer1"])
    with pytest.raises(ValueError, match="at least one layer"):
        cnnviz.capture(model, x, [])
    with pytest.raises(ValueError, match="NaN"):
        cnnviz.capture(model, torch.full((1, 3, 32, 32), float("nan")), ["layer1"])
    with pytest.raises(ValueError, match="floating point"):
        cnnviz.capture(model, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ["layer1"])
    with pytest.raises(ValueError, match="call index"):
        cnnviz.capture(model, x, ["layer1:x"])
    with pytest.raises(ValueError, match="never ran"):
        cnnviz.capture(torchvision.models.googlenet(init_weights=False, aux_logits=True).eval(),
                       torch.randn(1, 3, 64, 64), ["aux1"])
    with pytest.raises(ValueError, match="k = 2000"):
        cnnviz.predict(model, x, k=2000)
    with pytest.raises(ValueError, match="3 labels"):
        cnnviz.predict(model, x, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="not a 2-D convolution"):
        cnnviz.filter_weights(model, "fc")
    with pytest.raises(ValueError, match="is a block, not a convolution; its first convolution is 'layer1.0.conv1'"):
        cnnviz.filter_weights(model, "layer1")
    with pytest.raises(ValueError, match="no weight"):
        cnnviz.filter_weights(model, "relu")
    with pytest.raises(ValueError, match="input_size"):
        cnnviz.summary(model, (32, 32))


def test_summary_feature_maps_filters():
    model = torchvision.models.vgg16().eval()
    s = cnnviz.summary(model, (3, 64, 64))
    rows = {r.name: r for r in s}
    assert rows["features.0"].output_shape == (1, 64, 64, 64)
    assert rows["features.0"].num_parameters == 64 * 3 * 9 + 64
    assert rows["classifier.6"].output_shape == (1, 1000)
    assert sum(r.num_parameters for r in s) == sum(p.numel() for p in model.parameters())
    text = str(s)
    assert "features.28" in text and "Conv2d" in text and "total parameters: 138357544" in text
    assert "<table>" in s._repr_html_()

    x = torch.randn(1, 3, 64, 64)
    maps = cnnviz.feature_maps(model, x)
    assert len([n for n in maps if n.startswith("features.")]) == 31
    _, calls = hook_reference(model, x, list(maps))
    for n, t in maps.items():
        assert torch.equal(t, calls[n][-1]) and not t.requires_grad

    f = cnnviz.filter_weights(model, "features.0")
    w = model.features[0].weight.detach()
    assert torch.equal(f.weight, w)
    torch.testing.assert_close(f.mean, w.mean(1))
    assert f.rgb.shape == (64, 3, 3, 3) and f.rgb.min() >= 0 and f.rgb.max() <= 1
    flat = f.rgb.flatten(1)
    torch.testing.assert_close(flat.amin(1), torch.zeros(64))
    torch.testing.assert_close(flat.amax(1), torch.ones(64))
    assert cnnviz.filter_weights(model, "features.2").rgb is None


def test_function_model_and_layer_names():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(2, 3, 2, 2)
    top = cnnviz.predict(lambda t: net(t), x, k=2, labels=["a", "b", "c"])
    probs = net(x).softmax(1)
    assert top[1][0].probability == pytest.approx(float(probs[1].max()), rel=1e-6)
    with pytest.raises(ValueError, match="no layers"):
        cnnviz.capture(lambda t: net(t), x, ["0"])
    assert cnnviz.layer_names(torchvision.models.resnet18(), leaves_only=True)[:3] == ["conv1", "bn1", "relu"]


# --- pretrained networks from the sample data -------------------------------------------


def _imagenet_batch(path):
    from PIL import Image
    import torchvision.transforms as T
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return tf(Image.open(path).convert("RGB")).unsqueeze(0)


def test_pretrained_mobilenet(mobilenet, data_dir):
    x = _imagenet_batch(os.path.join(data_dir, "images", "cat_chelsea.png"))
    top = cnnviz.predict(mobilenet, x, k=5)
    assert top[0].index == 285 and top[0].label == "Egyptian cat"
    layers = ["features.0.0", "features.7.conv.1", "features.18"]
    _, calls = hook_reference(mobilenet, x, layers)
    acts = cnnviz.capture(mobilenet, x, layers)
    for n in layers:
        assert torch.equal(acts[n], calls[n][-1])


def test_pretrained_resnet20_script_vs_module(resnet20, cifar_samples, data_dir):
    from PIL import Image
    import torchvision.transforms as T
    tf = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p, _ in cifar_samples])
    labels = [c for _, c in cifar_samples]
    traced = cnnviz.zoo.pretrained("resnet20_traced")
    preds = cnnviz.predict(traced, x, k=1, labels="cifar10")
    assert [p[0].index for p in preds] == labels
    layers = ["conv1", "layer1.2.conv2", "layer2", "layer3.2.bn2"]
    _, calls = hook_reference(resnet20, x, layers)
    for model in (resnet20, traced):
        acts = cnnviz.capture(model, x, layers)
        for n in layers:
            torch.testing.assert_close(acts[n], calls[n][-1], rtol=1e-5, atol=1e-5)


def test_summary_depth_stops_at_blocks_and_keeps_the_total():
    net = torchvision.models.mobilenet_v2().eval()
    total = sum(p.numel() for p in net.parameters())
    full = cnnviz.summary(net, (3, 64, 64))
    assert full.total_parameters == total and sum(r.num_parameters for r in full) == total
    blocks = cnnviz.summary(net, (3, 64, 64), depth=2)
    assert [r.name for r in blocks][:3] == ["features", "features.0", "features.1"]
    assert all(r.name.count(".") <= 1 for r in blocks)
    assert len(blocks) < 30 < len(full)
    assert sum(r.num_parameters for r in blocks) == total
    by_name = {r.name: r for r in blocks}
    assert by_name["features.1"].num_parameters == sum(p.numel() for p in net.features[1].parameters())
    assert by_name["features.18"].output_shape == (1, 1280, 2, 2)
    assert f"total parameters: {total}" in str(blocks)
    with pytest.raises(ValueError, match="depth"):
        cnnviz.summary(net, (3, 64, 64), depth=0)


def test_a_filtered_summary_does_not_claim_the_model_total():
    net = torchvision.models.mobilenet_v2().eval()
    total = sum(p.numel() for p in net.parameters())
    s = cnnviz.summary(net, (3, 64, 64))
    linear = s.where(lambda r: r.type == "Linear")
    text = str(linear)
    assert "parameters in these rows: 1281000" in text and f"model total: {total}" in text
    assert "total parameters" not in text
    assert s[:3].total_parameters == total
    assert "model total" in linear._repr_html_()


def test_filter_weights_on_a_block_names_its_convolution():
    net = torchvision.models.mobilenet_v2().eval()
    with pytest.raises(ValueError, match=r"'features\.0' \(.*\) is a block, not a convolution; its first "
                                         r"convolution is 'features\.0\.0'"):
        cnnviz.filter_weights(net, "features.0")
    f = cnnviz.filter_weights(net, "features.0.0")
    torch.testing.assert_close(f.weight, net.features[0][0].weight.detach())
