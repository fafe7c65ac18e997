"""Capture of a layer that runs a varying number of times: the last call is always the one
returned, whatever earlier inputs taught the capture about the model (issue: a cached call
count made later captures stop at an earlier call)."""
import pytest
import torch
import torch.nn as nn

import cnnviz


class Loop(nn.Module):
    """Applies `conv` as many times as `repeats(x)` says."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3, 4)

    def repeats(self, x: torch.Tensor) -> int:
        raise NotImplementedError

    def forward(self, x):
        h = x
        for _ in range(self.repeats(x)):
            h = torch.tanh(self.conv(h))
        return self.head(h.mean((2, 3)))


class ValueLoop(Loop):
    """1 + 3 (positive image mean) applications: decided by the input's values."""

    def repeats(self, x):
        return 1 + int((x.mean() > 0).item()) * 3


class ShapeLoop(Loop):
    """One application per 8 pixels of width: decided by the input's shape."""

    def repeats(self, x):
        return x.shape[-1] // 8


def reference_last_call(model, x, layer="conv"):
    """The layer's last output in a plain forward, by a hook written here."""
    seen = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[-1], len(seen)


def test_value_dependent_call_count_is_not_cached():
    torch.manual_seed(0)
    model = ValueLoop().eval()
    few = -torch.rand(1, 3, 8, 8)        # mean < 0: conv runs once
    many = torch.rand(1, 3, 8, 8)        # mean > 0: conv runs four times
    for x in (few, many, few, many):
        ref, calls = reference_last_call(model, x)
        got = cnnviz.capture(model, x, "conv")["conv"]
        torch.testing.assert_close(got.detach(), ref)
        fm = cnnviz.feature_maps(model, x, "conv")["conv"]
        torch.testing.assert_close(fm, ref)
    assert reference_last_call(model, many)[1] == 4


def test_shape_dependent_call_count_is_not_cached():
    torch.manual_seed(0)
    model = ShapeLoop().eval()
    for w in (8, 32, 16, 32, 8):
        x = torch.randn(1, 3, 8, w)
        ref, calls = reference_last_call(model, x)
        assert calls == w // 8
        torch.testing.assert_close(cnnviz.capture(model, x, "conv")["conv"].detach(), ref)
        torch.testing.assert_close(cnnviz.feature_maps(model, x, "conv")["conv"], ref)


def test_explicit_call_index_with_varying_counts():
    torch.manual_seed(0)
    model = ValueLoop().eval()
    many = torch.rand(1, 3, 8, 8)
    seen = []
    h = model.conv.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    with torch.no_grad():
        model(many)
    h.remove()
    cnnviz.capture(model, -many, "conv")        # one call: must not poison the next request
    got = cnnviz.capture(model, many, ["conv:1", "conv"])
    torch.testing.assert_close(got["conv:1"].detach(), seen[1])
    torch.testing.assert_close(got["conv"].detach(), seen[3])
    with pytest.raises(IndexError, match="conv"):
        cnnviz.capture(model, -many, "conv:2")


def test_top_filters_and_inversion_loss_use_the_last_call():
    torch.manual_seed(0)
    model = ValueLoop().eval()
    few, many = -torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    cnnviz.capture(model, few, "conv")          # teaches "one call" for this shape
    ref_many, _ = reference_last_call(model, many)
    ref_few, _ = reference_last_call(model, few)
    top = cnnviz.top_filters(model, many, "conv", k=3)
    expected = ref_many.mean((2, 3))[0].sort(descending=True).values[:3]
    torch.testing.assert_close(torch.as_tensor(top.scores).reshape(-1).float(), expected)
    loss = cnnviz.inversion_loss(model, many, few, "conv", lambda_alpha=0.0, lambda_tv=0.0)
    torch.testing.assert_close(loss.detach(), cnnviz.euclidean_loss(ref_many, ref_few))
