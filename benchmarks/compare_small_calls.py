"""Single-image calls on the pretrained ResNet-20 (CIFAR-10), as a notebook loop makes them:
cnnviz with its thread policy and inference plan, with the policy alone (plans off), with
neither (plans off, every call at the caller's thread count: the behaviour before both),
against Captum-style references (benchmarks/reference_attribution.py; Captum is not
installed here). Captum's Saliency and LayerGradCam take one forward and one
torch.autograd.grad per call, which is the "batched" reference at N=1 (the "loop" one also
fills parameter gradients); Captum's IntegratedGradients runs all steps as one batch, the
"batched" reference with batch 32, and its convergence delta costs it one more forward of
the input and the baseline (added here as Captum does it).

Contenders are interleaved: each repetition times all 20 calls of every contender in turn;
median and range over repetitions, wall and process CPU time.

Usage: CNNVIZ_DATA=... python benchmarks/compare_small_calls.py [--threads 2] [--repeats 5]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnviz  # noqa: E402
import reference_attribution as ref  # noqa: E402
from compare_attribution import cifar_images  # noqa: E402


def captum_ig(model, x, target, steps):
    """Captum's IntegratedGradients(model).attribute(x, target=t, n_steps=steps,
    method="riemann_trapezoid", return_convergence_delta=True): the steps in one batch, then
    a forward of [x, baseline] for the delta."""
    attribution = ref.integrated_gradients_batched(model, x, target, steps, steps)
    with torch.no_grad():
        model(torch.cat([x, torch.zeros_like(x)]))
    return attribution


def forward_floor(model):
    """The floor of a single-pass call: a forward of the inference plan without autograd
    (what Grad-CAM cannot go below: its score needs the whole forward), on one intra-op and
    one OpenBLAS thread, as cnnviz's policy runs it (with --threads 1 only: torch.set_num_threads
    per call costs more than the forward, as it resizes thread pools and clears oneDNN's
    cache)."""
    try:
        blas = ctypes.CDLL("libblas.so.3")
        blas.openblas_get_num_threads()
    except (OSError, AttributeError):
        blas = None

    def run(x, t):
        plan = cnnviz._plan.model_for(model, x)
        blas_threads = blas.openblas_get_num_threads() if blas else 0
        if blas:
            blas.openblas_set_num_threads(1)
        try:
            with torch.no_grad():
                return plan(x)
        finally:
            if blas:
                blas.openblas_set_num_threads(blas_threads)
    return run


def path_floor(model, steps):
    """The floor of integrated gradients: one forward and input backward of the path's
    `steps` rows through the model, parameters frozen, nothing else."""
    def run(x, t):
        alpha = torch.linspace(0, 1, steps).view(-1, 1, 1, 1)
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            xi = (alpha * x).requires_grad_(True)
            return torch.autograd.grad(model(xi)[:, t].sum(), xi)[0]
        finally:
            for p in params:
                p.requires_grad_(True)
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=20, help="the first this many CIFAR-10 samples")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = cnnviz.zoo.pretrained("resnet20")
    xs, labels = cifar_images()
    xs, labels = xs[:args.images], labels[:args.images]

    def ours(call, plans=True, threads=None):
        def run(x, t):
            cnnviz.set_inference_plans(plans)
            try:
                with cnnviz.num_threads(threads):
                    return call(x, t)
            finally:
                cnnviz.set_inference_plans(True)
        return run

    floor = {"floor: no-grad forward of the plan": forward_floor(model)} if args.threads == 1 else {}
    sal = lambda x, t: cnnviz.saliency(model, x, t)  # noqa: E731
    cam = lambda x, t: cnnviz.grad_cam(model, x, "layer3", t)  # noqa: E731
    ig = lambda x, t: cnnviz.integrated_gradients(model, x, t, steps=32, batch_size=32)  # noqa: E731
    workloads = {
        "saliency": {"cnnviz": ours(sal), "cnnviz, plans off": ours(sal, False),
                     f"cnnviz, plans off, {args.threads} threads": ours(sal, False, args.threads),
                     "Captum-style (autograd.grad)": lambda x, t: ref.saliency_batched(model, x, t),
                     "loop (backward into parameters)": lambda x, t: ref.saliency_loop(model, x, t),
                     **floor},
        "Grad-CAM layer3": {"cnnviz": ours(cam), "cnnviz, plans off": ours(cam, False),
                            f"cnnviz, plans off, {args.threads} threads": ours(cam, False, args.threads),
                            "Captum-style (autograd.grad)": lambda x, t: ref.grad_cam_batched(model, x, t, "layer3"),
                            "loop (backward into parameters)": lambda x, t: ref.grad_cam_loop(model, x, t, "layer3"),
                            **floor},
        "IG 32 steps": {"cnnviz": ours(ig), "cnnviz, plans off": ours(ig, False),
                        f"cnnviz, plans off, {args.threads} threads": ours(ig, False, args.threads),
                        "Captum-style (one batch + delta forward)": lambda x, t: captum_ig(model, x, t, 32),
                        "floor: forward + input backward of the 32 path rows": path_floor(model, 32)},
    }
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}\n")
    for name, runs in workloads.items():
        for fn in runs.values():
            for x, t in zip(xs[:3], labels[:3]):
                fn(x, t)
        wall = {k: [] for k in runs}
        cpu = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, fn in runs.items():
                c0, t0 = time.process_time(), time.perf_counter()
                for x, t in zip(xs, labels):
                    fn(x, t)
                wall[k].append((time.perf_counter() - t0) / len(xs))
                cpu[k].append((time.process_time() - c0) / len(xs))
        ref_key = [k for k in runs if k.startswith("Captum")][0]
        base, base_cpu = statistics.median(wall[ref_key]), statistics.median(cpu[ref_key])
        print(f"### {name}, ms per call ({len(xs)} CIFAR-10 images), {args.repeats} interleaved repeats\n")
        print("| contender | wall ms, median (range) | vs Captum-style | CPU ms, median | vs Captum-style (CPU) |")
        print("|---|---|---|---|---|")
        for k in runs:
            w, c = statistics.median(wall[k]), statistics.median(cpu[k])
            print(f"| {k} | {w * 1e3:.1f} ({min(wall[k]) * 1e3:.1f}-{max(wall[k]) * 1e3:.1f}) | {base / w:.2f}x | "
                  f"{c * 1e3:.1f} | {base_cpu / c:.2f}x |")
        print(f"\nload after: {os.getloadavg()[0]:.1f}\n", flush=True)


if __name__ == "__main__":
    main()
