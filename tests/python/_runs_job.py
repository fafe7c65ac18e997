"""A dataset run as the tests launch it: in-process, as a subprocess (killed part-way), and
under torchrun. ``ChannelMoments`` is a small analysis job written for the tests: per-channel
sums of a layer's activations, so its reduction can be checked against a direct computation."""
import argparse
import sys
import time

import numpy as np
import torch

import cnnviz
from cnnviz.runs import AnalysisJob

LAYER = "layer2"
METHODS = ["saliency", "grad_cam", ("ig", {"steps": 4, "batch_size": 16}),
           ("smooth_grad", {"samples": 2, "batch_size": 8})]


# The analyses and the faithfulness metric of the library join the job where this build has them.
HAVE_ACCUMULATORS = hasattr(cnnviz, "FilterStatisticsAccumulator") and hasattr(cnnviz, "CKAAccumulator")
HAVE_FAITHFULNESS = hasattr(cnnviz, "deletion_insertion")
CKA_LAYERS = ["layer1", "layer2", "layer3"]


def methods():
    m = list(METHODS)
    if HAVE_FAITHFULNESS:
        m[1] = ("grad_cam", {"faithfulness": {"steps": 4}})
    m.append(ChannelMoments())
    if HAVE_ACCUMULATORS:
        m += [("filter_statistics", {"layer": LAYER, "top_k": 3}),
              ("cka", {"layers": CKA_LAYERS, "unbiased": False})]
    return m


class ChannelMoments(AnalysisJob):
    """Per channel of ``layer``: count, sum and sum of squares of the activations (float64)."""

    name = "channel_moments"

    def __init__(self, group=None, layer=LAYER):
        super().__init__(group, layer=layer)

    def update(self, state, model, x, batch):
        a = cnnviz.feature_maps(model, x, [self.options["layer"]])[self.options["layer"]].double()
        new = {"count": torch.tensor([a.shape[0] * a.shape[2] * a.shape[3]], dtype=torch.float64),
               "sum": a.sum((0, 2, 3)), "sum_sq": (a * a).sum((0, 2, 3))}
        return self.merge(state, new)

    def result(self, state):
        mean = state["sum"] / state["count"]
        return {"mean": mean.numpy(), "var": (state["sum_sq"] / state["count"] - mean * mean).numpy(),
                "count": state["count"].numpy()}


class Slow(torch.utils.data.Dataset):
    """A dataset that takes its time, so a run can be killed part-way."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay
        self.files = inner.files

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        time.sleep(self.delay)
        return self.inner[i]

    def name(self, i):
        return self.inner.name(i)


def job(data, out, slow=0.0, workers=0, **kwargs):
    dataset = cnnviz.runs.ImageFiles(data, cnnviz.runs.Preprocess(32), labels="name")
    dataset = Slow(dataset, slow)  # also when not slow: the dataset's type is part of the settings
    return cnnviz.run("resnet20", dataset, methods(), out, batch_size=2, chunk_size=4,
                      num_workers=workers, progress=False, **kwargs)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--slow", type=float, default=0.0)
    p.add_argument("--workers", type=int, default=0)
    a = p.parse_args()
    s = job(a.data, a.out, a.slow, a.workers)
    print(f"rank-summary images={s.images} new={s.new_images} ranks={s.ranks}", flush=True)
    sys.exit(0)
