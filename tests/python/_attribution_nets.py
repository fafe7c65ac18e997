"""Small networks and plain-PyTorch references shared by the attribution tests."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


class GuidedReLU(torch.autograd.Function):
    """The guided-backprop rule written out: ReLU forward; backward passes a gradient only
    where it is positive and the unit was active."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * (x > 0).to(g.dtype)


class SmallNet(nn.Module):
    """conv-relu-conv-relu-conv-relu-pool-linear; the ReLUs are modules, in-place modules
    or functional calls (`kind`), or the hand-written guided rule (`guided=True`)."""

    def __init__(self, kind: str = "module", guided: bool = False, classes: int = 5) -> None:
        super().__init__()
        self.kind, self.guided = kind, guided
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.act1 = nn.ReLU(inplace=(kind == "inplace"))
        self.act2 = nn.ReLU(inplace=(kind == "inplace"))
        self.act3 = nn.ReLU(inplace=(kind == "inplace"))
        self.fc = nn.Linear(8, classes)

    def _relu(self, x, module):
        if self.guided:
            return GuidedReLU.apply(x)
        return F.relu(x) if self.kind == "functional" else module(x)

    def forward(self, x):
        x = self._relu(self.conv1(x), self.act1)
        x = self._relu(self.conv2(x), self.act2)
        x = self._relu(self.conv3(x), self.act3)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def small_net(kind: str = "module", seed: int = 0, dtype=torch.float64) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet(kind).to(dtype).eval()


def guided_copy(net: SmallNet) -> SmallNet:
    ref = copy.deepcopy(net)
    ref.guided = True
    return ref


def input_grad(model, x, target):
    """d(sum_n logits[n, target[n]]) / dx by plain autograd."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    t = torch.as_tensor(target).expand(x.shape[0]) if not isinstance(target, list) else torch.tensor(target)
    return torch.autograd.grad(out.gather(1, t.view(-1, 1)).sum(), x)[0], out


def hooked(model, x, layer: str, target):
    """Activations of `layer` (forward hook) and the gradient of the target scores with
    respect to them, in plain PyTorch."""
    store = {}
    module = model.get_submodule(layer)
    h = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        out = model(x.clone().requires_grad_(True))
    finally:
        h.remove()
    t = torch.as_tensor(target).expand(x.shape[0]) if not isinstance(target, list) else torch.tensor(target)
    g = torch.autograd.grad(out.gather(1, t.view(-1, 1)).sum(), store["a"])[0]
    return store["a"].detach(), g, out.detach()
