"""Writes examples/cnn_visualization.ipynb (without outputs) from the cells below.

The notebook is the cnnviz edition of ../shared/seed/cnn_visualization_notebook.txt: the
same story told with cnnviz calls, then every challenge answered. Edit the cells here and
rerun ``python examples/build_notebook.py``; tests/python/test_notebook.py checks that the
committed .ipynb matches this file.

Cells that must draw a figure carry the tag ``figure:<section>``; the test checks that each
such section produced at least one image.
"""
import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "cnn_visualization.ipynb")

CELLS = []


def md(text):
    CELLS.append(new_markdown_cell(text.strip("\n")))


def code(text, figure=None):
    cell = new_code_cell(text.strip("\n"))
    if figure:
        cell.metadata["tags"] = [f"figure:{figure}"]
    CELLS.append(cell)


# -----------------------------------------------------------------------------------------
md(r"""
# CNN visualization with cnnviz

The notebook *CNN Visualization: Understanding Deep Neural Networks* told with
[cnnviz](../README.md) calls instead of hand-written loops: model summary, filter weights,
feature maps, feature inversion (Mahendran & Vedaldi) at several depths and its process,
saliency; then every challenge of the original, answered with cnnviz's API.

Models: the pretrained sample models that ship with the sample data (MobileNetV2 on
ImageNet photos, ResNet-20/56 on CIFAR-10 images), and VGG16 where its plain structure is
the point (the layer-depth questions). VGG16 uses torchvision's pretrained weights when they
are in your torch cache, otherwise random weights (see below how to get them).

Set `CNNVIZ_NOTEBOOK_FAST=1` to cut every iteration count (the test suite runs it so).
Run it with the **cnnviz** kernel (`make jupyter` registers it).
""")

code(r"""
import os
import time

import numpy as np
import torch
import torchvision
import matplotlib.pyplot as plt

import cnnviz
import cnnviz.plot as cplot

FAST = os.environ.get("CNNVIZ_NOTEBOOK_FAST", "") not in ("", "0")
# Iteration counts: the notebook's settings, or a few steps for a smoke run.
ITERS = 2 if FAST else 100           # feature inversion (the notebook calls it with 100)
MAX_ITERS = 2 if FAST else 128       # activation maximization
SIZE = 112 if FAST else 224          # input side for the inversions (MobileNetV2 and VGG16)
torch.manual_seed(0)
# torch.set_num_threads(2)            # more threads help on an idle machine, hurt on a busy one
%matplotlib inline
plt.rcParams["figure.dpi"] = 80

DATA = cnnviz.data_dir()
IMAGES = os.path.join(DATA, "images")
print(f"cnnviz {cnnviz.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
      f"{'FAST' if FAST else 'full'} settings")
""")

md(r"""
## 1. Models

MobileNetV2 (ImageNet, pretrained sample weights) for the photos; VGG16 for its structure.
For VGG16's pretrained weights, run once on a machine with network access
`python -c "import torchvision; torchvision.models.vgg16(weights='DEFAULT')"`
(or copy `vgg16-397923af.pth` into `~/.cache/torch/hub/checkpoints/`); this notebook then
uses them.
""")

code(r"""
mobilenet = cnnviz.zoo.pretrained("mobilenet_v2")

def load_vgg16():
    weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if os.path.exists(cached):
        return torchvision.models.vgg16(weights=weights).eval(), True
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval(), False

vgg, VGG_PRETRAINED = load_vgg16()
print("VGG16 weights:", "pretrained (from the torch cache)" if VGG_PRETRAINED else
      "random (no pretrained weights in the torch cache)")
cnnviz.summary(vgg, (1, 3, 224, 224))
""")

code(r"""
mobilenet_summary = cnnviz.summary(mobilenet, (1, 3, 224, 224))
convs = [r for r in mobilenet_summary if r.type == "Conv2d"]
print(f"MobileNetV2: {len(mobilenet_summary)} modules, {len(convs)} conv layers, "
      f"{sum(r.num_parameters for r in mobilenet_summary if r.is_leaf):,} parameters")
print("stages:", [r.name for r in mobilenet_summary if r.name.count('.') == 1 and r.name.startswith('features')])
""")

md("## 2. Photos and predictions")

