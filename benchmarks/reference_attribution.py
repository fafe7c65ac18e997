"""Straightforward PyTorch implementations of the attribution workloads, the baselines of
compare_attribution.py. Two styles per method where they differ:

* ``loop``: as a notebook would write it: one sample / step / mask / window per forward,
  ``.backward()`` into the parameters;
* ``batched``: vectorized by hand: the expanded batch in chunks of ``batch_size``,
  ``torch.autograd.grad`` with respect to the input only, parameters frozen.

Each returns the (N, H, W) or (N, h, w) map, so results can be compared with cnnviz's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _frozen(model):
    class Frozen:
        def __enter__(self):
            self.flags = [p.requires_grad for p in model.parameters()]
            for p in model.parameters():
                p.requires_grad_(False)

        def __exit__(self, *exc):
            for p, f in zip(model.parameters(), self.flags):
                p.requires_grad_(f)

    return Frozen()


# ---------------------------------------------------------------------------------------
# saliency


def saliency_loop(model, x, target):
    x = x.clone().requires_grad_(True)
    model.zero_grad()
    out = model(x)
    out[0, target].backward()
    return x.grad.abs().amax(1)


def saliency_batched(model, x, target):
    with _frozen(model):
        x = x.clone().requires_grad_(True)
        out = model(x)
        return torch.autograd.grad(out[:, target].sum(), x)[0].abs().amax(1)


# ---------------------------------------------------------------------------------------
# SmoothGrad


def smooth_grad_loop(model, x, target, samples, noise_level):
    sigma = noise_level * (x.max() - x.min())
    total = torch.zeros_like(x)
    for _ in range(samples):
        xn = (x + sigma * torch.randn_like(x)).requires_grad_(True)
        model.zero_grad()
        model(xn)[0, target].backward()
        total += xn.grad
    return (total / samples).abs().amax(1)


def smooth_grad_batched(model, x, target, samples, noise_level, batch_size):
    sigma = noise_level * (x.max() - x.min())
    total = torch.zeros_like(x)
    with _frozen(model):
        for start in range(0, samples, batch_size):
            b = min(batch_size, samples - start)
            xn = (x + sigma * torch.randn(b, *x.shape[1:])).requires_grad_(True)
            total += torch.autograd.grad(model(xn)[:, target].sum(), xn)[0].sum(0, keepdim=True)
    return (total / samples).abs().amax(1)


# ---------------------------------------------------------------------------------------
# integrated gradients (trapezoid rule, zero baseline)


def _trapezoid(steps):
    alphas = torch.linspace(0, 1, steps)
    w = torch.full((steps,), 1.0 / (steps - 1))
    w[0] = w[-1] = 0.5 / (steps - 1)
    return alphas, w


def integrated_gradients_loop(model, x, target, steps):
    alphas, w = _trapezoid(steps)
    total = torch.zeros_like(x)
    for a, wi in zip(alphas, w):
        xi = (a * x).requires_grad_(True)
        model.zero_grad()
        model(xi)[0, target].backward()
        total += wi * xi.grad
    return (x * total).abs().mean(1)


def integrated_gradients_batched(model, x, target, steps, batch_size):
    alphas, w = _trapezoid(steps)
    total = torch.zeros_like(x)
    with _frozen(model):
        for start in range(0, steps, batch_size):
            a = alphas[start:start + batch_size].view(-1, 1, 1, 1)
            xi = (a * x).requires_grad_(True)
            g = torch.autograd.grad(model(xi)[:, target].sum(), xi)[0]
            total += (g * w[start:start + batch_size].view(-1, 1, 1, 1)).sum(0, keepdim=True)
    return (x * total).abs().mean(1)


# ---------------------------------------------------------------------------------------
# Grad-CAM (forward hook on the layer, gradient by a tensor hook)


def grad_cam_loop(model, x, target, layer):
    store = {}

    def hook(module, inputs, output):
        store["a"] = output
        output.register_hook(lambda g: store.__setitem__("g", g))

    h = model.get_submodule(layer).register_forward_hook(hook)
    try:
        model.zero_grad()
        out = model(x)
        out[0, target].backward()
    finally:
        h.remove()
    a, g = store["a"].detach(), store["g"]
    return F.relu((g.mean((2, 3), keepdim=True) * a).sum(1))


def grad_cam_batched(model, x, target, layer):
    store = {}
    h = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        with _frozen(model):
            out = model(x.clone().requires_grad_(True))
            g = torch.autograd.grad(out[:, target].sum(), store["a"])[0]
    finally:
        h.remove()
    a = store["a"].detach()
    return F.relu((g.mean((2, 3), keepdim=True) * a).sum(1))


# ---------------------------------------------------------------------------------------
# Score-CAM


def _activations(model, x, layer):
    store = {}
    h = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        h.remove()
    return store["a"], out


def score_cam_loop(model, x, target, layer):
    a, _ = _activations(model, x, layer)
    up = F.interpolate(a, size=x.shape[2:], mode="bilinear", align_corners=False)[0]
    weights = torch.zeros(a.shape[1])
    with torch.no_grad():
        for k in range(a.shape[1]):
            m = up[k]
            if m.max() == m.min():
                continue
            m = (m - m.min()) / (m.max() - m.min())
            weights[k] = model(x * m).softmax(1)[0, target]
    return F.relu((weights.view(1, -1, 1, 1) * a).sum(1))


def score_cam_batched(model, x, target, layer, batch_size):
    a, _ = _activations(model, x, layer)
    up = F.interpolate(a, size=x.shape[2:], mode="bilinear", align_corners=False)[0]
    flat = up.flatten(1)
    lo, hi = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
    valid = (hi > lo).flatten()
    masks = ((flat - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))).view_as(up)
    weights = torch.zeros(a.shape[1])
    with torch.no_grad():
        for start in range(0, a.shape[1], batch_size):
            m = masks[start:start + batch_size].unsqueeze(1)
            weights[start:start + batch_size] = model(x * m).softmax(1)[:, target]
    weights = weights * valid
    return F.relu((weights.view(1, -1, 1, 1) * a).sum(1))


# ---------------------------------------------------------------------------------------
# occlusion


def _windows(h, w, window, stride):
    return [(i, j) for i in range(0, h - window + 1, stride) for j in range(0, w - window + 1, stride)]


def occlusion_loop(model, x, target, window, stride):
    h, w = x.shape[2:]
    total, count = torch.zeros(h, w), torch.zeros(h, w)
    with torch.no_grad():
        clean = model(x)[0, target]
        for i, j in _windows(h, w, window, stride):
            xo = x.clone()
            xo[:, :, i:i + window, j:j + window] = 0
            total[i:i + window, j:j + window] += clean - model(xo)[0, target]
            count[i:i + window, j:j + window] += 1
    return (total / count.clamp(min=1)).unsqueeze(0)


def occlusion_batched(model, x, target, window, stride, batch_size):
    h, w = x.shape[2:]
    positions = _windows(h, w, window, stride)
    total, count = torch.zeros(h, w), torch.zeros(h, w)
    with torch.no_grad():
        clean = model(x)[0, target]
        for start in range(0, len(positions), batch_size):
            chunk = positions[start:start + batch_size]
            xo = x.repeat(len(chunk), 1, 1, 1)
            for k, (i, j) in enumerate(chunk):
                xo[k, :, i:i + window, j:j + window] = 0
            drops = clean - model(xo)[:, target]
            for k, (i, j) in enumerate(chunk):
                total[i:i + window, j:j + window] += drops[k]
                count[i:i + window, j:j + window] += 1
    return (total / count.clamp(min=1)).unsqueeze(0)
