"""Occlusion against a per-window loop; LIME's regression, segments and recovery of a
linear model's contributions; SLIC superpixels on a real photo."""
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import ndimage

import cnnviz
from _attribution_nets import small_net


def occlusion_reference(model, x, target, window, stride, baseline, probability=False):
    score = (lambda out: out.softmax(1)) if probability else (lambda out: out)
    with torch.no_grad():
        clean = score(model(x))[range(x.shape[0]), target]
        n, _, h, w = x.shape
        nh, nw = (h - window[0]) // stride[0] + 1, (w - window[1]) // stride[1] + 1
        scores = torch.zeros(n, nh, nw, dtype=x.dtype)
        total, count = torch.zeros(n, h, w, dtype=x.dtype), torch.zeros(n, h, w, dtype=x.dtype)
        for i in range(nh):
            for j in range(nw):
                rows = slice(i * stride[0], i * stride[0] + window[0])
                cols = slice(j * stride[1], j * stride[1] + window[1])
                xo = x.clone()
                xo[:, :, rows, cols] = baseline
                drop = clean - score(model(xo))[range(n), target]
                scores[:, i, j] = drop
                total[:, rows, cols] += drop.view(-1, 1, 1)
                count[:, rows, cols] += 1
    return scores, total / count.clamp(min=1)


def test_occlusion_equals_loop():
    net = small_net()
    x = torch.randn(2, 3, 13, 11, dtype=torch.float64)
    r = cnnviz.occlusion(net, x, [1, 2], window=(4, 3), stride=(3, 2), baseline=-0.5, batch_size=5)
    scores, heat = occlusion_reference(net, x, [1, 2], (4, 3), (3, 2), -0.5)
    torch.testing.assert_close(r.scores, scores)
    torch.testing.assert_close(r.map, heat)
    p = cnnviz.occlusion(net, x, 0, window=5, stride=4, score="probability")
    scores, heat = occlusion_reference(net, x, [0, 0], (5, 5), (4, 4), 0.0, probability=True)
    torch.testing.assert_close(p.scores, scores)
    torch.testing.assert_close(p.map, heat)


def test_occlusion_resnet20(resnet20, cifar_samples):
    path, label = cifar_samples[0]
    x = TF.normalize(TF.to_tensor(Image.open(path).convert("RGB")), [0.485, 0.456, 0.406],
                     [0.229, 0.224, 0.225]).unsqueeze(0)
    r = cnnviz.occlusion(resnet20, x, label, window=8, stride=4)
    scores, heat = occlusion_reference(resnet20, x, [label], (8, 8), (4, 4), 0.0)
    torch.testing.assert_close(r.scores, scores, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(r.map, heat, rtol=1e-4, atol=1e-4)


def test_occlusion_bad_input():
    net = small_net()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="larger than the image"):
        cnnviz.occlusion(net, x, window=9)
    with pytest.raises(ValueError, match="stride must be positive"):
        cnnviz.occlusion(net, x, window=2, stride=0)
    with pytest.raises(ValueError, match="score must be one of"):
        cnnviz.occlusion(net, x, window=2, score="rank")
    with pytest.raises(IndexError):
        cnnviz.occlusion(net, x, 10, window=2)


def test_weighted_ridge_matches_numpy():
    rng = np.random.default_rng(0)
    z = (rng.random((80, 7)) < 0.5).astype(float)
    y, w = rng.normal(size=80), rng.random(80)
    coef, intercept, r2 = cnnviz._C._weighted_ridge(torch.tensor(z), torch.tensor(y), torch.tensor(w), 1.0)
    # Reference: least squares on sqrt(w)-scaled rows with the penalty as extra rows.
    za = np.hstack([z, np.ones((80, 1))]) * np.sqrt(w)[:, None]
    pen = np.hstack([np.eye(7), np.zeros((7, 1))])
    sol = np.linalg.lstsq(np.vstack([za, pen]), np.concatenate([y * np.sqrt(w), np.zeros(7)]), rcond=None)[0]
    np.testing.assert_allclose(coef.numpy(), sol[:7], atol=1e-10)
    assert abs(intercept - sol[7]) < 1e-10
    pred = z @ sol[:7] + sol[7]
    ybar = np.average(y, weights=w)
    assert abs(r2 - (1 - np.sum(w * (y - pred) ** 2) / np.sum(w * (y - ybar) ** 2))) < 1e-10


def test_lime_recovers_linear_contributions():
    torch.manual_seed(0)
    weight = torch.randn(3, 12, 12, dtype=torch.float64)

    def linear(x):
        s = (x * weight).sum((1, 2, 3))
        return torch.stack([s, -s], 1)

    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    r = cnnviz.lime(linear, x, 0, segmentation="grid", segments=9, samples=60, ridge=1e-9, score="logit",
                    baseline=0.5, batch_size=16)
    assert r.segments.shape == (2, 12, 12)
    for i in range(2):
        seg = r.segments[i]
        contrib = torch.zeros(9, dtype=torch.float64).index_add_(0, seg.flatten(),
                                                                 ((x[i] - 0.5) * weight).sum(0).flatten())
        torch.testing.assert_close(r.weights[i], contrib, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(r.map[i], contrib[seg])
        assert r.r2[i] > 0.999999
    custom = torch.arange(144).view(12, 12) // 72  # two halves
    r2 = cnnviz.lime(linear, x[:1], 0, custom_segments=custom * 5, samples=20, ridge=1e-9, score="logit")
    assert r2.weights[0].shape == (2,) and r2.segments[0].unique().tolist() == [0, 1]


def test_slic_on_a_photo(data_dir):
    img = TF.to_tensor(Image.open(f"{data_dir}/images/coffee.png").convert("RGB").resize((160, 120)))
    labels = cnnviz.slic(img, segments=60, compactness=10)
    s = int(labels.max()) + 1
    assert labels.shape == (120, 160) and 30 <= s <= 120
    assert torch.bincount(labels.flatten()).min() > 0
    for k in range(s):
        _, components = ndimage.label((labels == k).numpy())
        assert components == 1
    # Segments are more uniform in color than grid cells of the same count.
    def spread(lab):
        return sum(img[:, lab == k].var(1).sum() * (lab == k).sum() for k in range(int(lab.max()) + 1)) / lab.numel()
    assert spread(labels) < spread(cnnviz.grid_segments(120, 160, s))


def test_lime_pretrained(resnet20, cifar_samples):
    path, label = cifar_samples[1]
    x = TF.normalize(TF.to_tensor(Image.open(path).convert("RGB")), [0.485, 0.456, 0.406],
                     [0.229, 0.224, 0.225]).unsqueeze(0)
    r = cnnviz.lime(resnet20, x, label, segments=16, samples=200)
    s = int(r.segments.max()) + 1
    assert r.weights[0].shape == (s,)
    torch.testing.assert_close(r.map[0], r.weights[0].float()[r.segments[0]])
    assert r.target.tolist() == [label]


def test_lime_bad_input():
    net = small_net()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="samples"):
        cnnviz.lime(net, x, samples=1)
    with pytest.raises(ValueError, match="keep_probability"):
        cnnviz.lime(net, x, keep_probability=0)
    with pytest.raises(ValueError, match="custom segments must have shape"):
        cnnviz.lime(net, x, custom_segments=torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="segmentation must be one of"):
        cnnviz.lime(net, x, segmentation="watershed")
    with pytest.raises(ValueError, match="SLIC"):
        cnnviz.lime(net, torch.randn(1, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="SLIC needs an RGB image"):
        cnnviz.slic(torch.rand(8, 8))
