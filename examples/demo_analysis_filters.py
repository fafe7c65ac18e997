"""Filter analyses on the sample data: which MobileNetV2 filters fire for every photo and
which for one (and what the photo's own filters are once flat-colour filters are discounted),
which filters duplicate each other, and how the pretrained CIFAR ResNet-20 and ResNet-56
compare layer by layer (CKA). Writes figures, a page per analysis (analysis_filter_statistics.html,
analysis_redundancy.html, analysis_cka_resnet20_resnet56.html, analysis_cka_resnet56.html) and
analysis_filters.html with all of them under out/."""
import argparse
import html
import os
import time

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

import cnnviz  # noqa: E402
import cnnviz.plot as cplot  # noqa: E402
from _analysis_pages import write_pages  # noqa: E402


def _photos(size=160):
    folder = os.path.join(cnnviz.data_dir(), "images")
    names = sorted(f for f in os.listdir(folder) if f.endswith((".png", ".jpg")))
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(os.path.join(folder, f)), size=size) for f in names])
    return x, [os.path.splitext(n)[0] for n in names]


def _cifar():
    folder = os.path.join(cnnviz.data_dir(), "images", "cifar10_samples")
    names = sorted(os.listdir(folder))
    return torch.cat([cnnviz.preprocess(cnnviz.load_image(os.path.join(folder, f)), size=32) for f in names])


def _save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=90)
    print(f"  wrote {path}")
    return name


def run(out_dir, mobilenet=None):
    os.makedirs(out_dir, exist_ok=True)
    model = mobilenet if mobilenet is not None else cnnviz.zoo.pretrained("mobilenet_v2")
    sections = []
    t0 = time.perf_counter()

    # Statistics across the sample photos.
    x, names = _photos()
    layer = "features.4.conv.0"  # after a ReLU6: responses are non-negative
    stats = cnnviz.filter_statistics(model, x, layer, keep_per_image=True, batch_size=4)
    fig = cplot.show_filter_statistics(stats, image_labels=names, show=False)
    raw = cnnviz.top_filters(model, x, layer, k=5)
    rel = cnnviz.top_filters(model, x, layer, k=5, reference=stats)
    lines = [f"{n}: raw {r.tolist()}, relative {z.tolist()}" for n, r, z in zip(names, raw.channels, rel.channels)]
    sections.append(("filter_statistics", f"Filter statistics at MobileNetV2 {layer} over {stats.count} photos",
                     _save(fig, out_dir, "analysis_filter_statistics.png"),
                     f"{stats.consistent.numel()} consistently active filters, {stats.specific.numel()} "
                     f"image-specific. Top-5 filters per photo, by raw activation and relative to the filters' "
                     f"statistics over the photos (z-score): raw lists share "
                     f"{len(set(raw.channels.flatten().tolist()))} distinct filters, relative ones "
                     f"{len(set(rel.channels.flatten().tolist()))}.\n" + "\n".join(lines)))
    print(f"  {stats}")

    # Redundancy of a conv layer's filters, from weights and from activations on the photos.
    conv = "features.2.conv.0.0"
    red = cnnviz.filter_redundancy(model, conv, x, threshold=0.8)
    fig = cplot.show_redundancy(red, show=False)
    sections.append(("redundancy", f"Redundancy of MobileNetV2 {conv}", _save(fig, out_dir, "analysis_redundancy.png"),
                     f"{len(red.groups)} groups at correlation >= 0.8: {red.groups[:8]}; effective filters "
                     f"{red.effective_filters_activations:.1f} (activations), {red.effective_filters_weights:.1f} "
                     f"(weights) of {red.num_filters}; constant filters {red.constant_filters.tolist()}."))
    print(f"  {red}")

    # CKA between the pretrained CIFAR ResNets on the CIFAR-10 samples.
    r20, r56 = cnnviz.zoo.pretrained("resnet20"), cnnviz.zoo.pretrained("resnet56")
    cx = _cifar()
    la = ["conv1"] + [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    lb = ["conv1"] + [f"layer{s}.{b}" for s in (1, 2, 3) for b in (0, 2, 4, 6, 8)]
    res = cnnviz.cka(r20, r56, cx, la, lb, batch_size=len(cx))
    fig = cplot.show_cka(res, label_a="ResNet-20", label_b="ResNet-56", show=False)
    sections.append(("cka_resnet20_resnet56", "CKA between ResNet-20 and ResNet-56 on the 20 CIFAR-10 samples",
                     _save(fig, out_dir, "analysis_cka_resnet20_resnet56.png"),
                     "Linear CKA, unbiased HSIC (with 20 images the estimate is noisy; stream a DataLoader "
                     "of the test set for a firm answer)."))
    within = cnnviz.cka(r56, None, cx, lb, batch_size=len(cx))
    fig = cplot.show_cka(within, label_a="ResNet-56", label_b="ResNet-56", show=False)
    sections.append(("cka_resnet56", "CKA within ResNet-56", _save(fig, out_dir, "analysis_cka_resnet56.png"), ""))

    write_pages(out_dir, "analysis_filters.html", "Filter analyses",
                [(slug, title, img, f"<pre>{html.escape(text)}</pre>" if text else "")
                 for slug, title, img, text in sections])
    print(f"  filter analyses: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    run(args.out)