code(r"""
PHOTOS = ["cat_chelsea.png", "dog.jpg", "coffee.png", "macaws.png", "lighthouse.png", "buildings.png",
          "flowers_window.png", "motorbikes.png"]
photos = {os.path.splitext(p)[0]: cnnviz.load_image(os.path.join(IMAGES, p)) for p in PHOTOS}
x_all = torch.cat([cnnviz.preprocess(img, size=224, resize=256) for img in photos.values()])
names = list(photos)
x = x_all[:1]                                   # the cat, as in the original notebook
x_inv = cnnviz.preprocess(photos["cat_chelsea"], size=SIZE, resize=round(SIZE * 256 / 224))
preds = cnnviz.predict(mobilenet, x_all, k=3)
for n, p in zip(names, preds):
    print(f"{n:16s}", ", ".join(f"{q.label} {q.probability:.2f}" for q in p))
cplot.show_images(x_all, titles=[f"{n}\n{p[0].label}" for n, p in zip(names, preds)], ncols=4)
""", figure="photos")

md(r"""
## 3. Filter weights

The first layer's 3x3 filters, each scaled to [0, 1] as a colour image and enlarged without
blurring (every square is one weight).
""")

code(r"""
first = cnnviz.filter_weights(mobilenet, "features.0.0")
print("MobileNetV2 features.0.0 weights:", tuple(first.weight.shape), "(filters, input channels, kh, kw)")
cplot.show_grid(first.rgb, nrow=8, labels=[str(i) for i in range(first.rgb.shape[0])],
                title="MobileNetV2 first-layer filters (RGB)")
vgg_first = cnnviz.filter_weights(vgg, "features.0")
cplot.show_grid(vgg_first.rgb, nrow=16, title="VGG16 features.0 filters" + ("" if VGG_PRETRAINED else " (random weights)"))
""", figure="filters")

md("## 4. Feature maps through the network")

code(r"""
STAGES = ["features.1", "features.3", "features.6", "features.10", "features.13", "features.17", "features.18"]
maps = cnnviz.feature_maps(mobilenet, x, STAGES)
cplot.show_images([maps[s][0].mean(0) for s in STAGES],
                  titles=[f"{s}\n{tuple(maps[s].shape[1:])}" for s in STAGES], ncols=4,
                  suptitle="Mean over channels of each stage's output")
act = maps["features.3"][0]                     # (24, 56, 56)
cplot.show_grid(act.unsqueeze(1), nrow=8, normalize=True, scale_each=True, colormap="viridis",
                labels=[str(i) for i in range(act.shape[0])], title=f"features.3: its {act.shape[0]} filter responses")
""", figure="feature-maps")

md(r"""
## 5. Feature inversion (Mahendran & Vedaldi)

`cnnviz.invert` reconstructs an image whose activations at a layer match the photo's. The
process (snapshots and loss) first, then several depths side by side (contrast stretched per
image so that structure can be compared across depths).
""")

code(r"""
INV = dict(iterations=ITERS, optimizer="adam", learning_rate=0.05, clamp_pixels=True, seed=0)
t0 = time.perf_counter()
inv = cnnviz.invert(mobilenet, x_inv, "features.6", snapshot_every=max(1, ITERS // 6), **INV)
cplot.show_inversion_progress(inv, original=x_inv, title="Inverting MobileNetV2 features.6")
print(f"{ITERS} steps in {time.perf_counter() - t0:.1f} s; loss {inv.losses[0]:.3g} -> {inv.final_loss:.3g}")
""", figure="inversion")

code(r"""
INV_LAYERS = ["features.1", "features.3", "features.6", "features.10", "features.13", "features.17"]
inversions = cnnviz.invert_layers(mobilenet, x_inv, INV_LAYERS, **INV)
cplot.show_images([x_inv] + [inversions[l].image for l in INV_LAYERS], titles=["original"] + INV_LAYERS,
                  ncols=7, stretch=True, suptitle="MobileNetV2: reconstructions from increasing depth")
""", figure="inversion-depths")

md("## 6. Saliency")

code(r"""
sal = cnnviz.saliency(mobilenet, x)
label = cnnviz.zoo.imagenet_labels()[int(sal.target[0])]
cplot.show_attribution(x, sal.map[0], title=f"Gradient saliency for '{label}'")
""", figure="saliency")

