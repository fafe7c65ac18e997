"""deletion_insertion, sanity_check, rank_correlation, layer_information and
adversarial_report: against straightforward PyTorch loops written here, and on the
pretrained sample networks."""
import copy
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

import cnnviz

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def imagenet_batch(paths):
    imgs = [TF.to_tensor(TF.center_crop(TF.resize(Image.open(p).convert("RGB"), 256), 224)) for p in paths]
    return (torch.stack(imgs) - MEAN) / STD


def cifar_batch(samples):
    return (torch.stack([TF.to_tensor(Image.open(p).convert("RGB")) for p, _ in samples]) - MEAN) / STD


class VggLike(nn.Module):
    """A network with VGG's layout (features.N, classifier) at toy size."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                      nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                                      nn.MaxPool2d(2))
        self.classifier = nn.Linear(16 * 4 * 4, 5)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def reference_curves(model, x, attribution, steps, deletion_base, insertion_base):
    """Deletion and insertion, one image and one step at a time, from a plain argsort."""
    n, _, h, w = x.shape
    p = h * w
    with torch.no_grad():
        target = model(x).argmax(1)
        dels, inss = [], []
        for i in range(n):
            order = attribution[i].flatten().argsort(descending=True)
            d, s = [], []
            for k in range(steps + 1):
                m = int(round(k * p / steps))
                mask = torch.zeros(p, dtype=torch.bool)
                mask[order[:m]] = True
                mask = mask.view(1, 1, h, w)
                deleted = torch.where(mask, deletion_base[i:i + 1], x[i:i + 1])
                inserted = torch.where(mask, x[i:i + 1], insertion_base[i:i + 1])
                d.append(model(deleted).softmax(1)[0, target[i]].item())
                s.append(model(inserted).softmax(1)[0, target[i]].item())
            dels.append(d)
            inss.append(s)
    fractions = np.array([round(k * p / steps) / p for k in range(steps + 1)])
    return np.array(dels), np.array(inss), fractions


def test_deletion_insertion_equals_a_per_step_loop():
    model = VggLike().double().eval()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    attribution = torch.rand(3, 16, 16, dtype=torch.float64)
    custom = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    r = cnnviz.deletion_insertion(model, x, attribution, steps=9, baseline=custom, batch_size=7)
    d, s, fr = reference_curves(model, x, attribution, 9, custom, custom)
    np.testing.assert_allclose(r.deletion.numpy(), d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.insertion.numpy(), s, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.fractions.numpy(), fr)
    np.testing.assert_allclose(r.deletion_auc.numpy(), np.trapz(d, fr, axis=1), rtol=1e-9)
    np.testing.assert_allclose(r.insertion_auc.numpy(), np.trapz(s, fr, axis=1), rtol=1e-9)
    assert "DeletionInsertionResult(images=3, steps=9" in repr(r)
    # x itself (deletion's first point, insertion's last) is scored by one forward of x; only
    # the other 2 N steps images run: 3 + 2 * 3 * 9 rows, in batches of at most 7.
    rows = []
    handle = model.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        cnnviz.deletion_insertion(model, x, attribution, steps=9, baseline=custom, batch_size=7)
    finally:
        handle.remove()
    assert rows[0] == 3 and sum(rows[1:]) == 2 * 3 * 9 and max(rows[1:]) <= 7, rows
    # RISE's defaults: deleted pixels become 0 (the mean color), insertion starts from a blur.
    r = cnnviz.deletion_insertion(model, x, attribution, steps=4)
    blurred = cnnviz.integrated_gradients(model, x, baseline="blur", steps=2).baseline
    d, s, _ = reference_curves(model, x, attribution, 4, torch.zeros_like(x), blurred)
    np.testing.assert_allclose(r.deletion.numpy(), d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.insertion.numpy(), s, rtol=1e-9, atol=1e-12)


class Strided(nn.Module):
    """A cheap classifier for large images: one strided conv, pooling, a linear layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


def _rows(model, fn):
    """The batch sizes of the model's forwards during fn()."""
    rows = []
    handle = model.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        fn()
    finally:
        handle.remove()
    return rows


