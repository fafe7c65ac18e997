"""cnnviz.cnn_utils as the notebook uses it, compared with the notebook's original helpers
(tests/python/_notebook_helpers.py): same values, gradients, dtypes and shapes, NaN in ->
NaN out with a warning.

test_notebook_feature_inversion runs the notebook's `feature_inversion` (section 8) with
`import cnn_utils` replaced by `from cnnviz import cnn_utils`: its calls, its SGD with
momentum, its learning rate and regularizer weights. Only the network (a randomly
initialized VGG16: nothing may be downloaded), the image size (112 instead of 224) and the
number of iterations are smaller, to keep the test fast.
"""
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.optim import SGD
from torchvision import transforms

import _notebook_helpers as original
import cnnviz
from cnnviz import cnn_utils

device = torch.device("cpu")


def sample_image(size=160):
    """A real photo when the sample data is there, else a synthetic RGB image."""
    try:
        path = os.path.join(cnnviz.data_dir(), "images", "cat_chelsea.png")
    except FileNotFoundError:
        path = None
    if path and os.path.exists(path):
        return Image.open(path).convert("RGB")
    yy, xx = np.mgrid[0:size, 0:size]
    arr = np.stack([xx * 255 // size, yy * 255 // size, (xx + yy) * 127 // size], axis=-1)
    return Image.fromarray(arr.astype(np.uint8))


# --- the notebook's code (sections 3 and 8), with its image size as a parameter -----------


def normalize_image(image, size=224):
    """Normalize image for VGG16 input"""
    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    preprocess = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(), normalize])
    return preprocess(image).unsqueeze(0).to(device)


def get_layer_output(model, input_tensor, target_layer):
    """Get output from a specific layer"""
    x = input_tensor
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i == target_layer:
            return x
    return x


def feature_inversion(model, input_tensor, target_layer, num_iterations=200, lr=1e3):
    """Perform feature inversion using gradient descent"""

    # Get target representation
    model.eval()
    with torch.no_grad():
        target_features = get_layer_output(model, input_tensor, target_layer)

    # Initialize random noise image
    noise_image = torch.randn_like(input_tensor, requires_grad=True, device=device)

    # Optimizer
    optimizer = SGD([noise_image], lr=lr, momentum=0.9)

    # Regularization parameters
    alpha_reg_lambda = 1e-7
    alpha_reg_alpha = 6
    tv_reg_lambda = 1e-8
    tv_reg_beta = 2

    reconstructed_images = []
    losses = []

    for i in range(num_iterations):
        optimizer.zero_grad()

        # Get current features
        current_features = get_layer_output(model, noise_image, target_layer)

        # Feature reconstruction loss
        feature_loss = cnn_utils.euclidian_loss(target_features, current_features)

        # Regularization terms
        alpha_reg = alpha_reg_lambda * cnn_utils.alpha_norm(noise_image, alpha_reg_alpha)
        tv_reg = tv_reg_lambda * cnn_utils.total_variation_norm(noise_image, tv_reg_beta)

        # Total loss
        total_loss = feature_loss + alpha_reg + tv_reg

        total_loss.backward()
        optimizer.step()

        losses.append(total_loss.item())

        # Save intermediate results
        if i % (num_iterations // 10) == 0:
            with torch.no_grad():
                img_array = cnn_utils.recreate_image(noise_image)
                reconstructed_images.append(img_array)

    return reconstructed_images, losses


# ------------------------------------------------------------------------------------------


def test_notebook_feature_inversion():
    torch.manual_seed(42)
    model = torchvision.models.vgg16(weights=None)
    model.to(device)
    model.eval()
    img_tensor = normalize_image(sample_image(), size=112)
    images, losses = feature_inversion(model, img_tensor, target_layer=5, num_iterations=10)
    assert len(losses) == 10 and all(np.isfinite(losses))
    # lr = 1e3 with momentum overshoots now and then, but the loss falls overall.
    assert losses[-1] < 0.5 * losses[0] and min(losses) < 0.25 * losses[0]
    assert len(images) == 10
    for img in images:
        assert img.shape == (112, 112, 3) and img.dtype == np.uint8
    # compare_layer_reconstructions shows the original next to them.
    original = cnn_utils.recreate_image(img_tensor)
    assert original.shape == (112, 112, 3) and original.dtype == np.uint8


def _pair(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g, dtype=dtype)
    b = torch.randn(shape, generator=g, dtype=dtype)
    return a, b


def _value_and_grad(fn, *args):
    args = [a.clone().requires_grad_(True) for a in args]
    v = fn(*args)
    grads = torch.autograd.grad(v, args)
    return v, grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 3, 9, 11), (2, 3, 6, 5), (3, 7, 8)])
