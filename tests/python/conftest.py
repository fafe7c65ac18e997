"""Shared fixtures: sample data (skips cleanly where it is missing), pretrained models."""
import os

import pytest
import torch

import cnnviz


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def data_dir():
    try:
        return cnnviz.data_dir()
    except FileNotFoundError:
        pytest.skip("sample data not found (set CNNVIZ_DATA)")


@pytest.fixture(scope="session")
def mobilenet(data_dir):
    return cnnviz.zoo.pretrained("mobilenet_v2")


@pytest.fixture(scope="session")
def resnet20(data_dir):
    return cnnviz.zoo.pretrained("resnet20")


@pytest.fixture(scope="session")
def imagenet_samples(data_dir):
    """[(path, true class index)] of the 20 ImageNet samples."""
    folder = os.path.join(data_dir, "images", "imagenet_samples")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".jpg"))
    return [(os.path.join(folder, f), int(f.rsplit("_", 1)[1].split(".")[0])) for f in files]


@pytest.fixture(scope="session")
def cifar_samples(data_dir):
    """[(path, true class index)] of the 20 CIFAR-10 samples."""
    folder = os.path.join(data_dir, "images", "cifar10_samples")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    return [(os.path.join(folder, f), int(f.rsplit("_", 1)[1].split(".")[0])) for f in files]
