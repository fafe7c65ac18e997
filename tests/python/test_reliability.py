"""No silent wrong answers: defaults that would quietly give a wrong result warn, adapt or
refuse (overflowing counts, attacks on inputs outside their pixel range, float images in
[0, 255], normalized inputs to ssim/psnr/make_grid, a model left in training mode, paths
with NUL bytes), and hostile image files are refused (see also tests/fuzz)."""
import os
import resource
import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import cnnviz

HERE = os.path.dirname(os.path.abspath(__file__))
REGRESSIONS = os.path.join(HERE, "..", "fuzz", "regressions")
MEAN = torch.tensor(cnnviz.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(cnnviz.IMAGENET_STD).view(1, 3, 1, 1)


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3)).eval()


def valid_x(n=2, size=8):
    return (torch.rand(n, 3, size, size) - MEAN) / STD


# -- integer overflow -------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda m, x: cnnviz.smooth_grad(m, x, samples=2 ** 62),
    lambda m, x: cnnviz.integrated_gradients(m, x, steps=2 ** 62),
    lambda m, x: cnnviz.lime(m, x, samples=2 ** 62, segmentation="grid", segments=4),
], ids=["smooth_grad", "integrated_gradients", "lime"])
def test_overflowing_counts_are_refused(call):
    with pytest.raises(ValueError, match="too large"):
        call(tiny_net(), valid_x(2))


# -- attacks on inputs outside their pixel range ------------------------------------------

def test_attacks_refuse_inputs_outside_the_pixel_range():
    model, x = tiny_net(), torch.randn(1, 3, 8, 8) * 3
    for attack in (cnnviz.fgsm, cnnviz.pgd):
        with pytest.raises(ValueError, match="outside the pixel range"):
            attack(model, x, eps=0.0)


def test_pgd_and_fgsm_with_eps_zero_change_nothing():
    model, x = tiny_net(), valid_x(2)
    x[0, 0, 0, 0] = (1.0 - MEAN[0, 0, 0, 0]) / STD[0, 0, 0, 0]   # a pixel exactly at 1
    for r in (cnnviz.pgd(model, x, eps=0.0), cnnviz.fgsm(model, x, eps=0.0)):
        assert float(r.perturbation.abs().max()) == 0.0
        torch.testing.assert_close(r.adversarial, x)


# -- float images in [0, 255], normalized inputs ----------------------------------------------

def test_preprocess_of_a_0_255_float_image_converts_with_a_warning():
    img = torch.randint(0, 256, (20, 24, 3), dtype=torch.uint8)
    expected = cnnviz.preprocess(img, size=16)
    with pytest.warns(UserWarning, match=r"\[0, 255\]"):
        got = cnnviz.preprocess(img.float(), size=16)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_preprocess_refuses_a_normalized_tensor_as_image():
    img = (torch.rand(20, 24, 3) - 0.5) * 4
    with pytest.raises(ValueError, match="deprocess"):
        cnnviz.preprocess(img, size=16)


def test_ssim_and_psnr_refuse_normalized_inputs_without_data_range():
    a = valid_x(1, 16)
    b = a + 0.1 * torch.randn_like(a)
    for fn in (cnnviz.ssim, cnnviz.psnr):
        with pytest.raises(ValueError, match="data_range"):
            fn(a, b)
    # With the span given, the values equal those of the images in [0, 1] (SSIM and PSNR
    # are invariant to a common affine map when data_range follows it, per channel here 1).
    pa, pb = a * STD + MEAN, b * STD + MEAN
    torch.testing.assert_close(cnnviz.psnr(pa, pb), cnnviz.psnr(pa * 3 - 1, pb * 3 - 1, data_range=3.0))


def test_make_grid_warns_when_it_would_clip_normalized_images():
    x = valid_x(2, 8)
    with pytest.warns(UserWarning, match="outside \\[0, 1\\]"):
        cnnviz.make_grid(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnnviz.make_grid(x * STD + MEAN)
        cnnviz.make_grid(x, normalize=True)


def test_model_in_training_mode_warns():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    x = valid_x(2)
    with pytest.warns(UserWarning, match="training mode"):
        cnnviz.saliency(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnnviz.saliency(model.eval(), x)
    assert not model.training


# -- paths -------------------------------------------------------------------------------

def test_paths_with_nul_bytes_are_refused(tmp_path):
    img = torch.zeros(4, 4, 3, dtype=torch.uint8)
    good = tmp_path / "dog.png"
    cnnviz.save_image(img, good)
    with pytest.raises(ValueError, match="NUL"):
        cnnviz.load_image(str(good) + "\0.x")
    with pytest.raises(ValueError, match="NUL"):
        cnnviz.save_image(img, str(tmp_path / "out") + "\0.png")
    assert not (tmp_path / "out").exists()


# -- hostile files -------------------------------------------------------------------------

REFUSALS = {
    "gif_no_pixel_data.gif": "no LZW data|without pixel data",
    "jpeg_edited_header.jpg": "more than its .* bytes can encode",
    "jpeg_half_with_eoi.jpg": "truncated",
    "jpeg_half_no_eoi.jpg": "truncated",
    "jpeg_no_scan.jpg": "no scan",
    "png_bomb_header.png": "more than its .* bytes can encode",
    "bmp_truncated.bmp": "truncated",
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_hostile_files_are_refused(name):
    path = os.path.join(REGRESSIONS, name)
    with pytest.raises(ValueError, match=REFUSALS[name]):
        cnnviz.load_image(path)
    with open(path, "rb") as f:
        with pytest.raises(ValueError, match=REFUSALS[name]):
            cnnviz.decode_image(f.read())


def test_png_with_an_empty_first_data_chunk_decodes():
    # Legal, and it used to reach stb's memcpy(NULL, ..., 0): the decoder drops the empty chunk.
    img = cnnviz.load_image(os.path.join(REGRESSIONS, "png_empty_first_idat.png"))
    assert tuple(img.shape) == (8, 8, 3)


def test_truncated_real_photo_is_refused_and_the_whole_one_loads(data_dir, tmp_path):
    with open(os.path.join(data_dir, "images", "dog.jpg"), "rb") as f:
        whole = f.read()
    full = cnnviz.decode_image(whole)
    assert full.shape[0] > 100
    for cut in (len(whole) // 2, len(whole) * 9 // 10):
        with pytest.raises(ValueError, match="truncated"):
            cnnviz.decode_image(whole[:cut] + b"\xff\xd9")


def test_pixel_limit_is_configurable():
    data = open(os.path.join(HERE, "..", "fuzz", "corpus", "rgb.png"), "rb").read()
    assert cnnviz.decode_image(data).shape[:2] == (12, 16)
    with pytest.raises(ValueError, match="beyond the limits"):
        cnnviz.decode_image(data, max_pixels=100)


def test_non_regular_files_are_refused_without_blocking(tmp_path):
    with pytest.raises(ValueError, match="character device"):
        cnnviz.load_image("/dev/zero")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    errors = []

    def load():
        try:
            cnnviz.load_image(fifo)
        except Exception as e:  # noqa: BLE001 - inspected below
            errors.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(timeout=20)
    if t.is_alive():  # unblock the reader before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("load_image blocked on a named pipe")
    assert len(errors) == 1 and isinstance(errors[0], ValueError) and "named pipe" in str(errors[0])


def test_large_non_image_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big.png"
    with open(path, "wb") as f:
        f.write(b"this is not an image")
        f.truncate(1 << 30)  # sparse: 1 GiB on paper
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="not a JPEG, PNG, BMP or GIF"):
        cnnviz.load_image(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256
