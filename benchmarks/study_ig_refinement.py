"""Refinement strategies for integrated gradients to a tolerance, compared by deterministic
pass counts and by the attribution's distance to a 1024-panel reference.

A Python re-implementation of the adaptive mode of ``cnnviz.integrated_gradients(...,
tolerance=)`` (include/cnnviz/detail/adaptive_panels.hpp: trapezoid panels, panel errors from
f at the nodes, the fewest bisections predicted to reach the tolerance each round, the new
points of all images in shared batches) with one knob changed per variant:

  split     where a chosen panel gets its new node: "mid" (cnnviz), "jump" (where a single
            jump of the staircase integrand would be: with g(a), g(b) at the ends and the
            exact increment f(b) - f(a), the jump sits at t = ((f(b)-f(a))/w - g(b)) / (g(a) -
            g(b)) of the panel; clamped to [lo, 1-lo], midpoint where t is outside (0, 1)), or
            "mirror" (the node that puts that jump at the middle of a sub-panel, where the
            trapezoid rule is exact for one jump);
  cap       at most this many panels per image per round (more rounds, less overshoot);
  aim       the fraction of the tolerance the bisections aim for;
  select    which panels: "scalar" (largest |panel error|, cnnviz) or "vector" (largest
            w/2 * ||(grad(b) - grad(a)) * (x - baseline)||: the same number of panels, chosen by
            how much the gradient itself changes);
  stop      "panels" (cnnviz: max(|delta|, sqrt(sum of squared panel errors))) or "delta"
            (|delta| alone).
Also uniform trapezoid grids (``--uniform``), the attribution quality per pass without
adaptivity. The attribution is always the composite trapezoid rule on the evaluated points.

The "mid" variant reproduces the library's pass counts (1528 on the ResNet-20 samples).

Usage: python benchmarks/study_ig_refinement.py [--model resnet20] [--reference FILE]
       [--variants JSON ...] [--uniform 32 54 76 108] [--jumps 4]
(CNNVIZ_DATA must point at the sample data; --reference caches the reference.) Prints a
Markdown table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnviz  # noqa: E402
from compare_ig_adaptive import difference, reference, samples  # noqa: E402

MIN_WIDTH = 1.0 / (1 << 20)  # as AdaptivePanels::kMinWidth

DEFAULT_VARIANTS = [
    {"split": "mid"},
    {"split": "jump", "lo": 0.1}, {"split": "jump", "lo": 0.02}, {"split": "mirror", "lo": 0.1},
    {"cap": 4}, {"cap": 8}, {"aim": 1.5},
    {"select": "vector"},
    {"stop": "delta"},
]


class Path:
    """One image's evaluated nodes (alpha, f, g, gradient) and trapezoid panels."""

    def __init__(self):
        self.a, self.f, self.g, self.grad, self.panels = [], [], [], [], []

    def add(self, a, f, g, grad):
        self.a.append(a)
        self.f.append(f)
        self.g.append(g)
        self.grad.append(grad)
        return len(self.a) - 1

    def connect(self):
        order = sorted(range(len(self.a)), key=lambda k: self.a[k])
        self.panels = list(zip(order[:-1], order[1:]))

    def width(self, p):
        left, right = self.panels[p]
        return self.a[right] - self.a[left]

    def error(self, p):
        left, right = self.panels[p]
        return 0.5 * self.width(p) * (self.g[left] + self.g[right]) - (self.f[right] - self.f[left])

    def integral(self):
        return sum(0.5 * self.width(p) * (self.g[left] + self.g[right]) for p, (left, right) in enumerate(self.panels))

    def rss(self):
        return math.sqrt(sum(self.error(p) ** 2 for p in range(len(self.panels))))

    def weights(self):
        w = [0.0] * len(self.a)
        for p, (left, right) in enumerate(self.panels):
            w[left] += 0.5 * self.width(p)
            w[right] += 0.5 * self.width(p)
        return w

    def new_node(self, p, split, lo):
        left, right = self.panels[p]
        a, b = self.a[left], self.a[right]
        w, ga, gb = b - a, self.g[left], self.g[right]
        if split == "mid" or ga == gb:
            return 0.5 * (a + b)
        t = ((self.f[right] - self.f[left]) / w - gb) / (ga - gb)
        if not 0 < t < 1:
            return 0.5 * (a + b)
        u = t if split == "jump" else (2 * t if t < 0.5 else 2 * t - 1)
        return a + min(max(u, lo), 1 - lo) * w

    def select(self, target, budget, aim, stop):
        """As AdaptivePanels::select (with the stop rule's own measure)."""
        e = [self.error(p) for p in range(len(self.panels))]
        s1, s2 = sum(e), sum(v * v for v in e)
        order = sorted((p for p in range(len(self.panels)) if self.width(p) >= 2 * MIN_WIDTH), key=lambda p: -abs(e[p]))
        chosen, c1, c2 = [], 0.0, 0.0
        for p in order:
            if len(chosen) >= budget:
                break
            signed = abs(s1 - c1) + abs(c1) / 2
            predicted = max(math.sqrt(max(0.0, s2 - c2) + c2 / 4), signed) if stop == "panels" else signed
            if chosen and predicted <= aim * target:
                break
            chosen.append(p)
            c1 += e[p]
            c2 += e[p] ** 2
        return chosen


