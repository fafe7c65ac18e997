"""Inference plans: the trace of a small eval-mode model gives the model's maps (1e-5),
keeps module names for Grad-CAM, follows weight changes (shared values; a new plan for
replaced tensors), and is not used where it could differ (training mode, hooks, Python
control flow on values, a call index, a non-tensor output)."""
import copy
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn as nn

import cnnviz
from cnnviz import _plan


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()) + 1e-12)


def without_plan(fn):
    cnnviz.set_inference_plans(False)
    try:
        return fn()
    finally:
        cnnviz.set_inference_plans(True)


@pytest.fixture
def net(resnet20):
    return copy.deepcopy(resnet20)


@pytest.fixture
def x():
    torch.manual_seed(3)
    return torch.randn(1, 3, 32, 32)


def test_plan_is_a_trace_sharing_the_models_tensors(net, x):
    plan = _plan.model_for(net, x)
    assert isinstance(plan, torch.jit.ScriptModule)
    assert {n for n, _ in plan.named_modules()} >= {"layer1.0.conv1", "layer1.0.bn1", "layer3"}
    assert plan.conv1.weight.data_ptr() == net.conv1.weight.data_ptr()
    with torch.no_grad():
        close(plan(x), net(x))
    assert _plan.model_for(net, x) is plan  # cached


@pytest.mark.parametrize("method", ["saliency", "smooth_grad", "integrated_gradients", "occlusion"])
def test_maps_with_the_plan_equal_the_models(net, x, method):
    calls = {
        "saliency": lambda: cnnviz.saliency(net, x).attribution,
        "smooth_grad": lambda: (torch.manual_seed(0), cnnviz.smooth_grad(net, x, samples=4, batch_size=4))[1].attribution,
        "integrated_gradients": lambda: cnnviz.integrated_gradients(net, x, steps=8, batch_size=8).attribution,
        "occlusion": lambda: cnnviz.occlusion(net, x, window=8, stride=8).scores,
    }
    close(calls[method](), without_plan(calls[method]))


@pytest.mark.parametrize("layer", ["layer3", "layer2.1", "layer1.0.bn1", "layer3.2.conv2", "layer1.0.conv1"])
def test_grad_cam_with_the_plan_equals_the_models(net, x, layer):
    a = cnnviz.grad_cam(net, x, layer).map
    b = without_plan(lambda: cnnviz.grad_cam(net, x, layer).map)
    close(a, b)


def test_call_index_captures_the_model_itself(net, x):
    plan = _plan.model_for(net, x)
    assert _plan.model_for(net, x, ["layer1:0"]) is net
    assert _plan.model_for(net, x, ["layer1.0.conv1", "layer3"]) is plan


def test_plan_follows_weight_changes(net, x):
    first = _plan.model_for(net, x)
    with torch.no_grad():
        net.conv1.weight.mul_(1.5)                                 # in place: shared with the trace
    assert _plan.model_for(net, x) is first
    close(cnnviz.saliency(net, x).attribution, without_plan(lambda: cnnviz.saliency(net, x).attribution))
    net.layer1[0].bn1.running_var.data.mul_(2.0)                   # through .data
    close(cnnviz.grad_cam(net, x, "layer2").map, without_plan(lambda: cnnviz.grad_cam(net, x, "layer2").map))
    net.layer1[1].conv2.weight.data = net.layer1[1].conv2.weight.data * -0.5  # a new tensor behind .data
    assert _plan.model_for(net, x) is first
    close(cnnviz.saliency(net, x).attribution, without_plan(lambda: cnnviz.saliency(net, x).attribution))
    net.layer2[0].conv1.weight = nn.Parameter(net.layer2[0].conv1.weight.detach() * -1)  # replaced: a new plan
    second = _plan.model_for(net, x)
    assert second is not first
    close(cnnviz.saliency(net, x).attribution, without_plan(lambda: cnnviz.saliency(net, x).attribution))
    net.load_state_dict(cnnviz.zoo.pretrained("resnet20").state_dict())
    with torch.no_grad():
        close(_plan.model_for(net, x)(x), cnnviz.zoo.pretrained("resnet20")(x))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.conv(x)
        if h.mean() > 0:              # Python control flow on a value: a trace would freeze one branch
            h = -h
        return self.fc(h.mean((2, 3)))


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.conv(x).mean((2, 3))
        return self.fc(h), h


