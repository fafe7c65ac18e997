"""Filter analyses against straightforward implementations, in one process.

1. ``cnnviz.cka`` over 20 x 20 layers of the CIFAR ResNet-20 and ResNet-56 on 500 images
   (the 20 CIFAR-10 samples repeated with noise; random weights when the sample data is
   missing), streamed in batches of 50 (minibatch unbiased HSIC, Nguyen et al. 2021), against
   two full-data implementations that store every layer's activations for all images:
   - textbook: Kornblith et al.'s published NumPy code (gram_linear, center_gram, cka),
     called as they call it, ``cka(gram_linear(X), gram_linear(Y))`` per pair of layers, so
     each layer's 500 x 500 Gram matrix is formed again for every pair it is in (the issue's
     "straightforward implementation"; ``--textbook-pairs K`` times K pairs and scales the
     pair loop to the 400);
   - Gram-once: the same CKA with each layer's centred Gram matrix formed once (PyTorch), and
     every pair's CKA from them (a stronger reference).
   Peak memory of each is measured in a child process (peak RSS, VmHWM, above the RSS after
   loading the models and images).
2. ``cnnviz.filter_statistics`` of ResNet-20's ``layer2`` over a DataLoader of 500 images
   (batches of 50) against a per-image Python loop (forward hook, Welford update per image).

Contenders are interleaved over the repeats; median and spread (min-max) are reported.
Wall and CPU time (this process) are both printed: at one thread on a shared machine the CPU
time is the steadier. ``--cka-profile`` adds the per-batch breakdown of ``cnnviz.cka`` (plain
forwards, capture, Gram + HSIC).
Usage: python benchmarks/compare_analysis_filters.py [--threads 1] [--repeats 5] [--memory-only]
       [--cka-only] [--cka-profile] [--textbook-pairs K] [--statistics-only]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def _threads_arg(argv):
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


# NumPy's BLAS (OpenBLAS here) reads its thread count at load: the same as torch's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads_arg(sys.argv))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import cnnviz  # noqa: E402

N_IMAGES, BATCH = 500, 50


def models():
    try:
        return cnnviz.zoo.pretrained("resnet20"), cnnviz.zoo.pretrained("resnet56"), True
    except FileNotFoundError:
        return cnnviz.zoo.cifar_resnet(20).eval(), cnnviz.zoo.cifar_resnet(56).eval(), False


def images():
    torch.manual_seed(0)
    try:
        folder = os.path.join(cnnviz.data_dir(), "images", "cifar10_samples")
        base = torch.cat([cnnviz.preprocess(cnnviz.load_image(os.path.join(folder, f)), size=32)
                          for f in sorted(os.listdir(folder))])
    except FileNotFoundError:
        base = torch.randn(20, 3, 32, 32)
    x = base.repeat((N_IMAGES + len(base) - 1) // len(base), 1, 1, 1)[:N_IMAGES]
    return x + 0.1 * torch.randn_like(x)


def twenty_layers(model):
    """20 distinct layers spread over the depth: the stem, block outputs and their convs."""
    names = [n for n, m in model.named_modules()
             if n and (n == "conv1" or type(m).__name__ == "BasicBlock" or n.endswith((".conv1", ".conv2")))]
    step = (len(names) - 1) / 19
    return [names[round(i * step)] for i in range(20)]


def activations(model, x, layers):
    """Every layer's activations for all images, (N, features) each, by forward hooks."""
    got = {n: [] for n in layers}
    mods = dict(model.named_modules())
    hs = [mods[n].register_forward_hook(lambda m, i, o, n=n: got[n].append(o.detach().flatten(1)))
          for n in layers]
    with torch.no_grad():
        for b in x.split(BATCH):
            model(b)
    for h in hs:
        h.remove()
    return [torch.cat(got[n]) for n in layers]


# Kornblith et al. 2019, the published code (google-research/google-research,
# representation_similarity), linear kernel, the biased estimator.
def gram_linear(x):
    return x.dot(x.T)


def center_gram(gram, unbiased=False):
    if not np.allclose(gram, gram.T):
        raise ValueError("Input must be a symmetric matrix.")
    gram = gram.copy()
    assert not unbiased
    means = np.mean(gram, 0, dtype=np.float64)
    means -= np.mean(means) / 2
    gram -= means[:, None]
    gram -= means[None, :]
    return gram


