"""The ``cnnviz`` command on the pretrained samples and on bad input."""
import os

import pytest

import cnnviz
from cnnviz import cli


def test_predict_and_explain(data_dir, tmp_path, capsys):
    photo = os.path.join(data_dir, "images", "cat_chelsea.png")
    assert cli.main(["predict", photo, "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "Egyptian cat" in lines[0]

    out = tmp_path / "cam.png"
    assert cli.main(["explain", photo, "--method", "grad_cam", "--out", str(out)]) == 0
    written = cnnviz.load_image(str(out))
    assert written.shape == (224, 224, 3)
    # The overlay is the photo blended with the Grad-CAM heatmap computed directly.
    x = cli._input(photo, 224)
    heat = cnnviz.grad_cam(cnnviz.zoo.pretrained("mobilenet_v2"), x, "features").upsampled[0]
    expected = cnnviz.overlay(cnnviz.deprocess(x), heat, alpha=0.5)
    assert (written.int() - expected.int()).abs().max() <= 1


def test_cifar_model_and_summary(data_dir, capsys):
    photo = os.path.join(data_dir, "images", "cifar10_samples", "cifar10_00_3.png")
    assert cli.main(["predict", photo, "--model", "resnet20", "-k", "1"]) == 0
    assert "cat" in capsys.readouterr().out
    assert cli.main(["summary", "--model", "resnet20"]) == 0
    assert "layer3.2.conv2" in capsys.readouterr().out


def test_bad_input(tmp_path, capsys):
    assert cli.main(["info"]) == 0
    assert cnnviz.__version__ in capsys.readouterr().out
    assert cli.main(["predict", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert cli.main(["predict", "x.png", "--model", "alexnet"]) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["explain", "x.png", "--method", "magic", "--out", "y.png"])
