"""cnnviz.plot's filter-analysis figures: built without a display from real results, with
the ordering and marks they promise."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import cnnviz  # noqa: E402
import cnnviz.plot as cplot  # noqa: E402
from _optimization_nets import TinyNet  # noqa: E402


@pytest.fixture
def net():
    return TinyNet()


def test_filter_statistics_heatmap_sorted_by_selectivity(net):
    stats = cnnviz.filter_statistics(net, torch.rand(9, 3, 16, 16), "layer1.1", keep_per_image=True)
    fig = cplot.show_filter_statistics(stats, show=False)
    assert isinstance(fig, Figure)
    marks, heat = fig.axes[0], fig.axes[1]  # then the fraction bars and the colorbar
    rows = [int(t.get_text()) for t in marks.get_yticklabels()]
    assert rows == torch.argsort(stats.selectivity, descending=True).tolist()
    assert heat.images[0].get_array().shape == (12, 9)
    few = cplot.show_filter_statistics(stats, max_filters=4, show=False)
    assert few.axes[1].images[0].get_array().shape == (4, 9)
    with pytest.raises(ValueError, match="keep_per_image=True"):
        cplot.show_filter_statistics(cnnviz.filter_statistics(net, torch.rand(3, 3, 16, 16), "layer1.1"), show=False)


def test_redundancy_matrix_boxes_the_groups(net):
    conv = net.layer1[1].conv
    with torch.no_grad():
        conv.weight[5] = conv.weight[1]
    r = cnnviz.filter_redundancy(net, "layer1.1.conv")
    fig = cplot.show_redundancy(r, show=False)
    ax = fig.axes[0]
    assert [int(t.get_text()) for t in ax.get_xticklabels()][:2] == [1, 5]  # the group comes first
    assert len(ax.patches) == len(r.groups) == 1
    with pytest.raises(ValueError, match="no 'activations' similarity"):
        cplot.show_redundancy(r, basis="activations", show=False)


def test_cka_heatmap(net):
    layers = ["stem", "layer1.0", "layer2.0"]
    r = cnnviz.cka(net, None, torch.rand(12, 3, 16, 16), layers)
    fig = cplot.show_cka(r, show=False)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == layers
    assert len(ax.texts) == 9
