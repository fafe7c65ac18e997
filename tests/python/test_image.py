"""cnnviz.image: decoding against PIL, round trips, bad and fuzzed files, preprocessing against
torchvision, colormaps against matplotlib, grids against torchvision.utils.make_grid."""
import inspect
import io
import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cnnviz


@pytest.fixture(scope="module")
def data():
    try:
        d = cnnviz.data_dir()
    except FileNotFoundError:
        pytest.skip("sample data not found: set CNNVIZ_DATA to run the real-photo tests")
    if not os.path.isdir(os.path.join(d, "images")):
        pytest.skip(f"sample data folder {d} has no images/")
    return d


def photos(data, ext):
    folder = os.path.join(data, "images")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(ext))


def pil_rgb(path_or_bytes):
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB"))


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


def smooth_rgb(h=48, w=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Decoding


def test_real_photos_decode_like_pil(data):
    pngs = photos(data, ".png")
    assert pngs
    for path in pngs:
        img = cnnviz.load_image(path)
        assert img.dtype == torch.uint8 and img.dim() == 3 and img.shape[2] == 3
        np.testing.assert_array_equal(img.numpy(), pil_rgb(path), err_msg=path)
    # JPEG decoders differ in IDCT and chroma upsampling: close, not equal.
    jpgs = photos(data, ".jpg") + sorted(
        os.path.join(data, "images", "imagenet_samples", f)
        for f in os.listdir(os.path.join(data, "images", "imagenet_samples"))
    )[:6]
    for path in jpgs:
        img = cnnviz.load_image(path).numpy().astype(np.int16)
        ref = pil_rgb(path).astype(np.int16)
        assert img.shape == ref.shape
        assert np.abs(img - ref).mean() < 2.0, path


def test_decode_from_memory_in_every_form(data):
    path = os.path.join(data, "images", "coffee.png")
    raw = open(path, "rb").read()
    ref = cnnviz.load_image(path)
    for form in (raw, bytearray(raw), memoryview(raw), np.frombuffer(raw, np.uint8),
                 torch.frombuffer(bytearray(raw), dtype=torch.uint8)):
        assert torch.equal(cnnviz.decode_image(form), ref), type(form)
    from pathlib import Path

    assert torch.equal(cnnviz.load_image(Path(path)), ref)


def test_modes_and_formats_made_with_pil():
    rgb = smooth_rgb()
    base = Image.fromarray(rgb)
    cases = {
        "gray png": encoded(base.convert("L"), "PNG"),
        "rgba png": encoded(Image.fromarray(np.dstack([rgb, (rgb[..., :1] // 2)])), "PNG"),
        "la png": encoded(base.convert("LA"), "PNG"),
        "palette png": encoded(base.convert("P"), "PNG"),
        "bmp": encoded(base, "BMP"),
        "palette bmp": encoded(base.convert("P"), "BMP"),
        "gray bmp": encoded(base.convert("L"), "BMP"),
        "gif": encoded(base.convert("P"), "GIF"),
    }
    for name, raw in cases.items():
        np.testing.assert_array_equal(cnnviz.decode_image(raw).numpy(), pil_rgb(raw), err_msg=name)
    # Lossy and 16-bit inputs.
    gray_jpeg = encoded(base.convert("L"), "JPEG", quality=95)
    dec = cnnviz.decode_image(gray_jpeg).numpy()
    assert np.array_equal(dec[..., 0], dec[..., 2])
    assert np.abs(dec.astype(int) - pil_rgb(gray_jpeg)).max() <= 2
    sixteen = (rgb[..., 0].astype(np.uint16) * 257 + 3)
    d16 = cnnviz.decode_image(encoded(Image.fromarray(sixteen), "PNG")).numpy()
    np.testing.assert_array_equal(d16[..., 1], (sixteen >> 8).astype(np.uint8))


def test_gif_first_frame():
    frames = [Image.new("RGB", (10, 6), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    raw = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = cnnviz.decode_image(raw)
    assert img.shape == (6, 10, 3)
    assert (img == torch.tensor([255, 0, 0], dtype=torch.uint8)).all()


# --------------------------------------------------------------------------------------
# Saving


def test_round_trips(tmp_path, data):
    img = cnnviz.load_image(os.path.join(data, "images", "cat_chelsea.png"))
    for ext in ("png", "PNG", "bmp"):
        p = tmp_path / f"x.{ext}"
        cnnviz.save_image(img, p)
        assert torch.equal(cnnviz.load_image(p), img)
        np.testing.assert_array_equal(pil_rgb(str(p)), img.numpy())  # PIL reads what we write
    for ext in ("jpg", "jpeg"):
        p = tmp_path / f"x.{ext}"
        cnnviz.save_image(img, p, quality=95)
        back = cnnviz.load_image(p)
        assert back.shape == img.shape
        assert (back.float() - img.float()).abs().mean() < 2.0
        assert cnnviz.psnr(back, img) > 35
    # Accepted inputs: PIL, numpy gray, float [0, 1], RGBA (alpha kept in PNG).
    cnnviz.save_image(Image.fromarray(img.numpy()), tmp_path / "pil.png")
    assert torch.equal(cnnviz.load_image(tmp_path / "pil.png"), img)
    gray = img[..., 0].numpy()
    cnnviz.save_image(gray, tmp_path / "gray.png")
    with Image.open(tmp_path / "gray.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), gray)
    cnnviz.save_image(img.float() / 255, tmp_path / "float.png")
    assert torch.equal(cnnviz.load_image(tmp_path / "float.png"), img)
    rgba = np.dstack([img.numpy(), np.full(img.shape[:2], 9, np.uint8)])
    cnnviz.save_image(rgba, tmp_path / "rgba.png")
    with Image.open(tmp_path / "rgba.png") as im:
        np.testing.assert_array_equal(np.asarray(im), rgba)
    raw = cnnviz.encode_image(img, "png")
    assert isinstance(raw, bytes) and torch.equal(cnnviz.decode_image(raw), img)


def test_save_errors(tmp_path):
    img = torch.zeros(4, 4, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"unknown extension '\.tif'"):
        cnnviz.save_image(img, tmp_path / "a.tif")
    with pytest.raises(ValueError, match="unknown extension"):
        cnnviz.save_image(img, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="no_dir"):
        cnnviz.save_image(img, tmp_path / "no_dir" / "a.png")
    with pytest.raises(ValueError):
        cnnviz.save_image(torch.zeros(0, 4, 3, dtype=torch.uint8), tmp_path / "a.png")
    with pytest.raises(ValueError):
        cnnviz.save_image(torch.zeros(4, 4, 2, dtype=torch.uint8), tmp_path / "a.png")
    with pytest.raises(ValueError):
        cnnviz.save_image(torch.full((4, 4), float("nan")), tmp_path / "a.png")
    with pytest.raises(ValueError):
        cnnviz.save_image(np.full((4, 4), 300), tmp_path / "a.png")
    with pytest.raises(ValueError):
        cnnviz.encode_image(img, "tiff")
    with pytest.raises(ValueError):
        cnnviz.encode_image(img, "jpeg", quality=101)
    with pytest.raises(TypeError):
        cnnviz.save_image("not an image", tmp_path / "a.png")


# --------------------------------------------------------------------------------------
# Bad input


def test_unreadable_files(tmp_path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(FileNotFoundError, match="missing.jpg") as e:
        cnnviz.load_image(missing)
    assert isinstance(e.value, OSError) and e.value.errno == 2
    with pytest.raises(IsADirectoryError):
        cnnviz.load_image(tmp_path)
    for name, raw in (("empty.png", b""), ("text.png", b"hello, world"), ("zeros.jpg", bytes(1000)),
                      ("html.gif", b"<html><body>GIF89a</body></html>")):
        p = tmp_path / name
        p.write_bytes(raw)
        with pytest.raises(ValueError, match=name):
            cnnviz.load_image(p)
    with pytest.raises(ValueError, match="not a JPEG, PNG, BMP or GIF"):
        cnnviz.decode_image(b"\x00\x00\x02\x00" + bytes(40))  # a TGA header: not accepted
    with pytest.raises(ValueError):
        cnnviz.decode_image(np.zeros((2, 2), np.uint8))
    with pytest.raises(TypeError):
        cnnviz.decode_image("a path is not bytes")


def test_truncated_files(tmp_path, data):
    rng = random.Random(0)
    sources = [os.path.join(data, "images", f) for f in ("dog.jpg", "cat_chelsea.png", "rocket.jpg")]
    small = Image.fromarray(smooth_rgb())
    made = {"gif": encoded(small.convert("P"), "GIF"), "bmp": encoded(small, "BMP"),
            "jpg": encoded(small, "JPEG", progressive=True)}
    for path in sources:
        raw = open(path, "rb").read()
        for frac in (0.01, 0.3, 0.6, 0.95) + tuple(rng.uniform(0.05, 0.98) for _ in range(3)):
            p = tmp_path / ("cut_" + os.path.basename(path))
            p.write_bytes(raw[: int(len(raw) * frac)])
            with pytest.raises(ValueError, match="cut_"):
                cnnviz.load_image(p)
    for name, raw in made.items():
        for frac in (0.1, 0.5, 0.9):
            with pytest.raises(ValueError):
                cnnviz.decode_image(raw[: int(len(raw) * frac)])


def png_with_size(w, h):
    raw = bytearray(encoded(Image.fromarray(smooth_rgb(4, 4)), "PNG"))
    raw[16:20] = w.to_bytes(4, "big")
    raw[20:24] = h.to_bytes(4, "big")
    return bytes(raw)


def test_declared_sizes_are_bounded():
    for w, h in ((100000, 100000), (20000, 1), (1, 2**31 - 1), (16384, 16385)):
        with pytest.raises(ValueError, match="beyond the limits"):
            cnnviz.decode_image(png_with_size(w, h))
    with pytest.raises(ValueError):
        cnnviz.decode_image(png_with_size(0, 4))
    with pytest.raises(ValueError, match="beyond the limits"):
        cnnviz.decode_image(png_with_size(4, 4), max_side=3)
    with pytest.raises(ValueError, match="beyond the limits"):
        cnnviz.decode_image(png_with_size(4, 4), max_pixels=15)
    bmp = bytearray(encoded(Image.fromarray(smooth_rgb(4, 4)), "BMP"))
    bmp[18:22] = (50000).to_bytes(4, "little")
    with pytest.raises(ValueError, match="beyond the limits"):
        cnnviz.decode_image(bytes(bmp))
    # A JPEG whose frame header claims 65535 x 65535.
    jpg = bytearray(encoded(Image.fromarray(smooth_rgb(8, 8)), "JPEG"))
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5: sof + 9] = b"\xff\xff\xff\xff"
    with pytest.raises(ValueError, match="65535x65535"):
        cnnviz.decode_image(bytes(jpg))


def test_jpeg_huffman_tables_are_checked_before_stb_sees_them():
    """Two stb flaws the fuzz target found: a Huffman table of more than 256 codes makes stb
    write past its arrays; a scan using an undefined table makes it decode with
    uninitialized memory. Both must be refused."""
    rng = np.random.default_rng(0)
    jpg = encoded(Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)), "JPEG")
    cnnviz.decode_image(jpg)
    dht = [i for i in range(len(jpg) - 1) if jpg[i:i + 2] == b"\xff\xc4"]
    assert len(dht) >= 2
    too_many = bytearray(jpg)
    too_many[dht[0] + 5 + 14] = 200  # counts of codes of lengths 15 and 16
    too_many[dht[0] + 5 + 15] = 200
    with pytest.raises(ValueError, match="more than 256 codes"):
        cnnviz.decode_image(bytes(too_many))
    undefined = bytearray(jpg)
    table = next(i for i in dht if jpg[i + 4] == 0x11)  # AC table 1, used by the chroma components
    undefined[table + 4] = 0x13  # now defines AC table 3 instead
    with pytest.raises(ValueError, match="undefined Huffman table"):
        cnnviz.decode_image(bytes(undefined))


def mutate(raw: bytes, rng: random.Random) -> bytes:
    b = bytearray(raw)
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(b[: rng.randrange(len(b))])
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(min(64, len(b))) if rng.random() < 0.5 else rng.randrange(len(b))
        b[pos] = rng.randrange(256) if kind == 1 else b[pos] ^ (1 << rng.randrange(8))
    if kind == 3:
        pos = rng.randrange(len(b))
        b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b)


def test_fuzz_mutated_real_files(data):
    """A few thousand mutated and truncated real files: each decodes or raises ValueError."""
    rng = random.Random(1234)
    folder = os.path.join(data, "images", "cifar10_samples")
    seeds = [open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))[:6]]
    photo = Image.open(os.path.join(folder, sorted(os.listdir(folder))[0])).convert("RGB")
    seeds += [encoded(photo, "JPEG", quality=90), encoded(photo, "JPEG", progressive=True),
              encoded(photo, "BMP"), encoded(photo.convert("P"), "GIF"), encoded(photo.convert("L"), "PNG")]
    decoded = refused = 0
    for i in range(3000):
        raw = mutate(seeds[i % len(seeds)], rng)
        try:
            img = cnnviz.decode_image(raw)
        except ValueError as e:
            assert str(e).startswith("cnnviz: ")
            refused += 1
            continue
        assert img.dtype == torch.uint8 and img.dim() == 3 and img.shape[2] == 3
        decoded += 1
    assert refused > 500 and decoded > 100, (decoded, refused)


# --------------------------------------------------------------------------------------
# Conversions


def test_as_image_tensor_forms():
    rgb = smooth_rgb(6, 5)
    ref = torch.from_numpy(rgb)
    assert torch.equal(cnnviz.as_image_tensor(rgb), ref)
    assert torch.equal(cnnviz.as_image_tensor(Image.fromarray(rgb)), ref)
    assert torch.equal(cnnviz.as_image_tensor(ref), ref)
    assert torch.equal(cnnviz.as_image_tensor(rgb.astype(np.float32) / 255), ref)
    assert torch.equal(cnnviz.as_image_tensor(rgb.astype(np.int64)), ref)
    assert torch.equal(cnnviz.as_image_tensor(np.dstack([rgb, rgb[..., :1]])), ref)
    assert torch.equal(cnnviz.as_image_tensor(Image.fromarray(rgb).convert("RGBA")), ref)
    g = rgb[..., 0]
    for form in (g, g[..., None], Image.fromarray(g)):
        out = cnnviz.as_image_tensor(form)
        assert out.shape == (6, 5, 3) and torch.equal(out[..., 2], torch.from_numpy(g))
    assert cnnviz.as_image_tensor(np.ones((2, 2), bool)).max() == 255
    assert cnnviz.as_image_tensor(rgb[:, ::-1]).is_contiguous()
    # (3, H, W): pixels in [0, 1] are channels first (permute them); a normalized input is not an image.
    with pytest.raises(ValueError, match="permute"):
        cnnviz.as_image_tensor(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="deprocess"):
        cnnviz.as_image_tensor(torch.randn(3, 8, 8) * 2)
    with pytest.raises(ValueError):
        cnnviz.as_image_tensor(np.full((2, 2), -1))
    with pytest.raises(ValueError):
        cnnviz.as_image_tensor(np.zeros((0, 3, 3), np.uint8))
    with pytest.raises(ValueError):
        cnnviz.as_image_tensor(np.full((2, 2, 3), np.nan, np.float32))
    with pytest.raises(TypeError):
        cnnviz.as_image_tensor([[1, 2], [3, 4]])


# --------------------------------------------------------------------------------------
# Preprocessing


def test_preprocess_matches_torchvision(data):
    import torchvision.transforms as T

    pil = Image.open(os.path.join(data, "images", "dog.jpg")).convert("RGB")
    img = torch.from_numpy(np.asarray(pil).copy())
    norm = T.Normalize(cnnviz.IMAGENET_MEAN, cnnviz.IMAGENET_STD)
    # The tensor pipeline uses the same antialiased kernel: equal up to float rounding.
    chw = img.permute(2, 0, 1).float() / 255
    ref = norm(T.CenterCrop(224)(T.Resize(256, antialias=True)(chw))).unsqueeze(0)
    x = cnnviz.preprocess(img, size=224, resize=256)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x, ref, atol=1e-4, rtol=0)
    # The classic PIL pipeline rounds to uint8 after resizing: close.
    ref_pil = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])(pil).unsqueeze(0)
    assert (x - ref_pil).abs().mean() < 0.01
    # The notebook's Resize((224, 224)).
    ref_nb = T.Compose([T.Resize((224, 224)), T.ToTensor(), norm])(pil).unsqueeze(0)
    assert (cnnviz.preprocess(pil) - ref_nb).abs().mean() < 0.01
    # Non-square sizes, no resize, other statistics, inputs in other forms.
    assert cnnviz.preprocess(img, size=(100, 150)).shape == (1, 3, 100, 150)
    assert cnnviz.preprocess(img, size=None).shape == (1, 3, 576, 768)
    assert cnnviz.preprocess(img, size=None, resize=100).shape == (1, 3, 100, 133)
    f = np.asarray(pil, dtype=np.float32) / 255
    torch.testing.assert_close(cnnviz.preprocess(f, size=None), norm(chw).unsqueeze(0), atol=1e-5, rtol=0)


def test_preprocess_deprocess_round_trip_and_errors():
    rgb = smooth_rgb(20, 30)
    x = cnnviz.preprocess(rgb, size=None)
    assert torch.equal(cnnviz.deprocess(x), torch.from_numpy(rgb))
    assert torch.equal(cnnviz.deprocess(x[0]), torch.from_numpy(rgb))
    y = cnnviz.preprocess(rgb, size=None, mean=cnnviz.CIFAR10_MEAN, std=cnnviz.CIFAR10_STD)
    assert torch.equal(cnnviz.deprocess(y, cnnviz.CIFAR10_MEAN, cnnviz.CIFAR10_STD), torch.from_numpy(rgb))
    # deprocess works on tensors that need grad and clamps out-of-range values.
    assert cnnviz.deprocess(torch.randn(1, 3, 4, 4, requires_grad=True) * 10).dtype == torch.uint8
    with pytest.raises(ValueError):
        cnnviz.preprocess(rgb, size=0)
    with pytest.raises(ValueError):
        cnnviz.preprocess(rgb, size=(1, 2, 3))
    with pytest.raises(ValueError):
        cnnviz.preprocess(rgb, resize=-3)
    with pytest.raises(ValueError, match="larger than the resized image"):
        cnnviz.preprocess(rgb, size=64, resize=32)
    with pytest.raises(ValueError):
        cnnviz.preprocess(rgb, std=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        cnnviz.preprocess(rgb, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="deprocess"):
        cnnviz.preprocess(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError):
        cnnviz.deprocess(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError):
        cnnviz.deprocess(torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError):
        cnnviz.deprocess(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError):
        cnnviz.deprocess(np.zeros((1, 3, 4, 4)))


def test_mobilenet_v2_reads_preprocessed_imagenet_samples(data):
    import torchvision

    weights = os.path.join(data, "weights", "mobilenet_v2_imagenet_fp16.pth")
    if not os.path.exists(weights):
        pytest.skip("mobilenet_v2_imagenet_fp16.pth not found")
    model = torchvision.models.mobilenet_v2()
    sd = torch.load(weights, map_location="cpu")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    model.eval()
    folder = os.path.join(data, "images", "imagenet_samples")
    files = sorted(os.listdir(folder))
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(os.path.join(folder, f)), size=224, resize=256) for f in files])
    labels = torch.tensor([int(os.path.splitext(f)[0].rsplit("_", 1)[1]) for f in files])
    with torch.no_grad():
        correct = (model(x).argmax(1) == labels).sum().item()
    assert correct >= 18, correct