# ----------------------------------------------------------------------------------------- challenges
md(r"""
---
# Challenges

## Challenge 1: multi-image analysis

One layer's filter responses over eight photos of different kinds. For each filter, the mean
activation per photo; a filter is *consistently active* when it responds to every photo (high
mean, low spread across photos) and *image-specific* when one photo drives it far above the
others (high max / mean ratio).
""")

code(r"""
LAYER1 = "features.10"
# Consistent: above the layer's average for at least 6 of the 8 photos; specific: for at most 2.
stats = cnnviz.filter_statistics(mobilenet, x_all, LAYER1, keep_per_image=True, consistent_fraction=0.75,
                                 specific_fraction=0.25)
consistent = stats.consistent[:8].tolist()
specific = stats.specific[:8].tolist()
print(f"{LAYER1}: {stats.mean.numel()} filters over {stats.count} photos")
print("consistently active filters:", consistent)
print("image-specific filters:", [f"{c} ({names[int(stats.top_indices[c, 0])]}, selectivity "
                                   f"{stats.selectivity[c]:.2f})" for c in specific])
cplot.show_filter_statistics(stats, image_labels=names, title=f"{LAYER1}: responses per photo")
acts = cnnviz.feature_maps(mobilenet, x_all, [LAYER1])[LAYER1]       # (N, C, h, w)
cols = consistent[:4] + specific[:4]
tiles = torch.stack([acts[i, c] for c in cols for i in range(len(names))])
cplot.show_grid(tiles.unsqueeze(1), nrow=len(names), normalize=True, scale_each=True, colormap="viridis",
                labels=[f"f{c}" if i == 0 else "" for c in cols for i in range(len(names))],
                title="rows: 4 consistent then 4 image-specific filters; columns: " + ", ".join(names))
""", figure="challenge-1")

md(r"""
## Challenge 2: filter specialization

The ten filters the cat excites most in an early and a late layer, ranked against each
filter's typical response over all eight photos (`cnnviz.top_filters(..., reference=
cnnviz.filter_statistics(...))`: raw activations favour filters that respond to anything), and
for each an image that maximizes it (`cnnviz.maximize`, Fourier parameterization with
decorrelated colours and random transforms).
""")

code(r"""
SPECIAL = {"early": "features.3", "late": "features.14"}
specialization = {}
for depth, layer in SPECIAL.items():
    reference = cnnviz.filter_statistics(mobilenet, x_all, layer)
    top = cnnviz.top_filters(mobilenet, x, layer, k=10, reference=reference)
    channels = top.channels[0].tolist()
    result = cnnviz.maximize(mobilenet, layer, channel=channels, iterations=MAX_ITERS,
                             size=128 if not FAST else 64, seed=0)
    specialization[depth] = (layer, top, result)
    print(f"{depth:5s} {layer}: top filters {channels}; "
          f"objective {result.initial_objective.mean():.2f} -> {result.objective.mean():.2f}")
    cplot.show_images(result.image, titles=[f"filter {c}" for c in channels], ncols=10,
                      suptitle=f"{depth} layer {layer}: what its top-10 filters for the cat respond to")
""", figure="challenge-2")

md(r"""
## Challenge 3: layer-wise information

`cnnviz.layer_information`: feature inversion at the notebook's depths 1, 5, 10, ... 30 of
VGG16, and at the matching stages of the pretrained MobileNetV2; SSIM and PSNR of each
reconstruction against the photo, against depth. The bottleneck is where the similarity
drops most between consecutive depths.
""")

