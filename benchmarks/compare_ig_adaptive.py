"""Integrated gradients to a tolerance against fixed step counts: forward+backward passes
to reach a completeness tolerance on every sample image, the attribution's difference to a
1024-panel reference, and interleaved wall time.

For each model on its 20 sample images (pretrained ResNet-20 on the CIFAR-10 samples,
pretrained MobileNetV2 on the ImageNet samples, zeros baseline, predicted class):
  adaptive  ``cnnviz.integrated_gradients(model, x, tolerance=tol)``: passes per image as
            reported, checked against a counting wrapper, completeness checked from plain
            forwards;
  fixed     for each quadrature (riemann_trapezoid, gauss_legendre) the smallest step count
            on a fine geometric ladder (ratio 2^(1/4)) whose ``integrated_gradients(...,
            steps=n)`` meets the tolerance on every image. The ladder is scanned upwards;
            each step count is tried on the images hardest first (the image that missed
            last moves to the front) and rejected at the first image that misses, so only
            the passing count is run on all images. With ``--check-images K`` < N a count that
            passes the K hardest is taken: a lower bound of the smallest count (every
            smaller ladder count missed on some image), marked ">=";
  reference the trapezoid rule with 1025 points (1024 panels), plain autograd, on the first
            ``--reference-images`` images: relative L2 of the attribution (N, C, H, W) and
            Spearman rank correlation of the map (N, H, W) for both modes;
  timing    the adaptive call and each fixed call at its smallest step count, interleaved
            over ``--repeats`` at ``--threads`` threads on ``--timing-images`` images:
            median and range of the ratio fixed / adaptive.

Passes: one path point of one image is one forward+backward pass, as both modes report in
``passes``; both modes also run one forward-only pass each for x and the baseline, not counted.

Usage: python benchmarks/compare_ig_adaptive.py [--models resnet20 mobilenet_v2] [--tolerance 0.01]
       [--threads 2] [--repeats 3] [--reference-images 20] [--timing-images 20] [--check-images 20]
(CNNVIZ_DATA must point at the sample data.) Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from scipy.stats import spearmanr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnviz  # noqa: E402

LADDER = sorted({round(2 ** (k / 4)) for k in range(8, 41)})  # 4 ... 1024
METHODS = ("riemann_trapezoid", "gauss_legendre")


class Counting(torch.nn.Module):
    """Counts the rows a model evaluates with autograd (forward+backward) and without."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.grad_rows = self.plain_rows = 0

    def forward(self, x):
        if x.requires_grad:
            self.grad_rows += x.shape[0]
        else:
            self.plain_rows += x.shape[0]
        return self.model(x)


def samples(model_name):
    folder = "cifar10_samples" if model_name.startswith("resnet") else "imagenet_samples"
    d = os.path.join(cnnviz.data_dir(), "images", folder)
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith((".png", ".jpg")))


def relative_gap(model, x, r):
    """|sum(attribution) - (f(x) - f(0))| / |f(x) - f(0)|, f from plain forwards."""
    with torch.no_grad():
        t = r.target.view(-1, 1)
        gap = (model(x).gather(1, t) - model(torch.zeros_like(x)).gather(1, t)).squeeze(1)
    return (r.attribution.sum((1, 2, 3)) - gap).abs() / gap.abs()


def reference(model, x, target, points=1025, batch=64):
    """IG by the trapezoid rule on `points` equally spaced points, plain autograd."""
    out = []
    alpha = torch.linspace(0, 1, points, dtype=torch.float64)
    w = torch.full((points,), 1.0 / (points - 1), dtype=torch.float64)
    w[0] = w[-1] = 0.5 / (points - 1)
    for i in range(x.shape[0]):
        acc = torch.zeros_like(x[i], dtype=torch.float64)
        for b in range(0, points, batch):
            a = alpha[b:b + batch].to(x.dtype).view(-1, 1, 1, 1)
            path = (a * x[i:i + 1]).requires_grad_(True)
            g, = torch.autograd.grad(model(path)[:, int(target[i])].sum(), path)
            acc += (g.double() * w[b:b + batch].view(-1, 1, 1, 1)).sum(0)
        out.append((x[i].double() * acc).to(x.dtype))
    return torch.stack(out)


