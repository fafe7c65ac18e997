"""Attribution: which input pixels a prediction depends on.

Every method takes a model (``torch.nn.Module``, ``torch.jit.ScriptModule`` or a callable
returning logits; in eval mode), a batch ``x`` of shape (N, C, H, W) and a ``target``: None
for each sample's predicted class, an int for one class for all samples, or a list/tensor
of one class per sample. Gradients are taken with respect to the input only; the model's
parameters get no ``.grad``. Methods that expand the batch (noisy copies, path points,
masks, windows, perturbed images) run it in chunks of ``batch_size``.

The defaults shown in the signatures come from the C++ Options structs (``cnnviz._C``).
"""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Union

import torch

from . import _C, _plan
from ._options import fill_options
from ._progress import ProgressArg, _caller_level, run_native

__all__ = [
    "TargetLike", "Attribution", "IntegratedGradientsResult", "CamResult", "CamMap", "OcclusionResult",
    "LimeResult", "saliency", "smooth_grad", "guided_backprop", "guided_grad_cam", "grad_cam", "grad_cam_pp",
    "layer_cam", "score_cam", "integrated_gradients", "occlusion", "lime", "slic", "grid_segments",
]

TargetLike = Union[None, int, Sequence[int], torch.Tensor]

Attribution = _C.Attribution
IntegratedGradientsResult = _C.IntegratedGradientsResult
CamResult = _C.CamResult
CamMap = _C.CamMap
OcclusionResult = _C.OcclusionResult
LimeResult = _C.LimeResult

_SALIENCY = _C.SaliencyOptions()
_SMOOTH = _C.SmoothGradOptions()
_GUIDED = _C.GuidedBackpropOptions()
_GUIDED_CAM = _C.GuidedGradCamOptions()
_CAM = _C.CamOptions()
_IG = _C.IntegratedGradientsOptions()
_OCCLUSION = _C.OcclusionOptions()
_LIME = _C.LimeOptions()
_SLIC = _C.SlicOptions()


def _pair(v: Union[int, Sequence[int]]) -> List[int]:
    return [int(v)] if isinstance(v, int) else [int(i) for i in v]


def saliency(model, x: torch.Tensor, target: TargetLike = None, *,
             reduction: str = _SALIENCY.reduction) -> Attribution:
    """Vanilla gradient saliency (Simonyan et al. 2014).

    Returns an ``Attribution``: ``attribution`` (N, C, H, W) the signed gradient of each
    sample's target logit with respect to x, ``map`` (N, H, W) its absolute value reduced
    over channels (``reduction``: "max" or "mean"), ``target`` (N,), ``logits`` (N, K).
    """
    model = _plan.model_for(model, x)
    return _C.saliency(model, x, target, fill_options(_C.SaliencyOptions, locals()))


def smooth_grad(model, x: torch.Tensor, target: TargetLike = None, *, samples: int = _SMOOTH.samples,
                noise_level: float = _SMOOTH.noise_level, batch_size: int = _SMOOTH.batch_size,
                reduction: str = _SMOOTH.reduction, progress: ProgressArg = False) -> Attribution:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over ``samples`` noisy copies
    of each image, the noise's standard deviation being ``noise_level * (max - min)`` of
    that image. ``attribution`` (N, C, H, W) is the mean gradient, ``map`` (N, H, W) its
    absolute value reduced over channels. Targets are resolved on the clean images, which
    ride in front of the first batch of ``batch_size`` noisy copies when N < batch_size."""
    o = fill_options(_C.SmoothGradOptions, locals())
    total = x.shape[0] * samples if x.dim() == 4 else 0
    return run_native(_C.smooth_grad, progress, total, "smooth_grad", model, x, target, o)


def guided_backprop(model, x: torch.Tensor, target: TargetLike = None, *,
                    reduction: str = _GUIDED.reduction) -> Attribution:
    """Guided backprop (Springenberg et al. 2015): the input gradient with every ReLU
    (``nn.ReLU``, in-place, ``F.relu``, ReLU6) passing back only positive gradients through
    active units. Returns an ``Attribution`` like ``saliency``."""
    return _C.guided_backprop(model, x, target, fill_options(_C.GuidedBackpropOptions, locals()))


def guided_grad_cam(model, x: torch.Tensor, layer: str, target: TargetLike = None, *,
                    reduction: str = _GUIDED_CAM.reduction) -> Attribution:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop (N, C, H, W) times the
    Grad-CAM of ``layer`` upsampled to the input. Returns an ``Attribution``."""
    return _C.guided_grad_cam(model, x, layer, target, fill_options(_C.GuidedGradCamOptions, locals()))


