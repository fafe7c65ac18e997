"""Image I/O, preprocessing, rendering and SSIM against what a notebook user would write
otherwise (PIL, torchvision, matplotlib, a common PyTorch SSIM), in one process.

Each row: the median time of cnnviz and of the alternative, and their ratio (> 1: cnnviz is
faster). Needs the sample data (CNNVIZ_DATA).

Usage: python benchmarks/compare_image.py [--threads 1] [--repeats 20]
"""
import argparse
import io
import os
import sys

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torchvision.utils import make_grid as tv_make_grid

import cnnviz

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import timeit  # noqa: E402


def pil_load(path):
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy())


def ssim_2d_window(a, b, win=11, sigma=1.5):
    """The SSIM most PyTorch projects copy (pytorch-ssim style): a 2-D window, five
    separate grouped convolutions with 'same' padding, averaged over the whole map."""
    c = a.shape[1]
    r = torch.arange(win, dtype=a.dtype) - win // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(c, 1, win, win).contiguous()
    conv = lambda x: F.conv2d(x, w, padding=win // 2, groups=c)  # noqa: E731
    mu1, mu2 = conv(a), conv(b)
    s11 = conv(a * a) - mu1**2
    s22 = conv(b * b) - mu2**2
    s12 = conv(a * b) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = os.path.join(cnnviz.data_dir(), "images")
    rows = []

    def row(name, ours, theirs, alternative):
        t_ours, t_theirs = timeit(ours, args.repeats), timeit(theirs, args.repeats)
        rows.append((name, alternative, t_ours * 1e3, t_theirs * 1e3, t_theirs / t_ours))

    jpg, png = os.path.join(images, "dog.jpg"), os.path.join(images, "astronaut.png")
    row("load JPEG 768x576", lambda: cnnviz.load_image(jpg), lambda: pil_load(jpg), "PIL open+convert")
    row("load PNG 512x512", lambda: cnnviz.load_image(png), lambda: pil_load(png), "PIL open+convert")
    raw = open(jpg, "rb").read()
    row("decode JPEG bytes", lambda: cnnviz.decode_image(raw),
        lambda: torch.from_numpy(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")).copy()), "PIL")

    img = cnnviz.load_image(jpg)
    pil = Image.open(jpg).convert("RGB")
    norm = T.Normalize(cnnviz.IMAGENET_MEAN, cnnviz.IMAGENET_STD)
    pil_pipe = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
    tensor_pipe = T.Compose([T.Resize(256, antialias=True), T.CenterCrop(224), norm])
    row("preprocess 256/224", lambda: cnnviz.preprocess(img, size=224, resize=256),
        lambda: pil_pipe(pil).unsqueeze(0), "torchvision on PIL")
    row("preprocess 256/224", lambda: cnnviz.preprocess(img, size=224, resize=256),
        lambda: tensor_pipe(img.permute(2, 0, 1).float() / 255).unsqueeze(0), "torchvision on tensor")
    row("file -> model input", lambda: cnnviz.preprocess(cnnviz.load_image(jpg), size=224, resize=256),
        lambda: pil_pipe(Image.open(jpg).convert("RGB")).unsqueeze(0), "PIL + torchvision")

    torch.manual_seed(0)
    m = torch.randn(224, 224)
    viridis = matplotlib.colormaps["viridis"]

    def mpl_colormap():
        u = (m - m.min()) / (m.max() - m.min())
        return torch.from_numpy(viridis(u.numpy(), bytes=True)[..., :3])

    row("colormap 224x224", lambda: cnnviz.colormap(m, "viridis"), mpl_colormap, "matplotlib")
    cam = torch.rand(7, 7)
    small = cnnviz.resize_image(img, (224, 224))
    jet = matplotlib.colormaps["jet"]

    def np_overlay():
        up = F.interpolate(cam[None, None], size=(224, 224), mode="bilinear", align_corners=False)[0, 0]
        u = ((up - up.min()) / (up.max() - up.min())).numpy()
        return (0.5 * small.numpy() + 0.5 * jet(u, bytes=True)[..., :3]).round().astype(np.uint8)

    row("overlay 7x7 on 224x224", lambda: cnnviz.overlay(small, cam), np_overlay, "torch+matplotlib+numpy")
    batch = torch.rand(64, 3, 32, 32)
    row("make_grid 64x3x32x32", lambda: cnnviz.make_grid(batch),
        lambda: tv_make_grid(batch).mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8),
        "torchvision + to uint8")
    a = torch.rand(1, 3, 224, 224)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    row("ssim 1x3x224x224", lambda: cnnviz.ssim(a, b), lambda: ssim_2d_window(a, b), "2-D window SSIM")
    a8 = torch.rand(8, 3, 224, 224)
    b8 = (a8 + 0.1 * torch.randn_like(a8)).clamp(0, 1)
    row("ssim 8x3x224x224", lambda: cnnviz.ssim(a8, b8), lambda: ssim_2d_window(a8, b8), "2-D window SSIM")

    print(f"torch threads: {torch.get_num_threads()}; median of {args.repeats}")
    print(f"{'operation':26s} {'alternative':24s} {'cnnviz ms':>10s} {'other ms':>10s} {'speedup':>8s}")
    for name, alt, t1, t2, r in rows:
        print(f"{name:26s} {alt:24s} {t1:10.3f} {t2:10.3f} {r:8.2f}")


if __name__ == "__main__":
    main()
