"""A self-contained HTML report a user can send to a colleague: one file, images embedded as
data URLs, no script, no network. Per image: the prediction, feature maps of chosen layers,
attributions from every method with a faithfulness number (deletion and insertion AUC),
inversions across depth with SSIM, and FGSM robustness at a few budgets; once: the layer
summary and the first convolution's filters.
"""
from __future__ import annotations

import datetime
import html
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

import cnnviz

from . import render
from .session import ModelInfo, model_info

ATTRIBUTION_METHODS = ("saliency", "smooth_grad", "guided_backprop", "grad_cam", "grad_cam_pp", "layer_cam",
                       "score_cam", "integrated_gradients", "occlusion", "lime")
CAM_METHODS = ("grad_cam", "grad_cam_pp", "layer_cam", "score_cam")
SECTIONS = ("feature_maps", "filters", "inversion", "adversarial")
#: Every name --methods accepts: the attribution methods and the other sections.
ALL_METHODS = ATTRIBUTION_METHODS + SECTIONS
#: Input side, label set and Grad-CAM layer of each sample model.
ZOO = {"mobilenet_v2": (224, "imagenet", "features"), "resnet20": (32, "cifar10", "layer3"),
       "resnet56": (32, "cifar10", "layer3"), "resnet20_traced": (32, "cifar10", "layer3")}


def load_model(spec: Union[str, torch.nn.Module]) -> Tuple[Any, str, Optional[int], Optional[str]]:
    """(model, name, input side or None, label set or None) for a zoo name, a TorchScript
    file or a model object."""
    if not isinstance(spec, str):
        return spec, type(spec).__name__, None, None
    if spec in ZOO:
        size, labels, _ = ZOO[spec]
        return cnnviz.zoo.pretrained(spec), spec, size, labels
    if spec.endswith((".pt", ".pth", ".ts")):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"cnnviz: no model file {spec}")
        try:
            model = torch.jit.load(spec, map_location="cpu").eval()
        except RuntimeError as e:
            raise ValueError(f"cnnviz: {spec} is not a TorchScript model ({str(e).splitlines()[0]})") from None
        return model, os.path.basename(spec), None, None
    raise ValueError(f"cnnviz: unknown model {spec!r}: choose {', '.join(ZOO)} or a TorchScript file")


def default_layers(info: ModelInfo, count: int = 4) -> List[str]:
    """``count`` layers spread over the depth: at the shallowest nesting level with at least
    three modules giving feature maps (N, C, H, W) (normalization, activation and dropout
    modules left out), evenly spaced, the last one included."""
    skip = ("Norm", "Norm2d", "ReLU", "ReLU6", "GELU", "SiLU", "Sigmoid", "Tanh", "Dropout", "Dropout2d", "Identity",
            "Hardswish")
    spatial = [r for r in info.layers if r.name and len(r.output_shape) == 4
               and not r.type.split(".")[-1].endswith(skip)]
    if not spatial:
        return []
    by_depth: Dict[int, List[str]] = {}
    for r in spatial:
        by_depth.setdefault(r.name.count("."), []).append(r.name)
    names = next((by_depth[d] for d in sorted(by_depth) if len(by_depth[d]) >= 3), [r.name for r in spatial])
    if len(names) <= count:
        return names
    picks = sorted({round(i * (len(names) - 1) / (count - 1)) for i in range(count)})
    return [names[i] for i in picks]


def cam_layer(info: ModelInfo, layers: Sequence[str]) -> Optional[str]:
    """The layer Grad-CAM explains: the deepest of ``layers`` (feature maps at least 2x2
    preferred)."""
    rows = {r.name: r for r in info.layers}
    good = [n for n in layers if n in rows and len(rows[n].output_shape) == 4 and rows[n].output_shape[-1] >= 2]
    return (good or list(layers) or [None])[-1]


def deletion_insertion(model, x: torch.Tensor, heat: torch.Tensor, target: int,
                       steps: int = 16) -> Tuple[float, float]:
    """Faithfulness of an attribution map ``heat`` (H, W) for one image x (1, 3, H, W):
    the deletion and insertion AUCs of :func:`cnnviz.deletion_insertion` (Petsiuk et al.
    2018), with the mean colour (0 in normalized space) as both baselines so that the
    numbers of every method in a report compare on one scale. A faithful map has a low
    deletion and a high insertion AUC."""
    if tuple(heat.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"cnnviz: the map must be (H, W) = {tuple(x.shape[-2:])}, got {tuple(heat.shape)}")
    r = cnnviz.deletion_insertion(model, x, heat, target, steps=steps, baseline="zeros")
    return float(r.deletion_auc[0]), float(r.insertion_auc[0])