def _cam(method: str, model, x, layer, target, targets, relu, batch_size, progress) -> CamResult:
    layers = [layer] if isinstance(layer, str) else list(layer)
    if targets is not None and target is not None:
        raise ValueError("cnnviz: pass either target or targets, not both")
    ts = [target] if targets is None else list(targets)
    o = fill_options(_C.CamOptions, locals())
    if method != "score_cam":  # the trace is measured to help single passes only (RESULTS.md)
        model = _plan.model_for(model, x, layers)
    else:                      # its masked forwards run without gradients
        model = _plan.forward_plan(model, x)
    return run_native(_C.cam, progress if method == "score_cam" else False, None, method,
                      model, x, layers, ts, method, o)


_CAM_DOC = """

    ``layer`` is a qualified module name with a spatial output (N, C, h, w) (``"features.18"``,
    ``"layer4"``), or a list of them. ``targets`` (a list of target specifications) computes
    several targets from the same forward pass instead of one ``target``.

    Returns a ``CamResult``: ``maps`` holds one ``CamMap`` per layer and target (layer-major)
    with ``map`` (N, h, w) at the layer's resolution and ``upsampled`` (N, H, W) bilinear to
    the input; ``result.map`` / ``result.upsampled`` / ``result.target`` are those of the
    first; ``result.at(layer, k)`` picks one. ``relu=False`` keeps negative evidence.
    """


def grad_cam(model, x: torch.Tensor, layer: Union[str, Sequence[str]], target: TargetLike = None, *,
             targets: Optional[Sequence[TargetLike]] = None, relu: bool = _CAM.relu) -> CamResult:
    return _cam("grad_cam", model, x, layer, target, targets, relu, _CAM.batch_size, False)


def grad_cam_pp(model, x: torch.Tensor, layer: Union[str, Sequence[str]], target: TargetLike = None, *,
                targets: Optional[Sequence[TargetLike]] = None, relu: bool = _CAM.relu) -> CamResult:
    return _cam("grad_cam_pp", model, x, layer, target, targets, relu, _CAM.batch_size, False)


def layer_cam(model, x: torch.Tensor, layer: Union[str, Sequence[str]], target: TargetLike = None, *,
              targets: Optional[Sequence[TargetLike]] = None, relu: bool = _CAM.relu) -> CamResult:
    return _cam("layer_cam", model, x, layer, target, targets, relu, _CAM.batch_size, False)


def score_cam(model, x: torch.Tensor, layer: Union[str, Sequence[str]], target: TargetLike = None, *,
              targets: Optional[Sequence[TargetLike]] = None, relu: bool = _CAM.relu,
              batch_size: int = _CAM.batch_size,
              progress: ProgressArg = False) -> CamResult:
    return _cam("score_cam", model, x, layer, target, targets, relu, batch_size, progress)


grad_cam.__doc__ = """Grad-CAM (Selvaraju et al. 2017): ReLU(sum_k w_k A_k) with w_k the
    spatial mean of the target logit's gradient with respect to channel k.""" + _CAM_DOC
grad_cam_pp.__doc__ = """Grad-CAM++ (Chattopadhyay et al. 2018), closed form: w_k = sum_ij
    alpha_ij ReLU(g_ij) with alpha = g^2 / (2 g^2 + sum_ab A_ab g^3).""" + _CAM_DOC
layer_cam.__doc__ = """LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(g_k) * A_k) with
    element-wise weights; informative at shallow layers too.""" + _CAM_DOC
score_cam.__doc__ = """Score-CAM (Wang et al. 2020): ReLU(sum_k s_k A_k) with s_k the
    target's softmax probability for x masked by channel k (upsampled, scaled to [0, 1]).
    Runs N * C masked forwards, ``batch_size`` at a time; no gradients.""" + _CAM_DOC


