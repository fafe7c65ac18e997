"""What the dashboard serves: one model, its images, cached captures, and the methods.

Only the public cnnviz API is used. A model call holds ``model_lock`` (a forward with
capture hooks must not meet another thread's forward on the same modules). Captures,
predictions and attribution maps are cached, so switching filters or colormaps re-renders
without running the model again.
"""
from __future__ import annotations

import collections
import itertools
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

import cnnviz

from . import render

#: Methods on the page, in the order shown; LIVE ones stream images while they run.
METHODS = ("feature_maps", "filter_weights", "inversion", "maximization", "saliency", "smooth_grad", "grad_cam",
           "integrated_gradients", "occlusion", "lime", "fgsm")
LIVE = ("inversion", "maximization")
METHOD_TITLES = {"feature_maps": "Feature maps", "filter_weights": "Filter weights", "inversion": "Feature inversion",
                 "maximization": "Activation maximization", "saliency": "Saliency", "smooth_grad": "SmoothGrad",
                 "grad_cam": "Grad-CAM", "integrated_gradients": "Integrated gradients", "occlusion": "Occlusion",
                 "lime": "LIME", "fgsm": "FGSM"}
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class RequestError(ValueError):
    """A request the session refuses: its message goes back to the client with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Cancelled(Exception):
    """The running job was cancelled by a newer request or the stop button."""


@dataclass
class ModelInfo:
    """The model and what it was built for: input side, normalization, class names."""

    model: Any
    name: str
    size: int
    labels: List[str]
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    layers: List[cnnviz.LayerRow] = field(default_factory=list)

    def label(self, k: int) -> str:
        return self.labels[k] if 0 <= k < len(self.labels) else f"class {k}"


def _is_cifar_model(model) -> bool:
    kind = type(model).__name__ if not isinstance(model, torch.jit.ScriptModule) else getattr(model, "original_name", "")
    return kind == "CifarResNet"


def model_info(model, labels=None, size: Optional[int] = None, mean: Optional[Sequence[float]] = None,
               std: Optional[Sequence[float]] = None, name: Optional[str] = None) -> ModelInfo:
    """Describes ``model``. Arguments given win; then what :func:`cnnviz.zoo.info` knows
    (the sample models, or one recorded with :func:`cnnviz.zoo.describe`); then guesses:
    ``size`` 32 for the sample CIFAR ResNets, else 224 with a warning (a wrong input size
    changes the answers silently); ``labels`` ("imagenet", "cifar10", a list or None) the
    ImageNet names for 1000 outputs, the CIFAR-10 names for the sample CIFAR ResNets, else
    "class k"; ``mean``/``std`` ImageNet's."""
    known = cnnviz.zoo.info(model)
    if size is None and known is not None and known.input_size is not None:
        _, h, w = known.input_size
        if h != w:
            raise ValueError(f"cnnviz: the dashboard shows square inputs; this model was described with "
                             f"{h}x{w}: pass size=")
        size = h
    if size is None:
        if _is_cifar_model(model):
            size = 32
        else:
            size = 224
            warnings.warn("cnnviz: nothing is known about this model's input size; assuming 224x224 (pass "
                          "size=, or record it once with cnnviz.zoo.describe)", RuntimeWarning, stacklevel=2)
    if int(size) < 8:
        raise ValueError(f"cnnviz: the input size must be at least 8 pixels, got {size}")
    if known is not None:
        mean = mean or known.mean
        std = std or known.std
    mean = tuple(float(m) for m in (mean or cnnviz.IMAGENET_MEAN))
    std = tuple(float(s) for s in (std or cnnviz.IMAGENET_STD))
    rows = list(cnnviz.summary(model, (1, 3, int(size), int(size))))
    if labels is None and known is not None and known.labels is not None:
        labels = known.labels
    if labels is None:
        with torch.no_grad():
            outputs = model(torch.zeros(1, 3, int(size), int(size))).shape[-1]
        labels = "imagenet" if outputs == 1000 else ("cifar10" if outputs == 10 and _is_cifar_model(model) else None)
    return ModelInfo(model, name or type(model).__name__, int(size), cnnviz.zoo.labels_for(labels), mean, std, rows)


def sample_photos() -> List[str]:
    """The photos of the sample-data folder (none when it is missing)."""
    try:
        folder = os.path.join(cnnviz.data_dir(), "images")
    except FileNotFoundError:
        return []
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(PHOTO_EXTENSIONS))


@dataclass
class StoredImage:
    id: str
    name: str
    source: str          # "given", "sample" or "upload"
    image: torch.Tensor  # (H, W, 3) uint8 as decoded
    x: torch.Tensor      # (1, 3, size, size) normalized model input