def _attribution(info: ModelInfo, method: str, x: torch.Tensor, target: int, layer: Optional[str]) -> torch.Tensor:
    m, side = info.model, info.size
    if method == "saliency":
        return cnnviz.saliency(m, x, target).map[0]
    if method == "smooth_grad":
        return cnnviz.smooth_grad(m, x, target, samples=25).map[0]
    if method == "guided_backprop":
        return cnnviz.guided_backprop(m, x, target).map[0]
    if method in CAM_METHODS:
        if layer is None:
            raise ValueError(f"cnnviz: {method} needs a layer with feature maps")
        return getattr(cnnviz, method)(m, x, layer, target).upsampled[0]
    if method == "integrated_gradients":
        return cnnviz.integrated_gradients(m, x, target, steps=32, mean=info.mean, std=info.std).map[0]
    if method == "occlusion":
        win = max(2, side // 8)
        return cnnviz.occlusion(m, x, target, window=win, stride=max(1, win // 2)).map[0]
    if method == "lime":
        return cnnviz.lime(m, x, target, samples=200, mean=info.mean, std=info.std).map[0]
    raise ValueError(f"cnnviz: unknown method {method!r}")


def _img(src_tensor: torch.Tensor, alt: str, caption: str = "", cls: str = "") -> str:
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    klass = f' class="{cls}"' if cls else ""
    return (f'<figure{klass}><img src="{render.data_url(src_tensor)}" alt="{html.escape(alt)}">{cap}</figure>')


CSS = """
*{box-sizing:border-box}body{margin:0 auto;max-width:1100px;padding:1em;font:15px/1.45 system-ui,sans-serif;color:#222}
h1{font-size:1.5em}h2{border-bottom:2px solid #263238;padding-bottom:.2em;margin-top:1.6em}h3{margin:1em 0 .4em}
.figs{display:flex;flex-wrap:wrap;gap:.8em}figure{margin:0;flex:0 1 220px;max-width:100%}
figure img{display:block;width:100%;max-width:220px;image-rendering:pixelated;background:#eee}
figure.wide{flex-basis:100%}figure.wide img{width:100%;max-width:560px}
figcaption{font-size:.85em;color:#455a64;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:.9em}
td,th{border-bottom:1px solid #ddd;padding:.2em .5em;text-align:left;overflow-wrap:anywhere}
td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#607d8b}
"""


def report(images, model, out: Optional[str] = None, *, methods: Optional[Sequence[str]] = None,
           layers: Optional[Sequence[str]] = None, labels=None, size: Optional[int] = None,
           mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
           eps: Sequence[float] = (1, 2, 4, 8), inversion_steps: int = 200, title: Optional[str] = None,
           progress: Union[bool, Callable[[int, int, str], None]] = True) -> str:
    """Writes one self-contained HTML report on ``images`` (paths, (H, W, 3) images or
    normalized inputs) through ``model`` (an ``nn.Module``/TorchScript object, a sample
    name of ``cnnviz.zoo`` such as "resnet20", or a TorchScript file) and returns the HTML;
    ``out`` is the file to write (none: only returned).

    ``methods`` picks from ``ALL_METHODS`` (the attribution methods saliency, smooth_grad,
    guided_backprop, grad_cam, grad_cam_pp, layer_cam, score_cam, integrated_gradients,
    occlusion, lime, and the sections feature_maps, filters, inversion, adversarial; default
    all); ``layers`` the layers for feature maps and inversion (default four spread over the
    depth; the CAM methods use the deepest). ``eps``: FGSM
    budgets in gray levels (eps / 255 in pixels). ``progress``: a terminal bar (True), a
    callable ``(done, total, what)``, or False.
    """
    methods = list(ALL_METHODS if methods is None else methods)
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown or not methods:
        raise ValueError(f"cnnviz: unknown method(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(ALL_METHODS)}")
    if int(inversion_steps) < 1:
        raise ValueError("cnnviz: inversion_steps must be at least 1")
    eps = [float(e) for e in eps]
    if any(not 0 < e <= 64 for e in eps):
        raise ValueError("cnnviz: every eps must be in (0, 64] gray levels")
    the_model, name, zoo_size, zoo_labels = load_model(model)
    info = model_info(the_model, labels=labels if labels is not None else zoo_labels, size=size or zoo_size,
                      mean=mean, std=std, name=name)
    items = [images] if isinstance(images, (str, os.PathLike)) or (
        isinstance(images, torch.Tensor) and images.dim() == 3) else list(images)
    if not items:
        raise ValueError("cnnviz: report needs at least one image")
    known = {r.name: r for r in info.layers if r.name}
    chosen = list(layers) if layers is not None else default_layers(info)
    bad = [n for n in chosen if n not in known or len(known[n].output_shape) != 4]
    if bad:
        raise ValueError(f"cnnviz: {', '.join(bad)}: not layers of the model with feature maps (N, C, H, W)")
    cam = cam_layer(info, chosen or default_layers(info))

    from .session import Session  # preprocessing and image handling shared with the dashboard

    session = Session(info, [], samples=[])
    attribution = [m for m in methods if m in ATTRIBUTION_METHODS]
    per_image = (1 + ("feature_maps" in methods) + len(attribution) + ("inversion" in methods)
                 + ("adversarial" in methods))
    total = 1 + ("filters" in methods) + per_image * len(items)
    tick = _Ticker(progress, total)
    body: List[str] = []
    tick("layer summary")
    rows = "".join(f"<tr><td><code>{html.escape(r.name)}</code></td><td>{html.escape(r.type)}</td>"
                   f"<td>{'x'.join(map(str, r.output_shape[1:])) if r.output_shape else '-'}</td>"
                   f"<td class=n>{r.num_parameters:,}</td></tr>" for r in info.layers if r.name)
    params = sum(p.numel() for p in the_model.parameters())
    body.append(f"<h2>Model</h2><p>{html.escape(name)}: {info.size}x{info.size} input, {len(info.labels)} classes, "
                f"{params:,} parameters.</p><details><summary>Layer summary ({len(info.layers) - 1} modules)"
                f"</summary><div class=scroll><table><tr><th>layer</th><th>type</th><th>output (C x H x W)</th>"
                f"<th>params</th></tr>{rows}</table></div></details>")
    if "filters" in methods:
        tick("filters")
        body.append(_filters_section(info))
    for k, item in enumerate(items):
        label = os.path.basename(os.fspath(item)) if isinstance(item, (str, os.PathLike)) else f"image {k + 1}"
        stored = session.add_image(item, label, "given")
        body.append(_image_section(session, stored, methods, attribution, chosen, cam, eps, int(inversion_steps), tick))
    tick.close()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    heading = html.escape(title or f"cnnviz report: {name}")
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{heading}</title>"
            f"<style>{CSS}</style></head><body><h1>{heading}</h1><p class=muted>cnnviz {cnnviz.__version__}, "
            f"{stamp}. Faithfulness: deletion AUC (lower is better) and insertion AUC (higher is better) of the "
            f"explained class's probability as the most important pixels are removed or added.</p>"
            + "".join(body) + "</body></html>")
    if out is not None:
        with open(out, "w", encoding="utf-8") as f:
            f.write(page)
    return page


class _Ticker:
    """Progress over the report's tasks: a tqdm bar on stderr, a callable, or nothing.
    ``tick(what)`` announces the next task; ``close()`` ends the bar."""

    def __init__(self, progress, total: int) -> None:
        self.total, self.done, self._bar, self._call = total, 0, None, None
        if callable(progress):
            self._call = progress
        elif progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc="report", file=sys.stderr)

    def __call__(self, what: str) -> None:
        if self._call is not None:
            self._call(self.done, self.total, what)
        if self._bar is not None:
            if self.done:
                self._bar.update(1)
            self._bar.set_postfix_str(what)
        self.done += 1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self.total - self._bar.n)
            self._bar.close()