def integrated_gradients(model, x: torch.Tensor, target: TargetLike = None, *,
                         baseline: Union[str, torch.Tensor] = _IG.baseline, steps: Optional[int] = None,
                         method: str = _IG.method, tolerance: Optional[float] = None,
                         initial_steps: int = _IG.initial_steps, max_passes: int = _IG.max_passes,
                         batch_size: int = _IG.batch_size, blur_sigma: float = _IG.blur_sigma,
                         mean: Sequence[float] = tuple(_IG.mean), std: Sequence[float] = tuple(_IG.std),
                         reduction: str = _IG.reduction, progress: ProgressArg = False) -> IntegratedGradientsResult:
    """Integrated gradients (Sundararajan et al. 2017): ``(x - baseline)`` times the mean
    gradient along the straight path from the baseline to x.

    ``baseline``: "zeros" (zeros in normalized space), "black" (pixels 0, normalized with
    ``mean``/``std``), "blur" (x blurred with a Gaussian of ``blur_sigma`` pixels), "uniform"
    (uniform pixel noise, normalized), or a tensor (C, H, W), (1, C, H, W) or (N, C, H, W).

    Two modes. Fixed steps (default): ``steps`` points (None: {steps}) of ``method``,
    "riemann_trapezoid" (``steps`` >= 2 equally spaced points, endpoints included) or
    "gauss_legendre", for every image. To a tolerance: with ``tolerance`` set, each image's
    path is refined where the integrand changes (trapezoid panels, starting from
    ``initial_steps`` uniform points, bisected where their error is largest; the error of each
    panel is known exactly because the forward pass at a point gives f there) until
    ``max(|delta|, sqrt(sum of squared panel errors)) <= tolerance * |f(x) - f(baseline)|``
    or the image has used ``max_passes`` points; the new points of all images share batches.
    ``steps`` and ``method`` do not apply then. A RuntimeWarning names the images that ran out
    of passes first.

    Returns an ``IntegratedGradientsResult`` with ``attribution`` (N, C, H, W), ``map``
    (N, H, W), ``baseline``, ``score`` f(x), ``baseline_score`` f(baseline), ``delta`` (N,) =
    sum(attribution) - (f(x) - f(baseline)), which completeness says should be near 0,
    ``passes`` (N,): the path points per image, one forward+backward pass each (plus one
    forward-only pass each for x and the baseline), and, with ``tolerance``, ``converged``
    (N,) bool and ``relative_error`` (N,), the quantity compared with the tolerance.
    """
    custom_baseline = None
    if isinstance(baseline, torch.Tensor):
        custom_baseline, baseline = baseline, "custom"
    mean, std = list(mean), list(std)
    images = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() == 4 else 0
    if tolerance is None:
        total = images * (_IG.steps if steps is None else steps)
    else:
        if steps is not None:
            raise ValueError("cnnviz: steps fixes the number of path points and tolerance chooses it: give one of "
                             "them (with tolerance, initial_steps and max_passes bound the points)")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
            raise TypeError(f"cnnviz: tolerance must be a number, got {type(tolerance).__name__}")
        tolerance = float(tolerance)
        total = images * max_passes
    o = fill_options(_C.IntegratedGradientsOptions, locals(), none_is_default={"steps"})
    r = run_native(_C.integrated_gradients, progress, total, "integrated_gradients", model, x, target, o)
    if tolerance is not None and not (r.stopped_early or r.interrupted):
        missed = (~r.converged).nonzero().flatten().tolist()
        if missed:
            worst = r.relative_error.max().item()
            warnings.warn(f"cnnviz: integrated_gradients: {len(missed)} of {len(r.converged)} images (indices "
                          f"{missed[:10]}{' ...' if len(missed) > 10 else ''}) did not reach tolerance {tolerance} "
                          f"within max_passes={max_passes} (worst relative error {worst:.3g}); raise max_passes "
                          f"or the tolerance", RuntimeWarning, stacklevel=_caller_level())
    return r


# The fixed-mode default comes from the Options struct, like every other default.
integrated_gradients.__doc__ = integrated_gradients.__doc__.replace("{steps}", str(_IG.steps))