class LRU(collections.OrderedDict):
    """A small least-recently-used cache."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def get_or(self, key, make: Callable[[], Any]):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


class Session:
    """The model, the images and the caches behind one dashboard."""

    max_uploads = 32

    def __init__(self, info: ModelInfo, images: Sequence = (), image_names: Optional[Sequence[str]] = None,
                 samples: Optional[Sequence[str]] = None) -> None:
        self.info = info
        self.model_lock = threading.RLock()
        self._lock = threading.Lock()  # the image store and the caches
        self.images: "collections.OrderedDict[str, StoredImage]" = collections.OrderedDict()
        self._ids = itertools.count()
        self.captures = LRU(64)       # (image id, layer) -> (C, h, w) activation
        self.maps = LRU(128)          # (image id, method, layer, target, params) -> result tensors
        self.predictions = LRU(256)   # image id -> [(index, label, probability)]
        self.model_calls = 0          # how often the model was run (tests check the caches)
        for i, image in enumerate(images):
            name = image_names[i] if image_names and i < len(image_names) else f"image {i + 1}"
            self.add_image(image, name, "given")
        for path in (sample_photos() if samples is None else samples):
            self.add_image(cnnviz.load_image(path), os.path.basename(path), "sample")

    # Images ---------------------------------------------------------------------------
    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        s = self.info.size
        # The ImageNet evaluation crop for full-size models, a plain resize for CIFAR-sized ones.
        return cnnviz.preprocess(image, size=s, resize=s * 8 // 7 if s >= 64 else None, mean=self.info.mean,
                                 std=self.info.std)

    def add_image(self, image, name: str, source: str) -> StoredImage:
        """Adds a photo: a path (given images only), an (H, W, 3) image or a model input."""
        if isinstance(image, (str, os.PathLike)):
            image = cnnviz.load_image(image)
        if isinstance(image, torch.Tensor) and image.dim() == 4:
            if tuple(image.shape[1:]) != (3, self.info.size, self.info.size):
                raise ValueError(f"cnnviz: a model input must be (1, 3, {self.info.size}, {self.info.size}), "
                                 f"got {tuple(image.shape)}")
            x = image[:1].detach().float().cpu()
            pixels = render.show_input(x, self.info.mean, self.info.std)
        else:
            pixels = cnnviz.as_image_tensor(image)
            x = self.preprocess(pixels)
        prefix = {"given": "g", "sample": "s", "upload": "u"}[source]
        stored = StoredImage(f"{prefix}{next(self._ids)}", name, source, pixels, x)
        with self._lock:
            self.images[stored.id] = stored
            uploads = [k for k, v in self.images.items() if v.source == "upload"]
            for k in uploads[:max(0, len(uploads) - self.max_uploads)]:
                del self.images[k]
        return stored

    def image(self, image_id: str) -> StoredImage:
        with self._lock:
            stored = self.images.get(str(image_id))
        if stored is None:
            raise RequestError(f"unknown image {image_id!r}", 404)
        return stored

    def image_list(self) -> List[Dict[str, str]]:
        with self._lock:
            return [{"id": s.id, "name": s.name, "source": s.source} for s in self.images.values()]

    # Model queries (cached) -----------------------------------------------------------
    def layer(self, name: str) -> cnnviz.LayerRow:
        for row in self.info.layers:
            if row.name == name:
                return row
        raise RequestError(f"unknown layer {name!r}")

    def spatial_layers(self) -> List[cnnviz.LayerRow]:
        """Layers with (1, C, h, w) outputs: the ones feature maps, inversion, maximization
        and Grad-CAM work on."""
        return [r for r in self.info.layers if r.name and len(r.output_shape) == 4]

    def predict(self, image_id: str, k: int = 5) -> List[Dict[str, Any]]:
        """The top-``k`` classes (k <= 20) of the image, from the cache when there."""
        stored = self.image(image_id)

        def run():
            with self.model_lock:
                self.model_calls += 1
                with torch.no_grad():
                    logits = self.info.model(stored.x)
            probs = torch.softmax(logits.float(), dim=-1)[0]
            top = probs.topk(min(20, probs.numel()))
            return [{"index": int(i), "label": self.info.label(int(i)), "probability": float(p)}
                    for p, i in zip(top.values, top.indices)]

        with self._lock:
            cached = self.predictions.get(stored.id)
        if cached is None:
            cached = run()
            with self._lock:
                self.predictions[stored.id] = cached
        return cached[:k]

    def activation(self, image_id: str, layer: str) -> torch.Tensor:
        """The (C, h, w) activation of ``layer`` for the image, from the cache when there."""
        stored = self.image(image_id)
        row = self.layer(layer)
        if len(row.output_shape) != 4:
            raise RequestError(f"layer {layer!r} gives {tuple(row.output_shape)}, not feature maps (N, C, H, W); "
                               "pick a convolutional layer or block")
        key = (stored.id, layer)
        with self._lock:
            act = self.captures.get(key)
        if act is None:
            with self.model_lock:
                self.model_calls += 1
                act = cnnviz.feature_maps(self.info.model, stored.x, [layer])[layer][0].detach()
            with self._lock:
                self.captures[key] = act
        return act

    def filters(self, image_id: str, layer: str) -> List[Dict[str, float]]:
        """Every channel of ``layer`` with its mean activation on the image, strongest first
        (what cnnviz.top_filters ranks by)."""
        act = self.activation(image_id, layer)
        scores = act.float().flatten(1).mean(1)
        order = torch.argsort(scores, descending=True)
        return [{"channel": int(c), "score": float(scores[c])} for c in order]

    def cached_map(self, key: Tuple, make: Callable[[], Any]):
        with self._lock:
            if key in self.maps:
                self.maps.move_to_end(key)
                return self.maps[key]
        with self.model_lock:
            self.model_calls += 1
            value = make()
        with self._lock:
            self.maps[key] = value
            while len(self.maps) > self.maps.capacity:
                self.maps.popitem(last=False)
        return value
