"""The cnnviz tour on real data: a pretrained MobileNetV2 (ImageNet) and a photo.

Prints the top-5 classes and the model summary, and writes pictures under --out:
the preprocessed input, first-layer filters, feature maps and filter responses, a
class-activation overlay, then feature inversions, activation maximization, deep dream
(demo_optimization.py), the attribution panels and an adversarial example
(demo_attribution.py), the analyses with their page out/analysis_faithfulness.html
(demo_analysis_faithfulness.py), and the interactive dashboard and HTML report with
screenshots (demo_dashboard.py).

Usage: python examples/demo.py [--out out] [--image PATH] [--quick]
"""
import argparse
import os
import sys
import time

import torch

import cnnviz

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def save(image, out_dir, name):
    path = os.path.join(out_dir, name)
    cnnviz.save_image(image, path)
    print(f"  wrote {path}")


def basics(model, x, image, out_dir):
    """Input, predictions, summary, filters, feature maps, filter responses, a heatmap."""
    save(cnnviz.deprocess(x), out_dir, "01_input.png")

    print("\nTop-5 (MobileNetV2, ImageNet):")
    for p in cnnviz.predict(model, x, k=5, labels="imagenet"):
        print(f"  {p.probability:6.1%}  {p.index:4d}  {p.label}")

    print("\nSummary (first 12 of", len(cnnviz.layer_names(model)), "modules):")
    print("\n".join(str(cnnviz.summary(model, (3, 224, 224))).splitlines()[:14]))

    filters = cnnviz.filter_weights(model, "features.0.0")
    save(cnnviz.make_grid(filters.rgb, nrow=8, padding=1), out_dir, "02_filters_features.0.0.png")

    layers = ["features.1.conv.0", "features.4.conv.0", "features.7.conv.0", "features.14.conv.0", "features.18"]
    maps = cnnviz.feature_maps(model, x, layers)
    for i, (name, act) in enumerate(maps.items()):
        grid = cnnviz.make_grid(act[0, :32].unsqueeze(1), nrow=8, padding=1, normalize=True,
                                scale_each=True, colormap="viridis")
        save(grid, out_dir, f"03_feature_maps_{i}_{name}.png")

    # Filter responses at one layer: the 16 most active channels, overlaid on the photo.
    act = maps["features.7.conv.0"][0]
    top = act.mean((1, 2)).topk(16).indices
    tiles = [cnnviz.overlay(image, act[c], alpha=0.6, colormap="jet") for c in top.tolist()]
    save(cnnviz.make_grid(tiles, nrow=4, padding=2), out_dir, "04_filter_responses_features.7.png")

    # A class-activation heatmap: last feature maps weighted by the top class's weights.
    feats = maps["features.18"][0]
    cls = cnnviz.predict(model, x, k=1)[0].index
    cam = torch.einsum("c,chw->hw", model.classifier[1].weight[cls].detach(), feats).clamp_min(0)
    save(cnnviz.overlay(image, cam, alpha=0.5), out_dir, "05_class_activation_overlay.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--image", default=None, help="photo (default: cat_chelsea.png from the sample data)")
    ap.add_argument("--quick", action="store_true", help="basics only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()

    try:
        model = cnnviz.zoo.pretrained("mobilenet_v2")
    except FileNotFoundError as e:
        sys.exit(f"{e}\nSet CNNVIZ_DATA to the sample-data folder (with weights/ and images/).")
    path = args.image or os.path.join(cnnviz.data_dir(), "images", "cat_chelsea.png")
    image = cnnviz.load_image(path)
    x = cnnviz.preprocess(image, size=224, resize=256)
    shown = cnnviz.deprocess(x)  # the 224x224 crop the model sees
    print(f"cnnviz {cnnviz.__version__}: {path} -> {tuple(x.shape)}")

    basics(model, x, shown, args.out)
    if not args.quick:
        import demo_attribution
        import demo_optimization

        print("\nOptimization (inversion, maximization, deep dream):")
        demo_optimization.run(model, x, args.out)
        # One attribution panel per photo: the cat and two more photos of the sample data.
        photos = [x] + [cnnviz.preprocess(cnnviz.load_image(os.path.join(cnnviz.data_dir(), "images", name)),
                                          size=224, resize=256) for name in ("dog.jpg", "macaws.png")]
        print("\nAttribution and adversarial examples:")
        demo_attribution.run(model, torch.cat(photos), "imagenet", args.out)
        import demo_analysis_faithfulness

        print("\nAnalyses (layer information, deletion/insertion, sanity check, adversarial report):")
        demo_analysis_faithfulness.run(model, torch.cat(photos), args.out)
        import demo_analysis_filters

        print("\nFilter analyses (statistics, redundancy, CKA):")
        demo_analysis_filters.run(args.out, model)
        import demo_dashboard

        print("\nDashboard and report:")
        demo_dashboard.run(model, args.out, [path, os.path.join(cnnviz.data_dir(), "images", "macaws.png")])
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; pictures in {os.path.abspath(args.out)}/")


if __name__ == "__main__":
    main()
