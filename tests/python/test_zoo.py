"""Sample models carry what they were built for; preprocess and predict follow it."""
import os
import warnings

import pytest
import torch
import torch.nn as nn

import cnnviz
from cnnviz.zoo import ModelInfo, describe, info


def _cifar_cat(data_dir):
    return cnnviz.load_image(os.path.join(data_dir, "images", "cifar10_samples", "cifar10_00_3.png"))


def test_sample_models_carry_their_info(resnet20, mobilenet):
    assert info(resnet20) == ModelInfo("cifar10", (3, 32, 32), cnnviz.IMAGENET_MEAN, cnnviz.IMAGENET_STD, None)
    assert info(mobilenet) == ModelInfo("imagenet", (3, 224, 224), cnnviz.IMAGENET_MEAN, cnnviz.IMAGENET_STD, 256)
    assert info(resnet20).label_names()[3] == "cat"
    traced = cnnviz.zoo.pretrained("resnet20_traced")
    assert info(traced).input_size == (3, 32, 32)
    assert info(nn.Linear(2, 2)) is None


def test_preprocess_follows_the_model(data_dir, resnet20):
    img = _cifar_cat(data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = cnnviz.preprocess(img, model=resnet20)
    assert x.shape == (1, 3, 32, 32)
    # Independent reference: scale to [0, 1] and normalize by hand (no resize at 32x32).
    ref = (img.permute(2, 0, 1).float() / 255 - torch.tensor(cnnviz.IMAGENET_MEAN).view(3, 1, 1)) \
        / torch.tensor(cnnviz.IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(x[0], ref, atol=1e-5, rtol=0)
    top = cnnviz.predict(resnet20, x, k=1)
    assert top[0].label == "cat" and top[0].probability > 0.9
    # Explicit arguments win over the model's.
    assert cnnviz.preprocess(img, size=64, model=resnet20).shape == (1, 3, 64, 64)


def test_preprocess_warns_before_blowing_up_a_small_image(data_dir):
    img = _cifar_cat(data_dir)
    with pytest.warns(RuntimeWarning, match="upscales a 32x32 image to 224x224"):
        x = cnnviz.preprocess(img)
    assert x.shape == (1, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnnviz.preprocess(img, size=224)  # asked for explicitly: no warning
        cnnviz.preprocess(torch.zeros(200, 200, 3, dtype=torch.uint8))  # near the size: no warning
    with pytest.warns(RuntimeWarning, match="nothing is known about this model"):
        cnnviz.preprocess(img, model=nn.Conv2d(3, 3, 1))


def test_mobilenet_preprocess_is_the_imagenet_protocol(data_dir, mobilenet):
    img = cnnviz.load_image(os.path.join(data_dir, "images", "cat_chelsea.png"))
    torch.testing.assert_close(cnnviz.preprocess(img, model=mobilenet), cnnviz.preprocess(img, size=224, resize=256))
    assert cnnviz.predict(mobilenet, cnnviz.preprocess(img, model=mobilenet), k=1)[0].label == "Egyptian cat"


def test_describe_records_a_user_model_once():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    assert describe(net, labels=["a", "b", "c"], input_size=(20, 24), mean=(0.5,) * 3, std=(0.25,) * 3) is net
    x = cnnviz.preprocess(torch.full((40, 48, 3), 255, dtype=torch.uint8), model=net)
    assert x.shape == (1, 3, 20, 24)
    torch.testing.assert_close(x, torch.full((1, 3, 20, 24), 2.0))  # (1 - 0.5) / 0.25
    assert {p.label for p in cnnviz.predict(net, x, k=3)} == {"a", "b", "c"}
    with pytest.raises(ValueError, match="input_size"):
        describe(net, input_size=(3, 0, 4))
    with pytest.raises(ValueError, match="one value per channel"):
        describe(net, input_size=(3, 8, 8), mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="unknown label set"):
        describe(net, labels="imagenet21k")
    with pytest.raises(ValueError, match="std"):
        describe(net, std=(0.0, 1.0, 1.0))


def test_predict_labels_default_to_the_models(resnet20):
    x = torch.zeros(1, 3, 32, 32)
    assert cnnviz.predict(resnet20, x, k=10)[0].label in cnnviz.zoo.cifar10_labels()
    assert cnnviz.predict(resnet20, x, k=1, labels=None)[0].label.isdigit()


def test_channels_first_image_gets_the_right_advice():
    with pytest.raises(ValueError, match=r"permute\(1, 2, 0\)"):
        cnnviz.preprocess(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="deprocess"):
        cnnviz.preprocess(torch.randn(3, 32, 32) * 3)
    with pytest.raises(ValueError, match="deprocess"):
        cnnviz.preprocess(torch.randn(1, 3, 32, 32))
