"""Ctrl-C ends every long loop with the partial result: a SIGINT sent from another thread
while a Python model's forward is running (where the default handler would raise
KeyboardInterrupt inside the forward) comes back as ``interrupted=True`` and a warning."""
import os
import signal
import threading
import time
import warnings

import pytest
import torch
from torch import nn

import cnnviz


class SlowNet(nn.Module):
    """A small CNN whose forward sleeps, so a signal lands inside Python code."""

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__()
        self.delay = delay
        # 64 channels at features.2: Score-CAM's 64 masked forwards outlast the signal's delay.
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 64, 3, padding=1),
                                      nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        time.sleep(self.delay)
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(autouse=True)
def python_forwards():
    """SlowNet's sleep must run: an inference plan (a trace) would leave it out."""
    cnnviz.set_inference_plans(False)
    yield
    cnnviz.set_inference_plans(True)


def _ctrl_c_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


X = torch.rand(1, 3, 12, 12)

# Each call would run for at least 64 forwards of 0.02 s; the signal comes after 0.3 s.
CASES = {
    "smooth_grad": lambda m: cnnviz.smooth_grad(m, X, samples=400, batch_size=1),
    "integrated_gradients": lambda m: cnnviz.integrated_gradients(m, X, steps=400, batch_size=1),
    "occlusion": lambda m: cnnviz.occlusion(m, X, window=2, stride=1, batch_size=1),
    "score_cam": lambda m: cnnviz.score_cam(m, X, "features.2", batch_size=1),
    "lime": lambda m: cnnviz.lime(m, X, samples=400, batch_size=1, segmentation="grid", segments=9),
    "pgd": lambda m: cnnviz.pgd(m, X, steps=400),
    "invert": lambda m: cnnviz.invert(m, X, "features.2", iterations=400),
    "maximize": lambda m: cnnviz.maximize(m, logit=1, size=(12, 12), iterations=400),
    "deep_dream": lambda m: cnnviz.deep_dream(m, X, "features.2", iterations=200, octaves=2),
    # The analyses: 2 x 401 perturbed images, 2 x 400 inversion steps, 400 PGD steps.
    "deletion_insertion": lambda m: cnnviz.deletion_insertion(m, X, torch.rand(1, 12, 12), steps=400, batch_size=1),
    "layer_information": lambda m: cnnviz.layer_information(m, X, ["features.1", "features.3"], iterations=400),
    "adversarial_report": lambda m: cnnviz.adversarial_report(m, X, steps=400),
    # Three randomization steps (fc, features.2, features.0), each map taking 0.4 s: the
    # signal lands in the first step's map, and the check stops after that step.
    "sanity_check": lambda m: cnnviz.sanity_check(_slow_saliency, m, X, ssim=False),
}


def _slow_saliency(model, x, target):
    time.sleep(0.4)
    return cnnviz.saliency(model, x, target).map


@pytest.mark.parametrize("method", sorted(CASES))
def test_sigint_mid_forward_returns_the_partial_result(method):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    model = SlowNet().eval()
    timer = _ctrl_c_after(0.3)
    start = time.monotonic()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = CASES[method](model)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - start
    assert r.interrupted, method
    assert r.stopped_early, method
    assert any(issubclass(w.category, RuntimeWarning) and f"{method} interrupted" in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    # The warning points at this file (the user's call), not into the package.
    assert any(w.filename == __file__ for w in caught)
    # stopped_early says the result is partial; the time says the stop came without a
    # long wait (the 400-step loops would take at least 8 s).
    assert elapsed < 6.0, elapsed
    # Python's default handler is back once the call returns.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_signal_means_not_interrupted():
    model = SlowNet(delay=0).eval()
    r = cnnviz.smooth_grad(model, X, samples=4, batch_size=2)
    assert not r.interrupted and not r.stopped_early
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_user_handler_is_left_alone():
    """With a custom SIGINT handler installed, cnnviz does not replace it."""
    hits = []
    previous = signal.signal(signal.SIGINT, lambda s, f: hits.append(s))
    try:
        model = SlowNet(delay=0).eval()

        def press(step, total, loss):
            if step == 1:
                signal.raise_signal(signal.SIGINT)

        r = cnnviz.smooth_grad(model, X, samples=4, batch_size=1, progress=press)
        assert hits == [signal.SIGINT] and not r.interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


# The streaming analyses: a Python loop over batches; Ctrl-C ends it after the current batch
# and the statistics of the batches seen come back.
BATCHES = [torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(i)) for i in range(150)]
STREAMS = {
    "filter_statistics": lambda m: cnnviz.filter_statistics(m, BATCHES, "features.3", keep_per_image=True),
    "filter_redundancy": lambda m: cnnviz.filter_redundancy(m, "features.2", BATCHES),
    "cka": lambda m: cnnviz.cka(m, None, BATCHES, ["features.1", "features.3"]),
}


@pytest.mark.parametrize("what", sorted(STREAMS))
def test_sigint_ends_a_stream_with_the_batches_seen(what):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    model = SlowNet().eval()  # 150 batches of at least 0.02 s each; the signal comes after 0.3 s
    timer = _ctrl_c_after(0.3)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = STREAMS[what](model)
    finally:
        timer.cancel()
    assert r.interrupted, what
    assert any(f"{what} interrupted" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if what == "filter_statistics":
        # The statistics are those of the first `count` images, computed here without cnnviz.
        seen = torch.cat(BATCHES)[:r.count]
        assert 0 < r.count < 600 and r.count % 4 == 0
        acts = []
        handle = model.features[3].register_forward_hook(lambda mod, i, o: acts.append(o))
        with torch.no_grad():
            model.delay = 0
            model(seen)
        handle.remove()
        m = acts[0].double().mean((2, 3))
        torch.testing.assert_close(r.mean, m.mean(0))
        torch.testing.assert_close(r.std, m.std(0))
    elif what == "cka":
        assert 0 < r.samples < 600 and r.batches == r.samples // 4
    else:
        assert 0 < r.samples < 600 * 144


def test_an_uninterrupted_stream_is_not_interrupted():
    model = SlowNet(delay=0).eval()
    r = cnnviz.filter_statistics(model, BATCHES[:3], "features.3")
    assert not r.interrupted and r.count == 12
    assert not cnnviz.cka(model, None, BATCHES[:3], ["features.1"]).interrupted
