"""The dashboard's methods: one request (image, layer, method, filter, colormap, target)
to panels of pictures. Long loops report progress to a Job, which can cancel them; the
live ones (inversion, maximization) hand over their current image every few steps."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import torch

import cnnviz

from . import render
from .session import LIVE, METHODS, METHOD_TITLES, Cancelled, RequestError, Session

COLORMAPS = ("viridis", "inferno", "magma", "plasma", "jet", "gray", "coolwarm", "turbo")
LIMITS = {"iterations": (1, 2000), "eps": (0.0, 64.0), "samples": (2, 500), "steps": (2, 256)}


@dataclass
class Spec:
    """One validated request."""

    image: str
    layer: str
    method: str
    channel: Optional[int]
    cmap: str
    target: Optional[int]
    iterations: int
    eps: float  # FGSM budget in gray levels (eps / 255 in pixels)


def _int(value, name: str, lo: int, hi: int, default: Optional[int]) -> Optional[int]:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise RequestError(f"{name} must be an integer")
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be an integer, got {value!r}") from None
    if not lo <= v <= hi:
        raise RequestError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def parse_spec(session: Session, body: Any) -> Spec:
    """Checks a request body (a JSON object) against the session; RequestError says why not."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    method = body.get("method", "feature_maps")
    if method not in METHODS:
        raise RequestError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    stored = session.image(body.get("image", ""))
    layers = session.spatial_layers()
    layer = body.get("layer") or (layers[-1].name if layers else "")
    if not isinstance(layer, str):
        raise RequestError("layer must be a string")
    session.layer(layer)
    cmap = body.get("colormap", "viridis")
    if cmap not in cnnviz.colormap_names():
        raise RequestError(f"unknown colormap {cmap!r}")
    classes = len(session.info.labels)
    target = _int(body.get("target"), "target", 0, classes - 1 if classes else 10 ** 6, None)
    iterations = _int(body.get("iterations"), "iterations", *LIMITS["iterations"], 200 if method == "inversion" else 128)
    try:
        eps = float(body.get("eps", 4))
    except (TypeError, ValueError):
        raise RequestError("eps must be a number") from None
    if not (math.isfinite(eps) and LIMITS["eps"][0] <= eps <= LIMITS["eps"][1]):
        raise RequestError(f"eps must be in [0, 64] gray levels, got {eps}")
    channel = _int(body.get("channel"), "channel", 0, 10 ** 6, None)
    return Spec(stored.id, layer, method, channel, cmap, target, iterations, eps)


Progress = Callable[[int, int, float], bool]
Preview = Callable[[int, int, str], None]