def test_deletion_insertion_batch_size_adapts_to_the_image_size():
    """Unset, batch_size keeps one batch's input under 2^19 values on a CPU (3 images at
    3 x 224 x 224, at most 32 small ones); an explicit batch_size is honoured; the curves do
    not depend on it."""
    model = Strided().eval()
    torch.manual_seed(2)
    big, small = torch.randn(2, 3, 224, 224), torch.randn(2, 3, 16, 16)
    map_big, map_small = torch.rand(2, 224, 224), torch.rand(2, 16, 16)
    assert cnnviz.faithfulness._DI.batch_size is None
    r = cnnviz.deletion_insertion(model, big, map_big, steps=4)
    assert r.batch_size == 3 == (1 << 19) // (3 * 224 * 224)
    rows = _rows(model, lambda: cnnviz.deletion_insertion(model, big, map_big, steps=4))
    assert rows[0] == 2 and sum(rows[1:]) == 2 * 2 * 4 and max(rows[1:]) == 3, rows
    explicit = cnnviz.deletion_insertion(model, big, map_big, steps=4, batch_size=16)
    assert explicit.batch_size == 16
    assert _rows(model, lambda: cnnviz.deletion_insertion(model, big, map_big, steps=4, batch_size=16))[1:] == [16]
    torch.testing.assert_close(r.deletion, explicit.deletion, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r.insertion, explicit.insertion, rtol=1e-5, atol=1e-6)
    assert cnnviz.deletion_insertion(model, small, map_small, steps=40).batch_size == 32
    # Larger than 2^19 values per image: one image per forward.
    huge = torch.randn(1, 3, 512, 512)
    assert cnnviz.deletion_insertion(model, huge, torch.rand(1, 64, 64), steps=1).batch_size == 1


def test_deletion_insertion_takes_results_and_coarse_maps():
    model = VggLike().eval()
    x = torch.randn(2, 3, 16, 16)
    cam = cnnviz.grad_cam(model, x, "features.5")
    assert cam.map.shape[-2:] == (8, 8)
    from_result = cnnviz.deletion_insertion(model, x, cam, steps=5)
    from_coarse = cnnviz.deletion_insertion(model, x, cam.map, steps=5)
    from_full = cnnviz.deletion_insertion(model, x, cam.upsampled, steps=5)
    torch.testing.assert_close(from_result.deletion, from_full.deletion)
    torch.testing.assert_close(from_coarse.deletion, from_full.deletion)
    assert torch.equal(from_result.target, cam.target)