class Oracle:
    """f, g = grad f . x and grad f at path points alpha * x (zeros baseline), batched."""

    def __init__(self, model, x, target, batch):
        self.model, self.x, self.target, self.batch = model, x, target, batch

    def __call__(self, items):
        out = []
        for b in range(0, len(items), self.batch):
            chunk = items[b:b + self.batch]
            idx = torch.tensor([i for i, _ in chunk])
            a = torch.tensor([a for _, a in chunk], dtype=self.x.dtype).view(-1, 1, 1, 1)
            path = (a * self.x[idx]).requires_grad_(True)
            f = self.model(path).gather(1, self.target[idx].view(-1, 1))[:, 0]
            grad, = torch.autograd.grad(f.sum(), path)
            g = (grad.double() * self.x[idx].double()).sum((1, 2, 3))
            out += [(f[k].item(), g[k].item(), grad[k]) for k in range(len(chunk))]
        return out


def adaptive(oracle, gap, tol=0.01, initial_steps=9, max_passes=1024, split="mid", lo=0.1, cap=10 ** 9, aim=1.0,
             select="scalar", stop="panels"):
    """One variant on all images: (passes per image, rounds, converged per image, attribution)."""
    n = oracle.x.shape[0]
    paths = [Path() for _ in range(n)]

    def evaluate(items, panels=None):
        for k, ((i, a), (f, g, grad)) in enumerate(zip(items, oracle(items))):
            node = paths[i].add(a, f, g, grad)
            if panels is not None:
                left, right = paths[i].panels[panels[k]]
                paths[i].panels[panels[k]] = (left, node)
                paths[i].panels.append((node, right))

    evaluate([(i, j / (initial_steps - 1)) for j in range(initial_steps) for i in range(n)])
    for p in paths:
        p.connect()
    converged, done, rounds = [False] * n, [False] * n, 0
    while True:
        items, panels = [], []
        for i, p in enumerate(paths):
            if done[i]:
                continue
            target, delta = tol * abs(gap[i]), p.integral() - gap[i]
            if (max(abs(delta), p.rss()) if stop == "panels" else abs(delta)) <= target:
                done[i] = converged[i] = True
                continue
            chosen = p.select(target, min(cap, max_passes - len(p.a)), aim, stop)
            if not chosen:
                done[i] = True
                continue
            if select == "vector":
                def change(q):
                    left, right = p.panels[q]
                    return 0.5 * p.width(q) * ((p.grad[right] - p.grad[left]) * oracle.x[i]).norm().item()
                wide = [q for q in range(len(p.panels)) if p.width(q) >= 2 * MIN_WIDTH]
                chosen = sorted(wide, key=lambda q: -change(q))[:len(chosen)]
            for q in chosen:
                items.append((i, p.new_node(q, split, lo)))
                panels.append(q)
        if not items:
            break
        rounds += 1
        evaluate(items, panels)
    attr = torch.stack([oracle.x[i].double() * sum(w * g.double() for w, g in zip(p.weights(), p.grad))
                        for i, p in enumerate(paths)]).to(oracle.x.dtype)
    return [len(p.a) for p in paths], rounds, converged, attr


