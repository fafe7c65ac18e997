"""The per-batch work of a run: attribution methods (one row per image) and analysis jobs
(streaming accumulators whose per-chunk state is stored and reduced at the end)."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import attribution as _attr
from .. import models as _models

MethodSpec = Union[str, Tuple[str, Mapping[str, Any]], Mapping[str, Any]]

ALIASES = {"ig": "integrated_gradients", "gradcam": "grad_cam", "grad_cam++": "grad_cam_pp",
           "smoothgrad": "smooth_grad"}
CAMS = ("grad_cam", "grad_cam_pp", "layer_cam", "score_cam")
# Methods whose output depends on random numbers: each batch reseeds from the run's seed.
STOCHASTIC = ("smooth_grad", "lime")
ATTRIBUTIONS = ("saliency", "smooth_grad", "guided_backprop", "integrated_gradients", "occlusion", "lime") + CAMS


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


class Method:
    """One attribution method with fixed options. ``compute`` returns arrays with one row per
    image: ``map`` (N, h, w) float32 and method-specific extras."""

    kind = "attribution"

    def __init__(self, name: str, options: Mapping[str, Any], group: Optional[str] = None) -> None:
        fn = getattr(_attr, name)
        params = inspect.signature(fn).parameters
        keyword = {k for k, p in params.items() if p.kind == p.KEYWORD_ONLY} | {"layer"}
        unknown = set(options) - keyword - {"attributions", "faithfulness"}
        if unknown:
            raise ValueError(f"cnnviz: {name} has no option {sorted(unknown)}; it takes {sorted(keyword)}")
        self.name, self.group, self.fn = name, group or name, fn
        self.options = dict(options)
        self.store_attributions = bool(self.options.pop("attributions", False))
        # Deletion/insertion AUCs of each map: True, or a dict of deletion_insertion's options.
        faith = self.options.pop("faithfulness", False)
        if faith not in (True, False, None) and not isinstance(faith, Mapping):
            raise ValueError(f"cnnviz: faithfulness must be True/False or a dict of deletion_insertion options, got {faith!r}")
        self.faithfulness: Optional[Dict[str, Any]] = dict(faith) if isinstance(faith, Mapping) else ({} if faith else None)
        if self.faithfulness is not None and not hasattr(_attr_root(), "deletion_insertion"):
            raise ValueError("cnnviz: faithfulness needs cnnviz.deletion_insertion, which this build lacks")

    def resolve(self, model, example: torch.Tensor) -> None:
        """Fills in what depends on the model: the CAM layer (the last top-level module with a
        spatial output) when none was given."""
        if self.name in CAMS and "layer" not in self.options:
            self.options["layer"] = default_cam_layer(model, example)

    def settings(self) -> Dict[str, Any]:
        s = {"method": self.name, **self.options}
        if self.store_attributions:
            s["attributions"] = True
        if self.faithfulness is not None:
            s["faithfulness"] = self.faithfulness or True
        return s

    def compute(self, model, x: torch.Tensor, target: Optional[torch.Tensor]
                ) -> Tuple[Dict[str, np.ndarray], torch.Tensor, torch.Tensor]:
        """(arrays, logits (N, K), target (N,)) for the batch x; ``target`` None explains the
        predicted classes."""
        opts = dict(self.options)
        out: Dict[str, np.ndarray] = {}
        if self.name in CAMS:
            layer = opts.pop("layer")
            r = self.fn(model, x, layer, target, **opts)
            out["map"] = _np(r.map)
            heat = r.upsampled
        else:
            r = self.fn(model, x, target, **opts)
            out["map"] = _np(r.map)
            heat = r.map
            if self.store_attributions and hasattr(r, "attribution"):
                out["attribution"] = _np(r.attribution)
        if self.name == "integrated_gradients":
            out["delta"] = _np(r.delta).astype(np.float32)
            out["baseline_score"] = _np(r.baseline_score).astype(np.float32)
        if self.faithfulness is not None:
            fi = _attr_root().deletion_insertion(model, x, heat, r.target, **self.faithfulness)
            out["deletion_auc"] = _np(torch.as_tensor(fi.deletion_auc)).astype(np.float32)
            out["insertion_auc"] = _np(torch.as_tensor(fi.insertion_auc)).astype(np.float32)
        return out, r.logits.detach(), r.target


def _attr_root():
    import cnnviz

    return cnnviz


def default_cam_layer(model, example: torch.Tensor) -> str:
    """The last top-level child of ``model`` whose output is (N, C, h, w) with h, w > 1
    (``layer3`` of the CIFAR ResNets, ``features`` of MobileNetV2, ``layer4`` of ResNet-50)."""
    children = [name for name, _ in model.named_children()] if hasattr(model, "named_children") else []
    if not children:
        raise ValueError("cnnviz: cannot choose a CAM layer for this model; pass layer=")
    with torch.no_grad():
        outs = _models.feature_maps(model, example[:1], children)
    spatial = [n for n in children if n in outs and outs[n].dim() == 4 and min(outs[n].shape[2:]) > 1]
    if not spatial:
        raise ValueError("cnnviz: no top-level module with a spatial output; pass layer= for the CAM")
    return spatial[-1]


def make_methods(specs: Union[MethodSpec, Sequence[MethodSpec], Mapping[str, Mapping[str, Any]]],
                 analyses: Optional[Mapping[str, Callable[..., Any]]] = None) -> List[Any]:
    """``["saliency", ("integrated_gradients", {"steps": 32}), {"method": "grad_cam", "layer":
    "layer3", "name": "cam3"}]`` (or a dict name -> options) -> Method / analysis objects.
    ``name`` sets the store group (default: the method's name); groups must be unique."""
    if isinstance(specs, (str, tuple, Method)) or getattr(specs, "kind", None) == "analysis":
        specs = [specs]
    if isinstance(specs, Mapping) and "method" not in specs:
        specs = list(specs.items())
    result, groups = [], set()
    for spec in specs:
        if isinstance(spec, Method) or getattr(spec, "kind", None) == "analysis":
            if spec.group in groups:
                raise ValueError(f"cnnviz: method {spec.group!r} twice; give one of them name=")
            groups.add(spec.group)
            result.append(spec)
            continue
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, tuple) and len(spec) == 2:
            name, options = spec[0], dict(spec[1] or {})
        elif isinstance(spec, Mapping):
            options = dict(spec)
            name = options.pop("method", None)
            if name is None:
                raise ValueError(f"cnnviz: a method given as a dict needs 'method': {spec}")
        else:
            raise ValueError(f"cnnviz: a method is a name, (name, options) or a dict, got {spec!r}")
        name = ALIASES.get(str(name).lower(), str(name).lower())
        group = options.pop("name", None) or name
        if group in groups:
            raise ValueError(f"cnnviz: method {group!r} twice; give one of them name=")
        groups.add(group)
        if name in ATTRIBUTIONS:
            result.append(Method(name, options, group))
        elif analyses and name in analyses:
            result.append(analyses[name](group=group, **options))
        else:
            known = sorted(ATTRIBUTIONS + tuple(analyses or ()) + tuple(ALIASES))
            raise ValueError(f"cnnviz: unknown method {name!r}; choose from {', '.join(known)}")
    if not result:
        raise ValueError("cnnviz: no methods given")
    return result
