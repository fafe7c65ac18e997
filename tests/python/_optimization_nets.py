"""A small network with nested, qualified layer names and plain-PyTorch references shared by
test_inversion.py, test_maximization.py and test_deep_dream.py."""
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1)
        self.relu = nn.ReLU(inplace=True)  # in-place after a captured layer must not matter

    def forward(self, x):
        return self.relu(self.conv(x))


class TinyNet(nn.Module):
    """stem - layer1.{0,1} - layer2.0 (stride 2) - pool - fc, He-initialized so activations
    keep a unit scale; layers are named like a torchvision ResNet's."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = Block(3, 8)
        self.layer1 = nn.Sequential(Block(8, 8), Block(8, 12))
        self.layer2 = nn.Sequential(Block(12, 16, stride=2))
        self.fc = nn.Linear(16, classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.constant_(m.bias, 0.05)
        self.eval()

    def forward(self, x):
        h = self.layer2(self.layer1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def activation(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of `layer` by a plain forward hook (a copy, so in-place ops after it
    do not change it)."""
    out = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.__setitem__("a", o.clone()))
    try:
        model(x)
    finally:
        handle.remove()
    return out["a"]


def ref_tv(x, beta):
    c = x[..., :-1, :-1]
    return ((x[..., :-1, 1:] - c).pow(2) + (x[..., 1:, :-1] - c).pow(2)).pow(beta / 2).sum()


def ref_inversion_loss(model, target, z, layer, lambda_alpha, alpha, lambda_tv, beta):
    """Mahendran & Vedaldi's objective with plain autograd ops."""
    a = activation(model, z, layer)
    return ((a - target).pow(2).sum() / target.pow(2).sum() + lambda_alpha * z.abs().pow(alpha).sum()
            + lambda_tv * ref_tv(z, beta))


def normalize(rgb):
    return (rgb - MEAN) / STD


def valid_range():
    return (0 - MEAN) / STD, (1 - MEAN) / STD


def no_parameter_grads(model) -> bool:
    return all(p.grad is None and p.requires_grad for p in model.parameters())


def decay_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """Lucent's spectrum scale 1 / max(f, 1 / max(h, w))^decay_power over the rfft2 bins."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = (fy ** 2 + fx ** 2).sqrt()
    return (1.0 / f.clamp(min=1.0 / max(h, w)) ** decay_power).float()


# Lucid's color_correlation_svd_sqrt, normalized by its largest column norm.
_COLOR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR = _COLOR / _COLOR.norm(dim=0).max()


def lucent_image(spectrum, h, w):
    """Lucent's fft_image + to_valid_rgb(decorrelate=True, sigmoid=True), normalized:
    spectrum (B, 3, h, w // 2 + 1, 2) -> (B, 3, h, w)."""
    scaled = decay_scale(h, w)[None, None, :, :, None] * spectrum
    image = torch.fft.irfftn(torch.view_as_complex(scaled.contiguous()), s=(h, w), norm="ortho") / 4.0
    image = torch.matmul(image.permute(0, 2, 3, 1), COLOR.T).permute(0, 3, 1, 2)
    return normalize(torch.sigmoid(image))


def lucent_spectrum(x):
    """The inverse of lucent_image for a normalized image x."""
    rgb = (x * STD + MEAN).clamp(1e-4, 1 - 1e-4)
    t = torch.logit(rgb)
    t = torch.matmul(t.permute(0, 2, 3, 1), torch.inverse(COLOR).T).permute(0, 3, 1, 2)
    spec = torch.view_as_real(torch.fft.rfftn(t * 4.0, dim=(-2, -1), norm="ortho"))
    return spec / decay_scale(x.shape[2], x.shape[3])[None, None, :, :, None]


def deprocess01(x):
    return (x * STD + MEAN).clamp(0, 1)


__all__ = ["TinyNet", "activation", "ref_inversion_loss", "normalize", "valid_range", "no_parameter_grads",
           "lucent_image", "lucent_spectrum", "decay_scale", "deprocess01", "MEAN", "STD"]