code(r"""
VGG_DEPTHS = [1, 5, 10, 15, 20, 25, 30]                 # the notebook's depths: features.n
x_vgg = cnnviz.preprocess(photos["cat_chelsea"], size=SIZE)
t0 = time.perf_counter()
vgg_info = cnnviz.layer_information(vgg, x_vgg, VGG_DEPTHS, iterations=ITERS)
vgg_time = time.perf_counter() - t0

def drop(info, size):
    # The largest SSIM drop: from the layer before the bottleneck (or the input) to it.
    b = int(info.bottleneck)
    ssim = info.ssim.mean(1).numpy()
    before = ("the input", 1.0, (size, size)) if b == 0 else (
        info.layers[b - 1], ssim[b - 1], (int(info.height[b - 1]), int(info.width[b - 1])))
    return before + (info.layers[b], ssim[b], (int(info.height[b]), int(info.width[b])))

vgg_layers = list(vgg_info.layers)
vgg_ssim, vgg_psnr = vgg_info.ssim.mean(1).numpy(), vgg_info.psnr.mean(1).numpy()
vgg_drop = drop(vgg_info, SIZE)
cplot.show_images([x_vgg] + [r.image for r in vgg_info.inversions], ncols=8, stretch=True,
                  titles=["original"] + [f"{l}\nSSIM {s:.2f}" for l, s in zip(vgg_layers, vgg_ssim)],
                  suptitle="VGG16 inversions" + ("" if VGG_PRETRAINED else " (random weights)"))
cplot.show_metric_vs_depth(VGG_DEPTHS, {"SSIM": vgg_ssim, "PSNR (dB)": vgg_psnr}, xlabel="VGG16 features index",
                           title="Information preserved by VGG16 layers")
print(f"{len(vgg_layers)} inversions x {ITERS} steps in {vgg_time:.0f} s; bottleneck (largest SSIM drop): "
      f"{vgg_drop[0]} -> {vgg_drop[3]} ({vgg_drop[1]:.2f} -> {vgg_drop[4]:.2f})")
""", figure="challenge-3")

code(r"""
# MobileNetV2's matching depths: the same fractions of its 19 feature stages.
MB_LAYERS = [f"features.{round(d / 30 * 18)}" for d in VGG_DEPTHS]
mb_info = cnnviz.layer_information(mobilenet, x_inv, MB_LAYERS, iterations=ITERS, optimizer="adam", learning_rate=0.05)
mb_ssim, mb_psnr = mb_info.ssim.mean(1).numpy(), mb_info.psnr.mean(1).numpy()
mb_drop = drop(mb_info, SIZE)
cplot.show_layer_information(mb_info, x_inv)
cplot.show_metric_vs_depth(MB_LAYERS, {"SSIM": mb_ssim, "PSNR (dB)": mb_psnr}, labels=MB_LAYERS,
                           title="Information preserved by MobileNetV2 stages")
print(f"MobileNetV2: bottleneck {mb_drop[0]} -> {mb_drop[3]} ({mb_drop[1]:.2f} -> {mb_drop[4]:.2f})")
""", figure="challenge-3")

md(r"""
## Challenge 4: adversarial examples

FGSM and PGD under an L-infinity budget of 2/255 (two grey levels), the difference image
(amplified), saliency before and after, and how far each layer's activations move.
""")

code(r"""
EPS = 2 / 255
labels_in = cnnviz.zoo.imagenet_labels()
fg = cnnviz.fgsm(mobilenet, x, eps=EPS)
print(f"FGSM: {labels_in[int(fg.prediction_before[0])]} -> {labels_in[int(fg.prediction_after[0])]} "
      f"(success: {bool(fg.success[0])})")
ADV_LAYERS = [f"features.{i}" for i in range(0, 19, 2)] + ["classifier.1"]
report = cnnviz.adversarial_report(mobilenet, x, attack="pgd", eps=EPS, step=EPS / 4, steps=5 if FAST else 20,
                                   layers=ADV_LAYERS)
pg = report.attack
print(f"PGD: {labels_in[int(pg.prediction_before[0])]} -> {labels_in[int(pg.prediction_after[0])]} "
      f"(success: {bool(pg.success[0])}), max |delta| = {pg.perturbation.abs().max() * 255:.1f}/255")
cplot.show_adversarial_report(report, x)
cplot.show_images([x, pg.adversarial, pg.perturbation[0].mean(0), report.saliency_before.map[0],
                   report.saliency_after.map[0]],
                  titles=["original", f"PGD: {labels_in[int(pg.prediction_after[0])]}", "difference (mean over RGB)",
                          "saliency before", "saliency after"], colorbar=True,
                  suptitle="PGD adversarial example and its effect on saliency")
div_values = report.divergence[:, 0].numpy()
cplot.show_metric_vs_depth(list(report.layers), {"relative change of activations": div_values},
                           labels=list(report.layers), mark_drop=False, title="Where the PGD perturbation grows")
most_affected = report.most_affected_layer
sal_corr = float(report.saliency_correlation[0])
print(f"most affected layer: {most_affected} ({div_values.max():.2f}); saliency rank correlation before/after "
      f"{sal_corr:.2f}")
""", figure="challenge-4")