def run_method(session: Session, spec: Spec, progress: Progress, preview: Preview) -> Dict[str, Any]:
    """Runs one method; returns {"panels": [{title, src, caption}], "notes": [...]}.
    ``progress(step, total, loss)`` returns False to cancel (raises Cancelled);
    ``preview(step, total, data_url)`` shows a live image."""
    stored = session.image(spec.image)
    info = session.info
    x = stored.x
    shown = render.show_input(x, info.mean, info.std)
    panels: List[Dict[str, str]] = []
    notes: List[str] = []

    def panel(title: str, image: torch.Tensor, caption: str = "") -> None:
        panels.append({"title": title, "src": render.data_url(image), "caption": caption})

    def checked(cb_result):
        if getattr(cb_result, "stopped_early", False):
            raise Cancelled()
        return cb_result

    target = spec.target
    if target is None and spec.method not in ("feature_maps", "filter_weights", "inversion", "maximization"):
        target = session.predict(spec.image, 1)[0]["index"]
    tname = info.label(target) if target is not None else ""

    if spec.method == "feature_maps":
        act = session.activation(spec.image, spec.layer)
        ranked = [f["channel"] for f in session.filters(spec.image, spec.layer)]
        c = ranked[0] if spec.channel is None else spec.channel
        if c >= act.shape[0]:
            raise RequestError(f"layer {spec.layer!r} has {act.shape[0]} channels; channel {c} does not exist")
        panel(f"channel {c}", render.heat(act[c], spec.cmap), f"{spec.layer}, {tuple(act.shape[1:])} positions")
        panel("over the photo", cnnviz.overlay(shown, act[c].float(), colormap=spec.cmap))
        top = ranked[:16]
        panel(f"{len(top)} strongest channels", render.channel_grid(act, top, spec.cmap),
              "channels " + ", ".join(map(str, top)))
    elif spec.method == "filter_weights":
        try:
            weights = session.cached_map(("filters", spec.layer), lambda: cnnviz.filter_weights(info.model, spec.layer))
        except ValueError as e:
            raise RequestError(str(e).splitlines()[0]) from None
        n = weights.weight.shape[0]
        c = spec.channel if spec.channel is not None else 0
        if c >= n:
            raise RequestError(f"layer {spec.layer!r} has {n} filters; filter {c} does not exist")
        if weights.rgb is not None:
            panel(f"filter {c}", weights.rgb[c].float().permute(1, 2, 0).contiguous(),
                  f"{tuple(weights.weight.shape[1:])} (in, kH, kW), as RGB")
        else:
            panel(f"filter {c}", render.heat(weights.mean[c], spec.cmap),
                  f"{tuple(weights.weight.shape[1:])} (in, kH, kW), mean over inputs")
        shown_filters = list(range(min(n, 64)))
        panel(f"filters 0-{len(shown_filters) - 1} of {n}", render.filter_grid(weights, shown_filters, spec.cmap))
    elif spec.method == "inversion":
        session.activation(spec.image, spec.layer)  # checks the layer gives feature maps
        every = max(1, min(5, spec.iterations // 50))  # a live image every few steps

        def snap(step: int, img: torch.Tensor) -> None:
            preview(step, spec.iterations, render.data_url(render.show_input(img, info.mean, info.std)))

        with session.model_lock:
            session.model_calls += 1
            r = cnnviz.invert(info.model, x, spec.layer, iterations=spec.iterations, optimizer="adam",
                              learning_rate=0.1, mean=info.mean, std=info.std, snapshot_every=every,
                              on_snapshot=snap, progress=progress)
        checked(r)
        out = render.show_input(r.image, info.mean, info.std)
        score = float(cnnviz.ssim(out, shown))
        panel("photo", shown)
        panel(f"inverted from {spec.layer}", out, f"SSIM {score:.3f}, loss {r.final_loss:.4g}")
        notes.append(f"SSIM to the photo: {score:.3f}")
    elif spec.method == "maximization":
        act = session.activation(spec.image, spec.layer)
        c = spec.channel if spec.channel is not None else session.filters(spec.image, spec.layer)[0]["channel"]
        if c >= act.shape[0]:
            raise RequestError(f"layer {spec.layer!r} has {act.shape[0]} channels; channel {c} does not exist")
        side = min(info.size, 128)
        every = max(1, min(5, spec.iterations // 50))  # a live image every few steps

        def snap(step: int, img: torch.Tensor) -> None:
            preview(step, spec.iterations, render.data_url(render.show_input(img, info.mean, info.std)))

        with session.model_lock:
            session.model_calls += 1
            r = cnnviz.maximize(info.model, spec.layer, channel=c, size=side, iterations=spec.iterations,
                                pad=max(2, side // 10), jitter=max(1, side // 16), mean=info.mean, std=info.std,
                                snapshot_every=every, on_snapshot=snap, progress=progress)
        checked(r)
        panel(f"{spec.layer} channel {c}", render.show_input(r.image, info.mean, info.std),
              f"mean activation {float(r.initial_objective[0]):.3g} -> {float(r.objective[0]):.3g}")
    elif spec.method == "fgsm":
        res = session.cached_map((spec.image, "fgsm", target, spec.eps), lambda: cnnviz.fgsm(
            info.model, x, target, eps=spec.eps / 255, mean=info.mean, std=info.std))
        before, after = int(res.prediction_before[0]), int(res.prediction_after[0])
        p_after = float(torch.softmax(res.logits_after.float(), -1)[0, after])
        panel("photo", shown, f"predicted: {info.label(before)}")
        panel(f"adversarial, eps {spec.eps:g}/255", render.show_input(res.adversarial, info.mean, info.std),
              f"predicted: {info.label(after)} ({p_after:.0%})")
        panel("perturbation (stretched)", render.perturbation_image(res.perturbation))
        notes.append(("the attack succeeded: " if bool(res.success[0]) else "the prediction held: ")
                     + f"{info.label(before)} -> {info.label(after)}")
    else:
        heat = attribution_map(session, spec, target, progress)
        panel(METHOD_TITLES[spec.method], render.heat(heat, spec.cmap), f"for class {tname}")
        panel("over the photo", cnnviz.overlay(shown, heat, colormap=spec.cmap))
    return {"panels": panels, "notes": notes, "method": spec.method, "layer": spec.layer, "image": spec.image}


def attribution_map(session: Session, spec: Spec, target: int, progress: Progress) -> torch.Tensor:
    """The (H, W) map of an attribution method for ``target``, cached per image, method,
    layer (Grad-CAM) and target."""
    info, x = session.info, session.image(spec.image).x
    m, side = info.model, info.size
    layer = spec.layer if spec.method == "grad_cam" else ""
    if spec.method == "grad_cam":
        session.activation(spec.image, spec.layer)  # checks the layer gives feature maps

    def make() -> torch.Tensor:
        if spec.method == "saliency":
            r = cnnviz.saliency(m, x, target)
        elif spec.method == "smooth_grad":
            r = cnnviz.smooth_grad(m, x, target, samples=25, progress=progress)
        elif spec.method == "grad_cam":
            return cnnviz.grad_cam(m, x, spec.layer, target).upsampled[0].detach()
        elif spec.method == "integrated_gradients":
            r = cnnviz.integrated_gradients(m, x, target, steps=32, mean=info.mean, std=info.std, progress=progress)
        elif spec.method == "occlusion":
            w = max(2, side // 8)
            r = cnnviz.occlusion(m, x, target, window=w, stride=max(1, w // 2), progress=progress)
        elif spec.method == "lime":
            r = cnnviz.lime(m, x, target, samples=200, mean=info.mean, std=info.std, progress=progress)
        else:  # pragma: no cover - parse_spec admits only METHODS
            raise RequestError(f"unknown method {spec.method!r}")
        if getattr(r, "stopped_early", False):
            raise Cancelled()
        return r.map[0].detach()

    return session.cached_map((spec.image, spec.method, layer, target), make)


def is_live(method: str) -> bool:
    return method in LIVE
