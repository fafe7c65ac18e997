"""Optimization loops against reference implementations, same process, same thread count.

1. Feature inversion, VGG16 (random weights) at ``features.18``, one 224x224 image:
   ``cnnviz.invert`` against the notebook's ``feature_inversion`` (a Python loop, SGD with
   momentum, ``loss.backward()`` with the model's parameters still requiring grad, the
   forward re-run layer by layer up to the target). Both start from the same noise and run
   the same objective (the notebook's regularizers, total variation over height and width);
   the script checks that they end at the same image. cnnviz runs with
   ``clamp_pixels=False`` here because the notebook does not clamp.
2. Activation maximization, VGG16 ``features.18`` channel 7, 128x128 (Lucent's default
   size), Fourier parameterization, decorrelated colour, sigmoid, pad/jitter/scale/rotate,
   Adam: ``cnnviz.maximize`` against a straightforward PyTorch implementation of the same
   pipeline as Lucent writes it (transforms as separate ops, the full forward with a hook,
   ``loss.backward()`` into the parameters), and against a tuned one (parameters frozen,
   ``torch.autograd.grad``, forward stopped at the layer) to show where the time goes.
3. ``invert_layers`` over the notebook's layers [2, 7, 14, 21, 28]: one layer after
   another against all reconstructions as one batch (``batch_layers=True``).

Per-iteration times are (t(n_long) - t(n_short)) / (n_long - n_short), so the one-off work
(target activations, the final loss) cancels; medians over --repeats alternating runs.

4. ``--whole``: the whole ``invert`` call (target capture, setup, 10 iterations, final
   loss) as a user waits for it, against the whole ``feature_inversion`` call, interleaved
   over --repeats, median and range: cnnviz with its defaults (Adam, lr 0.1, pixel clamp)
   and with the notebook's settings (SGD lr 1e3 momentum 0.9, no clamp: like with like),
   and the network's floor (``network_floor``: per step one forward to the layer and one
   backward to the image, in plain PyTorch, nothing else), which bounds what any exact
   method can reach.

Usage: python benchmarks/compare_optimization.py [--threads 1,2] [--repeats 3] [--whole]
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

import cnnviz

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from notebook_reference import feature_inversion  # noqa: E402


# --- 1. the notebook's feature_inversion: notebook_reference.py ---------------------------


# --- 2. activation maximization as Lucent writes it ---------------------------------------
_COLOR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR = _COLOR / _COLOR.norm(dim=0).max()
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def fft_image(h, w, sd=0.01):
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freqs = (fx ** 2 + fy ** 2).sqrt()
    scale = (1.0 / freqs.clamp(min=1.0 / max(h, w)))[None, None, :, :, None]
    spectrum = (torch.randn(1, 3, h, w // 2 + 1, 2) * sd).requires_grad_(True)

    def image():
        scaled = torch.view_as_complex(scale * spectrum)
        img = torch.fft.irfftn(scaled, s=(h, w), norm="ortho") / 4.0
        img = torch.matmul(img.permute(0, 2, 3, 1), COLOR.T).permute(0, 3, 1, 2)
        return torch.sigmoid(img)

    return spectrum, image


def lucent_transforms(x, gen):
    """pad(12), jitter(8), random_scale, random_rotate, jitter(4), as separate ops."""
    x = F.pad(x, (12, 12, 12, 12), mode="constant", value=0.5)
    dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()
    x = x[:, :, dy:dy + x.shape[2] - 8, dx:dx + x.shape[3] - 8]
    s = 0.9 + 0.2 * torch.rand(1, generator=gen).item()
    x = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
    a = math.radians(-10 + 20 * torch.rand(1, generator=gen).item())
    theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()
    return x[:, :, dy:dy + x.shape[2] - 4, dx:dx + x.shape[3] - 4]


def lucent_render(model, layer, channel, iterations, size, tuned=False):
    gen = torch.Generator().manual_seed(0)
    spectrum, image = fft_image(size, size)
    opt = torch.optim.Adam([spectrum], lr=0.05)
    module = dict(model.named_modules())[layer]
    store = {}
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
    prefix = model.features[: int(layer.split(".")[1]) + 1]
    frozen = [p for p in model.parameters() if p.requires_grad] if tuned else []
    for p in frozen:
        p.requires_grad_(False)
    try:
        for _ in range(iterations):
            x = lucent_transforms((image() - MEAN) / STD, gen)
            if tuned:
                loss = -prefix(x)[:, channel].mean()
                (g,) = torch.autograd.grad(loss, spectrum)
                spectrum.grad = g
            else:
                opt.zero_grad()
                model(x)
                loss = -store["act"][:, channel].mean()
                loss.backward()
            opt.step()
    finally:
        handle.remove()
        for p in frozen:
            p.requires_grad_(True)


# --- timing ---------------------------------------------------------------------------
def per_iteration(run, n_short, n_long, repeats):
    """Median over repeats of (t(n_long) - t(n_short)) / (n_long - n_short) for each runner;
    runners alternate so a load change affects all alike."""
    samples = {name: [] for name in run}
    for _ in range(repeats):
        for name, fn in run.items():
            t0 = time.perf_counter()
            fn(n_short)
            t1 = time.perf_counter()
            fn(n_long)
            t2 = time.perf_counter()
            samples[name].append(((t2 - t1) - (t1 - t0)) / (n_long - n_short))
    return {name: statistics.median(v) for name, v in samples.items()}


def network_floor(vgg, x, noise, lr, iterations):
    """The network's share of an inversion and nothing else: the target's forward, then per
    step one forward of features[:19] and one backward to the image only (parameters frozen,
    plain SGD on a squared error, no regularizers), and the final image's forward. No method
    that computes the same network can do less per step."""
    f = vgg.features[:19]
    frozen = [p.requires_grad for p in f.parameters()]
    for p in f.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            target = f(x)
        img = noise.clone().requires_grad_(True)
        for _ in range(iterations):
            g, = torch.autograd.grad(((f(img) - target) ** 2).sum(), img)
            with torch.no_grad():
                img -= lr * 1e-12 * g
        with torch.no_grad():
            f(img)
    finally:
        for p, r in zip(f.parameters(), frozen):
            p.requires_grad_(r)


def whole_calls(vgg, x, noise, lr, threads, repeats, iterations=10):
    """Whole calls, contenders interleaved; median and range in seconds, and the process CPU
    time (steadier than wall time on a shared machine)."""
    torch.set_num_threads(threads)
    runs = {
        "notebook feature_inversion (SGD lr 1e3, momentum 0.9)":
            lambda: feature_inversion(vgg, x, 18, iterations, lr, noise),
        "cnnviz.invert, defaults (Adam lr 0.1, clamp_pixels)":
            lambda: cnnviz.invert(vgg, x, "features.18", iterations=iterations, init=noise),
        "cnnviz.invert, the notebook's settings (SGD lr 1e3, momentum 0.9, no clamp)":
            lambda: cnnviz.invert(vgg, x, "features.18", iterations=iterations, optimizer="sgd", learning_rate=lr,
                                  momentum=0.9, init=noise, clamp_pixels=False),
        "floor: forward + backward to the image only, plain PyTorch (no regularizers, no optimizer state)":
            lambda: network_floor(vgg, x, noise, lr, iterations),
    }
    for fn in runs.values():
        fn()  # first calls: oneDNN primitives, cnnviz's per-model capture cache
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    base = statistics.median(wall[next(iter(runs))])
    base_cpu = statistics.median(cpu[next(iter(runs))])
    print(f"\n## whole calls, {iterations} iterations, {threads} thread(s), {repeats} interleaved repeats\n")
    print("| VGG16 features.18, 224x224 | wall s, median (range) | speed-up | CPU s, median | speed-up (CPU) |\n"
          "|---|---|---|---|---|")
    for k in runs:
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        print(f"| {k} | {w:.2f} ({min(wall[k]):.2f}-{max(wall[k]):.2f}) | {base / w:.2f}x | {c:.2f} | "
              f"{base_cpu / c:.2f}x |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--whole", action="store_true", help="only the whole-call inversion comparison")
    args = ap.parse_args()

    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    try:
        x = cnnviz.preprocess(cnnviz.load_image(f"{cnnviz.data_dir()}/images/cat_chelsea.png"), size=224)
    except FileNotFoundError:
        x = torch.randn(1, 3, 224, 224)
    noise = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    lr = 1e3

    # Same work: both loops end at the same image.
    ref_img, ref_losses = feature_inversion(vgg, x, 18, 3, lr, noise)
    ours = cnnviz.invert(vgg, x, "features.18", iterations=3, optimizer="sgd", learning_rate=lr, momentum=0.9,
                         init=noise, clamp_pixels=False)
    err = ((ours.image - ref_img).norm() / ref_img.norm()).item()
    loss_err = max(abs(a - b) / abs(b) for a, b in zip(ours.losses.tolist(), ref_losses))
    print(f"inversion: cnnviz and the notebook loop agree after 3 steps (relative difference of the images "
          f"{err:.1e}, of the losses {loss_err:.1e})")
    assert err < 1e-2 and loss_err < 1e-3, (err, loss_err)
    if args.whole:
        for threads in [int(t) for t in args.threads.split(",")]:
            whole_calls(vgg, x, noise, lr, threads, args.repeats)
        return

    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        print(f"\n## {threads} thread(s), torch {torch.__version__}")
        inv = per_iteration({
            "notebook feature_inversion": lambda n: feature_inversion(vgg, x, 18, n, lr, noise),
            "cnnviz.invert (SGD, no clamp)": lambda n: cnnviz.invert(vgg, x, "features.18", iterations=n,
                                                                    optimizer="sgd", learning_rate=lr, momentum=0.9,
                                                                    init=noise, clamp_pixels=False),
            "cnnviz.invert (defaults: Adam, clamp_pixels)": lambda n: cnnviz.invert(vgg, x, "features.18",
                                                                                   iterations=n, init=noise),
        }, 2, 8, args.repeats)
        base = inv["notebook feature_inversion"]
        print("| invert, VGG16 features.18, 224x224 | ms / iteration | speedup |\n|---|---|---|")
        for name, t in inv.items():
            print(f"| {name} | {t * 1e3:.1f} | {base / t:.2f}x |")

        mx = per_iteration({
            "straightforward PyTorch (Lucent-style)": lambda n: lucent_render(vgg, "features.18", 7, n, 128),
            "tuned PyTorch (frozen, autograd.grad, early stop)": lambda n: lucent_render(vgg, "features.18", 7, n,
                                                                                          128, tuned=True),
            "cnnviz.maximize": lambda n: cnnviz.maximize(vgg, "features.18", channel=7, iterations=n, size=128),
        }, 2, 8, args.repeats)
        base = mx["straightforward PyTorch (Lucent-style)"]
        print("\n| maximize, VGG16 features.18, 128x128, Fourier + transforms | ms / iteration | speedup |\n"
              "|---|---|---|")
        for name, t in mx.items():
            print(f"| {name} | {t * 1e3:.1f} | {base / t:.2f}x |")

        layers = ["features.2", "features.7", "features.14", "features.21", "features.28"]
        lay = per_iteration({
            "invert_layers, one layer after another": lambda n: cnnviz.invert_layers(vgg, x, layers, iterations=n,
                                                                                     init=noise),
            "invert_layers, batch_layers=True": lambda n: cnnviz.invert_layers(vgg, x, layers, iterations=n,
                                                                               init=noise, batch_layers=True),
        }, 1, 2, args.repeats)
        base = lay["invert_layers, one layer after another"]
        print("\n| invert_layers, VGG16 [2, 7, 14, 21, 28], 224x224 | ms / iteration (all 5 layers) | speedup |\n"
              "|---|---|---|")
        for name, t in lay.items():
            print(f"| {name} | {t * 1e3:.1f} | {base / t:.2f}x |")


if __name__ == "__main__":
    main()
