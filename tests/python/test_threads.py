"""Threads: a capture acts only for the thread that runs it, and concurrent calls on one
model give the answers sequential calls give (a dashboard, a DataLoader with a second
consumer, a notebook's background job all share one model between threads)."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn as nn

import cnnviz


def small_net():
    torch.manual_seed(0)
    # Many small Python-level modules: the GIL changes hands inside a forward.
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()]
    for _ in range(6):
        layers += [nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)]
    return nn.Sequential(*layers).eval()


def flags(model):
    return ([p.requires_grad for p in model.parameters()], [m.training for m in model.modules()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()])


def test_plain_forward_in_another_thread_is_unaffected_by_a_capture():
    model = small_net()
    x = torch.randn(2, 3, 48, 48)       # large enough that convolutions release the GIL a while
    y = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = model(y)
    stop = threading.Event()
    errors, outputs = [], []

    def plain():
        try:
            while not stop.is_set():
                with torch.no_grad():
                    outputs.append(model(y))
        except BaseException as e:  # noqa: BLE001 - the failure is the finding
            errors.append(e)

    t = threading.Thread(target=plain)
    t.start()
    try:
        for _ in range(60):
            cnnviz.capture(model, x, "2")      # stops the forward early after layer 2
            cnnviz.feature_maps(model, x, ["4"])
    finally:
        stop.set()
        t.join()
    assert not errors, repr(errors[:1])
    assert len(outputs) > 0
    for out in outputs:
        torch.testing.assert_close(out, expected)


def _calls(model, x):
    """Different public functions on one model, each deterministic."""
    return {
        "capture": lambda: cnnviz.capture(model, x, ["2", "6"])["6"].detach(),
        "feature_maps": lambda: cnnviz.feature_maps(model, x, ["4"])["4"],
        "saliency": lambda: cnnviz.saliency(model, x, target=1).attribution,
        "grad_cam": lambda: cnnviz.grad_cam(model, x, "10", target=2).map,
        "guided_backprop": lambda: cnnviz.guided_backprop(model, x, target=0).attribution,
        "integrated_gradients": lambda: cnnviz.integrated_gradients(model, x, target=3, steps=8).attribution,
        "occlusion": lambda: cnnviz.occlusion(model, x, target=1, window=8, stride=8).map,
        "fgsm": lambda: cnnviz.fgsm(model, x, target=1, eps=0.01).adversarial,
        "inversion_loss": lambda: cnnviz.inversion_loss(model, x, x.flip(3), "4").detach(),
        "top_filters": lambda: torch.as_tensor(cnnviz.top_filters(model, x, "8", k=3).scores),
        "predict": lambda: torch.tensor([p.index for p in cnnviz.predict(model, x, k=2, labels=None)[0]]),
        "plain": lambda: model(x).detach(),
    }


def test_concurrent_methods_on_one_model_match_sequential():
    model = small_net()
    mean = torch.tensor(cnnviz.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cnnviz.IMAGENET_STD).view(1, 3, 1, 1)
    x = (torch.rand(2, 3, 16, 16) - mean) / std      # valid pixels, as fgsm requires
    before = flags(model)
    calls = _calls(model, x)
    sequential = {name: f() for name, f in calls.items()}
    jobs = [name for _ in range(4) for name in calls]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda n: (n, calls[n]()), jobs))
    for name, got in results:
        torch.testing.assert_close(got, sequential[name], msg=lambda m: f"{name}: {m}")
    assert flags(model) == before


def test_concurrent_captures_of_different_layers():
    model = small_net()
    xs = [torch.randn(1, 3, 16, 16) for _ in range(4)]
    layers = ["0", "4", "8", "12"]
    sequential = [cnnviz.capture(model, x, l)[l].detach() for x, l in zip(xs, layers)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda i: [cnnviz.capture(model, xs[i], layers[i])[layers[i]].detach()
                                       for _ in range(15)], range(4)))
    for i in range(4):
        for g in got[i]:
            torch.testing.assert_close(g, sequential[i])
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_requires_grad_restored_after_overlapping_calls():
    model = small_net()
    model[0].weight.requires_grad_(False)          # a user's own freeze is kept
    before = flags(model)
    x = torch.randn(1, 3, 16, 16)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: cnnviz.saliency(model, x, target=i % 5), range(24)))
    assert flags(model) == before
