"""Attribution speed: cnnviz against straightforward PyTorch (reference_attribution.py),
in one process at one thread count.

Workloads:
  vgg16     VGG16 (random weights), one 224x224 image: saliency, SmoothGrad (16 samples),
            IG (32 steps), Grad-CAM and Score-CAM at features.29, occlusion (32x32, stride 16)
  resnet20  the pretrained CIFAR-10 ResNet-20 on the 20 sample images, one call per image
            as a notebook user makes them (Score-CAM at layer3, occlusion 8x8 stride 4)
  bf16      cnnviz calls under a user's CPU bfloat16 autocast against float32: speed ratio
            and Spearman rank correlation of the maps (VGG16 and ResNet-20; occlusion with
            non-overlapping windows). cnnviz has no precision option: this measured why.

Usage: python benchmarks/compare_attribution.py [--threads 2] [--workload vgg16 resnet20 bf16]
(CNNVIZ_DATA must point at the sample data for resnet20.) Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torchvision
from scipy.stats import spearmanr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnviz  # noqa: E402
import reference_attribution as ref  # noqa: E402
from _timing import best_time  # noqa: E402


def methods(layer, score_layer, window, stride, batch):
    """name -> (cnnviz call, {reference style: call}); each call takes (model, x, target)."""
    return {
        "saliency": (lambda m, x, t: cnnviz.saliency(m, x, t).map,
                     {"loop": ref.saliency_loop, "batched": ref.saliency_batched}),
        "SmoothGrad (16)": (
            lambda m, x, t: cnnviz.smooth_grad(m, x, t, samples=16, noise_level=0.15, batch_size=16).map,
            {"loop": lambda m, x, t: ref.smooth_grad_loop(m, x, t, 16, 0.15),
             "batched": lambda m, x, t: ref.smooth_grad_batched(m, x, t, 16, 0.15, 16)}),
        "IG (32 steps)": (
            lambda m, x, t: cnnviz.integrated_gradients(m, x, t, steps=32, batch_size=batch).map,
            {"loop": lambda m, x, t: ref.integrated_gradients_loop(m, x, t, 32),
             "batched": lambda m, x, t: ref.integrated_gradients_batched(m, x, t, 32, batch)}),
        "Grad-CAM": (lambda m, x, t: cnnviz.grad_cam(m, x, layer, t).map,
                     {"loop": lambda m, x, t: ref.grad_cam_loop(m, x, t, layer),
                      "batched": lambda m, x, t: ref.grad_cam_batched(m, x, t, layer)}),
        "Score-CAM": (lambda m, x, t: cnnviz.score_cam(m, x, score_layer, t, batch_size=32).map,
                      {"loop": lambda m, x, t: ref.score_cam_loop(m, x, t, score_layer),
                       "batched": lambda m, x, t: ref.score_cam_batched(m, x, t, score_layer, 32)}),
        "occlusion": (lambda m, x, t: cnnviz.occlusion(m, x, t, window=window, stride=stride, batch_size=32).map,
                      {"loop": lambda m, x, t: ref.occlusion_loop(m, x, t, window, stride),
                       "batched": lambda m, x, t: ref.occlusion_batched(m, x, t, window, stride, 32)}),
    }


def agree(a, b):
    """Spearman rank correlation of two maps (1.0 when both are constant)."""
    a, b = a.detach().flatten().double().numpy(), b.detach().flatten().double().numpy()
    if a.std() == 0 and b.std() == 0:
        return 1.0
    return spearmanr(a, b).correlation


def table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def vgg16_workload(repeat):
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    x = torch.randn(1, 3, 224, 224)
    target = int(model(x).argmax())
    rows = []
    for name, (ours, refs) in methods("features.29", "features.29", 32, 16, 8).items():
        r = 1 if name == "Score-CAM" else repeat
        t_ours = best_time(lambda: ours(model, x, target), r)
        cells, best = [], float("inf")
        for style, fn in refs.items():
            t = best_time(lambda: fn(model, x, target), r)
            best = min(best, t)
            cells.append(f"{t:.3f}")
        rho = agree(ours(model, x, target), refs["batched"](model, x, target)) if "Smooth" not in name else "-"
        rows.append([name, f"{t_ours:.3f}", *cells, f"{best / t_ours:.2f}x",
                     rho if rho == "-" else f"{rho:.4f}"])
    return table(rows, ["method", "cnnviz s", "loop s", "batched s", "speed-up vs best", "rank corr"])


def cifar_images():
    from PIL import Image
    import torchvision.transforms.functional as TF

    folder = os.path.join(cnnviz.data_dir(), "images", "cifar10_samples")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    xs = [TF.normalize(TF.to_tensor(Image.open(os.path.join(folder, f)).convert("RGB")),
                       [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).unsqueeze(0) for f in files]
    return xs, [int(f.rsplit("_", 1)[1].split(".")[0]) for f in files]


def resnet20_workload(repeat, skip_loop=False):
    """Contenders interleaved: each repetition times all 20 calls of every contender in turn,
    so a change of the machine's load hits all alike; median and range over repetitions."""
    import statistics
    import time

    model = cnnviz.zoo.pretrained("resnet20")
    traced = torch.jit.trace(model, torch.zeros(1, 3, 32, 32))
    xs, labels = cifar_images()
    rows, totals = [], {"cnnviz": 0.0, "cnnviz traced": 0.0, "loop": 0.0, "batched": 0.0}
    cpu_totals = {"cnnviz": 0.0, "batched": 0.0}  # process CPU time: this machine's load moves wall time

    def cell(v):
        return f"{statistics.median(v) * 1e3:.1f} ({min(v) * 1e3:.0f}-{max(v) * 1e3:.0f})"

    for name, (ours, refs) in methods("layer3", "layer3", 8, 4, 32).items():
        runs = {"cnnviz": (ours, model), "cnnviz traced": (ours, traced),
                "loop": (refs["loop"], model), "batched": (refs["batched"], model)}
        if skip_loop:
            del runs["loop"]
        times = {k: [] for k in runs}
        cpu = {k: [] for k in runs}
        for fn, m in runs.values():  # warm-up: plans, oneDNN primitives, profiling executor
            [fn(m, x, t) for x, t in zip(xs[:2], labels[:2])]
        for _ in range(repeat):
            for k, (fn, m) in runs.items():
                c0, t0 = time.process_time(), time.perf_counter()
                for x, t in zip(xs, labels):
                    fn(m, x, t)
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        med = {k: statistics.median(v) for k, v in times.items()}
        cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
        for k in cpu_totals:
            cpu_totals[k] += cpu_med[k]
        if skip_loop:
            times["loop"], med["loop"] = [float("nan")], float("nan")
        for k in totals:
            totals[k] += med[k]
        rows.append([name, cell(times["cnnviz"]), cell(times["cnnviz traced"]), cell(times["loop"]),
                     cell(times["batched"]), f"{med['loop'] / med['cnnviz']:.1f}x",
                     f"{med['batched'] / med['cnnviz']:.2f}x",
                     f"{min(v for v in (med['loop'], med['batched']) if v == v) / med['cnnviz']:.2f}x",
                     f"{cpu_med['cnnviz'] * 1e3:.1f} / {cpu_med['batched'] * 1e3:.1f}",
                     f"{cpu_med['batched'] / cpu_med['cnnviz']:.2f}x"])
    rows.append(["**all six**", f"{totals['cnnviz'] * 1e3:.1f}", f"{totals['cnnviz traced'] * 1e3:.1f}",
                 f"{totals['loop'] * 1e3:.1f}", f"{totals['batched'] * 1e3:.1f}",
                 f"{totals['loop'] / totals['cnnviz']:.1f}x", f"{totals['batched'] / totals['cnnviz']:.2f}x", "",
                 f"{cpu_totals['cnnviz'] * 1e3:.1f} / {cpu_totals['batched'] * 1e3:.1f}",
                 f"{cpu_totals['batched'] / cpu_totals['cnnviz']:.2f}x"])
    return table(rows, ["method (20 calls)", "cnnviz ms", "cnnviz traced ms", "loop ms", "batched ms",
                        "vs loop", "vs batched", "vs best", "CPU ms cnnviz / batched", "vs batched (CPU)"])