def test_deletion_insertion_bad_input():
    model = VggLike().eval()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match="does not fit the image"):
        cnnviz.deletion_insertion(model, x, torch.rand(2, 16, 10))
    with pytest.raises(ValueError, match="3 attribution maps for a batch of 2"):
        cnnviz.deletion_insertion(model, x, torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=r"\.map"):
        cnnviz.deletion_insertion(model, x, torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="steps must be positive"):
        cnnviz.deletion_insertion(model, x, torch.rand(2, 16, 16), steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        cnnviz.deletion_insertion(model, x, torch.rand(2, 16, 16), batch_size=0)
    with pytest.raises(ValueError, match="deletion_baseline must be one of"):
        cnnviz.deletion_insertion(model, x, torch.rand(2, 16, 16), deletion_baseline="grey")
    with pytest.raises(TypeError, match="attribution map"):
        cnnviz.deletion_insertion(model, x, "saliency")


def _imagenet_paths(imagenet_samples, k):
    return [p for p, _ in imagenet_samples[:k]]


def grad_cam_vs_random(model, paths, steps):
    """Deletion/insertion of Grad-CAM (features.18) and of a random map at the CAM's
    resolution (7 x 7, upsampled the same way). A pixel-wise random map is no fair control:
    its scattered deletions make salt-and-pepper images that break any CNN's prediction
    faster than deleting a region (it "beats" Grad-CAM on 3 of the first 4 samples)."""
    x = imagenet_batch(paths)
    cam = cnnviz.grad_cam(model, x, "features.18")
    torch.manual_seed(0)
    rnd = torch.rand(x.shape[0], *cam.map.shape[1:])
    a = cnnviz.deletion_insertion(model, x, cam, steps=steps)
    b = cnnviz.deletion_insertion(model, x, rnd, target=cam.target, steps=steps)
    return a, b


def test_grad_cam_deletes_faster_than_random_fast(mobilenet, imagenet_samples):
    a, b = grad_cam_vs_random(mobilenet, _imagenet_paths(imagenet_samples, 3), steps=8)
    # Measured: Grad-CAM's deletion AUC is lower and its insertion AUC higher on 3 of 3.
    assert int((a.deletion_auc < b.deletion_auc).sum()) >= 2, (a.deletion_auc, b.deletion_auc)
    assert int((a.insertion_auc > b.insertion_auc).sum()) >= 2, (a.insertion_auc, b.insertion_auc)


@pytest.mark.slow
def test_grad_cam_deletes_faster_than_random_on_20_imagenet_samples(mobilenet, imagenet_samples):
    a, b = grad_cam_vs_random(mobilenet, _imagenet_paths(imagenet_samples, 20), steps=10)
    # Measured (steps=10): Grad-CAM's deletion AUC is lower on 14 of the 20 samples, its
    # insertion AUC higher on 17 of 20; "most" is the claim.
    assert int((a.deletion_auc < b.deletion_auc).sum()) >= 12, (a.deletion_auc, b.deletion_auc)
    assert int((a.insertion_auc > b.insertion_auc).sum()) >= 14, (a.insertion_auc, b.insertion_auc)


def test_rank_correlation():
    a = torch.tensor([[1.0, 2, 2, 3, 5], [0, 0, 0, 1, 2]])
    b = torch.tensor([[1.0, 3, 2, 4, 4], [5, 4, 3, 2, 1]])
    from scipy.stats import spearmanr  # noqa: PLC0415 - scipy is only the reference here

    expect = [spearmanr(a[i].numpy(), b[i].numpy()).correlation for i in range(2)]
    np.testing.assert_allclose(cnnviz.rank_correlation(a, b).numpy(), expect, rtol=1e-12)
    with pytest.raises(ValueError, match="differ in shape"):
        cnnviz.rank_correlation(a, b[:, :4])


def _same_state(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_sanity_check_saliency_decorrelates_and_model_is_untouched(resnet20, cifar_samples):
    x = cifar_batch(cifar_samples[:4])
    state = copy.deepcopy(resnet20.state_dict())
    flags = [p.requires_grad for p in resnet20.parameters()]
    r = cnnviz.sanity_check("saliency", resnet20, x, group_depth=1)
    assert r.steps == ["linear", "layer3", "layer2", "layer1", "bn1", "conv1"]
    assert r.maps.shape == (6, 4, 32, 32) and r.rank_correlation.shape == (6, 4) and r.ssim.shape == (6, 4)
    torch.testing.assert_close(r.original, cnnviz.saliency(resnet20, x).map)
    assert torch.equal(r.target, resnet20(x).argmax(1))
    rho = r.rank_correlation.mean(1)
    # Measured (4 CIFAR samples): about 0.34 with the classifier randomized, about 0.16 with
    # every layer; the trained model's map against itself would be 1.
    assert float(rho.max()) < 0.6, rho
    assert rho[-1] < rho[0], rho
    # Control: a "method" that ignores the model (the input's magnitude) passes unchanged,
    # so the test tells the two apart.
    control = cnnviz.sanity_check(lambda m, xx, t: xx.abs().amax(1), resnet20, x, group_depth=1)
    torch.testing.assert_close(control.rank_correlation, torch.ones(6, 4, dtype=torch.float64))
    assert _same_state(resnet20, state)
    assert [p.requires_grad for p in resnet20.parameters()] == flags
    assert "SanityCheckResult(steps=6" in repr(r)


def test_sanity_check_callable_script_module_and_layers(data_dir, cifar_samples):
    traced = torch.jit.load(os.path.join(data_dir, "weights", "resnet20_cifar10_traced.pt")).eval()
    x = cifar_batch(cifar_samples[:2])
    state = copy.deepcopy(traced.state_dict())
    seen = []

    def method(model, xx, target):
        seen.append(model)
        return cnnviz.saliency(model, xx, target)

    r = cnnviz.sanity_check(method, traced, x, layers_from_top=["linear", "layer3.2"], ssim=False)
    assert r.steps == ["linear", "layer3.2.bn2", "layer3.2.conv2", "layer3.2.bn1", "layer3.2.conv1"]
    assert r.ssim is None
    assert seen[0] is traced and all(m is not traced for m in seen[1:]) and len(seen) == 6
    assert _same_state(traced, state)
    r2 = cnnviz.sanity_check("grad_cam", traced, x, layers_from_top=2, layer="layer3", ssim=False)
    assert r2.original.shape == (2, 32, 32) and r2.rank_correlation.shape == (2, 2)


def test_sanity_check_bad_input(resnet20):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown method 'saliencey'"):
        cnnviz.sanity_check("saliencey", resnet20, x)
    with pytest.raises(ValueError, match="unknown layer 'layer9'"):
        cnnviz.sanity_check("saliency", resnet20, x, layers_from_top=["layer9"])
    with pytest.raises(ValueError, match="layers_from_top must be positive"):
        cnnviz.sanity_check("saliency", resnet20, x, layers_from_top=0)
    with pytest.raises(TypeError, match="layers_from_top"):
        cnnviz.sanity_check("saliency", resnet20, x, layers_from_top=1.5)
    with pytest.raises(TypeError, match="nn.Module"):
        cnnviz.sanity_check("saliency", lambda t: t.flatten(1), x)
    with pytest.raises(TypeError, match="attribution map"):
        cnnviz.sanity_check(lambda m, xx, t: object(), resnet20, x, layers_from_top=1)
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        cnnviz.sanity_check(lambda m, xx, t: xx, resnet20, x, layers_from_top=1)
    with pytest.raises(ValueError, match="smaller than SSIM"):  # Grad-CAM at layer3's 8 x 8
        cnnviz.sanity_check(lambda m, xx, t: cnnviz.grad_cam(m, xx, "layer3", t).map, resnet20, x, layers_from_top=1)


def test_layer_information_ssim_falls_with_depth(mobilenet, data_dir):
    x = cnnviz.preprocess(cnnviz.load_image(os.path.join(data_dir, "images", "cat_chelsea.png")), size=128, resize=146)
    layers = ["features.1", "features.4", "features.8", "features.14"]
    r = cnnviz.layer_information(mobilenet, x, layers, iterations=20, optimizer="adam", learning_rate=0.05)
    assert r.layers == layers
    # Sizes against hooked activations.
    shapes = {}
    hooks = [mobilenet.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape))
             for n in layers]
    with torch.no_grad():
        mobilenet(x)
    for h in hooks:
        h.remove()
    assert r.channels.tolist() == [shapes[n][1] for n in layers]
    assert r.height.tolist() == [shapes[n][2] for n in layers] and r.width.tolist() == [shapes[n][3] for n in layers]
    ssim = r.ssim[:, 0]
    # Measured (20 Adam steps from the mean image, 128 x 128): SSIM 0.81, 0.25, 0.16, 0.13.
    assert all(ssim[i] > ssim[i + 1] for i in range(3)), ssim
    # The metrics are those of cnnviz.ssim/psnr on the images mapped back to pixels.
    for i, inv in enumerate(r.inversions):
        pa, pb = (inv.image * STD + MEAN).clamp(0, 1), (x * STD + MEAN).clamp(0, 1)
        assert float(r.ssim[i, 0]) == pytest.approx(float(cnnviz.ssim(pa.double(), pb.double())), abs=1e-6)
        assert float(r.psnr[i, 0]) == pytest.approx(float(cnnviz.psnr(pa.double(), pb.double())), abs=1e-6)
        assert float(r.mse[i, 0]) == pytest.approx(float((pa.double() - pb.double()).pow(2).mean()), rel=1e-6)
    drop = torch.cat([torch.ones(1, dtype=torch.float64), ssim[:-1]]) - ssim
    torch.testing.assert_close(r.ssim_drop, drop)
    assert r.bottleneck_layer == layers[int(drop.argmax())]
    assert "bottleneck=" in repr(r)


