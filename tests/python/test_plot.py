"""cnnviz.plot: figures build from every kind of input, without a display."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

import cnnviz  # noqa: E402
import cnnviz.plot as cplot  # noqa: E402


@pytest.fixture
def rgb():
    y, x = np.mgrid[0:32, 0:40]
    return np.stack([x * 6, y * 8, (x + y) * 3], -1).astype(np.uint8)


def test_to_display_handles_every_form(rgb):
    x = cnnviz.preprocess(rgb, size=None)
    np.testing.assert_array_equal(cplot.to_display(x), rgb)
    np.testing.assert_array_equal(cplot.to_display(x[0]), rgb)
    np.testing.assert_array_equal(cplot.to_display(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(cplot.to_display(torch.from_numpy(rgb)), rgb)
    m = cplot.to_display(torch.rand(1, 1, 5, 6))
    assert m.shape == (5, 6) and m.dtype == np.float32
    assert cplot.to_display(np.random.rand(5, 6)).shape == (5, 6)


def test_show_images_returns_a_figure(rgb):
    x = cnnviz.preprocess(rgb, size=None)
    fig = cplot.show_images([rgb, x, torch.rand(8, 8), Image.fromarray(rgb)], titles=list("abcd"), ncols=3,
                            colorbar=True, suptitle="t", show=False)
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4 and shown[0].get_title() == "a"
    batch = torch.cat([x, x])
    assert len([a for a in cplot.show_images(batch, show=False).axes if a.images]) == 2
    with pytest.raises(ValueError):
        cplot.show_images([rgb], titles=["a", "b"], show=False)
    with pytest.raises(ValueError):
        cplot.show_images([], show=False)


def test_grid_heatmap_overlay_attribution(rgb):
    fig = cplot.show_grid(torch.rand(6, 1, 5, 5), nrow=3, normalize=True, scale_each=True, colormap="viridis",
                          title="maps", show=False)
    assert isinstance(fig, Figure)
    heat = torch.rand(7, 7)
    assert isinstance(cplot.show_heatmap(heat, show=False), Figure)
    assert isinstance(cplot.show_heatmap(heat, image=rgb, alpha=0.4, show=False), Figure)
    assert isinstance(cplot.show_overlay(rgb, heat, show=False), Figure)
    fig = cplot.show_attribution(cnnviz.preprocess(rgb, size=None), heat, title="saliency", show=False)
    assert len([a for a in fig.axes if a.images]) == 3
    # Drawing into given axes returns them.
    fig = Figure()
    ax = fig.subplots()
    assert cplot.show_overlay(rgb, heat, ax=ax) is ax and ax.images
    with pytest.raises(ValueError):
        cplot.show_heatmap(torch.rand(2, 3, 3), show=False)


def test_show_true_uses_pyplot(rgb):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    assert cplot.show_images([rgb]) is None
    assert len(plt.get_fignums()) == before + 1
    plt.close("all")


def test_plot_is_reachable_from_the_package():
    assert cnnviz.plot is cplot