def difference(attr, ref):
    """(max relative L2 of the attribution, min Spearman of the mean-|.| map) over images."""
    rel = ((attr - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).max().item()
    rho = min(spearmanr(a.abs().mean(0).flatten().numpy(), b.abs().mean(0).flatten().numpy()).correlation
              for a, b in zip(attr, ref))
    return rel, rho


def fixed_scan(model, x, target, method, tol, batch, check, start=0, scan_to=0, order=None):
    """Scans the ladder upwards from `start`: each count is tried on `check` images (all: on
    every image), hardest first (the one that missed last moves to the front), and rejected
    at the first image that misses. Returns the counts that met `tol` with their
    attributions {image: (C, H, W)}, and the counts rejected (with the image that missed);
    stops at the first count that meets it, or past `scan_to`. With check < N a count that
    met it is a lower bound of the smallest one meeting it on every image (every smaller
    ladder count missed on some image)."""
    rejected, passed, order = [], {}, list(order or range(x.shape[0]))
    for n in LADDER:
        if n < start:
            continue
        if passed and n > scan_to:
            break
        attr, missed = {}, None
        for i in order[:check]:
            r = cnnviz.integrated_gradients(model, x[i:i + 1], target[i:i + 1], steps=n, method=method,
                                            batch_size=batch)
            if relative_gap(model, x[i:i + 1], r).item() > tol:
                missed = i
                break
            attr[i] = r.attribution[0]
        if missed is None:
            passed[n] = attr
            continue
        rejected.append((n, missed))
        order.remove(missed)
        order.insert(0, missed)
    if not passed:
        raise RuntimeError(f"no step count up to {LADDER[-1]} meets {tol} with {method}")
    return passed, rejected, order


def run_model(name, args):
    """Runs the stages missing from the state file (fixed scans and the reference need only
    the fixed mode, so they can be computed once and reused)."""
    model = cnnviz.zoo.pretrained(name)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(f), model=model) for f in samples(name)])
    with torch.no_grad():
        target = model(x).argmax(1)
    batch = 64 if name.startswith("resnet") else 32
    tol = args.tolerance
    states = torch.load(args.state) if args.state and os.path.exists(args.state) else {}
    key = f"{name} tol={tol} check={args.check_images}"
    st = states.setdefault(key, {"fixed": {}, "ref": {}})

    def save():
        if args.state:
            torch.save(states, args.state)

    def log(what, t0):
        print(f"{name}: {what} {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    if "fixed" in args.stages:
        for method in METHODS:
            if method not in st["fixed"]:
                t0 = time.perf_counter()
                passed, rejected, order = fixed_scan(model, x, target, method, tol, batch, args.check_images)
                n = min(passed)
                st["fixed"][method] = {"n": n, "attr": passed[n], "rejected": rejected, "order": order}
                log(f"{method} n={n} rejected={rejected}", t0)
                save()
            f = st["fixed"][method]
            if args.scan_to > f.get("scanned_to", f["n"]):
                # Beyond the smallest count: do larger ones all meet it too?
                t0 = time.perf_counter()
                start = min(v for v in LADDER if v > f.get("scanned_to", f["n"]))
                passed, rejected, _ = fixed_scan(model, x, target, method, tol, batch, args.check_images,
                                                 start=start, scan_to=args.scan_to, order=f["order"])
                f["rejected_above"] = f.get("rejected_above", []) + rejected
                f["passed_above"] = sorted(set(f.get("passed_above", [])) | set(passed))
                f["scanned_to"] = args.scan_to
                log(f"{method} above {f['n']}: passed {sorted(passed)} rejected {rejected}", t0)
                save()
    k = min(args.reference_images, x.shape[0])
    if "reference" in args.stages:
        for i in range(k):
            if i not in st["ref"]:
                t0 = time.perf_counter()
                st["ref"][i] = reference(model, x[i:i + 1], target[i:i + 1], batch=batch)[0]
                for method, f in st["fixed"].items():
                    if i not in f["attr"]:  # not run during the scan
                        f["attr"][i] = cnnviz.integrated_gradients(model, x[i:i + 1], target[i:i + 1], steps=f["n"],
                                                                   method=method, batch_size=batch).attribution[0]
                log(f"reference of image {i}", t0)
                save()
    if "adaptive" in args.stages:
        counting = Counting(model)
        t0 = time.perf_counter()
        ad = cnnviz.integrated_gradients(counting, x, target, tolerance=tol, batch_size=batch)
        log("adaptive", t0)
        assert counting.grad_rows == int(ad.passes.sum()) and counting.plain_rows == 2 * x.shape[0]
        st["adaptive"] = {"passes": ad.passes, "converged": ad.converged, "attribution": ad.attribution,
                          "gap": relative_gap(model, x, ad)}
        save()
    out = {"name": name, "n": x.shape[0], "state": st, "checked": min(args.check_images, x.shape[0])}
    if args.repeats > 0 and len(st["fixed"]) == len(METHODS):
        m = min(args.timing_images, x.shape[0])
        xs, ts = x[:m], target[:m]
        calls = {"adaptive": lambda: cnnviz.integrated_gradients(model, xs, ts, tolerance=tol, batch_size=batch)}
        for method in METHODS:
            n = st["fixed"][method]["n"]
            calls[method] = (lambda n=n, method=method: cnnviz.integrated_gradients(
                model, xs, ts, steps=n, method=method, batch_size=batch))
        times = {c: [] for c in calls}
        for fn in calls.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for c, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                times[c].append(time.perf_counter() - t0)
        out["timing"] = (m, times)
    return out


def report(results, args):
    tol = args.tolerance
    print(f"Tolerance {tol} (|delta| <= tol * |f(x) - f(baseline)| on every image), threads {args.threads}.\n")
    print("| model (images) | quadrature | smallest fixed steps meeting it on all images | fixed passes | "
          "adaptive passes (total / max per image / median) | adaptive / fixed | worst |delta| rel. (adaptive) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        st = r["state"]
        if "adaptive" not in st or len(st["fixed"]) < len(METHODS):
            continue
        p = st["adaptive"]["passes"]
        for method in METHODS:
            n = st["fixed"][method]["n"]
            fixed = n * r["n"]
            bound, le = ("", "") if r["checked"] >= r["n"] else (">= ", "<= ")
            print(f"| {r['name']} ({r['n']}) | {method} | {bound}{n} | {bound}{fixed} | {int(p.sum())} / "
                  f"{int(p.max())} / {int(p.median())} | {le}{int(p.sum()) / fixed:.2f} | "
                  f"{st['adaptive']['gap'].max().item():.4f} |")
    print("\nRejected step counts (ladder value: the image that missed), and above the smallest count "
          "meeting the tolerance (where scanned):\n")
    for r in results:
        for method, f in r["state"]["fixed"].items():
            line = f"- {r['name']} {method}: " + ", ".join(f"{n}: #{i}" for n, i in f["rejected"])
            line += f"; meets it at {f['n']}"
            if "scanned_to" in f:
                above = f["rejected_above"]
                line += (f"; above it up to {f['scanned_to']}: meets it at {f['passed_above']}, misses at "
                         + (", ".join(f"{n} (#{i})" for n, i in above) or "none"))
                stable = min([f["n"]] + f["passed_above"])
                for n in sorted([f["n"]] + f["passed_above"]):
                    if all(m < n for m, _ in above):
                        stable = n
                        break
                line += f"; every count from {stable} up to {f['scanned_to']} meets it"
            print(line)
    if any(r["state"]["ref"] and "adaptive" in r["state"] for r in results):
        print("\nDifference to the 1024-panel trapezoid reference (plain autograd): max relative L2 of the "
              "attribution / min Spearman rank correlation of the map, over the images compared.\n")
        print("| model (images compared) | adaptive | fixed trapezoid | fixed Gauss-Legendre |")
        print("|---|---|---|---|")
        for r in results:
            st = r["state"]
            if not st["ref"] or "adaptive" not in st:
                continue
            idx = sorted(st["ref"])
            ref = torch.stack([st["ref"][i] for i in idx])
            cells = [difference(st["adaptive"]["attribution"][idx], ref)]
            cells += [difference(torch.stack([st["fixed"][m]["attr"][i] for i in idx]), ref) for m in METHODS]
            print(f"| {r['name']} ({len(idx)}) | " + " | ".join(f"{a:.4f} / {b:.4f}" for a, b in cells) + " |")
    if any("timing" in r for r in results):
        print(f"\nWall time, interleaved over {args.repeats} repeats at {args.threads} threads: seconds per call "
              "(median, min-max) and the ratio fixed / adaptive per repeat (median, min-max).\n")
        print("| model (images) | adaptive s | fixed trapezoid s | ratio | fixed Gauss-Legendre s | ratio |")
        print("|---|---|---|---|---|---|")
        for r in results:
            if "timing" not in r:
                continue
            m, t = r["timing"]

            def cell(v):
                return f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"

            cells = [cell(t["adaptive"])]
            for method in METHODS:
                ratio = [f / a for f, a in zip(t[method], t["adaptive"])]
                cells += [cell(t[method]), cell(ratio)]
            print(f"| {r['name']} ({m}) | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet20", "mobilenet_v2"])
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-images", type=int, default=20)
    ap.add_argument("--timing-images", type=int, default=20)
    ap.add_argument("--scan-to", type=int, default=0,
                    help="also run the ladder counts above the smallest meeting the tolerance, up to this "
                         "one: whether every larger count meets it too")
    ap.add_argument("--stages", nargs="*", default=["fixed", "reference", "adaptive"],
                    choices=["fixed", "reference", "adaptive"])
    ap.add_argument("--state", default=None, help="a file keeping the stages' results between runs (torch.save)")
    ap.add_argument("--check-images", type=int, default=20,
                    help="run a ladder step count on at most this many images, hardest first; below N the "
                         "smallest fixed count is reported as a lower bound (every smaller count missed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = [run_model(name, args) for name in args.models]
    report(results, args)


if __name__ == "__main__":
    main()
