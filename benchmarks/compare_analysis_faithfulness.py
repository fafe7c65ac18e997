"""deletion_insertion against straightforward PyTorch loops, in one process at one thread count.

Contenders, all computing the same deletion and insertion curves (checked equal):
  cnnviz       cnnviz.deletion_insertion: ranks once, scores x once (the first deletion
               and last insertion point), builds the other 2 N steps perturbed images
               batch_size at a time and runs them as batches
  per-step     a loop over the steps: for each step and curve, one forward of the N images
               at that step (2 (steps + 1) forwards of N images)
  per-image    a loop over images and steps, one forward per perturbed image (how the RISE
               reference code runs)

Workloads: the pretrained CIFAR-10 ResNet-20 on the 20 sample images and on one of them
(32x32, steps 32), and the pretrained MobileNetV2 on 4 ImageNet samples at 224 (steps 16;
without the per-image loop, whose single-image forwards take minutes per repeat here). cnnviz
runs at its default batch_size (chosen from the image size: 32 at 32 x 32, 3 at 224 x 224). Repeats are interleaved (cnnviz, per-step, per-image,
cnnviz, ...); the median and the spread (min-max) of the wall time are printed, and the
median CPU time of this process (steadier than the wall time on a shared machine, at one
thread). Counts of forwards are printed too. ``--profile`` adds, per workload, the share of
cnnviz's CPU time spent inside the model's forward (the rest is ranking and building the
perturbed batches).

Usage: python benchmarks/compare_analysis_faithfulness.py [--threads 2] [--repeats 5] [--profile]
       python benchmarks/compare_analysis_faithfulness.py --threads 1 --repeats 2 --forward-sweep
       python benchmarks/compare_analysis_faithfulness.py --threads 1 --repeats 3 --batch-sweep [resnet20]
(CNNVIZ_DATA must point at the sample data.) Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torchvision.transforms.functional as TF
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnviz  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def reference_masks(attribution, steps):
    """(N, steps + 1, P) bool: pixels changed at each step, from a plain argsort."""
    n, h, w = attribution.shape
    p = h * w
    order = attribution.reshape(n, p).argsort(1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(p).expand(n, p))
    counts = torch.tensor([round(k * p / steps) for k in range(steps + 1)])
    return rank.unsqueeze(1) < counts.view(1, -1, 1)


@torch.no_grad()
def per_step(model, x, attribution, target, steps, deletion_base, insertion_base):
    n, _, h, w = x.shape
    masks = reference_masks(attribution, steps)
    dele, ins = [], []
    for k in range(steps + 1):
        m = masks[:, k].view(n, 1, h, w)
        idx = torch.arange(n)
        dele.append(model(torch.where(m, deletion_base, x)).softmax(1)[idx, target])
        ins.append(model(torch.where(m, x, insertion_base)).softmax(1)[idx, target])
    return torch.stack(dele, 1), torch.stack(ins, 1)


@torch.no_grad()
def per_image(model, x, attribution, target, steps, deletion_base, insertion_base):
    n, _, h, w = x.shape
    masks = reference_masks(attribution, steps)
    dele = torch.empty(n, steps + 1)
    ins = torch.empty(n, steps + 1)
    for i in range(n):
        for k in range(steps + 1):
            m = masks[i, k].view(1, 1, h, w)
            xi = x[i:i + 1]
            dele[i, k] = model(torch.where(m, deletion_base[i:i + 1], xi)).softmax(1)[0, target[i]]
            ins[i, k] = model(torch.where(m, xi, insertion_base[i:i + 1])).softmax(1)[0, target[i]]
    return dele, ins


def load(paths, size=None):
    imgs = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        if size:
            im = TF.center_crop(TF.resize(im, 256), size)
        imgs.append(TF.to_tensor(im))
    return (torch.stack(imgs) - MEAN) / STD


class _Timed(torch.nn.Module):
    """The model, counting the CPU seconds spent in its forward."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seconds = model, 0.0

    def forward(self, x):
        t0 = time.process_time()
        y = self.model(x)
        self.seconds += time.process_time() - t0
        return y


def forward_share(model, x, attribution, target, steps):
    """The share of a call's CPU time spent in the model's forward (the eager module: a
    forward plan would trace the timing wrapper away)."""
    timed = _Timed(model).eval()
    cnnviz.set_inference_plans(False)
    try:
        t0 = time.process_time()
        cnnviz.deletion_insertion(timed, x, attribution, target, steps=steps)
        return timed.seconds / (time.process_time() - t0)
    finally:
        cnnviz.set_inference_plans(True)