def uniform(oracle, gap, steps):
    """The trapezoid rule on `steps` points: (attribution, max(|delta|, panel RSS) / gap per image)."""
    attrs, errs = [], []
    for i in range(oracle.x.shape[0]):
        alpha = [j / (steps - 1) for j in range(steps)]
        p = Path()
        for a, (f, g, grad) in zip(alpha, oracle([(i, a) for a in alpha])):
            p.add(a, f, g, grad)
        p.connect()
        attrs.append(oracle.x[i].double() * sum(w * g.double() for w, g in zip(p.weights(), p.grad)))
        errs.append(max(abs(p.integral() - gap[i]), p.rss()) / abs(gap[i]))
    return torch.stack(attrs).to(oracle.x.dtype), errs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reference", default=None, help="a file caching the 1024-panel reference (torch.save)")
    ap.add_argument("--variants", nargs="*", type=json.loads, default=DEFAULT_VARIANTS,
                    help='JSON objects of adaptive() keywords, e.g. \'{"split": "jump", "lo": 0.1}\'')
    ap.add_argument("--uniform", nargs="*", type=int, default=[32, 54, 76, 108])
    ap.add_argument("--jumps", type=int, default=0,
                    help="also count, on the first JUMPS images, the sub-panels of a 2048-panel uniform grid "
                         "over which the integrand changes (by more than 1e-4 of its range)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = cnnviz.zoo.pretrained(args.model)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(f), model=model) for f in samples(args.model)])
    with torch.no_grad():
        logits = model(x)
        target = logits.argmax(1)
        base = model(torch.zeros_like(x))
    gap = (logits.gather(1, target.view(-1, 1)) - base.gather(1, target.view(-1, 1)))[:, 0].double().tolist()
    batch = 64 if args.model.startswith("resnet") else 32
    if args.reference and os.path.exists(args.reference):
        ref = torch.load(args.reference)
    else:
        ref = torch.cat([reference(model, x[i:i + 1], target[i:i + 1], batch=batch) for i in range(x.shape[0])])
        if args.reference:
            torch.save(ref, args.reference)
    oracle = Oracle(model, x, target, batch)
    print(f"{args.model}, {x.shape[0]} images, tolerance {args.tolerance}; attribution vs the 1024-panel "
          "reference: max / median relative L2, min Spearman of the map.\n")
    print("| variant | passes (total / max per image) | rounds | converged | worst max(\\|delta\\|, RSS) rel. | "
          "max rel. L2 | median rel. L2 | min Spearman |")
    print("|---|---|---|---|---|---|---|---|")
    for v in args.variants:
        passes, rounds, converged, attr = adaptive(oracle, gap, args.tolerance, **v)
        mx, med, rho = difference(attr, ref)
        delta = (attr.double().sum((1, 2, 3)) - torch.tensor(gap)).abs() / torch.tensor(gap).abs()
        print(f"| adaptive {json.dumps(v)} | {sum(passes)} / {max(passes)} | {rounds} | {sum(converged)} | "
              f"\\|delta\\| {delta.max().item():.4f} | {mx:.4f} | {med:.4f} | {rho:.4f} |", flush=True)
    for i in range(min(args.jumps, x.shape[0])):
        g = torch.tensor([v[1] for v in oracle([(i, j / 2048) for j in range(2049)])])
        change = g.diff().abs()
        print(f"image {i}: the integrand changes over {int((change > 1e-4 * (g.max() - g.min())).sum())} of 2048 "
              f"sub-panels; total variation {change.sum().item():.1f}, f(x) - f(0) = {gap[i]:.2f}", flush=True)
    for steps in args.uniform:
        attr, errs = uniform(oracle, gap, steps)
        mx, med, rho = difference(attr, ref)
        ok = sum(e <= args.tolerance for e in errs)
        print(f"| uniform trapezoid, {steps} steps | {steps * x.shape[0]} / {steps} | 1 | {ok} (panel criterion) | "
              f"{max(errs):.4f} | {mx:.4f} | {med:.4f} | {rho:.4f} |", flush=True)


if __name__ == "__main__":
    main()
