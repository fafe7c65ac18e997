"""Pretrained sample networks from the cnnviz sample-data folder (``$CNNVIZ_DATA``).

Nothing is downloaded: the weights are read from ``<data>/weights``. ``cifar_resnet`` builds
the CIFAR-10 ResNet-20/56 architecture (He et al. 2016, option-A shortcuts) that the
``resnet20_cifar10.pth``/``resnet56_cifar10.pth`` state dicts fit.
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["cifar_resnet", "pretrained", "imagenet_labels", "cifar10_labels", "labels_for", "ModelInfo",
           "describe", "info"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """What a network was built for, so that ``preprocess``, ``predict`` and the command
    line need no per-model arguments.

    ``labels``: ``"imagenet"``, ``"cifar10"`` or a tuple of class names (None: unknown).
    ``input_size``: (C, H, W) the network was trained at. ``mean``/``std``: the per-channel
    input normalization ``x = (pixel - mean) / std``. ``resize``: the shorter side an image
    is resized to before the center crop of ``input_size`` (None: resize to it directly)."""

    labels: Union[str, Tuple[str, ...], None] = None
    input_size: Optional[Tuple[int, int, int]] = None
    mean: Tuple[float, ...] = _IMAGENET_MEAN
    std: Tuple[float, ...] = _IMAGENET_STD
    resize: Optional[int] = None

    def label_names(self) -> List[str]:
        """The class names as a list (empty when unknown)."""
        return labels_for(self.labels)


# Keyed by the module object (weakly: the entry goes with the model).
_INFO: "weakref.WeakKeyDictionary[object, ModelInfo]" = weakref.WeakKeyDictionary()


def describe(model, *, labels: Union[str, Sequence[str], None] = None,
             input_size: Optional[Sequence[int]] = None, mean: Sequence[float] = _IMAGENET_MEAN,
             std: Sequence[float] = _IMAGENET_STD, resize: Optional[int] = None):
    """Records what ``model`` was built for (see :class:`ModelInfo`), once, so that
    ``preprocess(image, model=model)`` and ``predict(model, x)`` follow it. Returns the model.
    ``input_size`` is (C, H, W) or (H, W) (3 channels)."""
    size = None
    if input_size is not None:
        size = tuple(int(s) for s in input_size)
        if len(size) == 2:
            size = (3,) + size
        if len(size) != 3 or min(size) <= 0:
            raise ValueError(f"cnnviz: input_size must be (C, H, W) or (H, W) of positive ints, got {input_size}")
    if len(mean) != len(std) or (size is not None and len(mean) != size[0]):
        raise ValueError(f"cnnviz: mean and std need one value per channel, got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise ValueError("cnnviz: std values must be positive")
    names = labels if labels is None or isinstance(labels, str) else tuple(str(n) for n in labels)
    if isinstance(names, str):
        labels_for(names)  # rejects an unknown set name now rather than at predict time
    if resize is not None and int(resize) <= 0:
        raise ValueError(f"cnnviz: resize must be a positive int, got {resize}")
    _INFO[model] = ModelInfo(names, size, tuple(float(m) for m in mean), tuple(float(s) for s in std),
                             None if resize is None else int(resize))
    return model


def info(model) -> Optional[ModelInfo]:
    """What ``model`` was built for: set by :func:`pretrained` for the sample networks or by
    :func:`describe`; None when unknown."""
    try:
        return _INFO.get(model)
    except TypeError:  # not weak-referenceable: nothing recorded
        return None


class _Shortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the channels (no parameters)."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = _Shortcut(cout // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            stage = []
            for b in range(blocks):
                stage.append(BasicBlock(cin, cout, 2 if (b == 0 and i > 0) else 1))
                cin = cout
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_resnet(depth: int = 20) -> nn.Module:
    """A CIFAR-10 ResNet of depth 6n+2 (20, 32, 44, 56, 110) with random weights."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"cnnviz: CIFAR ResNet depth must be 6n+2, got {depth}")
    return CifarResNet((depth - 2) // 6)


def _weights(name: str) -> str:
    from . import data_dir

    path = os.path.join(data_dir(), "weights", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cnnviz: pretrained weights not found: {path}")
    return path


def pretrained(name: str) -> nn.Module:
    """A pretrained sample network in eval mode: ``"mobilenet_v2"`` (ImageNet, 224x224),
    ``"resnet20"`` or ``"resnet56"`` (CIFAR-10, 32x32), or ``"resnet20_traced"``
    (TorchScript). Each carries its :class:`ModelInfo` (labels, input size, normalization;
    see :func:`info`). Raises FileNotFoundError when the sample data is missing."""
    if name == "mobilenet_v2":
        import torchvision

        model = torchvision.models.mobilenet_v2()
        state = torch.load(_weights("mobilenet_v2_imagenet_fp16.pth"), map_location="cpu")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    elif name in ("resnet20", "resnet56"):
        model = cifar_resnet(int(name[6:]))
        model.load_state_dict(torch.load(_weights(f"{name}_cifar10.pth"), map_location="cpu"))
    elif name == "resnet20_traced":
        model = torch.jit.load(_weights("resnet20_cifar10_traced.pt"), map_location="cpu")
    else:
        raise ValueError(f"cnnviz: unknown pretrained model {name!r}; choose mobilenet_v2, "
                         "resnet20, resnet56 or resnet20_traced")
    model = model.eval()
    if name == "mobilenet_v2":
        describe(model, labels="imagenet", input_size=(3, 224, 224), resize=256)
    else:  # the CIFAR-10 ResNets were trained on ImageNet-normalized 32x32 images
        describe(model, labels="cifar10", input_size=(3, 32, 32))
    return model


def _read_labels(file: str) -> List[str]:
    path = os.path.join(os.path.dirname(__file__), "labels", file)
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f]


def imagenet_labels() -> List[str]:
    """The 1000 ImageNet class names in torchvision's index order."""
    return _read_labels("imagenet_classes.txt")


def cifar10_labels() -> List[str]:
    """The 10 CIFAR-10 class names."""
    return _read_labels("cifar10_classes.txt")


def labels_for(labels) -> List[str]:
    """``"imagenet"``, ``"cifar10"``, a list of names, or None (no names) -> a list."""
    if labels is None:
        return []
    if isinstance(labels, str):
        if labels == "imagenet":
            return imagenet_labels()
        if labels == "cifar10":
            return cifar10_labels()
        raise ValueError(f"cnnviz: unknown label set {labels!r}; use 'imagenet', 'cifar10' or a list")
    return [str(s) for s in labels]
