"""Batches of images from a tensor or from any iterable of batches (a DataLoader)."""
from __future__ import annotations

from typing import Iterable, Iterator, Union

import torch

Images = Union[torch.Tensor, Iterable]


def model_device(model) -> torch.device:
    """The device of the model's first parameter (the CPU when it has none)."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def iter_batches(images: Images, batch_size: int, fn: str, device: torch.device = None) -> Iterator[torch.Tensor]:
    """Yields (n, C, H, W) batches: slices of a tensor, or the items of an iterable (a tensor,
    or a tuple / list / dict whose first tensor, or ``"image"`` / ``"images"`` entry, is the
    batch, as DataLoaders yield (images, labels)). Raises ValueError when nothing comes."""
    if batch_size < 1:
        raise ValueError(f"cnnviz: {fn}: batch_size must be at least 1, got {batch_size}")
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[0] == 0:
            raise ValueError(f"cnnviz: {fn}: images must be an (N, C, H, W) batch with N > 0, got shape "
                             f"{tuple(images.shape)}")
        source: Iterable = images.split(batch_size)
    else:
        try:
            source = iter(images)
        except TypeError:
            raise TypeError(f"cnnviz: {fn}: images must be a tensor or an iterable of batches, got "
                            f"{type(images).__name__}") from None
    seen = False
    for item in source:
        batch = _batch_of(item, fn)
        if batch.dim() == 3:
            batch = batch.unsqueeze(0)
        if batch.dim() != 4:
            raise ValueError(f"cnnviz: {fn}: each batch must be (n, C, H, W), got shape {tuple(batch.shape)}")
        if batch.shape[0] == 0:
            continue
        seen = True
        yield batch if device is None else batch.to(device)
    if not seen:
        raise ValueError(f"cnnviz: {fn}: the images iterable yielded no images")


def _batch_of(item, fn: str) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        return item
    if isinstance(item, dict):
        for key in ("image", "images", "input", "x"):
            if isinstance(item.get(key), torch.Tensor):
                return item[key]
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        return item[0]
    raise TypeError(f"cnnviz: {fn}: a batch must be a tensor or a tuple whose first entry is the image tensor, "
                    f"got {type(item).__name__}")