md(r"""
## Challenge 5: another architecture (ResNet on CIFAR-10) and a comparison of representations

The pretrained CIFAR-10 ResNet-20 and ResNet-56: summary, first-layer filters, Grad-CAM and an
inversion on CIFAR-10 test images; then how similar the two networks' representations are,
stage by stage, by linear CKA (Kornblith et al. 2019, `cnnviz.cka`) over the 20 sample images.
""")

code(r"""
resnet20 = cnnviz.zoo.pretrained("resnet20")
resnet56 = cnnviz.zoo.pretrained("resnet56")
cifar_dir = os.path.join(IMAGES, "cifar10_samples")
cifar_files = sorted(f for f in os.listdir(cifar_dir) if f.endswith(".png"))
xc = torch.cat([cnnviz.preprocess(cnnviz.load_image(os.path.join(cifar_dir, f)), size=None,
                                  mean=cnnviz.CIFAR10_MEAN, std=cnnviz.CIFAR10_STD) for f in cifar_files])
yc = torch.tensor([int(f.rsplit("_", 1)[1].split(".")[0]) for f in cifar_files])
cifar_labels = cnnviz.zoo.cifar10_labels()
for name, m in (("ResNet-20", resnet20), ("ResNet-56", resnet56)):
    with torch.no_grad():
        acc = (m(xc).argmax(1) == yc).float().mean().item()
    rows = cnnviz.summary(m, (1, 3, 32, 32))
    print(f"{name}: {sum(r.num_parameters for r in rows if r.is_leaf):,} parameters, "
          f"{sum(r.type == 'Conv2d' for r in rows)} conv layers, {acc:.0%} on the {len(yc)} samples")
cam = cnnviz.grad_cam(resnet20, xc[:6], "layer3")
show = dict(mean=cnnviz.CIFAR10_MEAN, std=cnnviz.CIFAR10_STD)
cplot.show_images([xc[i:i + 1] for i in range(6)] + [cam.upsampled[i] for i in range(6)], ncols=6,
                  titles=[cifar_labels[int(c)] for c in yc[:6]] + ["Grad-CAM layer3"] * 6, **show)
cplot.show_grid(cnnviz.filter_weights(resnet20, "conv1").rgb, nrow=8, title="ResNet-20 conv1 filters")
res_inv = cnnviz.invert_layers(resnet20, xc[:1], ["layer1", "layer2", "layer3"], mean=cnnviz.CIFAR10_MEAN,
                               std=cnnviz.CIFAR10_STD, **INV)
cplot.show_images([xc[:1]] + [r.image for r in res_inv.values()], titles=["original"] + list(res_inv),
                  stretch=True, suptitle="ResNet-20 inversions", **show)
""", figure="challenge-5")

code(r"""
STAGES = ["conv1", "layer1", "layer2", "layer3"]
cka_result = cnnviz.cka(resnet20, resnet56, xc, STAGES, STAGES)
cka_matrix = cka_result.matrix.numpy()
cplot.show_cka(cka_result, label_a="ResNet-20", label_b="ResNet-56",
               title=f"Linear CKA between stages ({cka_result.samples} CIFAR-10 images)")
print("CKA of matching stages:", dict(zip(STAGES, np.round(np.diag(cka_matrix), 2))))
""", figure="challenge-5")

md(r"""
## Challenge 6: an interactive dashboard

`cnnviz.dashboard(model)` serves an interactive page for a model from this kernel: choose
or upload an image, pick layers and filters, see feature maps, attributions and a live
feature inversion, and compare images and layers side by side. It shows inline in Jupyter
(and `board.url` opens it in a browser; `board.stop()` ends it). Below it, the same idea
with ipywidgets inside the notebook: in a live notebook the controls drive the figure;
executed headless, the figure for one choice is shown.
""")

code(r"""
board = cnnviz.dashboard(mobilenet, images=[os.path.join(IMAGES, p) for p in PHOTOS[:4]])
board
""")

