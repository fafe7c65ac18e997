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


# --- display defaults ---------------------------------------------------------------------


def test_map_range_clips_at_a_percentile_and_centres_signed_maps():
    rng = np.random.default_rng(0)
    unsigned = rng.random((40, 40)).astype(np.float32)
    unsigned[0, 0] = 1000.0  # one extreme pixel must not wash out the rest
    lo, hi, signed = cplot.map_range(unsigned)
    assert not signed and lo == pytest.approx(unsigned.min())
    assert hi == pytest.approx(np.percentile(unsigned, cplot.CLIP_PERCENTILE)) and hi < 2
    assert cplot.map_range(unsigned, clip_percentile=None)[1] == pytest.approx(1000.0)
    s = rng.standard_normal((30, 30)).astype(np.float32)
    s[np.isnan(s)] = 0
    s[3, 3] = np.nan  # ignored
    lo, hi, signed = cplot.map_range(torch.from_numpy(s)[None])
    v = np.percentile(np.abs(s[np.isfinite(s)]), cplot.CLIP_PERCENTILE)
    assert signed and hi == pytest.approx(v) and lo == pytest.approx(-v)
    assert cplot.map_range(np.abs(s[np.isfinite(s)]), signed=True)[2]
    with pytest.raises(ValueError, match="no finite"):
        cplot.map_range(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="clip_percentile"):
        cplot.map_range(unsigned, clip_percentile=0)


def test_signed_maps_get_a_diverging_colormap_centred_on_zero(rgb):
    signed = torch.linspace(-1, 3, 64).view(8, 8)
    fig = cplot.show_heatmap(signed, show=False)
    im = fig.axes[0].images[0]
    lo, hi = im.get_clim()
    assert lo == pytest.approx(-hi) and im.get_cmap().name == cplot.DIVERGING_CMAP
    fig = cplot.show_heatmap(signed.abs(), show=False)
    assert fig.axes[0].images[0].get_cmap().name == cplot.SEQUENTIAL_CMAP
    # The overlay uses the same range: where the map is 0 the colour is the colormap's centre.
    m = torch.zeros(32, 40)
    m[:, :20] = -2.0
    m[:, 20:] = 1.0
    fig = cplot.show_overlay(rgb, m, alpha=0.5, show=False)
    shown = fig.axes[0].images[0].get_array()
    v = cplot.map_range(m)[1]
    expected = cnnviz.overlay(rgb, m, alpha=0.5, colormap=cplot.DIVERGING_CMAP, vmin=-v, vmax=v).numpy()
    np.testing.assert_array_equal(np.asarray(shown), expected)
    # show_attribution passes it on to both map panels.
    fig = cplot.show_attribution(rgb, signed, show=False)
    assert [a.images[-1].get_cmap().name for a in fig.axes if a.images][1:] == [cplot.DIVERGING_CMAP] * 2


def _bbox(artist, renderer):
    return artist.get_window_extent(renderer)


