"""The HTML report: self-contained, every section, --methods/--layers, the faithfulness
numbers against their definition, the command line."""
import os
import re

import pytest
import torch

import cnnviz
from cnnviz import cli
from cnnviz.app import report as rp
from cnnviz.app.session import model_info


def photo(seed: int, side: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def net():
    return cnnviz.zoo.cifar_resnet(20).eval()


class OnePixel(torch.nn.Module):
    """Two classes whose logits are +-10 times one input value: only pixel (2, 3) counts."""

    def forward(self, x):
        v = x[:, 0, 2, 3] * 10
        return torch.stack([v, -v], dim=1)


def test_deletion_insertion_follows_its_definition():
    x = torch.zeros(1, 3, 6, 6)
    x[0, 0, 2, 3] = 1.0
    model = OnePixel()
    p_x = float(torch.softmax(model(x), -1)[0, 0])
    p_base = 0.5
    # One step: each curve is (p(x), p(baseline)) or the reverse, so both areas are their mean.
    d, i = rp.deletion_insertion(model, x, torch.rand(6, 6), 0, steps=1)
    assert d == pytest.approx((p_x + p_base) / 2) and i == pytest.approx((p_x + p_base) / 2)
    # A map that ranks the one pixel first: deletion drops at once, insertion rises at once.
    good = torch.zeros(6, 6)
    good[2, 3] = 1
    bad = 1 - good
    steps = 36
    d_good, i_good = rp.deletion_insertion(model, x, good, 0, steps=steps)
    d_bad, i_bad = rp.deletion_insertion(model, x, bad, 0, steps=steps)
    assert d_good == pytest.approx((p_x + p_base) / 2 / steps + p_base * (steps - 1) / steps)
    assert i_good == pytest.approx((p_x + p_base) / 2 / steps + p_x * (steps - 1) / steps)
    assert d_good < d_bad and i_good > i_bad
    with pytest.raises(ValueError, match="map"):
        rp.deletion_insertion(model, x, torch.rand(5, 6), 0)
    with pytest.raises(ValueError, match="steps"):
        rp.deletion_insertion(model, x, good, 0, steps=0)


def test_default_layers_spread_over_the_depth(net, data_dir):
    assert rp.default_layers(model_info(net)) == ["conv1", "layer1", "layer2", "layer3"]
    mobilenet = cnnviz.zoo.pretrained("mobilenet_v2")
    assert rp.default_layers(model_info(mobilenet)) == ["features.0", "features.6", "features.12", "features.18"]


def test_report_is_self_contained_and_complete(net, tmp_path):
    out = tmp_path / "r.html"
    calls = []
    page = rp.report([photo(1)], net, str(out), inversion_steps=5, layers=["layer1", "layer3"],
                     progress=lambda done, total, what: calls.append((done, total, what)))
    assert out.read_text(encoding="utf-8") == page
    # One file: every image is a data URL, nothing is fetched, no script.
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == (1 + 2 + len(rp.ATTRIBUTION_METHODS) + 2 + 2) + 1
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for method in rp.ATTRIBUTION_METHODS:
        assert f"{method}</td>" in page
    assert page.count("SSIM") == 2 and "deletion AUC" in page and "Layer summary" in page
    assert "layer3.2.conv2" in page and "8/255" in page
    # Progress: every task announced once, in order.
    assert [c[0] for c in calls] == list(range(len(calls))) and all(c[1] == len(calls) for c in calls)
    # The decoded images match what cnnviz computes directly: the first is the input.
    import base64
    first = cnnviz.decode_image(base64.b64decode(sources[1].split(",", 1)[1]))
    assert torch.equal(first, cnnviz.deprocess(cnnviz.preprocess(photo(1), size=32)))


def test_methods_and_layers_select(net):
    page = rp.report(photo(3), net, methods=["grad_cam", "adversarial"], layers=["layer2"], progress=False)
    assert "grad_cam (layer2)" in page and "lime" not in page and "SSIM" not in page and "Feature maps" not in page
    assert "Adversarial robustness" in page
    with pytest.raises(ValueError, match="unknown method"):
        rp.report(photo(3), net, methods=["nope"], progress=False)
    with pytest.raises(ValueError, match="linear"):
        rp.report(photo(3), net, layers=["linear"], progress=False)
    with pytest.raises(ValueError, match="at least one image"):
        rp.report([], net, progress=False)
    with pytest.raises(ValueError, match="eps"):
        rp.report(photo(3), net, eps=[0], progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        rp.report(photo(3), "alexnet", progress=False)
    with pytest.raises(FileNotFoundError):
        rp.report(photo(3), "missing.pt", progress=False)


def test_public_entry_point_and_command_line(data_dir, tmp_path, capsys):
    assert cnnviz.report is rp.report
    cat = os.path.join(data_dir, "images", "cifar10_samples", "cifar10_00_3.png")
    out = tmp_path / "cli.html"
    assert cli.main(["report", cat, "--model", "resnet20", "--out", str(out), "--methods", "saliency,grad_cam,inversion",
                     "--layers", "layer1,layer3", "--inversion-steps", "5"]) == 0
    page = out.read_text(encoding="utf-8")
    assert "cat" in page and "grad_cam (layer3)" in page and page.count("SSIM") == 2
    assert cli.main(["report", cat, "--model", "resnet20", "--out", str(out), "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_serve_command_prints_the_url_and_stops(monkeypatch, capsys):
    pytest.importorskip("flask")
    from cnnviz.app import server

    def interrupted(self):
        raise KeyboardInterrupt

    boards = []
    real = server.dashboard
    monkeypatch.setattr(server, "dashboard", lambda *a, **k: boards.append(real(*a, **k)) or boards[-1])
    monkeypatch.setattr(server.Dashboard, "wait", interrupted)
    monkeypatch.setattr(cli, "_model", lambda args: (cnnviz.zoo.cifar_resnet(20).eval(), 32, "cifar10", "layer3"))
    assert cli.main(["serve", "--no-samples"]) == 0
    assert "http://127.0.0.1:" in capsys.readouterr().out
    assert boards and not boards[0].running