def in_precision(precision, call):
    """call() in float32, or under CPU bfloat16 autocast as a user would opt in."""
    if precision == "float32":
        return call()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return call()


def bf16_workload(repeat, models=("VGG16", "ResNet-20")):
    torch.manual_seed(0)
    rows = []
    vgg = torchvision.models.vgg16().eval()
    resnet = cnnviz.zoo.pretrained("resnet20")
    xs, labels = cifar_images()
    cases = [("VGG16", vgg, torch.randn(1, 3, 224, 224), None, "features.29"),
             ("ResNet-20", resnet, torch.cat(xs), torch.tensor(labels), "layer3")]
    for model_name, model, x, target, layer in cases:
        if model_name not in models:
            continue
        calls = {
            "saliency": lambda: cnnviz.saliency(model, x, target).map,
            "IG (32 steps)": lambda: cnnviz.integrated_gradients(model, x, target, steps=32, batch_size=32).map,
            "Grad-CAM": lambda: cnnviz.grad_cam(model, x, layer, target).upsampled,
            # Non-overlapping windows: the precision comparison needs the method, not its cost.
            "occlusion": lambda: cnnviz.occlusion(model, x, target, window=x.shape[-1] // 7,
                                                  stride=x.shape[-1] // 7).map,
        }
        for name, fn in calls.items():
            t32 = best_time(lambda: in_precision("float32", fn), repeat)
            t16 = best_time(lambda: in_precision("bfloat16", fn), repeat)
            a, b = in_precision("float32", fn), in_precision("bfloat16", fn)
            rho = min(agree(a[i], b[i]) for i in range(a.shape[0]))
            rows.append([model_name, name, f"{t32:.3f}", f"{t16:.3f}", f"{t32 / t16:.2f}x", f"{rho:.4f}"])
    return table(rows, ["model", "method", "float32 s", "bfloat16 s", "speed-up", "min rank corr"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workload", nargs="+", default=["vgg16", "resnet20", "bf16"],
                        choices=["vgg16", "resnet20", "bf16"])
    parser.add_argument("--skip-loop", action="store_true", help="resnet20: leave out the per-sample loops")
    parser.add_argument("--bf16-models", nargs="+", default=["VGG16", "ResNet-20"], choices=["VGG16", "ResNet-20"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cnnviz {cnnviz.__version__}\n")
    for w in args.workload:
        print(f"### {w}\n")
        print((bf16_workload(args.repeat, args.bf16_models) if w == "bf16" else
               vgg16_workload(args.repeat) if w == "vgg16" else resnet20_workload(args.repeat, args.skip_loop)))
        print(flush=True)


if __name__ == "__main__":
    main()
