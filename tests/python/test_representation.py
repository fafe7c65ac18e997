"""cnnviz.cka: the textbook linear CKA, the unbiased minibatch estimator written out with
NumPy, identities, streaming over a DataLoader, and the pretrained CIFAR ResNets."""
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import cnnviz
from _optimization_nets import TinyNet

LAYERS = ["stem", "layer1.0", "layer1.1", "layer2.0"]


def features(model, x, layers):
    out = {}
    mods = dict(model.named_modules())
    handles = [mods[l].register_forward_hook(lambda m, i, o, l=l: out.__setitem__(l, o.detach().clone()))
               for l in layers]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return [out[l].flatten(1).double().numpy() for l in layers]


def textbook(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def hsic_unbiased(k, l):
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


@pytest.fixture
def net():
    return TinyNet()


def test_one_batch_biased_is_the_textbook_formula(net):
    x = torch.rand(40, 3, 16, 16)
    feats = features(net, x, LAYERS)
    r = cnnviz.cka(net, None, x, LAYERS, unbiased=False, batch_size=40)
    expected = np.array([[textbook(a, b) for b in feats] for a in feats])
    np.testing.assert_allclose(r.matrix.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(r.matrix.numpy()), 1, rtol=1e-6)
    assert r.batches == 1 and r.samples == 40


def test_streaming_unbiased_equals_summed_batch_estimates(net):
    """A DataLoader of (image, label) batches: CKA is the ratio of the summed unbiased HSIC
    estimates of the batches (written out with NumPy); a last batch of 2 is skipped."""
    x = torch.rand(26, 3, 16, 16)
    loader = DataLoader(TensorDataset(x, torch.zeros(26)), batch_size=8)
    other = TinyNet(classes=3)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(torch.rand_like(p) + 0.5)
    r = cnnviz.cka(net, other, loader, LAYERS[:3], ["layer1.1", "layer2.0"])
    hab, haa, hbb = np.zeros((3, 2)), np.zeros(3), np.zeros(2)
    for start in (0, 8, 16):
        fa = features(net, x[start:start + 8], LAYERS[:3])
        fb = features(other, x[start:start + 8], ["layer1.1", "layer2.0"])
        ka, kb = [a @ a.T for a in fa], [b @ b.T for b in fb]
        hab += [[hsic_unbiased(k, l) for l in kb] for k in ka]
        haa += [hsic_unbiased(k, k) for k in ka]
        hbb += [hsic_unbiased(l, l) for l in kb]
    np.testing.assert_allclose(r.matrix.numpy(), hab / np.sqrt(np.outer(haa, hbb)), rtol=1e-4, atol=1e-6)
    assert (r.batches, r.samples, r.skipped_samples) == (3, 24, 2)
    assert r.matrix.shape == (3, 2) and r.layers_b == ["layer1.1", "layer2.0"]


def test_invariances_and_identity():
    """Orthogonal transforms and isotropic scaling of a layer leave CKA unchanged; a layer
    against itself is 1 (accumulator fed with activations directly)."""
    torch.manual_seed(1)
    a = torch.randn(64, 20)
    b = a[:, :10] @ torch.randn(10, 7) + 0.3 * torch.randn(64, 7)
    q = torch.linalg.qr(torch.randn(20, 20))[0]
    for kernel in ("linear", "rbf"):
        acc = cnnviz.CKAAccumulator(["a", "a@q", "3a"], ["b", "a"], kernel=kernel)
        acc.update([a, a @ q, 3 * a], [b, a])
        m = acc.result().matrix
        torch.testing.assert_close(m[:, 0], m[0, 0].expand(3), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m[:, 1], torch.ones(3, dtype=torch.float64), rtol=1e-4, atol=1e-5)


def test_minibatch_estimate_converges_to_the_full_one():
    torch.manual_seed(2)
    n = 3000
    z = torch.randn(n, 5)
    a = torch.cat([z, torch.randn(n, 5)], 1)
    b = z @ torch.randn(5, 4) + torch.randn(n, 4)
    full = textbook(a.double().numpy(), b.double().numpy())
    errors = []
    for bs in (10, 50, 250):
        acc = cnnviz.CKAAccumulator(["a"], ["b"])
        for s in range(0, n, bs):
            acc.update([a[s:s + bs]], [b[s:s + bs]])
        errors.append(abs(acc.result().matrix.item() - full))
    # Measured: 0.0021, 0.0043, 0.0019 for batches of 10, 50, 250 of the 3000 images.
    assert max(errors) < 0.01, errors
    biased = cnnviz.CKAAccumulator(["a"], ["b"], unbiased=False)
    for s in range(0, n, 10):
        biased.update([a[s:s + 10]], [b[s:s + 10]])
    assert abs(biased.result().matrix.item() - full) > 3 * errors[0]  # the biased minibatch estimate is off


def test_states_add_like_an_all_reduce(net):
    x = torch.rand(24, 3, 16, 16)
    single = cnnviz.cka(net, None, x, LAYERS, batch_size=8)
    states = []
    for shard in x.split(8):
        acc = cnnviz.CKAAccumulator(LAYERS)
        acc.update_from_models(net, None, shard)
        states.append(acc.state_dict())
    summed = {k: sum(s[k] for s in states) for k in states[0]}  # what all_reduce(SUM) leaves
    r = cnnviz.CKAAccumulator.from_state(summed, LAYERS).result()
    torch.testing.assert_close(r.matrix, single.matrix)
    assert r.samples == 24


def test_bad_input(net):
    x = torch.rand(8, 3, 16, 16)
    acc = cnnviz.CKAAccumulator(["a"], ["b"])
    with pytest.raises(ValueError, match="different sample counts"):
        acc.update([torch.rand(8, 4)], [torch.rand(6, 4)])
    with pytest.raises(ValueError, match="no batch"):
        acc.result()
    with pytest.raises(ValueError, match="yielded no images"):
        cnnviz.cka(net, None, [], LAYERS)
    with pytest.raises(ValueError, match="must not be empty"):
        cnnviz.cka(net, None, x, [])
    with pytest.raises(ValueError, match="give layers_b"):
        cnnviz.cka(net, TinyNet(), x, LAYERS)
    with pytest.raises(ValueError, match="RBF kernel needs all images in one tensor"):
        cnnviz.cka(net, None, DataLoader(TensorDataset(x), batch_size=4), LAYERS, kernel="rbf")
    with pytest.raises(ValueError, match="kernel must be"):
        cnnviz.cka(net, None, x, LAYERS, kernel="cosine")
    with pytest.raises(ValueError, match="unknown layer"):
        cnnviz.cka(net, None, x, ["nope"])


def test_pretrained_cifar_resnets(resnet20, data_dir):
    """ResNet-20 against ResNet-56 on the 20 CIFAR-10 samples: each stage of one network is
    most similar to the same stage of the other, and the rbf kernel on one batch agrees in
    ranking with the linear one."""
    folder = os.path.join(data_dir, "images", "cifar10_samples")
    files = sorted(os.listdir(folder))
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(os.path.join(folder, f)), size=32) for f in files])
    resnet56 = cnnviz.zoo.pretrained("resnet56")
    stages = ["layer1", "layer2", "layer3"]
    r = cnnviz.cka(resnet20, resnet56, x, stages, stages, batch_size=20)
    m = r.matrix
    assert m.argmax(1).tolist() == [0, 1, 2]
    assert bool((m.diagonal() > 0.5).all())
    rbf = cnnviz.cka(resnet20, resnet56, x, stages, stages, kernel="rbf")
    assert rbf.matrix.argmax(1).tolist() == [0, 1, 2]
