"""The CAM family against its formulas on hooked activations and gradients."""
import copy

import pytest
import torch
import torch.nn.functional as F

import cnnviz
from _attribution_nets import SmallNet, hooked, small_net


def grad_cam_ref(a, g):
    return ((g.mean((2, 3), keepdim=True) * a).sum(1)).clamp(min=0)


def grad_cam_pp_ref(a, g):
    g2, g3 = g ** 2, g ** 3
    denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g3
    alpha = torch.where(g != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    w = (alpha * g.clamp(min=0)).sum((2, 3), keepdim=True)
    return (w * a).sum(1).clamp(min=0)


def layer_cam_ref(a, g):
    return (g.clamp(min=0) * a).sum(1).clamp(min=0)


def score_cam_ref(model, x, a, target):
    """One forward per channel, as written in the paper."""
    n, c = a.shape[:2]
    cam = torch.zeros(n, *a.shape[2:], dtype=a.dtype)
    for i in range(n):
        up = F.interpolate(a[i:i + 1], size=x.shape[2:], mode="bilinear", align_corners=False)[0]
        for k in range(c):
            m = up[k]
            if m.max() == m.min():
                continue
            m = (m - m.min()) / (m.max() - m.min())
            with torch.no_grad():
                p = model(x[i:i + 1] * m).softmax(1)[0, target[i]]
            cam[i] += p * a[i, k]
    return cam.clamp(min=0)


METHODS = [(cnnviz.grad_cam, grad_cam_ref), (cnnviz.grad_cam_pp, grad_cam_pp_ref), (cnnviz.layer_cam, layer_cam_ref)]


@pytest.mark.parametrize("fn,ref", METHODS)
def test_gradient_cams_equal_formulas_small_net(fn, ref):
    net = small_net()
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    target = [1, 4, 0]
    for layer in ("conv2", "act2", "conv3"):
        a, g, _ = hooked(net, x, layer, target)
        r = fn(net, x, layer, target)
        torch.testing.assert_close(r.map, ref(a, g), rtol=1e-5, atol=1e-12)
        up = F.interpolate(ref(a, g).unsqueeze(1), size=(12, 12), mode="bilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(r.upsampled, up, rtol=1e-5, atol=1e-12)
        assert r.target.tolist() == target


@pytest.mark.parametrize("fn,ref", METHODS)
def test_gradient_cams_equal_formulas_resnet20(fn, ref, resnet20, cifar_samples):
    net = copy.deepcopy(resnet20).double()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for layer in ("layer3", "layer2.1.conv2"):
        a, g, out = hooked(net, x, layer, [3, 7])
        r = fn(net, x, layer, [3, 7])
        torch.testing.assert_close(r.map, ref(a, g), rtol=1e-5, atol=1e-10)
        torch.testing.assert_close(r.logits, out)


def test_score_cam_equals_loop(resnet20):
    net = copy.deepcopy(resnet20).double()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    a, _, out = hooked(net, x, "layer2", 0)  # 32 channels at 16x16, upsampled to 32x32
    target = out.argmax(1).tolist()
    r = cnnviz.score_cam(net, x, "layer2", batch_size=12)
    assert r.target.tolist() == target
    torch.testing.assert_close(r.map, score_cam_ref(net, x, a, target), rtol=1e-5, atol=1e-10)


def test_several_layers_and_targets_share_one_forward():
    net = small_net()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    calls = []
    h = net.register_forward_pre_hook(lambda m, i: calls.append(1))
    try:
        r = cnnviz.grad_cam(net, x, ["conv2", "conv3"], targets=[None, 2, [0, 1]])
    finally:
        h.remove()
    assert len(calls) == 1
    assert len(r.maps) == 6 and r.num_targets == 3
    assert [m.layer for m in r.maps] == ["conv2"] * 3 + ["conv3"] * 3
    for layer in ("conv2", "conv3"):
        for k, t in enumerate([None, 2, [0, 1]]):
            single = cnnviz.grad_cam(net, x, layer, t)
            torch.testing.assert_close(r.at(layer, k).map, single.map)
            assert r.at(layer, k).target.tolist() == single.target.tolist()
    assert r.map.shape == (2, 6, 6) and r.upsampled.shape == (2, 12, 12)
    s = cnnviz.score_cam(net, x, ["conv2", "conv3"], targets=[1, 2])
    torch.testing.assert_close(s.at("conv3", 1).map, cnnviz.score_cam(net, x, "conv3", 2).map)


def test_traced_model_matches_module(resnet20, data_dir):
    traced = cnnviz.zoo.pretrained("resnet20_traced")
    x = torch.randn(2, 3, 32, 32)
    for fn in (cnnviz.grad_cam, cnnviz.layer_cam):
        a = fn(resnet20, x, ["layer3", "layer2.2"], targets=[None, 4])
        b = fn(traced, x, ["layer3", "layer2.2"], targets=[None, 4])
        for ma, mb in zip(a.maps, b.maps):
            torch.testing.assert_close(ma.map, mb.map, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cnnviz.guided_backprop(traced, x).attribution,
                               cnnviz.guided_backprop(resnet20, x).attribution, rtol=1e-4, atol=1e-6)


def test_relu_option_keeps_negative_evidence():
    net = small_net()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    a, g, _ = hooked(net, x, "conv3", 1)
    raw = cnnviz.grad_cam(net, x, "conv3", 1, relu=False).map
    torch.testing.assert_close(raw, (g.mean((2, 3), keepdim=True) * a).sum(1))
    assert (raw < 0).any()


class _Probe(torch.autograd.Function):
    """Identity that records whether autograd records it (its input needs a gradient) and
    counts its backward calls."""

    seen = []
    backwards = 0

    @staticmethod
    def forward(ctx, x):
        _Probe.seen.append(ctx.needs_input_grad[0])
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        _Probe.backwards += 1
        return g


class ProbedNet(SmallNet):
    """SmallNet with the probe after its first block."""

    def forward(self, x):
        x = _Probe.apply(self._relu(self.conv1(x), self.act1))
        x = self._relu(self.conv2(x), self.act2)
        x = self._relu(self.conv3(x), self.act3)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize("plans", [True, False])
@pytest.mark.parametrize("fn,ref", METHODS)
def test_gradient_cams_record_nothing_below_their_layer(fn, ref, plans):
    """Grad-CAM needs d(score)/d(activation) only: the graph starts at the layer, so the
    layers below it run without autograd recording them, and no backward reaches them."""
    torch.manual_seed(0)
    net = ProbedNet().eval()
    x = torch.randn(2, 3, 12, 12)
    a, g, _ = hooked(net, x, "conv3", [1, 2])
    cnnviz.set_inference_plans(plans)
    try:
        fn(net, x, "conv3", [1, 2])  # with plans: traces the model (parameters requiring grad)
        _Probe.seen.clear()
        _Probe.backwards = 0
        r = fn(net, x, "conv3", [1, 2])
        assert _Probe.seen and not any(_Probe.seen) and _Probe.backwards == 0
        torch.testing.assert_close(r.map, ref(a, g), rtol=1e-5, atol=1e-6)
        _Probe.seen.clear()
        cnnviz.saliency(net, x, 1)  # the control: an input gradient records the lower layers
        assert _Probe.seen and all(_Probe.seen) and _Probe.backwards == 1
    finally:
        cnnviz.set_inference_plans(True)


class TupleLayer(torch.nn.Module):
    """A layer whose output is a tuple (a cut cannot replace it in a forward hook)."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        y = self.conv(x)
        return y, y.mean()


class TupleNet(SmallNet):
    def __init__(self):
        super().__init__()
        self.block = TupleLayer(self.conv2)

    def forward(self, x):
        x = self._relu(self.conv1(x), self.act1)
        x = self._relu(self.block(x)[0], self.act2)
        x = self._relu(self.conv3(x), self.act3)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_grad_cam_of_a_layer_returning_a_tuple():
    torch.manual_seed(0)
    net = TupleNet().double().eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    a, g, _ = hooked(net, x, "block.conv", [0, 3])
    r = cnnviz.grad_cam(net, x, "block", [0, 3])
    torch.testing.assert_close(r.map, grad_cam_ref(a, g), rtol=1e-5, atol=1e-12)


def test_grad_cam_before_an_inplace_relu():
    net = small_net("inplace")
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    a, g, _ = hooked(small_net("module"), x, "conv2", [1, 0])
    r = cnnviz.grad_cam(net, x, "conv2", [1, 0], relu=False)
    assert (a < 0).any()  # the captured values are the conv's, not clipped by the ReLU after it
    torch.testing.assert_close(r.map, (g.mean((2, 3), keepdim=True) * a).sum(1), rtol=1e-5, atol=1e-12)


def test_bad_input():
    net = small_net()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="not spatial"):
        cnnviz.grad_cam(net, x, "fc")
    with pytest.raises(ValueError, match="not spatial"):
        cnnviz.score_cam(net, x, "fc")
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*conv"):
        cnnviz.layer_cam(net, x, "conv9")
    with pytest.raises(IndexError, match="out of range"):
        cnnviz.grad_cam_pp(net, x, "conv2", 9)
    with pytest.raises(ValueError, match="at least one layer"):
        cnnviz.grad_cam(net, x, [])
    with pytest.raises(ValueError, match="either target or targets"):
        cnnviz.grad_cam(net, x, "conv2", 1, targets=[2])
    with pytest.raises(ValueError, match="batch_size"):
        cnnviz.score_cam(net, x, "conv2", batch_size=0)
    with pytest.raises(IndexError):
        cnnviz.grad_cam(net, x, "conv2").at("conv2", 1)