def test_layer_information_notebook_integers_and_bad_input():
    model = VggLike().eval()
    x = torch.randn(1, 3, 16, 16)
    r = cnnviz.layer_information(model, x, [1, 3, 6], iterations=3)
    assert r.layers == ["features.1", "features.3", "features.6"]
    assert r.channels.tolist() == [8, 8, 16] and r.height.tolist() == [16, 16, 8]
    with pytest.raises(ValueError, match="neither 'features.40' nor '40'"):
        cnnviz.layer_information(model, x, [40], iterations=3)
    with pytest.raises(ValueError, match="unknown layer 'features.90'"):
        cnnviz.layer_information(model, x, ["features.90"], iterations=3)
    with pytest.raises(TypeError, match="unknown inversion option 'iteratoins'"):
        cnnviz.layer_information(model, x, [1], iteratoins=3)
    with pytest.raises(ValueError, match="iterations must be positive"):
        cnnviz.layer_information(model, x, [1], iterations=0)
    with pytest.raises(ValueError, match="empty"):
        cnnviz.layer_information(model, x, [], iterations=3)


def test_adversarial_report_on_resnet20(resnet20, cifar_samples):
    x = cifar_batch(cifar_samples[:4])
    torch.manual_seed(0)
    r = cnnviz.adversarial_report(resnet20, x, eps=4 / 255, steps=5, random_start=False)
    ref = cnnviz.pgd(resnet20, x, eps=4 / 255, steps=5, random_start=False)
    torch.testing.assert_close(r.attack.adversarial, ref.adversarial)
    torch.testing.assert_close(r.probabilities_after, ref.logits_after.softmax(1))
    assert int(r.attack.success.sum()) >= 3
    torch.testing.assert_close(r.saliency_before.map, cnnviz.saliency(resnet20, x, ref.target).map)
    torch.testing.assert_close(r.saliency_after.map, cnnviz.saliency(resnet20, ref.adversarial, ref.target).map)
    torch.testing.assert_close(r.saliency_correlation,
                               cnnviz.rank_correlation(r.saliency_before.map, r.saliency_after.map))
    assert r.layers[0] == "conv1" and r.layers[-1] == "linear"
    div = cnnviz.layer_divergence(resnet20, x, ref.adversarial, r.layers)
    torch.testing.assert_close(r.divergence, torch.stack([div[n] for n in r.layers]))
    assert r.most_affected_layer == r.layers[int(r.divergence.mean(1).argmax())]
    f = cnnviz.adversarial_report(resnet20, x, attack="fgsm", eps=2 / 255, layers=["layer1", "layer3"])
    torch.testing.assert_close(f.attack.adversarial, cnnviz.fgsm(resnet20, x, eps=2 / 255).adversarial)
    assert f.layers == ["layer1", "layer3"] and f.divergence.shape == (2, 4)
    assert "AdversarialReport(prediction" in repr(f)
    with pytest.raises(ValueError, match="attack must be one of 'fgsm', 'pgd'"):
        cnnviz.adversarial_report(resnet20, x, attack="cw")
    with pytest.raises(ValueError, match="unknown layer"):
        cnnviz.adversarial_report(resnet20, x, layers=["layer7"])