def test_resnet20_reads_cifar_samples_with_cifar_constants(data):
    path = os.path.join(data, "weights", "resnet20_cifar10_traced.pt")
    if not os.path.exists(path):
        pytest.skip("resnet20_cifar10_traced.pt not found")
    model = torch.jit.load(path).eval()
    folder = os.path.join(data, "images", "cifar10_samples")
    files = sorted(os.listdir(folder))
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(os.path.join(folder, f)), size=None,
                                     mean=cnnviz.CIFAR10_MEAN, std=cnnviz.CIFAR10_STD) for f in files])
    labels = torch.tensor([int(os.path.splitext(f)[0].rsplit("_", 1)[1]) for f in files])
    with torch.no_grad():
        assert (model(x).argmax(1) == labels).sum().item() == len(files)


def test_resize_image():
    # Same weights as torch's antialiased kernel (uint8 results may round apart by one).
    rgb = torch.from_numpy(smooth_rgb(40, 60))
    for size in ((20, 30), (17, 45), (80, 23)):
        out = cnnviz.resize_image(rgb, size)
        ref = F.interpolate(rgb.permute(2, 0, 1)[None].float(), size=size, mode="bilinear",
                            align_corners=False, antialias=True)[0].permute(1, 2, 0)
        assert out.dtype == torch.uint8 and out.shape == (*size, 3)
        assert (out.float() - ref).abs().max() <= 0.5 + 1e-3
        f = cnnviz.resize_image(rgb.float() / 255, size)
        torch.testing.assert_close(f, ref / 255, atol=1e-5, rtol=0)
    no_aa = cnnviz.resize_image(rgb.float(), (20, 30), antialias=False)
    ref = F.interpolate(rgb.permute(2, 0, 1)[None].float(), size=(20, 30), mode="bilinear", align_corners=False)
    torch.testing.assert_close(no_aa, ref[0].permute(1, 2, 0))
    m = torch.rand(7, 7)
    up = cnnviz.resize_image(m, 28)
    ref = F.interpolate(m[None, None], size=(28, 28), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(up, ref)
    with pytest.raises(ValueError):
        cnnviz.resize_image(rgb, (0, 3))
    with pytest.raises(ValueError):
        cnnviz.resize_image(rgb, (1, 2, 3))


# --------------------------------------------------------------------------------------
# Rendering


def test_colormaps_match_matplotlib():
    import matplotlib

    torch.manual_seed(0)
    m = torch.randn(64, 48)
    unit = ((m - m.min()) / (m.max() - m.min())).numpy()
    for name in cnnviz.colormap_names():
        ours = cnnviz.colormap(m, name).numpy()
        ref = matplotlib.colormaps[name](unit, bytes=True)[..., :3]
        assert (ours == ref).all(axis=-1).mean() > 0.998, name  # bin edges may round apart
        assert np.abs(ours.astype(int) - ref).max() <= 12, name
    assert {"viridis", "hot", "jet", "gray"} <= set(cnnviz.colormap_names())
    # Fixed and symmetric ranges, maps in other shapes and forms.
    ref = matplotlib.colormaps["coolwarm"](np.clip((m.numpy() + 1) / 2, 0, 1), bytes=True)[..., :3]
    fixed = cnnviz.colormap(m, "coolwarm", vmin=-1, vmax=1).numpy()
    assert (fixed == ref).all(axis=-1).mean() > 0.998
    a = m.abs().max().item()
    sym = cnnviz.colormap(m, "bwr", symmetric=True)
    assert torch.equal(sym, cnnviz.colormap(m, "bwr", vmin=-a, vmax=a))
    assert torch.equal(cnnviz.colormap(m[None, None], "jet"), cnnviz.colormap(m.numpy(), "jet"))
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        cnnviz.colormap(m, "nope")
    with pytest.raises(ValueError):
        cnnviz.colormap(torch.rand(3, 4, 5))
    with pytest.raises(ValueError):
        cnnviz.colormap(torch.tensor([[float("inf")]]))
    with pytest.raises(ValueError):
        cnnviz.colormap(m, vmin=1, vmax=0)


def test_overlay_against_a_direct_blend():
    import matplotlib

    img = smooth_rgb(32, 40)
    heat = torch.rand(7, 7)
    up = F.interpolate(heat[None, None], size=(32, 40), mode="bilinear", align_corners=False)[0, 0].numpy()
    unit = (up - up.min()) / (up.max() - up.min())
    color = matplotlib.colormaps["jet"](unit, bytes=True)[..., :3].astype(np.float64)
    ref = np.floor(0.6 * img + 0.4 * color + 0.5)
    out = cnnviz.overlay(img, heat, alpha=0.4).numpy().astype(np.float64)
    assert out.shape == (32, 40, 3)
    assert (np.abs(out - ref) <= 1).mean() > 0.995
    assert torch.equal(cnnviz.overlay(Image.fromarray(img), heat, alpha=0.0), torch.from_numpy(img))
    with pytest.raises(ValueError):
        cnnviz.overlay(img, heat, alpha=2)
    with pytest.raises(ValueError):
        cnnviz.overlay(img, torch.rand(2, 3, 3))
    with pytest.raises(ValueError, match="deprocess"):
        cnnviz.overlay(torch.rand(1, 3, 32, 40), heat)


def test_make_grid_matches_torchvision():
    from torchvision.utils import make_grid as tv_grid

    def tv(t, **kw):  # torchvision's grid as save_image turns it into pixels
        return tv_grid(t, **kw).mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)

    torch.manual_seed(0)
    batch = torch.rand(7, 3, 9, 11)
    for kw in ({}, {"nrow": 3, "padding": 1, "pad_value": 1.0}, {"nrow": 10, "padding": 0}):
        assert torch.equal(cnnviz.make_grid(batch, **kw), tv(batch, **kw)), kw
    maps = torch.randn(5, 1, 6, 6) * 4
    for kw in ({"normalize": True}, {"normalize": True, "scale_each": True, "nrow": 2}):
        assert torch.equal(cnnviz.make_grid(maps, **kw), tv(maps, **kw)), kw
    # Lists of images in any form give the same grid as the batch.
    u8 = [cnnviz.as_image_tensor(b.permute(1, 2, 0)) for b in batch]
    assert torch.equal(cnnviz.make_grid([u.numpy() for u in u8], nrow=3), tv(batch, nrow=3))
    assert torch.equal(cnnviz.make_grid(torch.stack(u8), nrow=3), tv(batch, nrow=3))
    assert torch.equal(cnnviz.make_grid(list(batch), nrow=3), tv(batch, nrow=3))
    # One-channel maps with a colormap.
    g = cnnviz.make_grid(maps, normalize=True, scale_each=True, colormap="viridis", padding=0, nrow=5)
    assert torch.equal(g[:, :6], cnnviz.colormap(maps[0, 0], "viridis"))
    with pytest.raises(ValueError, match="unsqueeze"):
        cnnviz.make_grid(torch.rand(1, 16, 5, 5))
    with pytest.raises(ValueError, match="one size"):
        cnnviz.make_grid([torch.rand(3, 4, 4), torch.rand(3, 5, 4)])
    with pytest.raises(ValueError):
        cnnviz.make_grid([])
    with pytest.raises(ValueError):
        cnnviz.make_grid(batch, nrow=0)