def test_plan_not_used_where_it_could_differ(net, x):
    branchy = Branchy().eval()
    assert _plan.model_for(branchy, x) is branchy
    two = TwoOutputs().eval()
    assert _plan.model_for(two, x) is two
    net.train()
    assert _plan.model_for(net, x) is net
    net.eval()
    handle = net.layer1.register_forward_hook(lambda m, i, o: None)
    assert _plan.model_for(net, x) is net
    handle.remove()
    assert isinstance(_plan.model_for(net, x), torch.jit.ScriptModule)
    assert _plan.model_for(net, x.double()) is net


def test_plans_can_be_turned_off(net, x, monkeypatch):
    monkeypatch.setenv("CNNVIZ_PLAN", "0")
    assert not cnnviz.inference_plans_enabled()
    assert _plan.model_for(net, x) is net
    monkeypatch.delenv("CNNVIZ_PLAN")
    cnnviz.set_inference_plans(False)
    assert _plan.model_for(net, x) is net
    cnnviz.set_inference_plans(True)
    assert _plan.model_for(net, x) is not net


def test_large_models_run_as_they_are():
    import torchvision
    model = torchvision.models.mobilenet_v2().eval()   # 3.5 M parameters x 150528 elements > 5e9
    x = torch.randn(1, 3, 224, 224)
    assert _plan.model_for(model, x) is model


def test_concurrent_calls_on_one_model(net):
    torch.manual_seed(5)
    xs = [torch.randn(1, 3, 32, 32) for _ in range(6)]
    expected = [without_plan(lambda x=x: cnnviz.saliency(net, x).attribution) for x in xs]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda x: cnnviz.saliency(net, x).attribution, xs))
    for a, b in zip(got, expected):
        close(a, b)


def test_plan_switches_refuse_values_that_are_not_on_or_off(monkeypatch):
    with pytest.raises(TypeError, match="True or False"):
        cnnviz.set_inference_plans("off")
    monkeypatch.setenv("CNNVIZ_PLAN", "no")
    with pytest.raises(ValueError, match="CNNVIZ_PLAN"):
        cnnviz._plan.inference_plans_enabled()
    monkeypatch.setenv("CNNVIZ_PLAN", "Off")
    assert not cnnviz._plan.inference_plans_enabled()
    monkeypatch.setenv("CNNVIZ_PLAN", "1")
    assert cnnviz._plan.inference_plans_enabled()


# ---------------------------------------------------------------------------------------
# Forward plans: the frozen, optimized copy for no-grad batch methods


def maps_of_forward_methods(net, x):
    torch.manual_seed(0)
    attribution = torch.rand(x.shape[0], x.shape[2], x.shape[3])
    return {
        "occlusion": cnnviz.occlusion(net, x, window=8, stride=4, incremental=False).scores,
        "score_cam": cnnviz.score_cam(net, x, "layer3", batch_size=16).upsampled,
        "score_cam_two_layers": cnnviz.score_cam(net, x, ["layer2", "layer3.1"]).maps[0].map,
        "lime": cnnviz.lime(net, x, samples=40, batch_size=16, segmentation="grid", segments=16).map,
        "deletion": cnnviz.deletion_insertion(net, x, attribution, steps=8).deletion,
        "insertion": cnnviz.deletion_insertion(net, x, attribution, steps=8).insertion,
    }


def test_forward_plan_is_an_optimized_copy_giving_the_models_results(net):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 32, 32)
    fp = _plan.forward_plan(net, x)
    assert isinstance(fp, _plan.ForwardPlan)
    with torch.no_grad():
        # Batch norm is folded in: the copy holds fewer ops than the model has modules.
        assert "batch_norm" not in str(fp.module.graph)
        close(fp(x), net(x))
        close(fp(x[:1]), net(x[:1]))  # another batch shape: checked against the model once
    assert set(fp.frozen.verified) == {(2, 3, 32, 32), (1, 3, 32, 32)} and all(fp.frozen.verified.values())
    ours, theirs = maps_of_forward_methods(net, x), without_plan(lambda: maps_of_forward_methods(net, x))
    for k in ours:
        close(ours[k], theirs[k])
    # The native core sees the model itself: its parameters size the thread count, and
    # forwards with gradients (saliency) run the module, not the gradient-less copy.
    assert cnnviz._C._policy_threads(fp, x, 1) == cnnviz._C._policy_threads(net, x, 1)
    close(cnnviz._C.saliency(fp, x, None, cnnviz._C.SaliencyOptions()).attribution,
          without_plan(lambda: cnnviz.saliency(net, x).attribution))


