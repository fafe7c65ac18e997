"""Optimization-based pictures (notebook sections 8-9, challenges 2-3, the deep-dream bonus).

``run(model, image_tensor, out_dir)`` writes
  * ``06_inversions.png``: the photo and its reconstructions from 5 depths, side by side,
    with pixel MSE and SSIM against the photo printed (information lost with depth);
  * ``07_maximize_<layer>.png``: images that maximize the 4 filters the photo excites most,
    for an early and a late layer;
  * ``08_deep_dream.png``: the photo dreamed at a middle layer.
The image is worked at 128 px (deep dream at 160) to keep the run near a minute on 2 cores.

Standalone: python examples/demo_optimization.py [--out out] [--image PATH]
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F

import cnnviz


def pick_layers(model, k):
    """k layers spread over the depth: children of ``model.features`` when there is one
    (VGG, MobileNet, DenseNet), otherwise the convolutions."""
    names = cnnviz.layer_names(model)
    trunk = [n for n in names if n.startswith("features.") and n.count(".") == 1]
    if len(trunk) < k:
        convs = dict(model.named_modules())
        trunk = [n for n in names if isinstance(convs[n], torch.nn.Conv2d)]
    idx = torch.linspace(1, len(trunk) - 2, k).round().long().tolist()
    return [trunk[i] for i in idx]


def save(image, out_dir, name):
    path = os.path.join(out_dir, name)
    cnnviz.save_image(image, path)
    print(f"  wrote {path}")


def run(model, image_tensor, out_dir, size=128, progress=False):
    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    x = F.interpolate(image_tensor[:1], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    photo = cnnviz.deprocess(x)

    # Feature inversion at 5 depths (sections 8-9, challenge 3).
    t0 = time.perf_counter()
    layers = pick_layers(model, 5)
    results = cnnviz.invert_layers(model, x, layers, iterations=100, optimizer="adam", learning_rate=0.1,
                                   lambda_tv=1e-3, progress=progress)
    tiles = [photo]
    for layer, r in results.items():
        image = cnnviz.deprocess(r.image)
        tiles.append(image)
        mse = (r.image - x).pow(2).mean().item()
        print(f"  invert {layer:14s} loss {r.final_loss:.3f}  pixel MSE {mse:.3f}  "
              f"SSIM {cnnviz.ssim(image, photo).item():.3f}")
    save(cnnviz.make_grid(tiles, nrow=len(tiles), padding=2), out_dir, "06_inversions.png")
    print(f"  inversions: {time.perf_counter() - t0:.0f} s")

    # Activation maximization of the photo's most active filters (challenge 2).
    t0 = time.perf_counter()
    for layer in (layers[1], layers[-2]):
        channels = cnnviz.top_filters(model, x, layer, k=4).channels[0].tolist()
        r = cnnviz.maximize(model, layer, channel=channels, iterations=64, size=size, progress=progress)
        grid = cnnviz.make_grid([cnnviz.deprocess(r.image[i:i + 1]) for i in range(len(channels))], nrow=4,
                                padding=2)
        print(f"  maximize {layer}: channels {channels}, objective "
              f"{[round(v, 2) for v in r.initial_objective.tolist()]} -> {[round(v, 2) for v in r.objective.tolist()]}")
        save(grid, out_dir, f"07_maximize_{layer}.png")
    print(f"  maximization: {time.perf_counter() - t0:.0f} s")

    # Deep dream (bonus).
    t0 = time.perf_counter()
    big = F.interpolate(image_tensor[:1], size=(160, 160), mode="bilinear", align_corners=False, antialias=True)
    dream = cnnviz.deep_dream(model, big, layers[2], iterations=8, octaves=3, progress=progress)
    save(cnnviz.make_grid([cnnviz.deprocess(big), cnnviz.deprocess(dream.image)], nrow=2, padding=2), out_dir,
         "08_deep_dream.png")
    print(f"  deep dream ({layers[2]}): {time.perf_counter() - t0:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--image", default=None, help="photo (default: cat_chelsea.png from the sample data)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model = cnnviz.zoo.pretrained("mobilenet_v2")
    path = args.image or os.path.join(cnnviz.data_dir(), "images", "cat_chelsea.png")
    x = cnnviz.preprocess(cnnviz.load_image(path), size=224, resize=256)
    t0 = time.perf_counter()
    run(model, x, args.out, progress=True)
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