def _filters_section(info: ModelInfo) -> str:
    convs = [r.name for r in info.layers if r.name and r.type.endswith("Conv2d")]
    for layer in convs:
        try:
            w = cnnviz.filter_weights(info.model, layer)
        except ValueError:
            continue
        n = w.weight.shape[0]
        grid = render.filter_grid(w, list(range(min(n, 64))), "viridis")
        return (f"<h2>Filters of {html.escape(layer)}</h2><div class=figs>"
                + _img(grid, f"filters of {layer}", f"{min(n, 64)} of {n} filters, {tuple(w.weight.shape[1:])} "
                       "(in, kH, kW)" + (", as RGB" if w.rgb is not None else ", mean over inputs"), "wide")
                + "</div>")
    return "<h2>Filters</h2><p>The model has no convolution with readable weights.</p>"


def _image_section(session, stored, methods, attribution, layers, cam, eps, inversion_steps, tick) -> str:
    info = session.info
    x = stored.x
    shown = render.show_input(x, info.mean, info.std)
    tick(f"{stored.name}: prediction")
    preds = session.predict(stored.id, 5)
    target = preds[0]["index"]
    out = [f"<h2>{html.escape(stored.name)}</h2><div class=figs>",
           _img(shown, stored.name, f"as the model sees it ({info.size}x{info.size})"),
           "<div><h3>Prediction</h3><ol>" + "".join(
               f"<li>{html.escape(p['label'])} <span class=muted>{p['probability']:.1%}</span></li>" for p in preds)
           + "</ol></div></div>"]
    if "feature_maps" in methods:
        tick(f"{stored.name}: feature maps")
        out.append("<h3>Feature maps (16 strongest channels per layer)</h3><div class=figs>")
        for layer in layers:
            act = session.activation(stored.id, layer)
            top = [f["channel"] for f in session.filters(stored.id, layer)][:16]
            out.append(_img(render.channel_grid(act, top, "viridis", nrow=4), f"feature maps of {layer}",
                            f"{layer}: {act.shape[0]} x {act.shape[1]} x {act.shape[2]}"))
        out.append("</div>")
    if attribution:
        out.append(f"<h3>Attribution for \u201c{html.escape(info.label(target))}\u201d</h3><div class=figs>")
        rows = []
        for method in attribution:
            tick(f"{stored.name}: {method}")
            heat = _attribution(info, method, x, target, cam).detach().float()
            d, i = deletion_insertion(info.model, x, heat, target)
            rows.append((method, d, i))
            where = f" ({cam})" if method in CAM_METHODS else ""
            out.append(_img(cnnviz.overlay(shown, heat), f"{method} map", f"{method}{where}: deletion {d:.3f}, "
                            f"insertion {i:.3f}"))
        out.append("</div><div class=scroll><table><tr><th>method</th><th>deletion AUC \u2193</th>"
                   "<th>insertion AUC \u2191</th></tr>" + "".join(
                       f"<tr><td>{m}</td><td class=n>{d:.3f}</td><td class=n>{i:.3f}</td></tr>" for m, d, i in rows)
                   + "</table></div>")
    if "inversion" in methods:
        tick(f"{stored.name}: inversion")
    if "inversion" in methods and layers:
        with session.model_lock:
            results = cnnviz.invert_layers(info.model, x, layers, iterations=inversion_steps, optimizer="adam",
                                           learning_rate=0.1, mean=info.mean, std=info.std)
        out.append(f"<h3>Feature inversion across depth ({inversion_steps} Adam steps)</h3><div class=figs>")
        for layer, r in results.items():
            img = render.show_input(r.image, info.mean, info.std)
            out.append(_img(img, f"inverted from {layer}", f"{layer}: SSIM {float(cnnviz.ssim(img, shown)):.3f}"))
        out.append("</div>")
    if "adversarial" in methods:
        tick(f"{stored.name}: adversarial")
        rows, last = [], None
        for e in eps:
            r = cnnviz.fgsm(info.model, x, target, eps=e / 255, mean=info.mean, std=info.std)
            after = int(r.prediction_after[0])
            p_true = float(torch.softmax(r.logits_after.float(), -1)[0, target])
            rows.append(f"<tr><td class=n>{e:g}/255</td><td>{html.escape(info.label(after))}</td>"
                        f"<td class=n>{p_true:.1%}</td><td>{'yes' if bool(r.success[0]) else 'no'}</td></tr>")
            last = (e, r, after)
        e, r, after = last
        out.append("<h3>Adversarial robustness (FGSM)</h3><div class=figs>"
                   + _img(render.show_input(r.adversarial, info.mean, info.std), "adversarial image",
                          f"eps {e:g}/255: {info.label(after)}")
                   + _img(render.perturbation_image(r.perturbation), "perturbation", "perturbation (stretched)")
                   + "</div><div class=scroll><table><tr><th>eps</th><th>prediction</th>"
                   f"<th>p({html.escape(info.label(target))})</th><th>flipped</th></tr>" + "".join(rows)
                   + "</table></div>")
    return "".join(out)