def test_losses_equal_the_original_helpers(dtype, shape):
    a, b = _pair(shape, dtype, 3)
    cases = [
        (lambda m: cnn_utils.alpha_norm(m, 6), lambda m: original.alpha_norm(m, 6), (a,)),
        (lambda m: cnn_utils.alpha_norm(m, 3), lambda m: original.alpha_norm(m, 3), (a,)),
        (lambda m: cnn_utils.total_variation_norm(m, 2), lambda m: original.total_variation_norm(m, 2), (a,)),
        (lambda m: cnn_utils.total_variation_norm(m, 1), lambda m: original.total_variation_norm(m, 1), (a,)),
        (cnn_utils.euclidian_loss, original.euclidian_loss, (a, b)),
    ]
    for ours, theirs, args in cases:
        v, g = _value_and_grad(ours, *args)
        rv, rg = _value_and_grad(theirs, *args)
        assert v.dtype == rv.dtype == dtype and v.shape == rv.shape == ()
        torch.testing.assert_close(v, rv, rtol=0, atol=0)
        for x, y in zip(g, rg):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_double_backward_like_the_original():
    a = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    for fn, ref in ((cnn_utils.alpha_norm, original.alpha_norm), (cnn_utils.total_variation_norm, original.total_variation_norm)):
        (g,) = torch.autograd.grad(fn(a, 4), a, create_graph=True)
        (rg,) = torch.autograd.grad(ref(a, 4), a, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), a)
        (rh,) = torch.autograd.grad(rg.sum(), a)
        torch.testing.assert_close(h, rh, rtol=0, atol=0)


def test_total_variation_norm_is_the_helpers_indexing():
    # On (C, H, W) the helper is the spatial total variation; on a batch it differences
    # dimensions 1 and 2 (channels and rows). cnnviz.total_variation is the spatial one.
    x = torch.randn(1, 3, 7, 9, dtype=torch.float64)

    def spatial(m, beta):
        c = m[..., :-1, :-1]
        return (((c - m[..., 1:, :-1]) ** 2 + (c - m[..., :-1, 1:]) ** 2) ** (beta / 2)).sum()

    torch.testing.assert_close(cnn_utils.total_variation_norm(x[0], 2), spatial(x[0], 2))
    torch.testing.assert_close(cnn_utils.total_variation_norm(x, 2), spatial(x.permute(0, 3, 1, 2), 2))
    torch.testing.assert_close(cnnviz.total_variation(x, 2), spatial(x, 2))
    # A vertical ramp in a (C, H, W) image: variation from rows only.
    ramp = torch.arange(5.0).view(1, 5, 1).expand(1, 5, 4)
    assert cnn_utils.total_variation_norm(ramp, 2).item() == pytest.approx(4 * 3)


def test_nan_in_nan_out_with_a_warning():
    a, b = _pair((1, 3, 6, 6), torch.float32, 5)
    bad = b.clone()
    bad[0, 1, 2, 3] = float("nan")
    for ours, theirs, args in (
        (cnn_utils.euclidian_loss, original.euclidian_loss, (a, bad)),
        (lambda m: cnn_utils.alpha_norm(m, 6), lambda m: original.alpha_norm(m, 6), (bad,)),
        (lambda m: cnn_utils.total_variation_norm(m, 2), lambda m: original.total_variation_norm(m, 2), (bad,)),
    ):
        assert torch.isnan(theirs(*args))
        with pytest.warns(cnn_utils.NonFiniteWarning, match="returned nan"):
            v = ours(*args)
        assert torch.isnan(v) and v.dtype == torch.float32
    # The reference all zeros: 0/0 as in the helper.
    with pytest.warns(cnn_utils.NonFiniteWarning):
        v = cnn_utils.euclidian_loss(torch.zeros(3), torch.zeros(3))
    assert torch.isnan(v) and torch.isnan(original.euclidian_loss(torch.zeros(3), torch.zeros(3)))
    # Overflow to infinity (a diverging optimization) warns too.
    with pytest.warns(cnn_utils.NonFiniteWarning, match="returned inf"):
        v = cnn_utils.alpha_norm(torch.full((4,), 1e30), 6)
    assert torch.isinf(v)
    # Finite results do not warn.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnn_utils.euclidian_loss(a, b)


