"""Datasets for runs: image files read with cnnviz's decoder, any user dataset, and the
collate step that drops unreadable samples instead of failing the batch."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from .. import image as _image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input (3, H, W): ``cnnviz.preprocess`` with these values.
    ``size`` None keeps each image's size (then all images must have one size)."""

    size: Optional[Union[int, Tuple[int, int]]] = None
    resize: Optional[int] = None
    mean: Tuple[float, ...] = _image.IMAGENET_MEAN
    std: Tuple[float, ...] = _image.IMAGENET_STD

    def __call__(self, image) -> torch.Tensor:
        return _image.preprocess(image, size=self.size, resize=self.resize, mean=self.mean, std=self.std)[0]

    def settings(self) -> Dict[str, Any]:
        size = self.size if self.size is None or isinstance(self.size, int) else list(self.size)
        return {"size": size, "resize": self.resize, "mean": list(self.mean), "std": list(self.std)}


def label_from_name(path: str) -> int:
    """The class index at the end of a file name (``cifar10_03_0.png`` -> 0), else -1."""
    stem = os.path.splitext(os.path.basename(path))[0]
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if "_" in stem and tail.isdigit() else -1


class ImageFiles(Dataset):
    """A folder (searched recursively, sorted) or a list of image files, decoded with
    ``cnnviz.load_image`` and made model inputs (3, H, W) by ``preprocess``.

    ``labels``: a list of ints (one per file), a callable ``path -> int``, ``"name"`` (the
    number after the last ``_`` of the file name, as in the sample data) or None (-1, unknown).
    A folder whose subfolders are classes (ImageFolder layout) gets their sorted order as
    labels when ``labels="folders"``. Items are ``(x, label)``; an unreadable file raises,
    which :func:`cnnviz.run` reports and skips.
    """

    def __init__(self, files: Union[str, Sequence[str]], preprocess: Optional[Preprocess] = None,
                 labels: Union[None, str, Sequence[int], Callable[[str], int]] = None) -> None:
        if isinstance(files, (str, os.PathLike)):
            files = os.fspath(files)
            if os.path.isdir(files):
                found = []
                for root, dirs, names in os.walk(files):
                    dirs.sort()
                    found += [os.path.join(root, n) for n in sorted(names)
                              if n.lower().endswith(IMAGE_EXTENSIONS)]
                if labels == "folders":
                    classes = sorted(d for d in os.listdir(files) if os.path.isdir(os.path.join(files, d)))
                    index = {c: i for i, c in enumerate(classes)}
                    labels = [index[os.path.relpath(f, files).split(os.sep)[0]] for f in found]
                self.files = found
            elif os.path.isfile(files) and files.endswith((".txt", ".lst")):
                base = os.path.dirname(os.path.abspath(files))
                with open(files, encoding="utf-8") as f:
                    self.files = [os.path.join(base, line.strip()) for line in f if line.strip()]
            else:
                raise ValueError(f"cnnviz: {files!r} is neither a folder nor a .txt list of image files")
        else:
            self.files = [os.fspath(f) for f in files]
        if not self.files:
            raise ValueError("cnnviz: no image files found")
        if labels == "name":
            self.labels = [label_from_name(f) for f in self.files]
        elif labels is None:
            self.labels = [-1] * len(self.files)
        elif callable(labels):
            self.labels = [int(labels(f)) for f in self.files]
        elif isinstance(labels, str):
            raise ValueError(f"cnnviz: labels must be 'name', 'folders', a list, a callable or None, got {labels!r}")
        else:
            self.labels = [int(v) for v in labels]
            if len(self.labels) != len(self.files):
                raise ValueError(f"cnnviz: {len(self.labels)} labels for {len(self.files)} files")
        self.preprocess = preprocess or Preprocess()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.preprocess(_image.load_image(self.files[i])), self.labels[i]

    def name(self, i: int) -> str:
        return self.files[i]


class Failed:
    """What a sample that could not be read becomes: its index and the error text."""

    __slots__ = ("index", "error")

    def __init__(self, index: int, error: str) -> None:
        self.index, self.error = index, error


class Indexed(Dataset):
    """Wraps any dataset so items are ``(index, x (C, H, W) float, label)`` or ``Failed``.

    A dataset item may be a tensor, an image (PIL, uint8 (H, W, 3)), or a tuple whose first
    element is one of those and whose second is the label. Images (not float tensors) go
    through ``preprocess``. Any exception while reading becomes a ``Failed`` marker."""

    def __init__(self, dataset, preprocess: Optional[Preprocess]) -> None:
        self.dataset, self.preprocess = dataset, preprocess

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            item = self.dataset[i]
            label = -1
            if isinstance(item, (tuple, list)):
                item, label = item[0], item[1]
                label = int(label) if label is not None else -1
            if not (isinstance(item, torch.Tensor) and item.is_floating_point()):
                if self.preprocess is None:
                    raise ValueError("cnnviz: the dataset gives images, not float tensors: pass size= "
                                     "(and mean/std) so they can be preprocessed")
                item = self.preprocess(item)
            if item.dim() == 4 and item.shape[0] == 1:
                item = item[0]
            if item.dim() != 3:
                raise ValueError(f"cnnviz: a dataset item must be (C, H, W), got {tuple(item.shape)}")
            return i, item.float(), label
        except Exception as e:  # reported and skipped, never fatal
            return Failed(i, f"{type(e).__name__}: {e}")


def collate(items: List) -> Dict[str, Any]:
    """Stacks the readable items; unreadable ones go to ``failed`` as ``(index, error)``."""
    good = [it for it in items if not isinstance(it, Failed)]
    failed = [(it.index, it.error) for it in items if isinstance(it, Failed)]
    if good:
        shapes = {tuple(it[1].shape) for it in good}
        if len(shapes) > 1:
            raise ValueError(f"cnnviz: images of different shapes {sorted(shapes)} in one batch; pass size=")
    return {
        "index": torch.tensor([it[0] for it in good], dtype=torch.int64),
        "x": torch.stack([it[1] for it in good]) if good else None,
        "label": torch.tensor([it[2] for it in good], dtype=torch.int64),
        "failed": failed,
    }