code(r"""
import ipywidgets as widgets

DASH_LAYERS = ["features.1", "features.3", "features.6", "features.10", "features.14"]

def explore(image="cat_chelsea", layer="features.6", filter_index=0, invert_steps=0):
    xi = x_all[names.index(image)][None]
    a = cnnviz.feature_maps(mobilenet, xi, [layer])[layer][0]
    f = min(filter_index, a.shape[0] - 1)
    panels, titles = [xi, a[f], a.mean(0)], [image, f"{layer} filter {f}", f"{layer} mean"]
    if invert_steps:
        panels.append(cnnviz.invert(mobilenet, xi, layer, **dict(INV, iterations=invert_steps)).image)
        titles.append(f"inversion ({invert_steps} steps)")
    cplot.show_images(panels, titles=titles, colorbar=True, suptitle=f"{image}: {layer}")

controls = dict(image=widgets.Dropdown(options=names, value="cat_chelsea"),
                layer=widgets.Dropdown(options=DASH_LAYERS, value="features.6"),
                filter_index=widgets.IntSlider(0, 0, 95), invert_steps=widgets.IntSlider(0, 0, 100, 10))
ui = widgets.interactive(explore, {"manual": True}, **controls)
display(ui)
explore("macaws", "features.6", 5, invert_steps=ITERS)
""", figure="challenge-6")

md(r"""
## Challenge 7: analysis questions

The answers below are printed from the numbers computed above (rerun the notebook and they
follow the results).
""")

code(r"""
REDUNDANCY_LAYER = "features.10.conv.2"                # the block's 384 -> 64 projection conv
redundancy = cnnviz.filter_redundancy(mobilenet, REDUNDANCY_LAYER, x_all, threshold=0.9)
cplot.show_redundancy(redundancy, title=f"{REDUNDANCY_LAYER}: filter similarity (near-duplicates boxed)")
""", figure="challenge-7")

code(r"""
early_layer, early_top, early_max = specialization["early"]
late_layer, late_top, late_max = specialization["late"]
act_early = cnnviz.feature_maps(mobilenet, x, [early_layer, late_layer])
hier = cnnviz.layer_information(mobilenet, x_inv, [early_layer, late_layer], iterations=ITERS,
                                optimizer="adam", learning_rate=0.05)
hier_ssim = hier.ssim.mean(1).numpy()
e_shape, l_shape = act_early[early_layer].shape, act_early[late_layer].shape
closer = hier_ssim[0] > hier_ssim[1]
print("1. Hierarchical learning.")
print(f"   {early_layer} keeps {e_shape[2]}x{e_shape[3]} positions with {e_shape[1]} channels; {late_layer} keeps "
      f"{l_shape[2]}x{l_shape[3]} with {l_shape[1]}. The reconstruction from {early_layer} is "
      f"{'closer to' if closer else 'not closer to'} the photo than the one from {late_layer} (SSIM "
      f"{hier_ssim[0]:.2f} vs {hier_ssim[1]:.2f}). Maximizing the top-10 filters raised their mean activation from "
      f"{early_max.initial_objective.mean():.2f} to {early_max.objective.mean():.2f} ({early_layer}) and from "
      f"{late_max.initial_objective.mean():.2f} to {late_max.objective.mean():.2f} ({late_layer}); the images "
      f"above show what each responds to: small repeated patterns early, larger structures late.")

print("2. Information flow.")
for model_name, d in (("VGG16", vgg_drop), ("MobileNetV2", mb_drop)):
    print(f"   {model_name}: the largest SSIM drop is from {d[0]} to {d[3]} ({d[1]:.2f} -> {d[4]:.2f}); the maps go "
          f"from {d[2][0]}x{d[2][1]} to {d[5][0]}x{d[5][1]} positions there.")
print("   Giving up exact positions buys tolerance to small shifts and lets later layers combine larger "
      "regions with fewer computations.")
print("3. Filter redundancy.")
print(f"   {REDUNDANCY_LAYER} has {redundancy.num_filters} filters; {len(redundancy.groups)} groups of near-duplicates "
      f"(activation correlation >= {redundancy.threshold}) hold {sum(map(len, redundancy.groups))} of them, and the "
      f"effective number of filters is {redundancy.effective_filters_activations:.1f} by activations and "
      f"{redundancy.effective_filters_weights:.1f} by weights (of {redundancy.num_filters}). Correlated filters "
      f"spend computation on the same feature: candidates for pruning or merging.")
falls = vgg_psnr[-1] < vgg_psnr[0]
print("4. Feature inversion quality.")
print(f"   PSNR {'falls' if falls else 'does not fall'} from {vgg_psnr[0]:.1f} dB at {vgg_layers[0]} to "
      f"{vgg_psnr[-1]:.1f} dB at {vgg_layers[-1]} (VGG16, {ITERS} steps). "
      + ("Deeper layers keep what identifies the content and discard exact positions and colours, so many "
         "images map to the same activations and the inversion returns one of them." if falls else
         "With this few steps the inversions have not converged; run at the full settings to compare depths."))
print("5. Practical applications.")
print(f"   Debugging (PGD with a {EPS * 255:.0f}/255 budget turned '{labels_in[int(pg.prediction_before[0])]}' into "
      f"'{labels_in[int(pg.prediction_after[0])]}', the perturbation growing most at {most_affected}); checking "
      f"what a model attends to (saliency correlation before/after the attack: {sal_corr:.2f}; faithfulness "
      f"scores in the bonus); comparing architectures (CKA of ResNet-20 vs ResNet-56 at layer3: "
      f"{cka_matrix[3, 3]:.2f}); pruning (the redundancy above).")
""")