def workload(name, model, x, steps, repeats, per_image_loop=True, profile=False):
    torch.manual_seed(0)
    attribution = torch.rand(x.shape[0], x.shape[2], x.shape[3])
    with torch.no_grad():
        target = model(x).argmax(1)
    # The same baselines as cnnviz's defaults: zeros for deletion, the blurred image for insertion.
    blurred = cnnviz.integrated_gradients(model, x, target, baseline="blur", steps=2).baseline
    zeros = torch.zeros_like(x)
    contenders = {
        "cnnviz": lambda: (lambda r: (r.deletion, r.insertion))(
            cnnviz.deletion_insertion(model, x, attribution, target, steps=steps)),
        "per-step": lambda: per_step(model, x, attribution, target, steps, zeros, blurred),
    }
    if per_image_loop:
        contenders["per-image"] = lambda: per_image(model, x, attribution, target, steps, zeros, blurred)
    ref = contenders["per-image" if per_image_loop else "per-step"]()
    for key, fn in contenders.items():
        d, i = fn()
        torch.testing.assert_close(d.float(), ref[0], atol=1e-4, rtol=1e-4, msg=f"{key} deletion differs")
        torch.testing.assert_close(i.float(), ref[1], atol=1e-4, rtol=1e-4, msg=f"{key} insertion differs")
    times = {k: [] for k in contenders}
    cpu = {k: [] for k in contenders}
    for _ in range(repeats):  # interleaved
        for key, fn in contenders.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
    n = x.shape[0]
    batch_size = cnnviz.deletion_insertion(model, x, attribution, target, steps=1).batch_size  # the default's choice
    # cnnviz scores x once (deletion's first point, insertion's last) and runs the other 2 n steps images.
    forwards = {"cnnviz": f"{-(-2 * n * steps // batch_size) + 1}: {2 * n * steps + n} images",
                "per-step": f"{2 * (steps + 1)}: {2 * n * (steps + 1)} images",
                "per-image": f"{2 * n * (steps + 1)}: {2 * n * (steps + 1)} images"}
    base, base_cpu = statistics.median(times["cnnviz"]), statistics.median(cpu["cnnviz"])
    for key in contenders:
        t = times[key]
        med, med_cpu = statistics.median(t), statistics.median(cpu[key])
        print(f"| {name} | {key} | {forwards[key]} | {med * 1e3:.0f} | {min(t) * 1e3:.0f}-{max(t) * 1e3:.0f} | "
              f"{med / base:.2f}x | {med_cpu * 1e3:.0f} | {med_cpu / base_cpu:.2f}x |")
    if profile:
        share = statistics.median(forward_share(model, x, attribution, target, steps) for _ in range(3))
        print(f"| {name} | cnnviz: share of CPU time in the model's forward | {share:.1%} | | | | | |")


def forward_sweep(repeats):
    """MobileNetV2 forwards of 32 images at 224 in batches of 2..32: CPU ms per image, system
    seconds and minor page faults (the cost of fresh memory for the activations: glibc serves
    blocks above its mmap threshold, at most 32 MiB, from new pages every time). Run it also
    with MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 in the
    environment to see the forward without that cost."""
    import resource

    model = cnnviz.zoo.pretrained("mobilenet_v2")
    x = torch.randn(32, 3, 224, 224)
    sizes = (2, 4, 8, 16, 32)
    cpu = {b: [] for b in sizes}
    sys_s = {b: [] for b in sizes}
    faults = {b: [] for b in sizes}
    for r in range(repeats + 1):
        for b in sizes:
            u0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
            with torch.no_grad():
                for s in range(0, 32, b):
                    model(x[s:s + b])
            u1 = resource.getrusage(resource.RUSAGE_SELF)
            if r:  # the first round warms up
                cpu[b].append((time.process_time() - c0) / 32)
                sys_s[b].append(u1.ru_stime - u0.ru_stime)
                faults[b].append(u1.ru_minflt - u0.ru_minflt)
    print("| batch | CPU ms per image | system s per 32 images | minor page faults per 32 images |")
    print("|---|---|---|---|")
    for b in sizes:
        print(f"| {b} | {statistics.median(cpu[b]) * 1e3:.0f} ({min(cpu[b]) * 1e3:.0f}-{max(cpu[b]) * 1e3:.0f}) | "
              f"{statistics.median(sys_s[b]):.2f} | {statistics.median(faults[b]):.0f} |")