def test_helper_shapes_broadcast_like_the_original():
    a = torch.randn(1, 4, 3, 3)
    b = torch.randn(4, 3, 3)
    torch.testing.assert_close(cnn_utils.euclidian_loss(a, b), original.euclidian_loss(a, b), rtol=0, atol=0)
    with pytest.raises(RuntimeError):  # as the original: shapes that do not broadcast
        cnn_utils.euclidian_loss(torch.ones(3), torch.ones(4))
    # Non-contiguous input (the original's view(-1) failed there): the same value as contiguous.
    t = torch.randn(1, 3, 5, 7).transpose(2, 3)
    torch.testing.assert_close(cnn_utils.alpha_norm(t, 2), original.alpha_norm(t.contiguous(), 2), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recreate_image_equals_the_original(dtype):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 17, 13, generator=g, dtype=dtype) * 1.5  # beyond [0, 1] after deprocessing too
    ours = cnn_utils.recreate_image(x.requires_grad_(True))
    ref = original.recreate_image(x)
    assert ours.dtype == ref.dtype == np.uint8 and ours.shape == ref.shape == (17, 13, 3)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(cnn_utils.recreate_image(x[0]), ref)  # (3, H, W) too
    # NaN pixels: 0, as np.uint8(nan) gives on x86.
    y = x.detach().clone()
    y[0, :, 0, 0] = float("nan")
    assert (cnn_utils.recreate_image(y)[0, 0] == 0).all()


def test_recreate_image_inverts_preprocess_image():
    small = sample_image().resize((48, 40))
    x = cnn_utils.preprocess_image(small, resize_im=False)
    back = cnn_utils.recreate_image(x)
    assert back.shape == (40, 48, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - np.asarray(small).astype(int)).max() <= 1


@pytest.mark.parametrize("resize", [True, False])
def test_preprocess_image_equals_the_original(resize):
    img = sample_image().resize((96, 72))
    ours = cnn_utils.preprocess_image(img, resize_im=resize)
    ref = original.preprocess_image(img, resize_im=resize)
    assert ours.dtype == ref.dtype == torch.float32 and ours.requires_grad and ref.requires_grad
    assert ours.shape == ref.shape == ((1, 3, 224, 224) if resize else (1, 3, 72, 96))
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    arr = np.asarray(img)
    torch.testing.assert_close(cnn_utils.preprocess_image(arr, resize), original.preprocess_image(arr, resize), rtol=0, atol=0)
    # It is the notebook's normalize_image (ToTensor + Normalize) up to float rounding.
    ref_t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(cnn_utils.IMAGENET_MEAN, cnn_utils.IMAGENET_STD)])
    if not resize:
        torch.testing.assert_close(ours.detach(), ref_t(img).unsqueeze(0))


def test_preprocess_image_extensions():
    # Where the original failed: grayscale, RGBA and float arrays.
    arr = np.asarray(sample_image().resize((40, 30)))
    rgb = cnn_utils.preprocess_image(arr, resize_im=False)
    assert cnn_utils.preprocess_image(arr[:, :, 0]).shape == (1, 3, 224, 224)
    rgba = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    torch.testing.assert_close(cnn_utils.preprocess_image(rgba, resize_im=False), rgb)
    torch.testing.assert_close(cnn_utils.preprocess_image(arr.astype(np.float32) / 255, resize_im=False), rgb)


def test_bad_input():
    with pytest.raises(TypeError):
        cnn_utils.preprocess_image("cat.jpg")
    with pytest.raises(ValueError):
        cnn_utils.preprocess_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError):
        cnn_utils.preprocess_image(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(TypeError):
        cnn_utils.preprocess_image(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(ValueError):
        cnn_utils.preprocess_image(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError):
        cnn_utils.recreate_image(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError):
        cnn_utils.recreate_image(torch.zeros(0, 3, 4, 4))
    with pytest.raises(TypeError):
        cnn_utils.recreate_image(np.zeros((3, 4, 4)))
    with pytest.raises(TypeError):
        cnn_utils.recreate_image(torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(IndexError):  # as the original: it indexes three dimensions
        cnn_utils.total_variation_norm(torch.ones(4, 4), 2)