def cka_textbook(gram_x, gram_y, debiased=False):
    gram_x = center_gram(gram_x, unbiased=debiased)
    gram_y = center_gram(gram_y, unbiased=debiased)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    normalization_x = np.linalg.norm(gram_x)
    normalization_y = np.linalg.norm(gram_y)
    return scaled_hsic / (normalization_x * normalization_y)


def pair_subset(la, lb, k):
    """k of the len(la) x len(lb) pairs, spread evenly over the matrix (all when k is None)."""
    pairs = [(i, j) for i in range(len(la)) for j in range(len(lb))]
    if k is None or k >= len(pairs):
        return pairs
    step = len(pairs) / k
    return [pairs[int(i * step)] for i in range(k)]


def textbook_cka(model_a, model_b, x, layers_a, layers_b, pairs=None, parts=None):
    """Stores all activations, then ``cka(gram_linear(X), gram_linear(Y))`` per pair; pairs
    not computed are NaN. ``parts`` (a dict) receives the CPU seconds of the two phases."""
    c0 = time.process_time()
    xs = [a.numpy() for a in activations(model_a, x, layers_a)]
    ys = [b.numpy() for b in activations(model_b, x, layers_b)]
    c1 = time.process_time()
    out = np.full((len(xs), len(ys)), np.nan)
    for i, j in pairs if pairs is not None else pair_subset(layers_a, layers_b, None):
        out[i, j] = cka_textbook(gram_linear(xs[i]), gram_linear(ys[j]))
    if parts is not None:
        parts.setdefault("store", []).append(c1 - c0)
        parts.setdefault("pairs", []).append(time.process_time() - c1)
    return torch.from_numpy(out)


def reference_cka(model_a, model_b, x, layers_a, layers_b):
    """Stores all activations, forms each layer's full centred Gram once, then all pairs."""
    def centred_gram(a):
        k = (a @ a.T).double()
        return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()

    ga = [centred_gram(a) for a in activations(model_a, x, layers_a)]
    gb = [centred_gram(b) for b in activations(model_b, x, layers_b)]
    na = torch.stack([g.norm() for g in ga])
    nb = torch.stack([g.norm() for g in gb])
    hab = torch.stack([torch.stack([(g * h).sum() for h in gb]) for g in ga])
    return hab / torch.outer(na, nb)


def ours_cka(model_a, model_b, x, layers_a, layers_b):
    return cnnviz.cka(model_a, model_b, x, layers_a, layers_b, batch_size=BATCH).matrix


def reference_statistics(model, x, layer):
    """Per image: a hooked forward, then a Welford update of mean / M2 / max and a top-5 list."""
    module = dict(model.named_modules())[layer]
    got = {}
    h = module.register_forward_hook(lambda m, i, o: got.__setitem__("a", o.detach()))
    count, mean, m2, peak, top = 0, None, None, None, None
    with torch.no_grad():
        for (img,) in DataLoader(TensorDataset(x), batch_size=1):
            model(img)
            a = got["a"][0]
            r = a.flatten(1).mean(1).double()
            count += 1
            if mean is None:
                mean, m2, peak = torch.zeros_like(r), torch.zeros_like(r), a.flatten(1).amax(1)
                top = r[None]
            delta = r - mean
            mean += delta / count
            m2 += delta * (r - mean)
            peak = torch.maximum(peak, a.flatten(1).amax(1))
            top = torch.cat([top, r[None]]).topk(min(5, count + 1), 0).values
    h.remove()
    return mean, (m2 / (count - 1)).sqrt()


def ours_statistics(model, x, layer):
    s = cnnviz.filter_statistics(model, DataLoader(TensorDataset(x), batch_size=BATCH), layer)
    return s.mean, s.std