def test_figures(tmp_path):
    pytest.importorskip("matplotlib")
    import cnnviz.plot
    from matplotlib.figure import Figure

    model = VggLike().eval()
    torch.manual_seed(0)
    # A valid ImageNet-normalized image: the attacks refuse pixels outside [0, 1].
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.rand(2, 3, 16, 16) - mean) / std
    info = cnnviz.layer_information(model, x, [1, 3, 6], iterations=3)
    cam = cnnviz.grad_cam(model, x, "features.5")
    di = cnnviz.deletion_insertion(model, x, cam, steps=4)
    rnd = cnnviz.deletion_insertion(model, x, torch.rand(2, 16, 16), target=cam.target, steps=4)
    sc = cnnviz.sanity_check("saliency", model, x)
    rep = cnnviz.adversarial_report(model, x, steps=2)
    figures = {
        "info": cnnviz.plot.show_layer_information(info, x),
        "di": cnnviz.plot.show_deletion_insertion({"Grad-CAM": di, "random": rnd}),
        "di_one": cnnviz.plot.show_deletion_insertion(di, index=1),
        "sc": cnnviz.plot.show_sanity_check(sc, x, max_maps=2),
        "rep": cnnviz.plot.show_adversarial_report(rep, x, labels=None),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure), name
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    # Curves drawn are the result's: the mean deletion curve of the first entry.
    line = [l for l in figures["di"].axes[0].lines if l.get_linewidth() == 2][0]
    np.testing.assert_allclose(line.get_ydata(), di.deletion.double().mean(0).numpy())
    assert len(figures["info"].axes) == 2 + 1 + 3  # curve, twin, input, three inversions
    with pytest.raises(ValueError, match="no results"):
        cnnviz.plot.show_deletion_insertion({})
