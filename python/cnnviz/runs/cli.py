"""``cnnviz run``: the command-line face of :func:`cnnviz.run` (also under torchrun)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List

from .. import image as _image

NORMALIZATION = {"imagenet": (_image.IMAGENET_MEAN, _image.IMAGENET_STD),
                 "cifar10": (_image.CIFAR10_MEAN, _image.CIFAR10_STD),
                 "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="attribution maps / analyses over a dataset into a resumable store",
                       description="Runs attribution methods over every image of a folder or file list "
                                   "and writes a chunked HDF5 store (OUT/run.h5). Running it again "
                                   "resumes. Under torchrun each process takes its share.")
    p.add_argument("--model", required=True, help="a zoo name (resnet20, mobilenet_v2, ...) or a TorchScript file")
    p.add_argument("--data", required=True, help="a folder of images (class subfolders allowed) or a .txt list")
    p.add_argument("--methods", default="saliency,grad_cam,ig",
                   help="comma-separated: saliency, smooth_grad, guided_backprop, grad_cam, grad_cam_pp, "
                        "layer_cam, score_cam, ig (integrated_gradients), occlusion, lime")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE",
                   help="a method option, e.g. ig.steps=32 or grad_cam.layer=layer2 (repeatable)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--chunk-size", type=int, default=None, help="images per chunk file (default about 256)")
    p.add_argument("--targets", default="predictions", help="predictions, labels, or a class index for all")
    p.add_argument("--labels", default="auto", choices=("auto", "name", "folders", "none"),
                   help="where labels come from (auto: class subfolders, else the number ending the name)")
    p.add_argument("--size", type=int, default=None, help="input side (default: the zoo model's)")
    p.add_argument("--resize", type=int, default=None, help="resize the short side, then center-crop --size")
    p.add_argument("--normalization", choices=sorted(NORMALIZATION), default=None,
                   help="input statistics (default: the zoo model's, else imagenet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="delete OUT first instead of resuming")
    p.add_argument("--no-progress", action="store_true")
    return p


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _methods(names: str, sets: List[str]) -> List[Any]:
    from .methods import ALIASES

    canon = [ALIASES.get(m.strip().lower(), m.strip().lower()) for m in names.split(",") if m.strip()]
    options: Dict[str, Dict[str, Any]] = {m: {} for m in canon}
    for item in sets:
        key, sep, value = item.partition("=")
        method, dot, option = key.partition(".")
        method = ALIASES.get(method.lower(), method.lower())
        if not sep or not dot or method not in options:
            raise ValueError(f"--set {item!r}: expected METHOD.OPTION=VALUE for one of {', '.join(canon)}")
        options[method][option] = _value(value)
    return [(m, options[m]) for m in canon]


def main(args) -> int:
    import cnnviz

    try:
        targets: Any = args.targets
        if targets not in ("predictions", "labels"):
            targets = int(targets)
        mean, std = NORMALIZATION[args.normalization] if args.normalization else (None, None)
        summary = cnnviz.run(args.model, args.data, _methods(args.methods, args.set), args.out,
                             batch_size=args.batch_size, num_workers=args.workers, targets=targets,
                             chunk_size=args.chunk_size, size=args.size, resize=args.resize, mean=mean, std=std,
                             labels=None if args.labels == "none" else args.labels, seed=args.seed,
                             progress=not args.no_progress, overwrite=args.overwrite)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as e:
        text = str(e)
        print(text if text.startswith("cnnviz:") else f"cnnviz: {text}", file=sys.stderr)
        return 2
    if args.no_progress and int(os.environ.get("RANK", "0")) == 0:
        print(summary)
    return 0
