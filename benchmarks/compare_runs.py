"""Dataset runs: ``cnnviz.run`` against the per-image loop a user writes today, and scaling
from 1 to 2 processes under torchrun.

The loop is what one writes with Captum-style calls (one image per call; integrated
gradients batches its path points inside the call, as Captum's ``internal_batch_size`` does):
read the file, preprocess, predict, attribute, keep the map, save all maps at the end. The
reference calls are plain autograd (reference_attribution.py; Captum is not installed here).
Both sides read the same 1,000 files (the 20 CIFAR-10 samples repeated) with cnnviz's decoder
and write their maps to disk. Contenders are interleaved over repeats; median and spread.

Usage:
  python benchmarks/compare_runs.py [--threads 2] [--images 1000] [--ig-images N] [--repeats 3]
  python benchmarks/compare_runs.py --scaling [--images 1000] [--repeats 3]
  python benchmarks/compare_runs.py --resnet50 [--images 4]   (per-image cost behind docs/runs.md's estimate)
  python benchmarks/compare_runs.py --ig-profile --threads 1 --ig-images 64   (where IG's time goes)
(CNNVIZ_DATA must point at the sample data.) Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cnnviz  # noqa: E402
import reference_attribution as ref  # noqa: E402

IG_STEPS = 32


def files(n: int):
    folder = os.path.join(cnnviz.data_dir(), "images", "cifar10_samples")
    samples = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".png"))
    return [samples[i % len(samples)] for i in range(n)]


def user_loop(model, paths, method, out):
    """The per-image loop: one Captum-style call per image, maps saved at the end."""
    maps = []
    for p in paths:
        x = cnnviz.preprocess(cnnviz.load_image(p), size=32)
        with torch.no_grad():
            target = int(model(x).argmax(1))
        if method == "saliency":
            m = ref.saliency_loop(model, x, target)
        elif method == "grad_cam":
            m = ref.grad_cam_loop(model, x, target, "layer3")
        else:  # Captum's IntegratedGradients: all path points of the image in one batch
            m = ref.integrated_gradients_batched(model, x, target, IG_STEPS, IG_STEPS)
        maps.append(m.detach().numpy())
    np.save(out, np.concatenate(maps))


# Path points per forward/backward pass in a run's IG: the fastest of 16-256 on this CPU
# at one thread (--ig-profile); 256 was 1.2x slower (its activations leave the caches).
IG_BATCH = 64


def run_call(model, paths, method, out, batch_size):
    spec = ("integrated_gradients", {"steps": IG_STEPS, "batch_size": IG_BATCH}) if method == "ig" else method
    cnnviz.run(model, paths, [spec], out, batch_size=batch_size, size=32, progress=False, overwrite=True)


def spread(times):
    return f"{statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f})"


def compare(args):
    torch.set_num_threads(args.threads)
    model = cnnviz.zoo.pretrained("resnet20")
    count = {"saliency": args.images, "grad_cam": args.images, "ig": args.ig_images or args.images}
    tmp = tempfile.mkdtemp(prefix="cnnviz-bench-")
    methods = ["saliency", "grad_cam", "ig"]
    times = {(m, who): [] for m in methods for who in ("loop", "run")}
    cpu = {(m, who): [] for m in methods for who in ("loop", "run")}
    try:
        for _ in range(args.repeats):
            for m in methods:
                paths = files(count[m])
                for who in ("loop", "run"):  # interleaved
                    t0, c0 = time.perf_counter(), time.process_time()
                    if who == "loop":
                        user_loop(model, paths, m, os.path.join(tmp, "loop.npy"))
                    else:
                        run_call(model, paths, m, os.path.join(tmp, "run"), args.batch_size)
                    times[(m, who)].append(time.perf_counter() - t0)
                    cpu[(m, who)].append(time.process_time() - c0)
                    print(f"# {m} {who}: {times[(m, who)][-1]:.2f} s wall, {cpu[(m, who)][-1]:.2f} s CPU for "
                          f"{count[m]} images", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nResNet-20 (pretrained), CIFAR-10 images (32x32, read from PNG), "
          f"{args.threads} threads, batch {args.batch_size}, median of {args.repeats} interleaved repeats (min-max)\n")
    print("| method | images | per-image loop | images/s | cnnviz.run | images/s | speed-up | "
          "CPU s loop / run | speed-up by CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    names = {"saliency": "saliency", "grad_cam": "Grad-CAM (layer3)", "ig": f"IG ({IG_STEPS} steps)"}
    for m in methods:
        lo, ru = statistics.median(times[(m, "loop")]), statistics.median(times[(m, "run")])
        clo, cru = statistics.median(cpu[(m, "loop")]), statistics.median(cpu[(m, "run")])
        print(f"| {names[m]} | {count[m]} | {spread(times[(m, 'loop')])} | {count[m] / lo:.0f} | "
              f"{spread(times[(m, 'run')])} | {count[m] / ru:.0f} | {lo / ru:.1f}x | {clo:.1f} / {cru:.1f} | "
              f"{clo / cru:.1f}x |")


def scaling(args):
    """Images/s of one method over the same files: 1 process at 1 and 2 threads, 2 processes
    (torchrun, 1 thread each)."""
    tmp = tempfile.mkdtemp(prefix="cnnviz-scale-")
    listing = os.path.join(tmp, "files")
    for m in args.methods:
        with open(f"{listing}_{m}.txt", "w") as f:
            f.write("\n".join(files((args.ig_images or args.images) if m == "ig" else args.images)))
    env = dict(os.environ)
    contenders = {
        "1 process, 1 thread": (["--nproc_per_node=1"], "1"),
        "1 process, 2 threads": (["--nproc_per_node=1"], "2"),
        "2 processes (torchrun), 1 thread each": (["--nproc_per_node=2"], "1"),
    }
    times = {(m, c): [] for m in args.methods for c in contenders}
    try:
        for _ in range(args.repeats):
            for m in args.methods:
                for c, (nproc, threads) in contenders.items():
                    out = os.path.join(tmp, "out")
                    shutil.rmtree(out, ignore_errors=True)
                    cmd = [sys.executable, "-m", "cnnviz.runs.torchrun", "--standalone", *nproc, "-m", "cnnviz.cli",
                           "run", "--model", "resnet20", "--data", f"{listing}_{m}.txt", "--methods", m, "--set",
                           f"ig.steps={IG_STEPS}", "--set", f"ig.batch_size={IG_BATCH}", "--out", out,
                           "--batch-size", str(args.batch_size), "--workers", "0", "--no-progress",
                           # One batch per chunk: chunks are what ranks share out, so every rank gets work.
                           "--chunk-size", str(args.batch_size)]
                    if m != "ig":
                        cmd = [a for a in cmd if not a.startswith("ig.") and a != "--set"]
                    env["OMP_NUM_THREADS"] = threads
                    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    if r.returncode:
                        raise RuntimeError(r.stdout + r.stderr)
                    # The run's own wall time (all ranks), without interpreter start-up.
                    line = [ln for ln in r.stdout.splitlines() if "images/s" in ln][0]
                    times[(m, c)].append(float(line.split(" s (")[0].rsplit(" ", 1)[1]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nScaling: ResNet-20, {args.images} images ({args.ig_images or args.images} for IG), batch {args.batch_size}, median of {args.repeats} "
          f"interleaved repeats (min-max), seconds of the run itself (start-up excluded)\n")
    print("| method | " + " | ".join(contenders) + " | 2 processes vs 1 process, 1 thread |")
    print("|---|" + "---|" * (len(contenders) + 1))
    for m in args.methods:
        n = (args.ig_images or args.images) if m == "ig" else args.images
        cells = [f"{spread(times[(m, c)])}, {n / statistics.median(times[(m, c)]):.0f} img/s" for c in contenders]
        ratio = statistics.median(times[(m, "1 process, 1 thread")]) / statistics.median(
            times[(m, "2 processes (torchrun), 1 thread each")])
        print(f"| {m} | " + " | ".join(cells) + f" | {ratio:.2f}x |")


def ig_profile(args):
    """Where IG's time goes in a run: CPU seconds per image (this process, steadier than wall
    time on a shared machine) of the run, of cnnviz.integrated_gradients alone on the decoded
    batch at several path-point batch sizes, of the bare forward/backward arithmetic, and of
    the per-image loop. Every contender computes 32 path points per image (one forward and
    one backward to the input each); the run adds a forward of x and the baseline."""
    torch.set_num_threads(args.threads)
    model = cnnviz.zoo.pretrained("resnet20")
    n = args.ig_images or 64
    paths = files(n)
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(p), size=32) for p in paths])
    tmp = tempfile.mkdtemp(prefix="cnnviz-igprof-")

    def arithmetic(bs):
        xs = x.repeat(IG_STEPS, 1, 1, 1)
        for s in range(0, len(xs), bs):
            xi = xs[s:s + bs].clone().requires_grad_(True)
            torch.autograd.grad(model(xi)[:, 0].sum(), xi)

    contenders = {"cnnviz.run (batch 64, IG batch %d)" % IG_BATCH:
                  lambda: run_call(model, paths, "ig", os.path.join(tmp, "run"), 64)}
    for bs in (16, 32, 64, 128, 256):
        contenders[f"integrated_gradients, batch {bs}"] = (
            lambda bs=bs: cnnviz.integrated_gradients(model, x, steps=IG_STEPS, batch_size=bs))
    for bs in (32, 64, 256):
        contenders[f"forward+backward only, batch {bs}"] = lambda bs=bs: arithmetic(bs)
    contenders["per-image loop (Captum-style, 32 points per call)"] = (
        lambda: user_loop(model, paths, "ig", os.path.join(tmp, "loop.npy")))
    cpu = {k: [] for k in contenders}
    try:
        for _ in range(args.repeats):
            for key, fn in contenders.items():
                c0 = time.process_time()
                fn()
                cpu[key].append(time.process_time() - c0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nIG ({IG_STEPS} steps) on ResNet-20, {n} images, {args.threads} thread(s): CPU ms per image, "
          f"median of {args.repeats} interleaved repeats (min-max)\n")
    print("| contender | CPU ms per image | spread |")
    print("|---|---|---|")
    for key, t in cpu.items():
        print(f"| {key} | {statistics.median(t) / n * 1e3:.0f} | {min(t) / n * 1e3:.0f}-{max(t) / n * 1e3:.0f} |")


def resnet50_cost(args):
    """Seconds and bytes per image of IG (32 steps) on ResNet-50 (torchvision architecture,
    random weights: the cost does not depend on them) over ImageNet samples at 224x224, as
    cnnviz.run stores it."""
    import torchvision

    torch.set_num_threads(args.threads)
    model = torchvision.models.resnet50().eval()
    folder = os.path.join(cnnviz.data_dir(), "images", "imagenet_samples")
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder))[:args.images]
    tmp = tempfile.mkdtemp(prefix="cnnviz-r50-")
    try:
        c0 = time.process_time()
        s = cnnviz.run(model, paths, [("ig", {"steps": IG_STEPS, "batch_size": 32})], os.path.join(tmp, "out"),
                       batch_size=args.images, size=224, resize=256, progress=False)
        cpu = time.process_time() - c0
        chunks = os.path.join(tmp, "out", "chunks")
        size = sum(os.path.getsize(os.path.join(chunks, f)) for f in os.listdir(chunks))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ResNet-50, IG {IG_STEPS} steps, {args.images} images at 224x224, {args.threads} threads: "
          f"{s.seconds / args.images:.2f} s per image ({s.seconds / args.images / IG_STEPS * 1000:.0f} ms per "
          f"path point), {size / args.images / 1e3:.0f} kB per image stored; CPU time of the process "
          f"{cpu / args.images:.2f} s per image ({cpu / args.images / IG_STEPS * 1000:.0f} ms per path point; "
          f"load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--ig-images", type=int, default=200,
                   help="images for IG (its per-image loop alone takes minutes per 1,000 images)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--scaling", action="store_true")
    p.add_argument("--resnet50", action="store_true")
    p.add_argument("--ig-profile", action="store_true")
    p.add_argument("--methods", nargs="+", default=["saliency", "ig"])
    a = p.parse_args()
    if a.ig_profile:
        ig_profile(a)
    else:
        scaling(a) if a.scaling else resnet50_cost(a) if a.resnet50 else compare(a)