md(r"""
## Bonus: Grad-CAM, integrated gradients, LIME and deep dream

The four methods of the bonus challenge next to saliency on the same photos, and a
faithfulness number per method (`cnnviz.deletion_insertion`): the deletion score (area under
the class probability as the most important pixels are removed first; lower is more
faithful) and the insertion score (area as they are added to a blurred image; higher is more
faithful); and the model-randomization sanity check (`cnnviz.sanity_check`): a map that
depends on what the model learnt changes as its layers are re-initialized.
""")

code(r"""
BONUS = ["cat_chelsea", "macaws", "coffee"]
xb = torch.cat([x_all[names.index(n)][None] for n in BONUS])
methods = {
    "saliency": cnnviz.saliency(mobilenet, xb).map,
    "Grad-CAM": cnnviz.grad_cam(mobilenet, xb, "features.18").upsampled,
    "integrated gradients": cnnviz.integrated_gradients(mobilenet, xb, steps=8 if FAST else 64,
                                                        batch_size=16).attribution.sum(1),
    "LIME": cnnviz.lime(mobilenet, xb, samples=32 if FAST else 500, segments=50).map,
}
rows = []
for i, n in enumerate(BONUS):
    rows += [xb[i:i + 1]] + [methods[m][i] for m in methods]
cplot.show_images(rows, titles=[t for n in BONUS for t in [n] + list(methods)], ncols=1 + len(methods),
                  colorbar=True, suptitle="Attribution methods (signed maps centred on 0)")
dream = cnnviz.deep_dream(mobilenet, xb[:1], "features.10", iterations=3 if FAST else 20, octaves=2 if FAST else 4)
cplot.show_images([xb[:1], dream.image], titles=["original", "deep dream, features.10"])
""", figure="bonus")

code(r"""
faithfulness, curves = {}, {}
for m, maps_m in methods.items():
    score_map = maps_m.abs() if m == "integrated gradients" else maps_m
    r = cnnviz.deletion_insertion(mobilenet, xb, score_map, steps=4 if FAST else 16)
    curves[m] = r
    faithfulness[m] = (float(r.deletion_auc.mean()), float(r.insertion_auc.mean()))
for m, (d, i_) in faithfulness.items():
    print(f"{m:22s} deletion AUC {d:.3f} (lower is better)   insertion AUC {i_:.3f} (higher is better)")
cplot.show_deletion_insertion(curves, title=f"Deletion and insertion on {len(BONUS)} photos")
best = max(faithfulness, key=lambda m: faithfulness[m][1] - faithfulness[m][0])
print(f"Most faithful by insertion - deletion: {best}")
sanity = cnnviz.sanity_check("saliency", mobilenet, xb[:1], layers_from_top=3 if FAST else 8, group_depth=2)
cplot.show_sanity_check(sanity, xb[:1])
print("Saliency under cascading randomization (rank correlation with the trained model's map):",
      [f"{s}: {c:.2f}" for s, c in zip(sanity.steps, sanity.rank_correlation[:, 0].tolist())])
""", figure="bonus")


def build():
    for i, cell in enumerate(CELLS):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating changes no line that did not change
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"name": "cnnviz", "display_name": "Python (cnnviz)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    nb = build()
    nbformat.validate(nb)
    out = sys.argv[1] if len(sys.argv) > 1 else PATH
    with open(out, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    print(f"wrote {out} ({len(CELLS)} cells)")
