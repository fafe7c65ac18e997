"""Incremental occlusion against full inference, in one process at one thread count.

Contenders, interleaved over the repeats (each repeat runs all three in turn, so a slow
spell of this shared machine hits them alike):
  incremental  cnnviz.occlusion(..., incremental=True): each window recomputes only the
               regions it changes (python/cnnviz/_incremental_occlusion.py)
  full         cnnviz.occlusion(..., incremental=False): batched full inference (native loop)
  reference    benchmarks/reference_attribution.occlusion_batched: plain PyTorch, batched

Models at 224x224: VGG16 and ResNet-18 (random weights; speed does not depend on them) and
MobileNetV2 (the pretrained weights in $CNNVIZ_DATA on a photo where present, else random).
Also prints the FLOP counts (cnnviz._incremental_occlusion.occlusion_flops): "theory" is
full / the FLOPs of each window's exactly affected regions, "executed" full / what the
batched engine runs; and the largest difference between the incremental and full maps.

Usage: python benchmarks/compare_occlusion_incremental.py [--threads 2] [--repeats 3]
       [--models vgg16 resnet18 mobilenet_v2] [--window 32] [--stride 16] [--batch 32] [--profile]
       [--one-batch] [--cpu-time] [--no-reference]
Prints a Markdown table; --profile adds torch.profiler tables of one incremental call per model
(the engine's stages, ranges named "occlusion.*", then the ops by self time); --one-batch times
one batch of windows per model instead of whole calls (busy machines); --cpu-time times with
the process's CPU time instead of the wall clock (a loaded machine: at 1 thread it counts the
work done, not the waits for a core). The plan is cached per model and input shape, so the
first incremental call traces and later ones do not: the incremental times are listed in
order.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnviz  # noqa: E402
import reference_attribution as ref  # noqa: E402
from cnnviz import _incremental_occlusion as inc  # noqa: E402


def model_and_input(name: str, size: int):
    torch.manual_seed(0)
    if name == "mobilenet_v2":
        try:
            model = cnnviz.zoo.pretrained("mobilenet_v2")
            x = cnnviz.preprocess(cnnviz.load_image(os.path.join(cnnviz.data_dir(), "images", "cat_chelsea.png")),
                                  size=size)
            return model, x, "pretrained, cat_chelsea.png"
        except FileNotFoundError:
            pass
    model = getattr(torchvision.models, name)().eval()
    return model, torch.randn(1, 3, size, size), "random weights, random input"


def bench(name: str, args) -> dict:
    model, x, what = model_and_input(name, args.size)
    with torch.no_grad():
        target = int(model(x).argmax(1))
    w, s, b = args.window, args.stride, args.batch
    calls = {
        "incremental": lambda: cnnviz.occlusion(model, x, target, window=w, stride=s, batch_size=b,
                                                incremental=True).map[0],
        "full": lambda: cnnviz.occlusion(model, x, target, window=w, stride=s, batch_size=b,
                                         incremental=False).map[0],
        "reference": lambda: ref.occlusion_batched(model, x, target, w, s, b)[0],
    }
    if args.no_reference:
        del calls["reference"]
    times = {k: [] for k in calls}
    maps = {}
    clock = time.process_time if args.cpu_time else time.perf_counter
    for _ in range(args.repeats):
        for k, fn in calls.items():
            t0 = clock()
            maps[k] = fn()
            times[k].append(clock() - t0)
    flops = inc.occlusion_flops(model, x.shape, w, s, batch_size=b)
    diff = ((maps["incremental"] - maps["full"]).abs().max() / maps["full"].abs().max()).item()
    row = {"name": name, "what": what, "times": times, "flops": flops, "diff": diff}
    if args.profile:
        from torch.profiler import profile

        with profile() as p:
            calls["incremental"]()
        events = p.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        stages = sorted((e for e in events if e.key.startswith("occlusion.")), key=lambda e: -e.cpu_time_total)
        lines = [f"{'stage (nested: crops inside region_*)':40s} {'calls':>6s} {'CPU total s':>12s} {'share':>6s}"]
        lines += [f"{e.key:40s} {e.count:6d} {e.cpu_time_total / 1e6:12.2f} {e.cpu_time_total / total:6.1%}"
                  for e in stages]
        lines.append(f"{'(all ops, self time)':40s} {'':6s} {total / 1e6:12.2f}")
        row["profile"] = "\n".join(lines) + "\n\n" + events.table(sort_by="self_cpu_time_total", row_limit=12)
    return row


def one_batch(name: str, args) -> None:
    """One batch of windows (from the middle rows: the largest regions, so a conservative
    ratio) through the incremental engine and through the model, interleaved: for machines
    too busy to time whole occlusion calls of a large network."""
    model, x, what = model_and_input(name, args.size)
    w, s, b = (args.window, args.window), (args.stride, args.stride), args.batch
    plan = inc.Plan(model, x)
    positions = inc._positions(args.size, args.size, w, s)
    start = max(0, len(positions) // 2 - b // 2)
    chunk = positions[start:start + b]
    batch = x.repeat(len(chunk), 1, 1, 1)
    for i, (y, c) in enumerate(chunk):
        batch[i, :, y:y + w[0], c:c + w[1]] = 0
    times = {"incremental": [], "full": []}
    with torch.no_grad():
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            a = inc._Batch(plan, plan.first, batch, chunk, w, inc.MATERIALIZE_FRACTION).run()
            times["incremental"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            f = model(batch)
            times["full"].append(time.perf_counter() - t0)
    geo = inc.geometry(plan, chunk, w)
    executed = sum(inc._node_flops(plan, n, geo[n], len(chunk)) for n in plan.nodes if n.op != "output")
    full = len(chunk) * sum(inc._node_flops(plan, n, inc.FULL, 1) for n in plan.nodes if n.op != "output")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"| {name} ({what}), windows {start}-{start + len(chunk) - 1} of {len(positions)} | "
          + " | ".join(f"{med[k]:.2f} ({min(v):.2f}-{max(v):.2f})" for k, v in times.items())
          + f" | {med['full'] / med['incremental']:.2f}x | {full / executed:.2f}x | "
          f"{((a - f).abs().max() / f.abs().max()).item():.1e} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet18", "mobilenet_v2"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--cpu-time", action="store_true", help="time with the process's CPU time")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave out the plain PyTorch reference (as slow as full; saves time on VGG16)")
    parser.add_argument("--one-batch", action="store_true",
                        help="time one batch of windows per model (engine against the model's forward) instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one_batch:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}x{args.size}, window "
              f"{args.window}, stride {args.stride}, one batch of {args.batch}, {args.repeats} interleaved repeats, "
              f"load average before {os.getloadavg()[0]:.1f}\n")
        print("| model, batch | incremental s | full forward s | ratio | FLOP ratio (this batch) | max logit diff |")
        print("|---|---|---|---|---|---|", flush=True)
        for name in args.models:
            one_batch(name, args)
        print(f"\nload average after {os.getloadavg()[0]:.1f}")
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}x{args.size}, window "
          f"{args.window}, stride {args.stride}, batches of {args.batch}, {args.repeats} interleaved repeats, "
          f"{'process CPU' if args.cpu_time else 'wall-clock'} seconds, "
          f"load average before {os.getloadavg()[0]:.1f}\n")
    print("| model | windows | incremental s | full s | reference s | vs full | vs reference | "
          "FLOP saving: theory / executed | max map diff |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for name in args.models:
        r = bench(name, args)
        rows.append(r)
        t = r["times"]
        med = {k: statistics.median(v) for k, v in t.items()}
        spread = {k: f"{med[k]:.2f} ({min(v):.2f}-{max(v):.2f})" for k, v in t.items()}
        if "reference" not in t:
            med["reference"], spread["reference"] = math.nan, "-"
        spread["incremental"] += " [" + ", ".join(f"{v:.2f}" for v in t["incremental"]) + "]"
        f = r["flops"]
        vs_ref = "-" if math.isnan(med["reference"]) else f"{med['reference'] / med['incremental']:.2f}x"
        print(f"| {r['name']} ({r['what']}) | {f.positions} | {spread['incremental']} | {spread['full']} | "
              f"{spread['reference']} | {med['full'] / med['incremental']:.2f}x | "
              f"{vs_ref} | {f.saving:.2f}x / {f.executed_saving:.2f}x | "
              f"{r['diff']:.1e} |", flush=True)
    print(f"\nload average after {os.getloadavg()[0]:.1f}")
    for r in rows:
        if "profile" in r:
            print(f"\n{r['name']}, one incremental call:\n\n```\n{r['profile']}\n```")


if __name__ == "__main__":
    main()
