"""cnnviz.filter_statistics, top_filters against a reference, filter_redundancy: against
plain forward hooks and formulas written out here, streaming in any batch split."""
import math
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import cnnviz
from _optimization_nets import TinyNet


def responses(model, x, layer):
    """m[n, c]: the layer's activation averaged over positions, via a forward hook."""
    out = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: out.update(a=o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return out["a"]


@pytest.fixture
def net():
    return TinyNet()


def test_streaming_equals_one_batch_and_a_written_out_reference(net):
    x = torch.rand(21, 3, 16, 16)
    act = responses(net, x, "layer1.1").double()
    m = act.mean((2, 3))
    whole = cnnviz.filter_statistics(net, x, "layer1.1", top_k=3, batch_size=64, keep_per_image=True)
    torch.testing.assert_close(whole.mean, m.mean(0))
    torch.testing.assert_close(whole.std, m.std(0))
    torch.testing.assert_close(whole.max, act.amax((0, 2, 3)), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(whole.fraction_active, (m > m.mean(1, keepdim=True)).double().mean(0))
    n = 21
    torch.testing.assert_close(whole.selectivity, ((1 - m.mean(0) ** 2 / (m ** 2).mean(0)) / (1 - 1 / n)).clamp(0, 1))
    assert torch.equal(whole.top_indices, m.topk(3, dim=0).indices.T)
    torch.testing.assert_close(whole.per_image, m.float())
    assert whole.count == 21 and whole.num_filters == 12
    # A DataLoader of (image, label) tuples in uneven batches, and one image at a time.
    for bs in (1, 4, 10):
        loader = DataLoader(TensorDataset(x, torch.zeros(21)), batch_size=bs)
        s = cnnviz.filter_statistics(net, loader, "layer1.1", top_k=3)
        torch.testing.assert_close(s.mean, whole.mean)
        torch.testing.assert_close(s.std, whole.std)
        assert torch.equal(s.fraction_active, whole.fraction_active)
        assert torch.equal(s.top_indices, whole.top_indices)
        assert s.per_image is None
    assert "FilterStatistics(layer='layer1.1', images=21, filters=12" in repr(whole)


def test_accumulator_states_merge_like_distributed_ranks(net):
    """Each "rank" accumulates its shard with dataset indices; gathering the states and
    merging them gives the single-process result."""
    x = torch.rand(17, 3, 16, 16)
    single = cnnviz.filter_statistics(net, x, "layer2.0", top_k=4)
    states = []
    for rank, shard in enumerate(torch.arange(17).tensor_split(3)):
        acc = cnnviz.FilterStatisticsAccumulator(top_k=4)
        acc.update_from_model(net, x[shard], "layer2.0", indices=shard)
        states.append(acc.state_dict())
    merged = cnnviz.FilterStatisticsAccumulator.from_state(states[2], top_k=4)
    for s in states[:2]:
        merged.merge(cnnviz.FilterStatisticsAccumulator.from_state(s, top_k=4))
    r = merged.result()
    torch.testing.assert_close(r.mean, single.mean)
    torch.testing.assert_close(r.std, single.std)
    torch.testing.assert_close(r.max, single.max)
    torch.testing.assert_close(r.top_values, single.top_values)
    untied = (single.top_values[:, :-1] > single.top_values[:, 1:]).all(1)  # dead filters tie at 0
    assert untied.sum() > 10 and torch.equal(r.top_indices[untied], single.top_indices[untied])
    assert set(states[0]) == {"count", "mean", "m2", "max", "active", "top_values", "top_indices"}


def test_welford_keeps_a_small_spread_on_a_large_mean():
    """Responses near 1e4 with a spread of 1e-3, in batches of 7: the streamed std equals a
    two-pass std (float64 in, float64 statistics)."""
    torch.manual_seed(0)
    base = 1e4 + 1e-3 * torch.randn(4000, 2, dtype=torch.float64)
    acc = cnnviz.FilterStatisticsAccumulator()
    for part in base.split(7):
        acc.update(part.view(-1, 2, 1))
    r = acc.result()
    torch.testing.assert_close(r.std, base.std(0), rtol=1e-7, atol=0)
    torch.testing.assert_close(r.mean, base.mean(0), rtol=1e-14, atol=0)


def test_bad_input(net):
    with pytest.raises(ValueError, match="yielded no images"):
        cnnviz.filter_statistics(net, [], "layer1.0")
    with pytest.raises(ValueError, match="yielded no images"):
        cnnviz.filter_statistics(net, DataLoader(TensorDataset(torch.rand(0, 3, 8, 8)), batch_size=2), "layer1.0")
    with pytest.raises(TypeError, match="tensor or an iterable"):
        cnnviz.filter_statistics(net, 3, "layer1.0")
    with pytest.raises(TypeError, match="first entry is the image tensor"):
        cnnviz.filter_statistics(net, [("a", 1)], "layer1.0")
    with pytest.raises(ValueError, match="unknown layer"):
        cnnviz.filter_statistics(net, torch.rand(2, 3, 8, 8), "layer7")
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        cnnviz.filter_statistics(net, torch.rand(2, 3, 8, 8), "layer1.0", top_k=0)
    with pytest.raises(ValueError, match="specific_fraction"):
        cnnviz.filter_statistics(net, torch.rand(2, 3, 8, 8), "layer1.0", specific_fraction=0.95)
    with pytest.raises(ValueError, match="different options"):
        cnnviz.FilterStatisticsAccumulator(top_k=2).merge(cnnviz.FilterStatisticsAccumulator(top_k=3))
    with pytest.raises(ValueError, match="batch_size"):
        cnnviz.filter_statistics(net, torch.rand(2, 3, 8, 8), "layer1.0", batch_size=0)


def test_top_filters_against_a_reference(net):
    x = torch.rand(3, 3, 16, 16)
    reference = cnnviz.filter_statistics(net, torch.rand(30, 3, 16, 16), "layer1.1")
    m = responses(net, x, "layer1.1").double().mean((2, 3))
    top = cnnviz.top_filters(net, x, "layer1.1", k=5, reference=reference)
    z = (m - reference.mean) / reference.std
    assert torch.equal(top.channels, z.topk(5, dim=1).indices)
    torch.testing.assert_close(top.scores, z.topk(5, dim=1).values, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(top.activations, m.gather(1, top.channels))
    ratio = cnnviz.top_filters(net, x, "layer1.1", k=5, reference=reference, relative="ratio")
    assert torch.equal(ratio.channels, (m / reference.mean).topk(5, dim=1).indices)
    with pytest.raises(ValueError, match="relative must be"):
        cnnviz.top_filters(net, x, "layer1.1", reference=reference, relative="rank")
    other = cnnviz.filter_statistics(net, torch.rand(4, 3, 16, 16), "layer2.0")
    with pytest.raises(ValueError, match="must be \\(12,\\)"):
        cnnviz.top_filters(net, x, "layer1.1", reference=other)


def photos(data_dir, size):
    folder = os.path.join(data_dir, "images")
    files = sorted(f for f in os.listdir(folder) if f.endswith((".png", ".jpg")))
    return torch.cat([cnnviz.preprocess(cnnviz.load_image(os.path.join(folder, f)), size=size) for f in files])


def test_mobilenet_photos_relative_ranking_is_photo_specific(mobilenet, data_dir):
    """On the pretrained MobileNetV2 and the sample photos, the raw top filters of an early
    layer are mostly the same few filters for every photo (they fire on anything); ranked
    against the filters' statistics over the photos, each photo's list is its own."""
    x = photos(data_dir, 112)
    layer = "features.2"
    with pytest.warns(RuntimeWarning, match="negative mean responses"):  # a linear bottleneck: signed
        stats = cnnviz.filter_statistics(mobilenet, x, layer, batch_size=4)
    raw = cnnviz.top_filters(mobilenet, x, layer, k=5)
    rel = cnnviz.top_filters(mobilenet, x, layer, k=5, reference=stats)

    def distinct(t):
        return len(set(t.flatten().tolist()))

    assert distinct(rel.channels) > distinct(raw.channels) + 5
    # Consistent filters (active for 90% of photos) dominate the raw lists, not the relative ones.
    consistent = set(stats.consistent.tolist())
    in_raw = sum(c in consistent for c in raw.channels.flatten().tolist())
    in_rel = sum(c in consistent for c in rel.channels.flatten().tolist())
    assert in_raw > in_rel


def test_redundancy_finds_planted_duplicates(net):
    conv = net.layer1[1].conv  # 8 -> 12 filters
    with torch.no_grad():
        conv.weight[7] = conv.weight[2]
        conv.bias[7] = conv.bias[2]
        conv.weight[9] = -conv.weight[4]  # a negated filter is not a duplicate
    x = torch.rand(6, 3, 16, 16)
    by_weights = cnnviz.filter_redundancy(net, "layer1.1.conv")
    assert by_weights.basis == "weights" and by_weights.groups == [[2, 7]]
    assert by_weights.activation_correlation is None
    w = conv.weight.detach().flatten(1).double()
    w = w / w.norm(dim=1, keepdim=True)
    torch.testing.assert_close(by_weights.weight_similarity, w @ w.T)
    ev = torch.linalg.eigvalsh(w @ w.T)
    assert by_weights.effective_filters_weights == pytest.approx((ev.sum() ** 2 / (ev ** 2).sum()).item())

    r = cnnviz.filter_redundancy(net, "layer1.1.conv", DataLoader(TensorDataset(x), batch_size=4), threshold=0.95)
    act = responses(net, x, "layer1.1.conv").double()
    samples = act.permute(0, 2, 3, 1).reshape(-1, 12).numpy()
    torch.testing.assert_close(r.activation_correlation, torch.from_numpy(np.corrcoef(samples.T)), rtol=1e-5,
                               atol=1e-6)
    assert r.basis == "activations" and [2, 7] in r.groups
    assert r.samples == 6 * 16 * 16
    assert r.effective_filters_activations < 12
    assert "FilterRedundancy(layer='layer1.1.conv', filters=12" in repr(r)


def test_redundancy_streaming_and_bad_input(net):
    x = torch.rand(7, 3, 16, 16)
    a = cnnviz.filter_redundancy(net, "layer1.0", x, batch_size=2)
    b = cnnviz.filter_redundancy(net, "layer1.0", x, batch_size=7)
    torch.testing.assert_close(a.activation_correlation, b.activation_correlation, rtol=1e-5, atol=1e-6)
    assert a.weight_similarity is None  # a block has no weight of its own: activations only
    with pytest.raises(ValueError, match="no filter weights"):
        cnnviz.filter_redundancy(net, "layer1.0")
    with pytest.raises(ValueError, match="threshold"):
        cnnviz.filter_redundancy(net, "layer1.0.conv", threshold=0)
    with pytest.raises(ValueError, match="yielded no images"):
        cnnviz.filter_redundancy(net, "layer1.0", [])
    cov = cnnviz.ChannelCovarianceAccumulator()
    cov.update(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        cov.update(torch.rand(2, 4, 4, 4))
