"""Capture speed against the notebook's approach and across adapters, in one process.

1. All 31 VGG16 feature layers: ``cnnviz.feature_maps`` (one forward pass, hooks) against the
   notebook's ``get_layer_output`` called once per layer (a forward up to each layer) and its
   ``get_layer_outputs`` (one sequential pass over ``model.features``, which only works for
   models built as a flat Sequential).
2. Per-call overhead where it dominates: ResNet-20 on one 32x32 image, capturing
   ``layer2`` and the output, as an nn.Module (PyModel, hooks) and traced (ScriptModel,
   graph capture), against plain module hooks written here.

Usage: python benchmarks/compare_models.py [--threads 2] [--repeats 5]
"""
import argparse
import os
import sys

import torch
import torchvision

import cnnviz

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import timeit  # noqa: E402
from notebook_reference import get_layer_output, get_layer_outputs  # noqa: E402


def hooks_reference(model, x, names):
    """Plain forward hooks: what a careful user writes by hand."""
    got = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: got.__setitem__(n, o.clone())) for n in names]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads={torch.get_num_threads()} torch={torch.__version__}")

    vgg = torchvision.models.vgg16().eval()
    x = torch.randn(1, 3, 224, 224)
    names = [f"features.{i}" for i in range(31)]
    t_cnnviz = timeit(lambda: cnnviz.feature_maps(vgg, x, names), args.repeats)
    t_per_layer = timeit(lambda: [get_layer_output(vgg, x, i) for i in range(31)], max(1, args.repeats // 2), 1)
    t_seq = timeit(lambda: get_layer_outputs(vgg, x), args.repeats)
    print("\nVGG16, 31 feature layers, 1x3x224x224")
    print(f"  notebook get_layer_output per layer : {t_per_layer * 1e3:8.1f} ms  ({t_per_layer / t_cnnviz:5.1f}x cnnviz)")
    print(f"  notebook get_layer_outputs (1 pass) : {t_seq * 1e3:8.1f} ms  ({t_seq / t_cnnviz:5.1f}x cnnviz)")
    print(f"  cnnviz.feature_maps (1 pass, hooks) : {t_cnnviz * 1e3:8.1f} ms")

    try:
        resnet = cnnviz.zoo.pretrained("resnet20")
        traced = cnnviz.zoo.pretrained("resnet20_traced")
    except FileNotFoundError:
        resnet = cnnviz.zoo.cifar_resnet(20).eval()
        traced = torch.jit.trace(resnet, torch.randn(1, 3, 32, 32))
    xs = torch.randn(1, 3, 32, 32)
    n = 50
    t_ref = timeit(lambda: [hooks_reference(resnet, xs, ["layer2"]) for _ in range(n)], args.repeats) / n
    t_py = timeit(lambda: [cnnviz._C.capture(resnet, xs, ["layer2"], True) for _ in range(n)], args.repeats) / n
    t_js = timeit(lambda: [cnnviz._C.capture(traced, xs, ["layer2"], True) for _ in range(n)], args.repeats) / n
    t_plain = timeit(lambda: [resnet(xs) for _ in range(n)], args.repeats) / n
    print("\nResNet-20, 1x3x32x32, capture layer2 + output, per call")
    print(f"  plain forward, no capture           : {t_plain * 1e6:8.0f} us")
    print(f"  hand-written hooks                  : {t_ref * 1e6:8.0f} us")
    print(f"  cnnviz PyModel (nn.Module, hooks)   : {t_py * 1e6:8.0f} us  ({t_ref / t_py:4.2f}x hooks)")
    print(f"  cnnviz ScriptModel (traced graph)   : {t_js * 1e6:8.0f} us  ({t_ref / t_js:4.2f}x hooks, "
          f"{t_py / t_js:4.2f}x PyModel)")


if __name__ == "__main__":
    main()