def batch_sweep(repeats, which="mobilenet_v2"):
    """cnnviz.deletion_insertion on MobileNetV2, 4 ImageNet samples at 224, steps 16 (or
    ResNet-20 on the 20 CIFAR samples, steps 32), at each batch_size (and the default): CPU ms
    per perturbed image and minor page faults per call, the sizes interleaved over the repeats
    (after a warm-up round). What the default's bound was chosen from."""
    import resource

    data = cnnviz.data_dir()
    if which == "mobilenet_v2":
        folder = os.path.join(data, "images", "imagenet_samples")
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))[:4]
        model, x, steps, sizes = cnnviz.zoo.pretrained("mobilenet_v2"), load(paths, 224), 16, (1, 2, 3, 4, 6, 8, 16, 32)
    else:
        folder = os.path.join(data, "images", "cifar10_samples")
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".png"))
        model, x, steps, sizes = cnnviz.zoo.pretrained("resnet20"), load(paths), 32, (4, 8, 16, 20, 24, 32, 64)
    torch.manual_seed(0)
    attribution = torch.rand(x.shape[0], x.shape[2], x.shape[3])
    images = 2 * x.shape[0] * steps + x.shape[0]
    keys = list(sizes) + [None]
    cpu = {b: [] for b in keys}
    faults = {b: [] for b in keys}
    for r in range(repeats + 1):
        for b in keys:
            u0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
            res = cnnviz.deletion_insertion(model, x, attribution, steps=steps, batch_size=b)
            c1, u1 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
            if r:
                cpu[b].append((c1 - c0) / images)
                faults[b].append(u1.ru_minflt - u0.ru_minflt)
            if b is None:
                default = res.batch_size
    print(f"{which}, {x.shape[0]} images of {tuple(x.shape[1:])}, steps {steps} ({images} forwarded images per call), "
          f"{repeats} rounds")
    print("| batch_size | CPU ms per image | minor page faults per call |")
    print("|---|---|---|")
    for b in keys:
        name = f"default ({default})" if b is None else str(b)
        print(f"| {name} | {statistics.median(cpu[b]) * 1e3:.1f} ({min(cpu[b]) * 1e3:.1f}-{max(cpu[b]) * 1e3:.1f}) | "
              f"{statistics.median(faults[b]):.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workload", nargs="*", default=["resnet20", "resnet20_one", "mobilenet_v2"])
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--forward-sweep", action="store_true", help="MobileNetV2 forward cost per batch size")
    ap.add_argument("--batch-sweep", nargs="?", const="mobilenet_v2", choices=["mobilenet_v2", "resnet20"],
                    help="deletion_insertion's cost per batch_size (MobileNetV2 at 224, or ResNet-20)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.forward_sweep:
        forward_sweep(args.repeats)
        return
    if args.batch_sweep:
        batch_sweep(args.repeats, args.batch_sweep)
        return
    data = cnnviz.data_dir()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats {args.repeats} (interleaved)\n")
    print("| workload | contender | forwards | median ms | spread ms | time / cnnviz | CPU ms | CPU / cnnviz |")
    print("|---|---|---|---|---|---|---|---|")
    folder = os.path.join(data, "images", "cifar10_samples")
    cifar = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".png"))
    if "resnet20" in args.workload:
        workload("ResNet-20, 20 CIFAR images, steps 32", cnnviz.zoo.pretrained("resnet20"), load(cifar), 32,
                 args.repeats, profile=args.profile)
    if "resnet20_one" in args.workload:
        workload("ResNet-20, 1 CIFAR image, steps 32", cnnviz.zoo.pretrained("resnet20"), load(cifar[:1]), 32,
                 args.repeats, profile=args.profile)
    if "mobilenet_v2" in args.workload:
        folder = os.path.join(data, "images", "imagenet_samples")
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))[:4]
        workload("MobileNetV2, 4 ImageNet images at 224, steps 16", cnnviz.zoo.pretrained("mobilenet_v2"),
                 load(paths, 224), 16, args.repeats, per_image_loop=False, profile=args.profile)


if __name__ == "__main__":
    main()