def test_wrappers_take_their_options_and_defaults_from_the_cpp_options():
    from _options_check import check_wrapper

    from cnnviz import _C
    from cnnviz import image as im

    check_wrapper(cnnviz.load_image, _C.DecodeOptions)
    check_wrapper(cnnviz.decode_image, _C.DecodeOptions)
    check_wrapper(cnnviz.colormap, _C.ColormapOptions)
    check_wrapper(cnnviz.overlay, _C.OverlayOptions)
    # make_grid's colormap None is the C++ empty name (gray).
    check_wrapper(cnnviz.make_grid, _C.GridOptions, other_defaults={"colormap": None})
    # preprocess's size, mean and std default to the model's (model=) or else the C++ ones.
    check_wrapper(cnnviz.preprocess, _C.PreprocessOptions,
                  other_defaults={"size": im._UNSET, "mean": im._UNSET, "std": im._UNSET, "resize": None})
    assert tuple(_C.PreprocessOptions().size) == (224, 224)
    assert tuple(_C.PreprocessOptions().mean) == cnnviz.IMAGENET_MEAN
    assert tuple(_C.PreprocessOptions().std) == cnnviz.IMAGENET_STD
    assert _C.JPEG_QUALITY == 95
    for fn in (cnnviz.encode_image, cnnviz.save_image):
        assert inspect.signature(fn).parameters["quality"].default == _C.JPEG_QUALITY
    # An option set on the class reaches C++ (and its checks): the bridge is two-way.
    o = _C.ColormapOptions()
    o.name, o.vmin, o.vmax = "gray", 0.0, 2.0
    assert repr(o) == "ColormapOptions(name='gray', vmin=0.0, vmax=2.0, symmetric=False)"
    assert cnnviz.colormap(torch.tensor([[1.0]]), "gray", vmin=0.0, vmax=2.0)[0, 0].tolist() == [128] * 3
    with pytest.raises(TypeError):
        o.vmin = "low"