def peak_memory(which: str, threads: int) -> float:
    """MiB of max RSS above the RSS after setup, of one run of ``which`` in a child process."""
    out = subprocess.run([sys.executable, __file__, "--child", which, "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def run_child(which: str):
    model_a, model_b, _ = models()
    x = images()
    la, lb = twenty_layers(model_a), twenty_layers(model_b)
    with torch.no_grad():
        model_a(x[:2]), model_b(x[:2])
    base = rss_mib()
    fn = {"ours": ours_cka, "reference": reference_cka, "textbook": textbook_cka}[which]
    fn(model_a, model_b, x, la, lb)
    print(f"{peak_rss_mib() - base:.1f}")


CPU = {}  # name -> CPU seconds of this process per round (steadier than wall time under load)


def interleaved(contenders, repeats):
    times = {name: [] for name in contenders}
    for r in range(repeats + 1):  # the first round warms up and is dropped
        for name, fn in contenders.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
                CPU.setdefault(name, []).append(time.process_time() - c0)
    return times


def fmt(ts, name=None):
    out = f"{statistics.median(ts):7.2f} s  ({min(ts):.2f}-{max(ts):.2f})"
    if name in CPU:
        c = CPU[name]
        out += f"; CPU {statistics.median(c):.2f} s ({min(c):.2f}-{max(c):.2f})"
    return out


def cka_profile(model_a, model_b, x, la, lb, repeats):
    """CPU milliseconds per batch of BATCH images (both models, 20 layers each): where
    cnnviz.cka's time goes beyond the forward passes that any implementation needs."""
    b = x[:BATCH]
    with torch.no_grad():
        acts_a = list(cnnviz.feature_maps(model_a, b, la).values())
        acts_b = list(cnnviz.feature_maps(model_b, b, lb).values())
    acc = cnnviz.representation.CKAAccumulator(la, lb)
    kept = {}

    def plain():
        with torch.no_grad():
            model_a(b), model_b(b)

    def hooked():  # Python forward hooks keeping the 40 outputs, as the reference does
        handles = []
        for m, names in ((model_a, la), (model_b, lb)):
            mods = dict(m.named_modules())
            handles += [mods[n].register_forward_hook(lambda _m, _i, o, n=n: kept.__setitem__(n, o)) for n in names]
        with torch.no_grad():
            model_a(b), model_b(b)
        for h in handles:
            h.remove()
        kept.clear()

    def captured():
        with torch.no_grad():
            cnnviz.feature_maps(model_a, b, la), cnnviz.feature_maps(model_b, b, lb)

    contenders = {"plain forwards": plain, "forwards with Python hooks keeping the layers": hooked,
                  "cnnviz capture of the 40 layers": captured,
                  "Gram + HSIC update (activations given)": lambda: acc.update(acts_a, acts_b),
                  "update_from_models (capture + Gram + HSIC)": lambda: acc.update_from_models(model_a, model_b, b)}
    cpu = {k: [] for k in contenders}
    for r in range(repeats + 1):
        for k, fn in contenders.items():
            c0 = time.process_time()
            fn()
            if r:
                cpu[k].append(time.process_time() - c0)
    print(f"\nPer batch of {BATCH} (CPU ms, median of {repeats} interleaved rounds, min-max):")
    for k, c in cpu.items():
        print(f"  {k:45s}: {statistics.median(c) * 1e3:6.0f}  ({min(c) * 1e3:.0f}-{max(c) * 1e3:.0f})")


def cka_benchmark(args, model_a, model_b, x, la, lb):
    pairs = pair_subset(la, lb, args.textbook_pairs)
    scale = len(la) * len(lb) / len(pairs)
    # Agreement first: textbook = Gram-once (both the full-data biased CKA), and the minibatch
    # estimate against it.
    ours, ref = ours_cka(model_a, model_b, x, la, lb), reference_cka(model_a, model_b, x, la, lb)
    text = textbook_cka(model_a, model_b, x, la, lb, pairs)
    done = ~torch.isnan(text)
    print(f"\nCKA {len(la)}x{len(lb)} layers, ResNet-20 x ResNet-56: max |textbook - Gram-once| = "
          f"{(text[done] - ref[done]).abs().max().item():.1e} over {int(done.sum())} pairs; "
          f"max |minibatch - full| = {(ours - ref).abs().max().item():.4f}")
    if len(pairs) < len(la) * len(lb):
        print(f"  textbook: {len(pairs)} of the {len(la) * len(lb)} pairs timed; its pair loop is scaled by "
              f"{scale:.1f} (the activations are stored once either way)")

    def forwards():
        with torch.no_grad():
            for b in x.split(BATCH):
                model_a(b), model_b(b)

    parts = {}
    t = interleaved({"cnnviz.cka": lambda: ours_cka(model_a, model_b, x, la, lb),
                     "textbook (per pair)": lambda: textbook_cka(model_a, model_b, x, la, lb, pairs, parts),
                     "Gram-once reference": lambda: reference_cka(model_a, model_b, x, la, lb),
                     "forward passes alone": forwards}, args.repeats)
    parts = {k: v[1:] for k, v in parts.items()}  # the warm-up round is dropped, as in interleaved()
    text_cpu = [st + pr * scale for st, pr in zip(parts["store"], parts["pairs"])]
    for name, ts in t.items():
        print(f"  {name:22s}: {fmt(ts, name)}")
    print(f"  textbook CPU parts: storing the activations {statistics.median(parts['store']):.2f} s, the "
          f"{len(pairs)} pairs {statistics.median(parts['pairs']):.2f} s; scaled to all pairs "
          f"{statistics.median(text_cpu):.2f} s ({min(text_cpu):.2f}-{max(text_cpu):.2f})")
    c_ours, c_ref, c_fwd = (statistics.median(CPU[k]) for k in ("cnnviz.cka", "Gram-once reference",
                                                                 "forward passes alone"))
    c_text = statistics.median(text_cpu)
    print(f"  by CPU time: textbook / cnnviz.cka {c_text / c_ours:.2f}x; Gram-once / cnnviz.cka "
          f"{c_ref / c_ours:.2f}x; the forwards cap any streaming method at {c_text / c_fwd:.2f}x the textbook "
          f"and {c_ref / c_fwd:.2f}x the Gram-once reference; cnnviz.cka spends {c_ours / c_fwd:.2f}x the "
          f"plain forwards")
    if args.cka_profile:
        cka_profile(model_a, model_b, x, la, lb, args.repeats)
    mem = {k: peak_memory(k, args.threads) for k in ("ours", "reference", "textbook")}
    print(f"  peak memory above the loaded models: cnnviz.cka {mem['ours']:.0f} MiB, Gram-once reference "
          f"{mem['reference']:.0f} MiB, textbook {mem['textbook']:.0f} MiB")


def statistics_benchmark(args, model_a, x):
    layer = "layer2"
    s_ours, s_ref = ours_statistics(model_a, x, layer), reference_statistics(model_a, x, layer)
    print(f"\nfilter_statistics of ResNet-20 {layer}, {N_IMAGES} images: max |mean diff| = "
          f"{(s_ours[0] - s_ref[0]).abs().max().item():.2e}, max |std diff| = {(s_ours[1] - s_ref[1]).abs().max().item():.2e}")
    t = interleaved({"cnnviz (DataLoader, 50)": lambda: ours_statistics(model_a, x, layer),
                     "per-image Python loop": lambda: reference_statistics(model_a, x, layer)}, args.repeats)
    for name, ts in t.items():
        print(f"  {name:24s}: {fmt(ts, name)}")
    print(f"  ratio: wall {statistics.median(t['per-image Python loop']) / statistics.median(t['cnnviz (DataLoader, 50)']):.1f}x, "
          f"CPU {statistics.median(CPU['per-image Python loop']) / statistics.median(CPU['cnnviz (DataLoader, 50)']):.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", choices=["ours", "reference", "textbook"])
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--cka-only", action="store_true", help="skip filter_statistics")
    ap.add_argument("--statistics-only", action="store_true", help="skip CKA")
    ap.add_argument("--cka-profile", action="store_true", help="also the per-batch breakdown of cnnviz.cka")
    ap.add_argument("--textbook-pairs", type=int, default=None,
                    help="time the textbook CKA on this many of the 400 pairs and scale its pair loop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        run_child(args.child)
        return
    model_a, model_b, pretrained = models()
    x = images()
    la, lb = twenty_layers(model_a), twenty_layers(model_b)
    print(f"threads={torch.get_num_threads()} (OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}) "
          f"torch={torch.__version__} numpy={np.__version__} pretrained={pretrained} images={N_IMAGES} "
          f"batch={BATCH} load={os.getloadavg()[0]:.1f}")

    if args.memory_only:
        mem = {k: peak_memory(k, args.threads) for k in ("ours", "reference", "textbook")}
        print(f"  peak memory above the loaded models: cnnviz.cka {mem['ours']:.0f} MiB, Gram-once reference "
              f"{mem['reference']:.0f} MiB, textbook {mem['textbook']:.0f} MiB")
        return
    if not args.statistics_only:
        cka_benchmark(args, model_a, model_b, x, la, lb)
    if not args.cka_only:
        statistics_benchmark(args, model_a, x)


if __name__ == "__main__":
    main()