def test_titles_do_not_collide_with_the_figure_title(rgb):
    fig = cplot.show_images([rgb] * 6, titles=[f"Layer {i}\nReconstruction" for i in range(6)], ncols=3,
                            suptitle="Feature inversion across layers", show=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    r = canvas.get_renderer()
    sup = _bbox(fig._suptitle, r)
    for ax in fig.axes:
        if ax.get_title():
            assert not sup.overlaps(_bbox(ax.title, r)), ax.get_title()


def test_filter_grids_enlarge_small_tiles_with_nearest_and_label_them():
    w = torch.rand(10, 3, 3, 3)
    fig = cplot.show_grid(w, nrow=5, labels=[f"f{i}" for i in range(10)], show=False)
    img = np.asarray(fig.axes[0].images[0].get_array())
    tile = cplot.MIN_TILE // 3 * 3 if cplot.MIN_TILE % 3 == 0 else (cplot.MIN_TILE // 3 + 1) * 3
    assert img.shape[:2] == (2 + 2 * (tile + 2), 2 + 5 * (tile + 2))
    assert fig.axes[0].images[0].get_interpolation() == "nearest"
    # Each weight is a block of identical pixels: the first tile is w[0] repeated.
    first = img[2 : 2 + tile, 2 : 2 + tile]
    k = tile // 3
    expected = (w[0].permute(1, 2, 0).repeat_interleave(k, 0).repeat_interleave(k, 1) * 255).round().numpy()
    np.testing.assert_allclose(first.astype(float), expected, atol=1)
    assert [t.get_text() for t in fig.axes[0].texts] == [f"f{i}" for i in range(10)]
    with pytest.raises(ValueError, match="labels"):
        cplot.show_grid(w, labels=["a"], show=False)
    # Large tiles are left alone.
    fig = cplot.show_grid(torch.rand(2, 3, 64, 64), nrow=2, show=False)
    assert np.asarray(fig.axes[0].images[0].get_array()).shape[:2] == (68, 134)


def test_stretch_contrast(rgb):
    dull = (rgb.astype(np.float32) * 0.1 + 100).astype(np.uint8)
    out = cplot.stretch_contrast(dull)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.percentile(out, 1) <= 3 and np.percentile(out, 99) >= 252
    x = cnnviz.preprocess(dull, size=None)
    np.testing.assert_allclose(cplot.stretch_contrast(x).astype(int), out.astype(int), atol=2)
    with pytest.raises(ValueError):
        cplot.stretch_contrast(rgb, low=50, high=10)


def test_inversion_progress_figure(rgb):
    from types import SimpleNamespace

    x = cnnviz.preprocess(rgb, size=None)
    snaps = [x + 0.1 * i for i in range(12)]
    res = SimpleNamespace(snapshots=snaps, snapshot_steps=list(range(0, 120, 10)), losses=torch.logspace(1, -2, 125),
                          image=x)
    fig = cplot.show_inversion_progress(res, original=x, max_snapshots=6, title="layer 5", show=False)
    img_axes = [a for a in fig.axes if a.images]
    assert img_axes[0].get_title() == "Original" and len(img_axes) == 1 + 6
    assert img_axes[-1].get_title() == "step 125"  # the final image is appended
    loss_ax = [a for a in fig.axes if a.lines][0]
    assert loss_ax.get_yscale() == "log" and len(loss_ax.lines[0].get_xdata()) == 125
    fig = cplot.show_inversion_progress(snapshots=[rgb, rgb], steps=[0, 5], show=False)
    assert [a.get_title() for a in fig.axes] == ["step 0", "step 5"]
    with pytest.raises(ValueError, match="no snapshots"):
        cplot.show_inversion_progress(snapshots=[], show=False)
    with pytest.raises(ValueError, match="steps"):
        cplot.show_inversion_progress(snapshots=[rgb], steps=[0, 1], show=False)


def test_metric_vs_depth_figure():
    names = ["features.1", "features.5", "features.10", "features.20"]
    ssim = [0.9, 0.8, 0.3, 0.25]
    psnr = [30.0, 25.0, 12.0, 11.0]
    fig = cplot.show_metric_vs_depth([1, 5, 10, 20], {"SSIM": ssim, "PSNR (dB)": psnr}, labels=names, show=False)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "PSNR (dB)"  # a second axis for dB
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ssim)
    # The largest drop of SSIM (0.8 -> 0.3) is between the 2nd and 3rd depth.
    span = ax.patches[0].get_xy()
    assert min(p[0] for p in span) == pytest.approx(1) and max(p[0] for p in span) == pytest.approx(2)
    fig = cplot.show_metric_vs_depth([1, 5, 10], {"x": [1, 2, 3]}, mark_drop=False, show=False)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [1, 5, 10])
    with pytest.raises(ValueError, match="values for"):
        cplot.show_metric_vs_depth([1, 2], {"x": [1, 2, 3]}, show=False)
    with pytest.raises(ValueError, match="labels"):
        cplot.show_metric_vs_depth([1, 2], {"x": [1, 2]}, labels=["a"], show=False)
