"""The thread policy: small work runs on one intra-op thread, large work at the caller's
count; the caller's torch thread count is restored (also after an error and in every
thread of a concurrent run); cnnviz.set_num_threads and CNNVIZ_NUM_THREADS override it; maps
do not depend on it."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn as nn

import cnnviz


class Recording(nn.Module):
    """A small CNN that records the intra-op thread count its forward runs at."""

    def __init__(self, width=8, classes=5):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, classes)
        self.seen = []
        self.blas = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        self.blas.append(cnnviz._C._blas_num_threads())
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    cnnviz.set_inference_plans(False)  # the recording forward must run in Python, not in a trace
    yield
    cnnviz.set_inference_plans(True)
    torch.set_num_threads(before)
    cnnviz.set_num_threads(None)


def small():
    torch.manual_seed(0)
    return Recording().eval()


def test_small_work_runs_on_one_thread_and_the_count_is_restored(two_threads):
    model = small()
    x = torch.randn(1, 3, 32, 32)
    assert cnnviz._C._policy_threads(model, x, 1) == 1
    cnnviz.saliency(model, x)
    cnnviz.grad_cam(model, x, "conv")
    cnnviz.integrated_gradients(model, x, steps=4, batch_size=4)
    assert model.seen and set(model.seen) == {1}
    assert torch.get_num_threads() == 2


def test_small_work_also_runs_openblas_on_one_thread(two_threads):
    """Torch's batch-of-one convolutions call OpenBLAS, whose process-wide thread count the
    intra-op setting does not reach: a call on one thread lowers it and restores it after."""
    before = cnnviz._C._blas_num_threads()
    if before < 2:
        pytest.skip("no OpenBLAS with more than one thread in this process")
    model = small()
    x = torch.randn(1, 3, 32, 32)
    cnnviz.saliency(model, x)
    cnnviz.grad_cam(model, x, "conv")
    assert model.blas and set(model.blas) == {1}
    assert cnnviz._C._blas_num_threads() == before
    with cnnviz.num_threads(2):                          # a scope at the caller's count leaves it
        cnnviz.saliency(model, x)
    assert model.blas[-1] == before
    with pytest.raises((IndexError, ValueError)):        # restored after an error too
        cnnviz.saliency(model, x, 99)
    assert cnnviz._C._blas_num_threads() == before


def test_large_work_runs_at_the_callers_count(two_threads):
    torch.manual_seed(0)
    model = Recording(width=512, classes=1000).eval()   # 0.5 M parameters
    x = torch.randn(1, 3, 96, 96)                       # 27648 elements: 1.4e10 > 5e9
    assert cnnviz._C._policy_threads(model, x, 1) == 2
    cnnviz.saliency(model, x)
    assert set(model.seen) == {2}
    torch.set_num_threads(1)                            # the automatic count never exceeds the caller's
    assert cnnviz._C._policy_threads(model, x, 1) == 1


def test_a_callable_and_incremental_occlusion_run_at_the_callers_count(two_threads, monkeypatch):
    """A plain callable shows no parameters, so its work is unknown: it keeps the caller's
    count instead of being taken for a tiny network. Incremental occlusion hands the native
    loop such a callable, and its region convolutions must not drop to one thread."""
    from cnnviz import _incremental_occlusion as inc

    model = small()
    x = torch.randn(1, 3, 32, 32)
    assert cnnviz._C._policy_threads(lambda t: model(t), x, 1) == 2
    cnnviz.saliency(lambda t: model(t), x)
    assert set(model.seen) == {2}

    counts = []
    run = inc._Batch.run
    monkeypatch.setattr(inc._Batch, "run", lambda self: counts.append(torch.get_num_threads()) or run(self))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    assert cnnviz.occlusion(net, x, 0, window=8, stride=8, incremental=True).incremental
    assert counts and set(counts) == {2}
    assert torch.get_num_threads() == 2


def test_score_cams_capture_of_one_image_runs_as_small_work(two_threads):
    """Score-CAM's masked batches are large work, but its capture forwards x alone: that
    forward runs on the count of one image's work (one thread here), the batches on two."""
    torch.manual_seed(0)
    model = Recording(width=64, classes=8000).eval()    # 0.52 M parameters, nearly all in the head
    x = torch.randn(1, 3, 32, 32)                       # one image: 1.6e9 < 5e9; 32 rows: 5.1e10
    assert cnnviz._C._policy_threads(model, x, 1) == 1
    assert cnnviz._C._policy_threads(model, x, 32) == 2
    cnnviz.score_cam(model, x, "conv", batch_size=32)
    assert model.seen == [1, 2, 2]                       # the capture, then two batches of 32 masks
    assert torch.get_num_threads() == 2


def test_explicit_setting_and_environment_override(two_threads, monkeypatch):
    model = small()
    x = torch.randn(1, 3, 32, 32)
    with cnnviz.num_threads(2):
        assert cnnviz.get_num_threads() == 2
        cnnviz.saliency(model, x)
    assert cnnviz.get_num_threads() is None
    assert model.seen == [2]
    monkeypatch.setenv("CNNVIZ_NUM_THREADS", "2")
    cnnviz.saliency(model, x)
    assert model.seen == [2, 2]
    with cnnviz.num_threads(1):                          # the explicit setting wins over the environment
        cnnviz.saliency(model, x)
    assert model.seen == [2, 2, 1]
    monkeypatch.setenv("CNNVIZ_NUM_THREADS", "auto")
    cnnviz.saliency(model, x)
    assert model.seen == [2, 2, 1, 1]
    assert torch.get_num_threads() == 2


def test_bad_settings_are_refused(two_threads, monkeypatch):
    model = small()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="positive"):
        cnnviz.set_num_threads(-1)
    with pytest.raises(TypeError, match="int or None"):
        cnnviz.set_num_threads(1.5)
    monkeypatch.setenv("CNNVIZ_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="CNNVIZ_NUM_THREADS must be a positive integer"):
        cnnviz.saliency(model, x)
    assert torch.get_num_threads() == 2


def test_count_restored_after_an_error(two_threads):
    model = small()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(IndexError, match="out of range"):
        cnnviz.saliency(model, x, target=99)
    assert model.seen == [1]
    assert torch.get_num_threads() == 2


def test_maps_do_not_depend_on_the_thread_count(two_threads, resnet20):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 32, 32)
    auto = [cnnviz.saliency(resnet20, x).map, cnnviz.grad_cam(resnet20, x, "layer3").map,
            cnnviz.integrated_gradients(resnet20, x, steps=8).map]
    with cnnviz.num_threads(2):
        fixed = [cnnviz.saliency(resnet20, x).map, cnnviz.grad_cam(resnet20, x, "layer3").map,
                 cnnviz.integrated_gradients(resnet20, x, steps=8).map]
    for a, b in zip(auto, fixed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_concurrent_calls_keep_each_threads_count(two_threads):
    model = small()
    xs = [torch.randn(1, 3, 32, 32) for _ in range(8)]
    expected = [cnnviz.saliency(model, x).map for x in xs]
    counts_after = []

    def call(i):
        torch.set_num_threads(2 if i % 2 else 3)        # each thread's own count
        before = torch.get_num_threads()
        out = cnnviz.saliency(model, xs[i]).map
        counts_after.append(torch.get_num_threads() == before)
        return out

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(call, range(8)))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    assert all(counts_after)
    assert set(model.seen) == {1}
    torch.set_num_threads(2)
    assert threading.current_thread() is threading.main_thread() and torch.get_num_threads() == 2
