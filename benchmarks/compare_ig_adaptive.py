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
            steps=n)`` meets the tolerance on every image (|delta| alone: the issue's
            criterion); contender trapezoid_panels is the trapezoid rule judged by the
            adaptive mode's own criterion, max(|delta|, sqrt(sum of squared panel errors)),
            from f and the gradient at its nodes (plain autograd), so that both are judged
            alike. With ``--refine`` the integers between the last rejected ladder count and
            the first meeting it are bisected (the smallest count found: where the count
            below misses, assuming no count meets it and a larger one misses in between). The ladder is scanned upwards;
            each step count is tried on the images hardest first (the image that missed
            last moves to the front) and rejected at the first image that misses, so only
            the passing count is run on all images. With ``--check-images K`` < N a count that
            passes the K hardest is taken: a lower bound of the smallest count (every
            smaller ladder count missed on some image), marked ">=";
  reference the trapezoid rule with 1025 points (1024 panels), plain autograd, on the first
            ``--reference-images`` images: relative L2 of the attribution (N, C, H, W) and
            Spearman rank correlation of the map (N, H, W) for both modes;
  timing    the adaptive call and each fixed call at its smallest step count, interleaved
            over ``--repeats`` at ``--threads`` threads (default 1) on ``--timing-images``
            images: process CPU time (``time.process_time``: the machine is shared, CPU time
            is what the other load disturbs least), median and range of the ratio
            fixed / adaptive per repeat.

Passes: one path point of one image is one forward+backward pass, as both modes report in
``passes``; both modes also run one forward-only pass each for x and the baseline, not counted.

Usage: python benchmarks/compare_ig_adaptive.py [--models resnet20 mobilenet_v2] [--tolerance 0.01]
       [--threads 1] [--repeats 3] [--warmup 1] [--reference-images 20] [--timing-images 20] [--check-images 20]
       [--contenders riemann_trapezoid gauss_legendre trapezoid_panels] [--refine] [--first I ...]
       [--state FILE]
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
METHODS = ("riemann_trapezoid", "gauss_legendre")  # cnnviz's fixed quadratures, judged by |delta|
CONTENDERS = METHODS + ("trapezoid_panels",)          # ... and the trapezoid judged as the adaptive mode


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


def trapezoid_panels(model, x, target, n, batch):
    """The trapezoid rule with n points on one image (zeros baseline), plain autograd:
    (attribution (C, H, W), max(|delta|, sqrt(sum of squared panel errors)) / |f(x) - f(0)|),
    the panel errors from f and the integrand g = grad f . x at the nodes."""
    alpha = torch.linspace(0, 1, n, dtype=torch.float64)
    f, g, grads = [], [], []
    for b in range(0, n, batch):
        path = (alpha[b:b + batch].to(x.dtype).view(-1, 1, 1, 1) * x).requires_grad_(True)
        out = model(path)[:, int(target[0])]
        gr, = torch.autograd.grad(out.sum(), path)
        f.append(out.detach().double())
        g.append((gr.double() * x.double()).sum((1, 2, 3)))
        grads.append(gr.double())
    f, g, grads = torch.cat(f), torch.cat(g), torch.cat(grads)
    w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
    w[0] = w[-1] = 0.5 / (n - 1)
    attr = (x[0].double() * (grads * w.view(-1, 1, 1, 1)).sum(0)).to(x.dtype)
    gap = (f[-1] - f[0]).abs()
    panel = 0.5 / (n - 1) * (g[1:] + g[:-1]) - (f[1:] - f[:-1])
    return attr, (max(abs(attr.double().sum() - (f[-1] - f[0])), panel.norm()) / gap).item()


def judge(model, x, target, method, tol, batch):
    """judge(i, n) -> the attribution of image i with n steps of `method`, or None where the
    image misses the tolerance."""
    def run(i, n):
        if method == "trapezoid_panels":
            attr, err = trapezoid_panels(model, x[i:i + 1], target[i:i + 1], n, batch)
            return attr if err <= tol else None
        r = cnnviz.integrated_gradients(model, x[i:i + 1], target[i:i + 1], steps=n, method=method, batch_size=batch)
        return r.attribution[0] if relative_gap(model, x[i:i + 1], r).item() <= tol else None
    return run