def test_forward_plan_sees_every_weight_edit_and_gives_up_on_a_training_model(net, x):
    before = cnnviz.occlusion(net, x, window=8, stride=8).scores
    assert isinstance(_plan.forward_plan(net, x), _plan.ForwardPlan)
    with torch.no_grad():
        net.conv1.weight.data.mul_(0.5)  # through .data: no version counter sees it
    edited = cnnviz.occlusion(net, x, window=8, stride=8).scores
    assert not torch.allclose(edited, before)
    close(edited, without_plan(lambda: cnnviz.occlusion(net, x, window=8, stride=8).scores))
    fp = _plan.forward_plan(net, x)
    assert isinstance(fp, _plan.ForwardPlan) and fp.frozen.rebuilds == 1
    net.layer1[0].bn1.running_mean.add_(0.1)  # a buffer: changes again, a training loop's pattern
    assert _plan.forward_plan(net, x) is net  # weights that keep changing: the model runs as it is
    close(cnnviz.occlusion(net, x, window=8, stride=8).scores,
          without_plan(lambda: cnnviz.occlusion(net, x, window=8, stride=8).scores))


def test_forward_plan_is_not_used_where_it_could_differ(net, x):
    assert _plan.forward_plan(net.train(), x) is net.train()  # training mode
    net.eval()
    handle = net.layer1.register_forward_hook(lambda m, i, o: None)
    assert _plan.forward_plan(net, x) is net                   # hooks run in Python
    handle.remove()
    assert _plan.forward_plan(net, x.double()) is net          # float32 only
    assert without_plan(lambda: _plan.forward_plan(net, x)) is net
    wide = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10_000)).eval()  # 30.7 M parameters
    assert _plan.forward_plan(wide, x) is wide  # a copy too large to hold twice: the module itself


def test_forward_plan_from_several_threads(net):
    """The dashboard's pattern: calls on one model from several threads build one copy and
    give each thread the model's results."""
    torch.manual_seed(6)
    xs = [torch.randn(1, 3, 32, 32) for _ in range(6)]
    expected = [without_plan(lambda x=x: cnnviz.occlusion(net, x, window=8, stride=8).scores) for x in xs]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda x: (cnnviz.occlusion(net, x, window=8, stride=8).scores,
                                       cnnviz.score_cam(net, x, "layer3").map), xs))
    for (a, sc), b, x in zip(got, expected, xs):
        close(a, b)
        close(sc, without_plan(lambda: cnnviz.score_cam(net, x, "layer3").map))
    assert len(_plan._frozen[net].modules) == 1
    for size in (8, 12, 16, 20, 24):  # one copy per image size, at most FORWARD_SHAPES_PER_MODEL kept
        assert isinstance(_plan.forward_plan(net, torch.randn(1, 3, size, size)), _plan.ForwardPlan)
    assert list(_plan._frozen[net].modules) == [(3, s, s) for s in (12, 16, 20, 24)]


def test_forward_plan_serves_large_work_too(mobilenet, imagenet_samples):
    """Unlike the traces, the copy pays off for any work: MobileNetV2 at 224x224 (its
    depthwise layers and batch norms), checked on real photographs."""
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(path), size=224) for path, _ in imagenet_samples[:2]])
    fp = _plan.forward_plan(mobilenet, x)
    assert isinstance(fp, _plan.ForwardPlan)
    torch.manual_seed(0)
    attribution = torch.rand(2, 224, 224)
    run = lambda: cnnviz.deletion_insertion(mobilenet, x, attribution, steps=4)  # noqa: E731
    ours, theirs = run(), without_plan(run)
    close(ours.deletion, theirs.deletion)
    close(ours.insertion, theirs.insertion)
