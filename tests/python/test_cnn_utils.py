"""cnnviz.cnn_utils as the notebook uses it.

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


def test_euclidian_loss_argument_order_and_formula():
    torch.manual_seed(0)
    org, target = torch.randn(1, 8, 5, 5), torch.randn(1, 8, 5, 5, requires_grad=True)
    loss = cnn_utils.euclidian_loss(org, target)
    expected = (target - org).pow(2).sum() / org.pow(2).sum()  # normalized by the first argument
    torch.testing.assert_close(loss, expected)
    (g,) = torch.autograd.grad(loss, target)
    torch.testing.assert_close(g, 2 * (target - org).detach() / org.pow(2).sum())


def test_alpha_norm_agrees_with_the_original_for_even_alpha():
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    original = (x.view(-1) ** 6).sum()  # the original helper, without abs
    torch.testing.assert_close(cnn_utils.alpha_norm(x, 6), original)
    torch.testing.assert_close(cnn_utils.alpha_norm(x, 3), x.abs().pow(3).sum())


def test_total_variation_norm_differences_height_and_width():
    torch.manual_seed(1)
    x = torch.randn(1, 3, 7, 9, dtype=torch.float64)

    def spatial(m, beta):  # the intended formula, over the last two dimensions
        c = m[..., :-1, :-1]
        return (((c - m[..., 1:, :-1]) ** 2 + (c - m[..., :-1, 1:]) ** 2) ** (beta / 2)).sum()

    def original(m, beta):  # the notebook's helper: indexes (N, C, H, W) as (C, H, W)
        c = m[:, :-1, :-1]
        return (((c - m[:, 1:, :-1]) ** 2 + (c - m[:, :-1, 1:]) ** 2) ** (beta / 2)).sum()

    for beta in (1, 2):
        torch.testing.assert_close(cnn_utils.total_variation_norm(x, beta), spatial(x, beta))
        torch.testing.assert_close(cnn_utils.total_variation_norm(x[0], beta), spatial(x[0], beta))
        # For a (C, H, W) image the original was right; for a batch it was not.
        torch.testing.assert_close(original(x[0], beta), spatial(x[0], beta))
        assert not torch.allclose(original(x, beta), spatial(x, beta))
    # A vertical ramp has total variation from rows only.
    ramp = torch.arange(5.0).view(1, 1, 5, 1).expand(1, 1, 5, 4)
    assert cnn_utils.total_variation_norm(ramp, 2).item() == pytest.approx(4 * 3)


def test_preprocess_image_matches_the_notebook_normalization():
    img = sample_image()
    x = cnn_utils.preprocess_image(img)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32 and x.requires_grad
    # Without resizing it is exactly ToTensor + Normalize (the notebook's normalize_image).
    small = img.resize((40, 30))
    ref = transforms.Compose([transforms.ToTensor(), transforms.Normalize(cnn_utils.IMAGENET_MEAN, cnn_utils.IMAGENET_STD)])
    torch.testing.assert_close(cnn_utils.preprocess_image(small, resize_im=False).detach(), ref(small).unsqueeze(0))
    # Arrays: uint8 RGB, grayscale, RGBA, float in [0, 1].
    arr = np.asarray(small)
    torch.testing.assert_close(cnn_utils.preprocess_image(arr, resize_im=False), cnn_utils.preprocess_image(small, resize_im=False))
    assert cnn_utils.preprocess_image(arr[:, :, 0]).shape == (1, 3, 224, 224)
    rgba = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    torch.testing.assert_close(cnn_utils.preprocess_image(rgba, resize_im=False), cnn_utils.preprocess_image(arr, resize_im=False))
    torch.testing.assert_close(
        cnn_utils.preprocess_image(arr.astype(np.float32) / 255, resize_im=False), cnn_utils.preprocess_image(arr, resize_im=False)
    )


def test_recreate_image_inverts_preprocess_image():
    small = sample_image().resize((48, 40))
    x = cnn_utils.preprocess_image(small, resize_im=False)
    back = cnn_utils.recreate_image(x)
    assert back.shape == (40, 48, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - np.asarray(small).astype(int)).max() <= 1
    np.testing.assert_array_equal(cnn_utils.recreate_image(x[0]), back)  # (3, H, W) too
    # Out-of-range values are clipped.
    assert cnn_utils.recreate_image(torch.full((1, 3, 2, 2), 50.0)).min() == 255
    assert cnn_utils.recreate_image(torch.full((1, 3, 2, 2), -50.0)).max() == 0


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
    with pytest.raises(ValueError, match="all zeros"):
        cnn_utils.euclidian_loss(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="differ in shape"):
        cnn_utils.euclidian_loss(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="alpha must be a positive"):
        cnn_utils.alpha_norm(torch.ones(3), 0)
    with pytest.raises(ValueError, match="beta must be a positive"):
        cnn_utils.total_variation_norm(torch.ones(1, 3, 4, 4), -2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cnn_utils.total_variation_norm(torch.ones(4, 4), 2)