def try_count(run, n, order, check):
    """Runs count n on the first `check` images of `order` (hardest first) up to the first
    miss: ({image: attribution}, None) or (partial, the image that missed)."""
    attr = {}
    for i in order[:check]:
        a = run(i, n)
        if a is None:
            return attr, i
        attr[i] = a
    return attr, None


def refine(run, low, high, order, check):
    """Bisects the integers in (low, high): low missed, high met the tolerance. Returns the
    smallest count found to meet it, its attributions and the probes [(count, missed image or
    None)]; `order` moves each image that missed to the front."""
    probes, best = [], None
    while high - low > 1:
        mid = (low + high) // 2
        attr, missed = try_count(run, mid, order, check)
        probes.append((mid, missed))
        if missed is None:
            high, best = mid, attr
        else:
            low = mid
            order.remove(missed)
            order.insert(0, missed)
    return high, best, probes


def difference(attr, ref):
    """(max and median relative L2 of the attribution, min Spearman of the mean-|.| map) over
    images."""
    rel = (attr - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    rho = min(spearmanr(a.abs().mean(0).flatten().numpy(), b.abs().mean(0).flatten().numpy()).correlation
              for a, b in zip(attr, ref))
    return rel.max().item(), rel.median().item(), rho


def fixed_scan(run, n_images, check, start=0, scan_to=0, order=None):
    """Scans the ladder upwards from `start`: each count is tried on `check` images (all: on
    every image), hardest first (the one that missed last moves to the front), and rejected
    at the first image that misses. Returns the counts that met `tol` with their
    attributions {image: (C, H, W)}, and the counts rejected (with the image that missed);
    stops at the first count that meets it, or past `scan_to`. With check < N a count that
    met it is a lower bound of the smallest one meeting it on every image (every smaller
    ladder count missed on some image)."""
    rejected, passed, order = [], {}, list(order or range(n_images))
    for n in LADDER:
        if n < start:
            continue
        if passed and n > scan_to:
            break
        attr, missed = try_count(run, n, order, check)
        if missed is None:
            passed[n] = attr
            continue
        rejected.append((n, missed))
        order.remove(missed)
        order.insert(0, missed)
    if not passed:
        raise RuntimeError(f"no step count up to {LADDER[-1]} meets the tolerance")
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

    contenders = [c for c in CONTENDERS if c in args.contenders]

    def count(c):
        """The smallest count found for contender c (refined where bisected)."""
        f = st["fixed"][c]
        return f.get("refined", {}).get("n", f["n"])

    def attribution(c, i):
        f = st["fixed"][c]
        attr = f.get("refined", {}).get("attr") if "refined" in f else f["attr"]
        if i not in attr:  # not run during the scan
            n = count(c)
            if c == "trapezoid_panels":
                attr[i] = trapezoid_panels(model, x[i:i + 1], target[i:i + 1], n, batch)[0]
            else:
                attr[i] = cnnviz.integrated_gradients(model, x[i:i + 1], target[i:i + 1], steps=n, method=c,
                                                      batch_size=batch).attribution[0]
        return attr[i]

    first = args.first + [i for i in range(x.shape[0]) if i not in args.first]
    if "fixed" in args.stages:
        for c in contenders:
            run = judge(model, x, target, c, tol, batch)
            if c not in st["fixed"]:
                t0 = time.perf_counter()
                passed, rejected, order = fixed_scan(run, x.shape[0], args.check_images, order=first)
                n = min(passed)
                st["fixed"][c] = {"n": n, "attr": passed[n], "rejected": rejected, "order": order}
                log(f"{c} n={n} rejected={rejected}", t0)
                save()
            f = st["fixed"][c]
            if "order" not in f:  # a state from before orders were kept: the images that missed last first
                missed = list(dict.fromkeys(i for _, i in reversed(f["rejected"])))
                f["order"] = missed + [i for i in range(x.shape[0]) if i not in missed]
            if args.refine and "refined" not in f:
                t0 = time.perf_counter()
                low = max([m for m, _ in f["rejected"] if m < f["n"]], default=1)
                n, attr, probes = refine(run, low, f["n"], f["order"], args.check_images)
                f["refined"] = {"n": n, "attr": attr if attr is not None else f["attr"], "probes": probes}
                log(f"{c} refined between {low} and {f['n']}: n={n} probes={probes}", t0)
                save()
            if args.scan_to > f.get("scanned_to", f["n"]):
                # Beyond the smallest count: do larger ones all meet it too?
                t0 = time.perf_counter()
                start = min(v for v in LADDER if v > f.get("scanned_to", f["n"]))
                passed, rejected, _ = fixed_scan(run, x.shape[0], args.check_images,
                                                 start=start, scan_to=args.scan_to, order=f["order"])
                f["rejected_above"] = f.get("rejected_above", []) + rejected
                f["passed_above"] = sorted(set(f.get("passed_above", [])) | set(passed))
                f["scanned_to"] = args.scan_to
                log(f"{c} above {f['n']}: passed {sorted(passed)} rejected {rejected}", t0)
                save()
    k = min(args.reference_images, x.shape[0])
    if "reference" in args.stages:
        for i in range(k):
            t0 = time.perf_counter()
            if i not in st["ref"]:
                st["ref"][i] = reference(model, x[i:i + 1], target[i:i + 1], batch=batch)[0]
            for c in st["fixed"]:
                attribution(c, i)
            log(f"reference of image {i}", t0)
            save()
    if "adaptive" in args.stages:
        counting = Counting(model)
        t0 = time.perf_counter()
        ad = cnnviz.integrated_gradients(counting, x, target, tolerance=tol, batch_size=batch)
        log("adaptive", t0)
        assert counting.grad_rows == int(ad.passes.sum()) and counting.plain_rows == 2 * x.shape[0]
        st["adaptive"] = {"passes": ad.passes, "converged": ad.converged, "attribution": ad.attribution,
                          "gap": relative_gap(model, x, ad), "relative_error": ad.relative_error}
        save()
    out = {"name": name, "n": x.shape[0], "state": st, "checked": min(args.check_images, x.shape[0]),
           "counts": {c: count(c) for c in st["fixed"]}}
    timed = [c for c in METHODS if c in st["fixed"]]
    if args.repeats > 0 and timed:
        m = min(args.timing_images, x.shape[0])
        xs, ts = x[:m], target[:m]
        calls = {"adaptive": lambda: cnnviz.integrated_gradients(model, xs, ts, tolerance=tol, batch_size=batch)}
        for c in timed:
            calls[c] = (lambda n=count(c), c=c: cnnviz.integrated_gradients(
                model, xs, ts, steps=n, method=c, batch_size=batch))
        times = {c: [] for c in calls}
        for _ in range(args.warmup):
            for fn in calls.values():
                fn()
        for _ in range(args.repeats):
            for c, fn in calls.items():
                t0 = time.process_time()
                fn()
                times[c].append(time.process_time() - t0)
        out["timing"] = (m, times)
    return out


LABEL = {"riemann_trapezoid": "trapezoid, judged by \\|delta\\|", "gauss_legendre": "Gauss-Legendre, judged by \\|delta\\|",
         "trapezoid_panels": "trapezoid, judged by max(\\|delta\\|, panel RSS)"}


def report(results, args):
    tol = args.tolerance
    print(f"Tolerance {tol}: the fixed rules as labelled; the adaptive mode stops on max(|delta|, sqrt(sum of "
          f"squared panel errors)) <= tol * |f(x) - f(baseline)| per image. Threads {args.threads}.\n")
    print("| model (images) | fixed rule | smallest fixed steps meeting it on all images | fixed passes | "
          "adaptive passes (total / max per image / median) | adaptive / fixed | worst |delta| rel. (adaptive) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        st = r["state"]
        if "adaptive" not in st:
            continue
        p = st["adaptive"]["passes"]
        for c in CONTENDERS:
            if c not in r["counts"]:
                continue
            n = r["counts"][c]
            fixed = n * r["n"]
            bound, le = ("", "") if r["checked"] >= r["n"] else (">= ", "<= ")
            print(f"| {r['name']} ({r['n']}) | {LABEL[c]} | {bound}{n} | {bound}{fixed} | {int(p.sum())} / "
                  f"{int(p.max())} / {int(p.median())} | {le}{int(p.sum()) / fixed:.2f} | "
                  f"{st['adaptive']['gap'].max().item():.4f} |")
    print("\nRejected step counts (ladder value: the image that missed), bisection probes (count: the image "
          "that missed, or ok), and above the smallest count meeting the tolerance (where scanned):\n")
    for r in results:
        for c, f in r["state"]["fixed"].items():
            line = f"- {r['name']} {c}: " + ", ".join(f"{n}: #{i}" for n, i in f["rejected"])
            line += f"; meets it at {f['n']}"
            if "refined" in f:
                line += ("; bisection " + ", ".join(f"{n}: " + ("ok" if i is None else f"#{i}")
                                                    for n, i in f["refined"]["probes"])
                         + f": smallest {f['refined']['n']}")
            if "scanned_to" in f:
                above = f["rejected_above"]
                line += (f"; above it up to {f['scanned_to']}: meets it at {f['passed_above']}, misses at "
                         + (", ".join(f"{n} (#{i})" for n, i in above) or "none"))
            print(line)
    if any(r["state"]["ref"] and "adaptive" in r["state"] for r in results):
        print("\nDifference to the 1024-panel trapezoid reference (plain autograd), over the images compared: "
              "max / median relative L2 of the attribution, min Spearman rank correlation of the map.\n")
        print("| model (images compared) | contender | passes on these images | max rel. L2 | median rel. L2 | "
              "min Spearman |")
        print("|---|---|---|---|---|---|")
        for r in results:
            st = r["state"]
            if not st["ref"] or "adaptive" not in st:
                continue
            idx = sorted(st["ref"])
            ref = torch.stack([st["ref"][i] for i in idx])
            rows = [("adaptive", st["adaptive"]["attribution"][idx], int(st["adaptive"]["passes"][idx].sum()))]
            for c in CONTENDERS:
                f = st["fixed"].get(c)
                attr = None if f is None else f.get("refined", {}).get("attr") if "refined" in f else f["attr"]
                if attr is not None and all(i in attr for i in idx):
                    rows.append((f"{LABEL[c]}, {r['counts'][c]} steps", torch.stack([attr[i] for i in idx]),
                                 r["counts"][c] * len(idx)))
            for label, attr, passes in rows:
                mx, med, rho = difference(attr, ref)
                print(f"| {r['name']} ({len(idx)}) | {label} | {passes} | {mx:.4f} | {med:.4f} | {rho:.4f} |")
    if any("timing" in r for r in results):
        print(f"\nProcess CPU time, interleaved over {args.repeats} repeats at {args.threads} threads: seconds per "
              "call (median, min-max) and the ratio fixed / adaptive per repeat (median, min-max).\n")
        print("| model (images) | adaptive s | fixed rule (steps) | fixed s | fixed / adaptive |")
        print("|---|---|---|---|---|")
        for r in results:
            if "timing" not in r:
                continue
            m, t = r["timing"]

            def cell(v):
                return f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"

            for c in METHODS:
                if c in t:
                    ratio = [f / a for f, a in zip(t[c], t["adaptive"])]
                    print(f"| {r['name']} ({m}) | {cell(t['adaptive'])} | {LABEL[c]} ({r['counts'][c]}) | "
                          f"{cell(t[c])} | {cell(ratio)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet20", "mobilenet_v2"])
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls of each contender before the repeats")
    ap.add_argument("--reference-images", type=int, default=20)
    ap.add_argument("--timing-images", type=int, default=20)
    ap.add_argument("--scan-to", type=int, default=0,
                    help="also run the ladder counts above the smallest meeting the tolerance, up to this "
                         "one: whether every larger count meets it too")
    ap.add_argument("--stages", nargs="*", default=["fixed", "reference", "adaptive"],
                    choices=["fixed", "reference", "adaptive"])
    ap.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    ap.add_argument("--first", nargs="*", type=int, default=[],
                    help="images the scans try first (the hardest known, e.g. by the adaptive mode's passes)")
    ap.add_argument("--refine", action="store_true",
                    help="bisect the integers between the last rejected ladder count and the first meeting it")
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
