"""Attribution and adversarial panels (notebook section 10, challenge 4, bonus methods).

``run(model, image_tensor, labels, out_dir)`` writes, for each image of the batch, one
panel with saliency, SmoothGrad, guided backprop, Grad-CAM, integrated gradients,
occlusion and LIME over the photo; then an FGSM example: the perturbation, the predictions
before and after, the saliency before and after, and how far the attack moves each layer.

Standalone: python examples/demo_attribution.py [--out out] [--image PATH]
"""
import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import cnnviz  # noqa: E402


def cam_layer(model, x):
    """The module that finishes last with a spatial output (N, C, h, w): the end of the
    convolutional trunk ("features" in MobileNetV2/VGG, "layer3"/"layer4" in ResNets)."""
    order, handles = [], []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: order.append(name) if isinstance(o, torch.Tensor) and o.dim() == 4 else None))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return order[-1]


def _panel(tiles, path, title):
    fig, axes = plt.subplots(2, (len(tiles) + 1) // 2, figsize=(3 * ((len(tiles) + 1) // 2), 6.4))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, img) in zip(axes.flat, tiles):
        ax.imshow(img.numpy() if isinstance(img, torch.Tensor) else img)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"  wrote {path}")


def _name(names, k):
    return names[k] if names else str(k)


def attribution_panels(model, x, names, out_dir, layer):
    t0 = time.perf_counter()
    target = cnnviz.saliency(model, x).target  # predicted classes, reused below
    maps = {
        "saliency": cnnviz.saliency(model, x, target).map,
        "SmoothGrad": cnnviz.smooth_grad(model, x, target, samples=16, batch_size=8).map,
        "guided backprop": cnnviz.guided_backprop(model, x, target).map,
        f"Grad-CAM ({layer})": cnnviz.grad_cam(model, x, layer, target).upsampled,
        "integrated gradients": cnnviz.integrated_gradients(model, x, target, steps=24, batch_size=8).map,
        "occlusion": cnnviz.occlusion(model, x, target, window=x.shape[-1] // 7, stride=x.shape[-1] // 14).map,
        "LIME": cnnviz.lime(model, x, target, segments=40, samples=200, batch_size=25).map.clamp(min=0),
    }
    for i in range(x.shape[0]):
        image = cnnviz.deprocess(x[i])
        tiles = [("input", image)] + [(k, cnnviz.overlay(image, m[i], alpha=0.5)) for k, m in maps.items()]
        _panel(tiles, os.path.join(out_dir, f"09_attribution_{i}.png"),
               f"why '{_name(names, int(target[i]))}'? ({time.perf_counter() - t0:.0f} s for all maps)")


def adversarial_panel(model, x, names, out_dir, layer):
    x = x[:1]
    attack = cnnviz.fgsm(model, x, eps=2 / 255)
    before = cnnviz.saliency(model, x).map[0]
    after = cnnviz.saliency(model, attack.adversarial).map[0]
    shown = cnnviz.deprocess(x)
    p0, p1 = int(attack.prediction_before[0]), int(attack.prediction_after[0])
    pert = attack.perturbation[0]
    tiles = [
        (f"clean: {_name(names, p0)}", shown),
        ("perturbation x 50", ((pert * 50 + 0.5).clamp(0, 1).permute(1, 2, 0))),
        (f"FGSM 2/255: {_name(names, p1)}", cnnviz.deprocess(attack.adversarial)),
        ("saliency before", cnnviz.overlay(shown, before, alpha=0.6, colormap="hot")),
        ("saliency after", cnnviz.overlay(shown, after, alpha=0.6, colormap="hot")),
        ("|saliency change|", cnnviz.colormap((after - before).abs(), "viridis")),
    ]
    _panel(tiles, os.path.join(out_dir, "10_fgsm.png"), "an adversarial example and what it does to the saliency")

    # Which layers move most: the blocks of the convolutional trunk (or the model's children).
    blocks = [f"{layer}.{n}" for n, _ in model.get_submodule(layer).named_children()]
    if len(blocks) < 4:
        blocks = [n for n, _ in model.named_children()]
    div = cnnviz.layer_divergence(model, x, attack.adversarial, blocks)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(div)), [float(v[0]) for v in div.values()])
    ax.set_xticks(range(len(div)))
    ax.set_xticklabels(list(div), rotation=60, fontsize=7)
    ax.set_ylabel("||A(adv) - A(x)|| / ||A(x)||")
    ax.set_title("how far FGSM (2/255) moves each layer")
    fig.tight_layout()
    path = os.path.join(out_dir, "11_layer_divergence.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"  wrote {path}")
    print(f"  FGSM 2/255: {_name(names, p0)} -> {_name(names, p1)}")


def run(model, image_tensor, labels, out_dir):
    """Panels for a normalized batch ``image_tensor`` (N, 3, H, W) classified by ``model``;
    ``labels`` is "imagenet", "cifar10", a list of class names or None."""
    os.makedirs(out_dir, exist_ok=True)
    names = cnnviz.zoo.labels_for(labels)
    layer = cam_layer(model, image_tensor)
    attribution_panels(model, image_tensor, names, out_dir, layer)
    adversarial_panel(model, image_tensor, names, out_dir, layer)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--image", default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model = cnnviz.zoo.pretrained("mobilenet_v2")
    path = args.image or os.path.join(cnnviz.data_dir(), "images", "cat_chelsea.png")
    x = cnnviz.preprocess(cnnviz.load_image(path), size=224, resize=256)
    t0 = time.perf_counter()
    run(model, x, "imagenet", args.out)
    print(f"done in {time.perf_counter() - t0:.0f} s")
