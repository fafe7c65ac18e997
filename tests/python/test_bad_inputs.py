"""The bad-input matrix: every public function, given bad input, raises the documented
exception type with a message that names the problem, and leaves the model as it found it
(no hooks left, requires_grad flags and train/eval modes unchanged)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import cnnviz

MEAN = torch.tensor(cnnviz.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(cnnviz.IMAGENET_STD).view(1, 3, 1, 1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.fc(self.pool(h).flatten(1))


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = Net().eval()
    m.conv1.bias.requires_grad_(False)   # a user's own freeze must survive
    m.pool.train()                        # and so must a mixed train/eval state
    return m


def state(m):
    hooks = [(len(x._forward_hooks), len(x._forward_pre_hooks), len(x._backward_hooks)) for x in m.modules()]
    return (hooks, [p.requires_grad for p in m.parameters()], [x.training for x in m.modules()],
            [p.grad is None for p in m.parameters()],
            len(torch.nn.modules.module._global_forward_hooks))


X = (torch.rand(2, 3, 16, 16) - MEAN) / STD
IMG = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8)
NAN = X.clone()
NAN[0, 0, 0, 0] = float("nan")
V = ValueError

# (id, call(model), exception type, message pattern)
CASES = [
    # models and capture
    ("layer_names-not-a-model", lambda m: cnnviz.layer_names(42), V, "expected a torch.nn.Module"),
    ("summary-bad-size", lambda m: cnnviz.summary(m, (3, 16)), V, "input_size|shape"),
    ("capture-unknown-layer", lambda m: cnnviz.capture(m, X, "conv3"), V, "unknown layer.*conv"),
    ("capture-bad-call-index", lambda m: cnnviz.capture(m, X, "conv1:5"), IndexError, "conv1"),
    ("capture-3d-input", lambda m: cnnviz.capture(m, X[0], "conv1"), V, r"\(N, C, H, W\)"),
    ("capture-nan", lambda m: cnnviz.capture(m, NAN, "conv1"), V, "NaN"),
    ("capture-int-input", lambda m: cnnviz.capture(m, X.long(), "conv1"), V, "floating point"),
    ("capture-not-tensor", lambda m: cnnviz.capture(m, [1, 2], "conv1"), V, "torch.Tensor"),
    ("capture-layer-not-str", lambda m: cnnviz.capture(m, X, [1]), V, "strings"),
    ("capture-empty-batch", lambda m: cnnviz.capture(m, X[:0], "conv1"), V, "empty"),
    ("feature_maps-unknown", lambda m: cnnviz.feature_maps(m, X, ["nope"]), V, "unknown layer"),
    ("feature_maps-wrong-channels", lambda m: cnnviz.feature_maps(m, X[:, :2], ["conv2"]), V,
     "failed on an input of shape"),
    ("filter_weights-not-conv", lambda m: cnnviz.filter_weights(m, "relu"), V, "relu"),
    ("filter_weights-unknown", lambda m: cnnviz.filter_weights(m, "conv9"), V, "unknown layer"),
    ("predict-k-zero", lambda m: cnnviz.predict(m, X, k=0, labels=None), V, "k"),
    ("predict-too-few-labels", lambda m: cnnviz.predict(m, X, k=2, labels=["a"]), V, "label"),
    # optimization
    ("invert-unknown-layer", lambda m: cnnviz.invert(m, X, "conv7", iterations=1), V, "unknown layer"),
    ("invert-zero-iterations", lambda m: cnnviz.invert(m, X, "conv1", iterations=0), V, "iterations"),
    ("invert-bad-optimizer", lambda m: cnnviz.invert(m, X, "conv1", iterations=1, optimizer="lbfgs"), V, "optimizer"),
    ("invert-bad-init", lambda m: cnnviz.invert(m, X, "conv1", iterations=1, init="ones"), V, "init"),
    ("invert-init-shape", lambda m: cnnviz.invert(m, X, "conv1", iterations=1, init=X[:1, :, :8]), V, "shape"),
    ("invert-nan", lambda m: cnnviz.invert(m, NAN, "conv1", iterations=1), V, "NaN"),
    ("invert_layers-empty", lambda m: cnnviz.invert_layers(m, X, [], iterations=1), V, "layer"),
    ("inversion_loss-shape", lambda m: cnnviz.inversion_loss(m, X, X[:, :, :8], "conv1"), V, "shape"),
    ("maximize-no-objective", lambda m: cnnviz.maximize(m, "conv2"), V, "exactly one"),
    ("maximize-channel-range", lambda m: cnnviz.maximize(m, "conv2", channel=99, iterations=1, size=16), IndexError,
     "channel 99 is out of range"),
    ("maximize-position-alone", lambda m: cnnviz.maximize(m, "conv2", logit=1, position=(1, 1)), V, "position"),
    ("maximize-bad-size", lambda m: cnnviz.maximize(m, "conv2", channel=0, iterations=1, size=0), V, "size"),
    ("maximize-bad-param", lambda m: cnnviz.maximize(m, "conv2", channel=0, iterations=1, size=16,
                                                     parameterization="wavelet"), V, "parameterization"),
    ("top_filters-k-zero", lambda m: cnnviz.top_filters(m, X, "conv2", k=0), V, "k must be at least 1"),
    ("top_filters-k-too-big", lambda m: cnnviz.top_filters(m, X, "conv2", k=99), V, "exceeds"),
    ("top_filters-reduction", lambda m: cnnviz.top_filters(m, X, "conv2", reduction="median"), V, "reduction"),
    ("deep_dream-octaves", lambda m: cnnviz.deep_dream(m, X, "conv2", octaves=0, iterations=1), V, "octaves"),
    ("deep_dream-overflow", lambda m: cnnviz.deep_dream(m, X, "conv2", octaves=2 ** 40, iterations=2 ** 40,
                                                        octave_scale=1.0), V, "too large|octave"),
    ("deep_dream-huge-octaves", lambda m: cnnviz.deep_dream(m, X, "conv2", octaves=2 ** 40, iterations=1,
                                                            octave_scale=1.0), V, "too many"),
    ("deep_dream-unknown", lambda m: cnnviz.deep_dream(m, X, "conv5", iterations=1), V, "unknown layer"),
    # attribution
    ("saliency-target-range", lambda m: cnnviz.saliency(m, X, target=9), IndexError, "out of range"),
    ("saliency-bool-target", lambda m: cnnviz.saliency(m, X, target=True), V, "bool"),
    ("saliency-target-list-len", lambda m: cnnviz.saliency(m, X, target=[1, 2, 3]), V, "target"),
    ("saliency-reduction", lambda m: cnnviz.saliency(m, X, reduction="min"), V, "reduction"),
    ("saliency-nan", lambda m: cnnviz.saliency(m, NAN), V, "NaN"),
    ("smooth_grad-samples", lambda m: cnnviz.smooth_grad(m, X, samples=0), V, "samples"),
    ("smooth_grad-overflow", lambda m: cnnviz.smooth_grad(m, X, samples=2 ** 62), V, "too large"),
    ("smooth_grad-noise", lambda m: cnnviz.smooth_grad(m, X, noise_level=-1.0), V, "noise_level"),
    ("smooth_grad-batch", lambda m: cnnviz.smooth_grad(m, X, batch_size=0), V, "batch_size"),
    ("guided_backprop-target", lambda m: cnnviz.guided_backprop(m, X, target=-5), IndexError, "out of range"),
    ("guided_grad_cam-unknown", lambda m: cnnviz.guided_grad_cam(m, X, "conv9"), V, "unknown layer"),
    ("grad_cam-not-spatial", lambda m: cnnviz.grad_cam(m, X, "fc"), V, "fc|spatial"),
    ("grad_cam-target-and-targets", lambda m: cnnviz.grad_cam(m, X, "conv2", target=1, targets=[1]), V, "either"),
    ("grad_cam_pp-unknown", lambda m: cnnviz.grad_cam_pp(m, X, "conv0"), V, "unknown layer"),
    ("layer_cam-target", lambda m: cnnviz.layer_cam(m, X, "conv2", target=11), IndexError, "out of range"),
    ("score_cam-batch", lambda m: cnnviz.score_cam(m, X, "conv2", batch_size=0), V, "batch_size"),
    ("integrated_gradients-steps", lambda m: cnnviz.integrated_gradients(m, X, steps=0), V, "steps"),
    ("integrated_gradients-overflow", lambda m: cnnviz.integrated_gradients(m, X, steps=2 ** 62), V, "too large"),
    ("integrated_gradients-method", lambda m: cnnviz.integrated_gradients(m, X, method="simpson"), V, "method"),
    ("integrated_gradients-baseline", lambda m: cnnviz.integrated_gradients(m, X, baseline="grey"), V, "baseline"),
    ("occlusion-window-too-big", lambda m: cnnviz.occlusion(m, X, window=64), V, "larger than the image"),
    ("occlusion-stride-zero", lambda m: cnnviz.occlusion(m, X, window=4, stride=0), V, "stride"),
    ("lime-samples", lambda m: cnnviz.lime(m, X, samples=1), V, "samples"),
    ("lime-overflow", lambda m: cnnviz.lime(m, X, samples=2 ** 62, segmentation="grid"), V, "too large"),
    ("lime-segmentation", lambda m: cnnviz.lime(m, X, segmentation="watershed"), V, "segmentation"),
    ("slic-segments", lambda m: cnnviz.slic(IMG.permute(2, 0, 1).float() / 255, segments=0), V, "segments"),
    ("slic-channels-last", lambda m: cnnviz.slic(IMG, segments=4), V, r"\(3, H, W\)"),
    ("grid_segments-size", lambda m: cnnviz.grid_segments(0, 4), V, "height|size|positive"),
    # adversarial
    ("fgsm-eps", lambda m: cnnviz.fgsm(m, X, eps=-1.0), V, "eps must be non-negative"),
    ("fgsm-outside-range", lambda m: cnnviz.fgsm(m, X * 5), V, "outside the pixel range"),
    ("fgsm-mean-len", lambda m: cnnviz.fgsm(m, X, mean=[0.5, 0.5], std=[0.5, 0.5]), V, "mean and std"),
    ("pgd-steps", lambda m: cnnviz.pgd(m, X, steps=0), V, "steps must be positive"),
    ("pgd-targeted-no-target", lambda m: cnnviz.pgd(m, X, targeted=True), V, "targeted attack needs"),
    ("pgd-outside-range", lambda m: cnnviz.pgd(m, X - 10, eps=0.0), V, "outside the pixel range"),
    ("layer_divergence-shape", lambda m: cnnviz.layer_divergence(m, X, X[:1], ["conv1"]), V, "differ in shape"),
    ("layer_divergence-unknown", lambda m: cnnviz.layer_divergence(m, X, X, ["conv8"]), V, "unknown layer"),
    # analyses (the list: layers of different sample counts, an images iterable that
    # yields nothing, a non-spatial layer where a spatial one is needed, a map of the wrong shape)
    ("cka-sample-counts", lambda m: cnnviz.CKAAccumulator(["a"], ["b"]).update([torch.rand(4, 3)], [torch.rand(3, 3)]),
     V, "different sample counts"),
    ("cka-empty-iterable", lambda m: cnnviz.cka(m, None, iter([]), ["conv1"]), V, "yielded no images"),
    ("filter_statistics-empty-iterable", lambda m: cnnviz.filter_statistics(m, [], "conv2"), V, "yielded no images"),
    ("filter_redundancy-empty-iterable", lambda m: cnnviz.filter_redundancy(m, "conv2", []), V, "yielded no images"),
    ("sanity_check-cam-not-spatial", lambda m: cnnviz.sanity_check("grad_cam", m, X, layers_from_top=1, layer="fc",
                                                                   ssim=False), V, "'fc' is not spatial"),
    ("sanity_check-ssim-small-maps", lambda m: cnnviz.sanity_check("grad_cam", m, X[:, :, :8, :8], layers_from_top=1,
                                                                   layer="conv2"), V, "smaller than SSIM"),
    ("deletion_insertion-map-shape", lambda m: cnnviz.deletion_insertion(m, X, torch.rand(2, 16, 10)), V,
     "does not fit the image"),
    ("deletion_insertion-flat-map", lambda m: cnnviz.deletion_insertion(m, X, torch.rand(2, 4)), V,
     "one map per image"),
    ("deletion_insertion-batch-size", lambda m: cnnviz.deletion_insertion(m, X, torch.rand(2, 16, 16), batch_size=0),
     V, "batch_size must be at least 1"),
    ("layer_information-empty", lambda m: cnnviz.layer_information(m, X[:1], [], iterations=1), V, "empty"),
    # metrics and regularizers
    ("ssim-normalized", lambda m: cnnviz.ssim(X, X + 0.1), V, "data_range"),
    ("ssim-shape", lambda m: cnnviz.ssim(X, X[:1]), V, "differ in shape"),
    ("ssim_map-window", lambda m: cnnviz.ssim_map(X * STD + MEAN, X * STD + MEAN, window_size=64), V, "window"),
    ("psnr-normalized", lambda m: cnnviz.psnr(X, X * 0.9), V, "data_range"),
    ("psnr-dtype", lambda m: cnnviz.psnr(IMG, IMG.float()), V, "dtype"),
    ("alpha_norm-alpha", lambda m: cnnviz.alpha_norm(X, 0.0), V, "alpha"),
    ("total_variation-beta", lambda m: cnnviz.total_variation(X, -1.0), V, "beta"),
    ("euclidean_loss-shape", lambda m: cnnviz.euclidean_loss(X, X[:1]), V, "shape"),
    # images
    ("load_image-missing", lambda m: cnnviz.load_image("/nonexistent/cat.jpg"), FileNotFoundError, "cat.jpg"),
    ("load_image-nul", lambda m: cnnviz.load_image("cat.jpg\0.png"), V, "NUL"),
    ("load_image-directory", lambda m: cnnviz.load_image("/tmp"), IsADirectoryError, "/tmp"),
    ("load_image-device", lambda m: cnnviz.load_image("/dev/null"), V, "character device"),
    ("decode_image-not-image", lambda m: cnnviz.decode_image(b"hello world, not an image"), V, "not a JPEG"),
    ("decode_image-empty", lambda m: cnnviz.decode_image(b""), V, "empty"),
    ("decode_image-wrong-type", lambda m: cnnviz.decode_image("a string"), TypeError, "bytes"),
    ("encode_image-format", lambda m: cnnviz.encode_image(IMG, "tiff"), V, "tiff"),
    ("encode_image-quality", lambda m: cnnviz.encode_image(IMG, "jpeg", quality=0), V, "quality"),
    ("save_image-extension", lambda m: cnnviz.save_image(IMG, "/tmp/cnnviz_out.gifx"), V, "extension"),
    ("save_image-nul", lambda m: cnnviz.save_image(IMG, "/tmp/out\0.png"), V, "NUL"),
    ("preprocess-normalized", lambda m: cnnviz.preprocess(X[0].permute(1, 2, 0), size=8), V, "deprocess"),
    ("preprocess-batch", lambda m: cnnviz.preprocess(X, size=8), V, "model input"),
    ("preprocess-size", lambda m: cnnviz.preprocess(IMG, size=(1, 2, 3)), V, "size"),
    ("preprocess-resize", lambda m: cnnviz.preprocess(IMG, resize=-1), V, "resize"),
    ("deprocess-not-tensor", lambda m: cnnviz.deprocess(np.zeros((3, 4, 4))), TypeError, "tensor"),
    ("resize_image-size", lambda m: cnnviz.resize_image(IMG, (0, 4)), V, "size|positive"),
    ("colormap-name", lambda m: cnnviz.colormap(torch.rand(4, 4), "rainbowz"), V, "rainbowz"),
    ("colormap-3d", lambda m: cnnviz.colormap(torch.rand(2, 4, 4)), V, r"\(H, W\)"),
    ("overlay-alpha", lambda m: cnnviz.overlay(IMG, torch.rand(4, 4), alpha=2.0), V, "alpha"),
    ("make_grid-nrow", lambda m: cnnviz.make_grid(X * STD + MEAN, nrow=0), V, "nrow"),
    ("as_image_tensor-type", lambda m: cnnviz.as_image_tensor("cat"), TypeError, "expected an image"),
    ("as_image_tensor-int-range", lambda m: cnnviz.as_image_tensor(np.full((4, 4, 3), 300, np.int32)), V, r"\[0, 255\]"),
]


def test_the_matrix_is_broad():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, model):
    _, call, exc, pattern = case
    before = state(model)
    with pytest.raises(exc) as info:
        call(model)
    message = str(info.value)
    assert "cnnviz" in message or exc in (FileNotFoundError, IsADirectoryError), message
    import re
    assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"
    assert "Exception raised from" not in message, "a C++ backtrace leaked"
    assert state(model) == before
