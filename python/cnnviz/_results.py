"""Readable reprs and documented fields for the result classes of the native core.

Each result prints its shapes, target and key numbers, e.g.
``Attribution(attribution=(1, 3, 224, 224), map=(1, 224, 224), target=[285], ...)``,
and its docstring lists what every field holds."""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from . import _C

_FLAGS = ("stopped_early", "interrupted")

# class -> (summary, {field: description}); the fields print in this order.
RESULTS: Dict[str, Tuple[str, Dict[str, str]]] = {
    "Attribution": ("What a gradient method returns.", {
        "attribution": "(N, C, H, W) signed attribution, like x",
        "map": "(N, H, W) |attribution| reduced over channels",
        "target": "(N,) int64: the class explained for each sample",
        "logits": "(N, K): the model's output for x",
    }),
    "IntegratedGradientsResult": ("What integrated_gradients returns (an Attribution and more).", {
        "attribution": "(N, C, H, W): (x - baseline) times the mean path gradient",
        "map": "(N, H, W) |attribution| reduced over channels",
        "target": "(N,) int64: the class explained",
        "logits": "(N, K): the model's output for x",
        "baseline": "(N, C, H, W): the path's start",
        "score": "(N,): f(x) for the target",
        "baseline_score": "(N,): f(baseline) for the target",
        "delta": "(N,): sum(attribution) - (score - baseline_score), near 0 by completeness",
        "passes": "(N,) int64: path points per image, one forward+backward pass each",
        "converged": "(N,) bool with tolerance: the tolerance was met (None for fixed steps)",
        "relative_error": "(N,) with tolerance: what was compared with it (None for fixed steps)",
    }),
    "CamMap": ("One class activation map: a layer and a target.", {
        "layer": "the layer, as spelled in the request",
        "target": "(N,) int64",
        "map": "(N, h, w) at the layer's resolution",
        "upsampled": "(N, H, W) bilinear to the input's resolution",
    }),
    "CamResult": ("What the CAM methods return: one CamMap per layer and target (``maps``); "
                  "``map``, ``upsampled`` and ``target`` are those of the first.", {
        "maps": "list of CamMap: for each layer, for each target",
        "num_targets": "how many targets were asked for",
        "logits": "(N, K) for x",
    }),
    "OcclusionResult": ("What occlusion returns.", {
        "map": "(N, H, W): mean drop of the windows covering each pixel",
        "scores": "(N, nh, nw): drop of the target's score per window position",
        "target": "(N,) int64",
        "logits": "(N, K) for x",
    }),
    "LimeResult": ("What lime returns.", {
        "map": "(N, H, W): each pixel's segment weight",
        "segments": "(N, H, W) int64 segment labels",
        "weights": "per image (S_n,): the ridge coefficient of each segment",
        "intercept": "(N,)",
        "r2": "(N,): weighted R^2 of the fit",
        "target": "(N,) int64",
        "logits": "(N, K) for x",
    }),
    "AdversarialResult": ("What fgsm and pgd return.", {
        "adversarial": "(N, C, H, W): the attacked input, normalized like x",
        "perturbation": "(N, C, H, W): adversarial - x",
        "target": "(N,) int64: the class attacked",
        "prediction_before": "(N,) int64",
        "prediction_after": "(N,) int64",
        "success": "(N,) bool",
        "logits_before": "(N, K)",
        "logits_after": "(N, K)",
        "steps": "gradient steps taken (fgsm: 1; pgd: fewer than asked when stopped)",
    }),
    "InversionResult": ("What invert returns (one per layer from invert_layers).", {
        "layer": "the inverted layer",
        "image": "(N, C, H, W): the reconstruction, normalized like x",
        "final_loss": "the loss of image (no jitter) = feature_loss + prior_loss",
        "feature_loss": "the feature-matching term of final_loss",
        "prior_loss": "the priors' part of final_loss",
        "losses": "(steps,) float64: the loss before each update",
        "snapshots": "list of (N, C, H, W) images after snapshot_steps",
        "snapshot_steps": "list of steps",
    }),
    "MaximizeResult": ("What maximize returns.", {
        "image": "(B, 3, H, W), normalized like the model's input",
        "objective": "(B,): the objective at image",
        "initial_objective": "(B,): the objective at the start image",
        "losses": "(steps,) float64: mean over images of -objective + priors",
        "snapshots": "list of (B, 3, H, W) images after snapshot_steps",
        "snapshot_steps": "list of steps",
    }),
    "DeepDreamResult": ("What deep_dream returns.", {
        "image": "(N, C, H, W), normalized like x",
        "losses": "(steps,) float64: sum over layers of mean(activation^2)",
    }),
    "TopFilters": ("The channels of a layer ranked by activation.", {
        "channels": "channel indices, most active first",
        "scores": "their mean (or max) activation, averaged over the batch",
    }),
}


def _short(value) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() <= 4:
            return str([round(v, 4) if isinstance(v, float) else v for v in value.flatten().tolist()])
        return str(tuple(value.shape))
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        if len(value) <= 4 and not any(isinstance(v, torch.Tensor) for v in value):
            return repr([round(v, 4) if isinstance(v, float) else v for v in value])
        return f"[{len(value)} items]"
    return repr(value)


def _make_repr(name: str, fields):
    def __repr__(self) -> str:
        parts = []
        for field in fields:
            value = getattr(self, field, None)
            if value is None:  # an undefined tensor
                continue
            parts.append(f"{field}={_short(value)}")
        parts += [flag for flag in _FLAGS if getattr(self, flag, False)]
        return f"{name}({', '.join(parts)})"

    return __repr__


def _doc(cls, summary: str, fields: Dict[str, str]) -> str:
    lines = [summary, "", "Fields:"]
    lines += [f"    {field}: {text}" for field, text in fields.items()]
    if hasattr(cls, "stopped_early"):
        lines.append("    stopped_early: the progress callback stopped the loop (partial result)")
    if hasattr(cls, "interrupted"):
        lines.append("    interrupted: Ctrl-C stopped the loop (partial result, with a RuntimeWarning)")
    return "\n".join(lines)


def install() -> None:
    """Sets __repr__ and __doc__ on every result class of _C (idempotent)."""
    for name, (summary, fields) in RESULTS.items():
        cls = getattr(_C, name)
        cls.__repr__ = _make_repr(name, list(fields))
        cls.__doc__ = _doc(cls, summary, fields)


install()