def test_preprocess_normalization_is_one_pair_and_deprocess_inverts_it():
    img = torch.randint(0, 256, (20, 30, 3), dtype=torch.uint8)
    mean, std = (0.5, 0.25, 0.75), (0.5, 0.5, 0.25)
    x = cnnviz.preprocess(img, size=None, mean=mean, std=std)
    ref = (img.permute(2, 0, 1).float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(x[0], ref, atol=1e-5, rtol=0)
    assert torch.equal(cnnviz.deprocess(x, mean=mean, std=std), img)
    assert torch.equal(cnnviz.deprocess(cnnviz.preprocess(img, size=None)), img)  # ImageNet both ways
    one = cnnviz.preprocess(img, size=None, mean=[0.5], std=[0.25])  # one value for every channel
    torch.testing.assert_close(one[0], (img.permute(2, 0, 1).float() / 255 - 0.5) / 0.25, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="1 or 3 values"):
        cnnviz.preprocess(img, size=None, mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="std must be positive"):
        cnnviz.preprocess(img, size=None, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="std must be positive"):
        cnnviz.deprocess(x, std=(0.2, -1.0, 0.2))


def test_channels_first_pixels_are_advised_to_permute_not_deprocess():
    # A ToTensor()-style (3, H, W) tensor in [0, 1] is an image laid out channels first.
    with pytest.raises(ValueError, match=r"permute"):
        cnnviz.preprocess(torch.rand(3, 10, 12))
    # The native check gives the same advice to C++ callers.
    from cnnviz import _C

    with pytest.raises(ValueError, match=r"permute\(\{1, 2, 0\}\)"):
        _C.preprocess(torch.rand(3, 10, 12))
    with pytest.raises(ValueError, match="deprocess"):
        _C.preprocess(torch.randn(3, 10, 12) * 2)