def occlusion(model, x: torch.Tensor, target: TargetLike = None, *,
              window: Union[int, Sequence[int]] = tuple(_OCCLUSION.window),
              stride: Union[int, Sequence[int]] = tuple(_OCCLUSION.stride), baseline: float = _OCCLUSION.baseline,
              score: str = _OCCLUSION.score, batch_size: int = _OCCLUSION.batch_size,
              progress: ProgressArg = False, incremental: Optional[bool] = None) -> OcclusionResult:
    """Occlusion sensitivity (Zeiler & Fergus 2014): each ``window`` (all channels) at
    positions 0, stride, 2 stride, ... is set to ``baseline`` (in normalized space: 0 is the
    mean color) and the drop of the target's ``score`` ("logit" or "probability") recorded.

    ``incremental``: for a ``torch.nn.Module`` in eval mode that ``torch.fx`` can trace, each
    window recomputes only the part of each layer it changes, from the clean image's cached
    activations (Nakandala et al. 2019), and runs the rest of the network in full from the
    first op it cannot follow; the scores equal full inference's to rounding. None (default):
    incremental where possible and worth it (it saves at least 20% of the FLOPs and 2 GFLOP
    per image: large images, small windows), full inference otherwise; True: incremental or a
    ``ValueError`` saying why not; False: always full inference.

    Returns an ``OcclusionResult``: ``scores`` (N, nh, nw) the drop per window position,
    ``map`` (N, H, W) the mean drop of the windows covering each pixel, ``target``, ``logits``;
    ``incremental`` says which way it ran.
    """
    o = fill_options(_C.OcclusionOptions, dict(locals(), window=_pair(window), stride=_pair(stride)))
    if incremental not in (None, True, False):
        raise ValueError(f"cnnviz: incremental must be None, True or False, got {incremental!r}")
    runner = None
    if incremental is not False:
        from ._incremental_occlusion import prepare

        runner, _ = prepare(model, x, window, stride, batch_size, required=incremental is True, baseline=baseline)
    result = run_native(_C.occlusion, progress, None, "occlusion",
                        _plan.forward_plan(model, x) if runner is None else runner, x, target, o)
    result.incremental = runner is not None and runner.full_batches == 0
    return result


def lime(model, x: torch.Tensor, target: TargetLike = None, *, segmentation: str = _LIME.segmentation,
         segments: int = _SLIC.segments, compactness: float = _SLIC.compactness,
         slic_iterations: int = _SLIC.iterations, custom_segments: Optional[torch.Tensor] = None,
         samples: int = _LIME.samples, keep_probability: float = _LIME.keep_probability,
         kernel_width: float = _LIME.kernel_width, ridge: float = _LIME.ridge, baseline: float = _LIME.baseline,
         score: str = _LIME.score, mean: Sequence[float] = tuple(_LIME.mean), std: Sequence[float] = tuple(_LIME.std),
         batch_size: int = _LIME.batch_size,
         progress: ProgressArg = False) -> LimeResult:
    """LIME (Ribeiro et al. 2016) for images: ``samples`` random on/off patterns of each
    image's segments (off segments set to ``baseline``; the first pattern keeps all), the
    target's ``score`` for each, and a ridge regression (penalty ``ridge``) weighted by
    LIME's kernel sqrt(exp(-d^2 / kernel_width^2)) of the cosine distance d to all-on.

    Segments: ``segmentation="slic"`` (superpixels computed in C++ on the image
    denormalized with ``mean``/``std``), ``"grid"``, or ``custom_segments`` (H, W) or (N, H, W).
    Returns a ``LimeResult``: ``segments`` (N, H, W), ``weights`` (a list of (S_n,) tensors),
    ``intercept``, ``r2`` (N,), ``map`` (N, H, W) each pixel's segment weight.
    """
    o = fill_options(_C.LimeOptions, dict(locals(), mean=list(mean), std=list(std)))
    o.superpixels = _slic_options(segments, compactness, slic_iterations)
    total = x.shape[0] * samples if x.dim() == 4 else 0
    return run_native(_C.lime, progress, total, "lime", _plan.forward_plan(model, x), x, target, o)


def _slic_options(segments: int, compactness: float, iterations: int):
    return fill_options(_C.SlicOptions, dict(segments=segments, compactness=compactness, iterations=iterations))


def slic(image: torch.Tensor, segments: int = _SLIC.segments, compactness: float = _SLIC.compactness,
         iterations: int = _SLIC.iterations) -> torch.Tensor:
    """SLIC superpixels (Achanta et al. 2012) of an RGB image (3, H, W) with values in [0, 1]
    -> (H, W) int64 labels 0..S-1, each one connected region."""
    return _C.slic(image, _slic_options(segments, compactness, iterations))


def grid_segments(height: int, width: int, segments: int = _SLIC.segments) -> torch.Tensor:
    """A regular grid of about ``segments`` cells -> (height, width) int64 labels."""
    return _C.grid_segments(height, width, segments)
