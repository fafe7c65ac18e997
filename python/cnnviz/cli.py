"""The ``cnnviz`` command: quick looks at a photo through a model, without a notebook.

    cnnviz info
    cnnviz predict PHOTO [--model mobilenet_v2|resnet20|resnet56|FILE.pt] [-k 5]
    cnnviz explain PHOTO --method grad_cam --out map.png [--model ...] [--layer NAME]
    cnnviz summary [--model ...]
    cnnviz serve [--model ...] [--port N] [IMAGE ...]      (the interactive dashboard)
    cnnviz report IMAGE... [--model ...] --out report.html [--methods ...] [--layers ...]
    cnnviz run --model resnet20 --data FOLDER|LIST.txt --methods saliency,grad_cam,ig --out DIR

Models are the pretrained samples of ``cnnviz.zoo`` (from ``$CNNVIZ_DATA``) or a TorchScript
file; a TorchScript model needs ``--size`` (its input side) and ``--labels``.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Tuple

import torch

import cnnviz

METHODS = ("saliency", "smooth_grad", "guided_backprop", "grad_cam", "grad_cam_pp", "layer_cam",
           "score_cam", "integrated_gradients", "occlusion", "lime")
# The Grad-CAM layer of each sample model (input size and labels come from its ModelInfo).
ZOO = {"mobilenet_v2": "features", "resnet20": "layer3", "resnet56": "layer3", "resnet20_traced": "layer3"}


def _model(args) -> Tuple[torch.nn.Module, int, Optional[str], Optional[str]]:
    """(model, input side, label set, default CAM layer) for --model."""
    if args.model in ZOO:
        model = cnnviz.zoo.pretrained(args.model)
        spec = cnnviz.zoo.info(model)
        return model, args.size or spec.input_size[1], args.labels or spec.labels, ZOO[args.model]
    if args.model.endswith(".pt") or args.model.endswith(".pth"):
        model = torch.jit.load(args.model, map_location="cpu").eval()
        return model, args.size or 224, args.labels, None
    raise ValueError(f"unknown model {args.model!r}: choose {', '.join(ZOO)} or a TorchScript file")


def _input(path: str, size: int) -> torch.Tensor:
    image = cnnviz.load_image(path)
    # ImageNet evaluation crop for full-size models; a plain resize for CIFAR-sized ones.
    return cnnviz.preprocess(image, size=size, resize=size * 8 // 7 if size >= 64 else None)


def _explain(model, x: torch.Tensor, method: str, layer: Optional[str]) -> torch.Tensor:
    """The (H, W) map of ``method`` for the predicted class."""
    if method in ("grad_cam", "grad_cam_pp", "layer_cam", "score_cam"):
        if layer is None:
            raise ValueError(f"{method} needs --layer for this model")
        return getattr(cnnviz, method)(model, x, layer).upsampled[0]
    return getattr(cnnviz, method)(model, x).map[0]


def _serve(model, size: int, labels, args) -> int:
    from .app.server import dashboard

    board = dashboard(model, args.images, labels, size=size, samples=not args.no_samples, port=args.port,
                      name=args.model)
    print(f"cnnviz dashboard for {args.model}: {board.url}\n(Ctrl-C to stop)", flush=True)
    try:
        board.wait()
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="cnnviz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions and the sample-data folder")

    def with_model(p):
        p.add_argument("--model", default="mobilenet_v2", help="a zoo name or a TorchScript file")
        p.add_argument("--size", type=int, default=None, help="input side in pixels")
        p.add_argument("--labels", default=None, help="imagenet or cifar10")
        return p

    pr = with_model(sub.add_parser("predict", help="top-k classes of a photo"))
    pr.add_argument("photo")
    pr.add_argument("-k", type=int, default=5)
    ex = with_model(sub.add_parser("explain", help="an attribution map over a photo"))
    ex.add_argument("photo")
    ex.add_argument("--method", choices=METHODS, default="grad_cam")
    ex.add_argument("--layer", default=None, help="CAM layer (default: the model's last conv block)")
    ex.add_argument("--out", required=True, help="PNG/JPEG/BMP to write")
    ex.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity")
    with_model(sub.add_parser("summary", help="the model's layers, shapes and parameters"))
    sv = with_model(sub.add_parser("serve", help="the interactive dashboard in a browser (127.0.0.1)"))
    sv.add_argument("images", nargs="*", help="photos to offer besides the samples")
    sv.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    sv.add_argument("--no-samples", action="store_true", help="leave out the sample photos")
    rp = with_model(sub.add_parser("report", help="a self-contained HTML report on photos"))
    rp.add_argument("images", nargs="+", help="photos")
    rp.add_argument("--out", default="report.html", help="the HTML file to write")
    rp.add_argument("--methods", default=None,
                    help="comma-separated: saliency,smooth_grad,guided_backprop,grad_cam,grad_cam_pp,layer_cam,"
                         "score_cam,integrated_gradients,occlusion,lime,"
                         "feature_maps,filters,inversion,adversarial (default: all)")
    rp.add_argument("--layers", default=None, help="comma-separated layer names (default: four over the depth)")
    rp.add_argument("--inversion-steps", type=int, default=200)
    from .runs.cli import add_parser as _add_run_parser

    _add_run_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "run":
        from .runs.cli import main as _run_main

        return _run_main(args)

    try:
        if args.command == "info":
            try:
                data = cnnviz.data_dir()
            except FileNotFoundError:
                data = "not found (set CNNVIZ_DATA)"
            print(f"cnnviz {cnnviz.__version__}, torch {torch.__version__}, "
                  f"{torch.get_num_threads()} threads, sample data: {data}")
            return 0
        if args.command == "report":
            from .app.report import report

            split = (lambda v: [t.strip() for t in v.split(",") if t.strip()] if v else None)
            the_model, size, labels, _ = _model(args)
            report(args.images, the_model, args.out, methods=split(args.methods), layers=split(args.layers),
                   labels=labels, size=size, inversion_steps=args.inversion_steps,
                   title=f"cnnviz report: {args.model}")
            print(f"wrote {args.out}")
            return 0
        model, size, labels, layer = _model(args)
        if args.command == "serve":
            return _serve(model, size, labels, args)
        if args.command == "summary":
            print(cnnviz.summary(model, (1, 3, size, size)))
            return 0
        x = _input(args.photo, size)
        if args.command == "predict":
            for p in cnnviz.predict(model, x, k=args.k, labels=labels):
                print(f"{p.probability:7.2%}  {p.index:4d}  {p.label}")
            return 0
        heat = _explain(model, x, args.method, args.layer or layer)
        cnnviz.save_image(cnnviz.overlay(cnnviz.deprocess(x), heat, alpha=args.alpha), args.out)
        print(f"wrote {args.out}")
        return 0
    except (ValueError, OSError, IndexError) as e:
        print(f"cnnviz: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
