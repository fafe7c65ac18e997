"""The dashboard's HTTP API through Flask's test client (and one real server): every
endpoint, the token, bad uploads, bad requests, caching, live runs and cancellation."""
import base64
import io
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib

import pytest
import torch

pytest.importorskip("flask")

import cnnviz  # noqa: E402
from cnnviz.app import render  # noqa: E402
from cnnviz.app.jobs import JOB_THREAD_PREFIX  # noqa: E402
from cnnviz.app.server import create_app, dashboard  # noqa: E402
from cnnviz.app.session import METHODS, Session, model_info  # noqa: E402


def photo(seed: int, side: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (side, side, 3), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def net():
    return cnnviz.zoo.cifar_resnet(20).eval()


@pytest.fixture()
def app(net):
    session = Session(model_info(net), [photo(1), photo(2)], ["one", "two"], samples=[])
    app = create_app(session, token="secret-token", max_upload=64 * 1024)
    yield app
    app.extensions["cnnviz"]["runner"].stop()
    assert app.extensions["cnnviz"]["runner"].join_all(30)


@pytest.fixture()
def client(app):
    c = app.test_client()
    c.environ_base["HTTP_X_CNNVIZ_TOKEN"] = "secret-token"
    return c


def wait(client, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = client.get(f"/api/job/{job_id}").get_json()
        if s["state"] not in ("queued", "running"):
            return s
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {s}")


def run(client, **body):
    r = client.post("/api/run", json={"image": "g0", **body})
    assert r.status_code == 202, r.get_json()
    return wait(client, r.get_json()["job"])


def decode(src: str) -> torch.Tensor:
    assert src.startswith("data:image/png;base64,")
    return cnnviz.decode_image(base64.b64decode(src.split(",", 1)[1]))


def png(image: torch.Tensor) -> bytes:
    return cnnviz.encode_image(image, "png")


def job_threads():
    return [t for t in threading.enumerate() if t.name.startswith(JOB_THREAD_PREFIX) and t.is_alive()]


def test_every_request_needs_the_token(app):
    anonymous = app.test_client()
    for path in ("/", "/static/app.js", "/api/info", "/api/predict?image=g0", "/api/image/g0"):
        r = anonymous.get(path)
        assert r.status_code == 403 and "token" in r.get_json()["error"]
        assert anonymous.get(path + ("&" if "?" in path else "?") + "token=wrong").status_code == 403
    assert anonymous.post("/api/run", json={"image": "g0"}).status_code == 403
    assert anonymous.post("/api/upload", data=png(photo(3)), content_type="image/png").status_code == 403
    page = anonymous.get("/?token=secret-token")
    assert page.status_code == 200 and b'content="secret-token"' in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_static_files_are_a_fixed_list(client):
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").headers["Content-Type"].startswith("text/css")
    for name in ("index.html", "server.py", "..%2Fserver.py", "%2e%2e%2f__init__.py"):
        assert client.get(f"/static/{name}").status_code == 404
    assert client.get("/static/../server.py").status_code == 404


def test_info_images_predictions_and_filters(client, net, app):
    info = client.get("/api/info").get_json()
    assert info["size"] == 32 and info["classes"] == 10
    assert [m["id"] for m in info["methods"]] == list(METHODS)
    layer3 = next(l for l in info["layers"] if l["name"] == "layer3")
    assert layer3["shape"] == [1, 64, 8, 8] and layer3["spatial"]
    assert not next(l for l in info["layers"] if l["name"] == "linear")["spatial"]
    assert [i["id"] for i in info["images"]] == ["g0", "g1"]
    assert client.get("/api/images").get_json()["images"] == info["images"]

    shown = cnnviz.decode_image(client.get("/api/image/g0").data)
    x = cnnviz.preprocess(photo(1), size=32)
    assert torch.equal(shown, cnnviz.deprocess(x))

    preds = client.get("/api/predict?image=g0&k=3").get_json()["predictions"]
    with torch.no_grad():
        probs = torch.softmax(net(x), -1)[0]
    top = probs.topk(3)
    assert [p["index"] for p in preds] == top.indices.tolist()
    assert [p["label"] for p in preds] == [cnnviz.zoo.cifar10_labels()[i] for i in top.indices]
    assert preds[0]["probability"] == pytest.approx(float(top.values[0]), rel=1e-5)

    filters = client.get("/api/filters?image=g0&layer=layer2").get_json()["filters"]
    assert len(filters) == 32
    assert [f["channel"] for f in filters[:5]] == cnnviz.top_filters(net, x, "layer2", k=5).channels[0].tolist()
    assert all(a["score"] >= b["score"] for a, b in zip(filters, filters[1:]))

    for bad in ("/api/predict?image=nope", "/api/image/nope", "/api/filters?image=nope&layer=layer2"):
        assert client.get(bad).status_code == 404
    assert client.get("/api/filters?image=g0&layer=nope").status_code == 400
    assert "not feature maps" in client.get("/api/filters?image=g0&layer=linear").get_json()["error"]
    assert client.get("/api/predict?image=g0&k=0").status_code == 400
    assert client.get("/api/job/j999").status_code == 404
    assert client.get("/api/nothing").status_code == 404


def test_every_method_runs_and_feature_maps_match_a_hook(client, net):
    for method in METHODS:
        s = run(client, method=method, layer="layer2.0.conv1" if method == "filter_weights" else "layer2",
                iterations=4, channel=3)
        assert s["state"] == "done", (method, s["error"])
        panels = s["result"]["a"]["panels"]
        assert panels and all(decode(p["src"]).dim() == 3 for p in panels), method
    # Feature maps against a plain forward hook.
    seen = {}
    handle = net.layer2.register_forward_hook(lambda m, i, o: seen.setdefault("act", o.detach()))
    with torch.no_grad():
        net(cnnviz.preprocess(photo(1), size=32))
    handle.remove()
    s = run(client, method="feature_maps", layer="layer2", channel=5, colormap="magma")
    first = decode(s["result"]["a"]["panels"][0]["src"])
    assert torch.equal(first, cnnviz.colormap(seen["act"][0, 5], "magma"))
    # FGSM reports what cnnviz.fgsm finds.
    s = run(client, method="fgsm", eps=8)
    x = cnnviz.preprocess(photo(1), size=32)
    ref = cnnviz.fgsm(net, x, eps=8 / 255)
    note = s["result"]["a"]["notes"][0]
    assert cnnviz.zoo.cifar10_labels()[int(ref.prediction_after[0])] in note


def test_filters_and_colormaps_switch_without_rerunning_the_model(client, net, app):
    calls = []
    handle = net.conv1.register_forward_pre_hook(lambda m, i: calls.append(1))
    try:
        run(client, method="feature_maps", layer="layer1", channel=0)
        after_first = len(calls)
        assert after_first >= 1
        for channel, cmap in ((1, "viridis"), (7, "inferno"), (2, "gray")):
            assert run(client, method="feature_maps", layer="layer1", channel=channel, colormap=cmap)["state"] == "done"
        client.get("/api/filters?image=g0&layer=layer1")
        assert len(calls) == after_first
        run(client, method="grad_cam", layer="layer3")
        after_cam = len(calls)
        assert after_cam > after_first
        run(client, method="grad_cam", layer="layer3", colormap="jet")
        assert len(calls) == after_cam
        run(client, method="feature_maps", layer="layer1", image="g1")  # another image: runs again
        assert len(calls) > after_cam
    finally:
        handle.remove()


def test_live_inversion_streams_images_and_stops(client, app):
    r = client.post("/api/run", json={"image": "g0", "method": "inversion", "layer": "layer2", "iterations": 400})
    job = r.get_json()["job"]
    steps, sources = [], set()
    deadline = time.monotonic() + 120
    while len(sources) < 3 and time.monotonic() < deadline:
        s = client.get(f"/api/job/{job}").get_json()
        if s["preview"]:
            steps.append(s["preview"]["step"])
            sources.add(s["preview"]["src"])
            assert decode(s["preview"]["src"]).shape == (32, 32, 3)
        time.sleep(0.05)
    assert len(sources) >= 3 and steps == sorted(steps) and steps[-1] % 5 == 0
    assert client.post("/api/stop").get_json()["stopped"] == job
    s = wait(client, job)
    assert s["state"] == "stopped" and s["step"] < 400
    assert app.extensions["cnnviz"]["runner"].join_all(10)
    assert not job_threads()


def test_a_new_request_cancels_the_running_one(client, app):
    first = client.post("/api/run", json={"image": "g0", "method": "maximization", "layer": "layer3",
                                          "iterations": 2000}).get_json()["job"]
    deadline = time.monotonic() + 30
    while client.get(f"/api/job/{first}").get_json()["step"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    second = client.post("/api/run", json={"image": "g1", "method": "saliency"}).get_json()["job"]
    assert wait(client, first)["state"] == "stopped"
    assert wait(client, second)["state"] == "done"
    assert app.extensions["cnnviz"]["runner"].join_all(10) and not job_threads()


def test_compare_two_images_or_two_methods(client):
    s = run(client, method="grad_cam", layer="layer3", compare={"image": "g1"})
    a, b = s["result"]["a"], s["result"]["b"]
    assert (a["image"], b["image"]) == ("g0", "g1") and a["panels"][0]["src"] != b["panels"][0]["src"]
    s = run(client, method="feature_maps", layer="layer1", compare={"method": "saliency", "layer": "layer2"})
    assert (s["result"]["a"]["method"], s["result"]["b"]["method"]) == ("feature_maps", "saliency")


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_uploads_good_and_bad(client):
    good = png(photo(7, 50))
    r = client.post("/api/upload", data={"file": (io.BytesIO(good), "../../etc/my photo.png", "image/png")})
    assert r.status_code == 201, r.get_json()
    up = r.get_json()
    assert up["name"] == "my photo.png" and (up["width"], up["height"]) == (50, 50)
    assert up["id"] in [i["id"] for i in client.get("/api/images").get_json()["images"]]
    assert run(client, image=up["id"], method="saliency")["state"] == "done"
    raw = client.post("/api/upload", data=good, content_type="image/png")
    assert raw.status_code == 201

    cases = {
        "not an image": (dict(data={"file": (io.BytesIO(b"hello, not a picture"), "a.png", "image/png")}), 400),
        "truncated": (dict(data={"file": (io.BytesIO(good[: len(good) // 2]), "t.png", "image/png")}), 400),
        "huge declared size": (dict(data=_png_declaring(100_000, 100_000), content_type="image/png"), 400),
        "wrong content type": (dict(data=b"text", content_type="text/plain"), 415),
        "wrong file type": (dict(data={"file": (io.BytesIO(good), "a.txt", "text/plain")}), 415),
        "json": (dict(json={"file": "x"}), 415),
        "no file field": (dict(data={"other": (io.BytesIO(good), "a.png", "image/png")}), 400),
        "empty": (dict(data=b"", content_type="image/png"), 400),
        "too large": (dict(data=b"\0" * (65 * 1024), content_type="image/png"), 413),
    }
    for what, (kwargs, status) in cases.items():
        r = client.post("/api/upload", **kwargs)
        assert r.status_code == status, (what, r.status_code, r.data[:200])
        assert r.get_json()["error"], what
        assert client.get("/api/info").status_code == 200, what
    assert "not an image" in client.post("/api/upload", data=b"GIF89a..", content_type="image/gif").get_json()["error"]


def test_bad_run_requests_and_failing_jobs(client):
    bad = [({"image": "g0", "method": "nope"}, 400), ({"image": "zz"}, 404), ({"image": "g0", "layer": "nope"}, 400),
           ({"image": "g0", "channel": "x"}, 400), ({"image": "g0", "iterations": 0}, 400),
           ({"image": "g0", "colormap": "nope"}, 400), ({"image": "g0", "eps": "nan"}, 400),
           ({"image": "g0", "target": -1}, 400), ({"image": "g0", "layer": ["a"]}, 400)]
    for body, status in bad:
        r = client.post("/api/run", json=body)
        assert r.status_code == status, (body, r.get_json())
    assert client.post("/api/run", data="{", content_type="application/json").status_code == 400
    assert client.post("/api/run", data="x", content_type="text/plain").status_code == 415
    assert client.post("/api/run", json=[1, 2]).status_code == 400
    # Failing inside the job: an error state with the reason; the server keeps serving.
    s = run(client, method="filter_weights", layer="layer1")
    assert s["state"] == "error" and s["error"]
    s = run(client, method="feature_maps", layer="layer1", channel=999)
    assert s["state"] == "error" and "999" in s["error"]
    s = run(client, method="grad_cam", layer="linear")
    assert s["state"] == "error" and "not feature maps" in s["error"]
    assert run(client, method="saliency")["state"] == "done"


def test_dashboard_serves_on_localhost_and_stops(net):
    board = dashboard(net, [photo(4)], samples=False, size=32)
    try:
        assert board.host == "127.0.0.1" and board.port > 0
        html = urllib.request.urlopen(board.url, timeout=10).read().decode()
        assert "cnnviz" in html and board.token in html
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(board.url.split("?")[0] + "api/info", timeout=10)
        assert e.value.code == 403
        frame = board._repr_html_()
        assert "<iframe" in frame and board.url.replace("&", "&amp;") in frame and "target=\"_blank\"" in frame
        # The page stays responsive while a live run works (the native loops release the GIL).
        req = urllib.request.Request(f"http://127.0.0.1:{board.port}/api/run?token={board.token}", method="POST",
                                     data=b'{"image": "g0", "method": "inversion", "layer": "layer3", '
                                          b'"iterations": 2000}', headers={"Content-Type": "application/json"})
        job = __import__("json").loads(urllib.request.urlopen(req, timeout=10).read())["job"]
        time.sleep(0.5)
        worst = 0.0
        for _ in range(10):
            t = time.monotonic()
            urllib.request.urlopen(f"http://127.0.0.1:{board.port}/api/job/{job}?token={board.token}", timeout=10)
            worst = max(worst, time.monotonic() - t)
        assert worst < 2.0, worst
    finally:
        board.stop()
    assert not board.running and not job_threads()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", board.port), timeout=1).close()


def test_dashboard_bad_arguments(net):
    with pytest.raises(ValueError, match="port"):
        dashboard(net, samples=False, port=70000)
    with pytest.raises(ValueError, match="model input"):
        dashboard(net, torch.zeros(1, 3, 16, 16), samples=False, size=32)
    with pytest.raises(ValueError, match="size"):
        dashboard(net, samples=False, size=2)


def test_public_entry_point(net):
    assert cnnviz.dashboard.__name__ == "dashboard" and "IFrame" in cnnviz.dashboard.__doc__
    with cnnviz.dashboard(net, torch.stack([cnnviz.preprocess(photo(5), size=32)[0]] * 2), samples=False) as board:
        names = [i["name"] for i in board.session.image_list()]
        assert names == ["image 1", "image 2"]
        assert torch.equal(render.show_input(board.session.image("g0").x, cnnviz.IMAGENET_MEAN, cnnviz.IMAGENET_STD),
                           cnnviz.deprocess(cnnviz.preprocess(photo(5), size=32)))


def test_grids_scale_each_map_to_its_own_range():
    act = torch.randn(3, 7, 7) * torch.tensor([0.01, 1.0, 100.0]).view(3, 1, 1)
    grid = render.channel_grid(act, [0, 1, 2], "gray", nrow=3)
    for k in range(3):
        tile = grid[1:8, 1 + 8 * k:8 + 8 * k, 0]
        assert (tile.min().item(), tile.max().item()) == (0, 255)
        # Gray levels follow the min-max scaled map.
        ref = ((act[k] - act[k].min()) / (act[k].max() - act[k].min()) * 255)
        assert (tile.float() - ref).abs().max() <= 2  # a 256-entry colormap table


def test_an_internal_error_is_a_json_500_and_the_server_goes_on(client, app, monkeypatch):
    session = app.extensions["cnnviz"]["session"]

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(session, "image_list", broken)
    r = client.get("/api/images")
    assert r.status_code == 500 and r.get_json() == {"error": "internal error: RuntimeError"}
    monkeypatch.undo()
    assert client.get("/api/images").status_code == 200
    assert run(client, method="saliency")["state"] == "done"


def test_model_info_follows_what_the_model_was_built_for():
    # A user network recorded once with zoo.describe: the dashboard takes its input size,
    # class names and normalization instead of guessing 224 and ImageNet.
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    described = cnnviz.zoo.describe(Tiny().eval(), labels=["ant", "bee", "cat"], input_size=(3, 48, 48),
                                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    info = model_info(described)
    assert (info.size, info.labels, info.mean, info.std) == (48, ["ant", "bee", "cat"], (0.5,) * 3, (0.25,) * 3)
    assert model_info(described, size=64, labels=["a", "b", "c"]).size == 64  # arguments win
    with pytest.warns(RuntimeWarning, match="input size"):
        guessed = model_info(Tiny().eval())
    assert guessed.size == 224 and guessed.labels == []
    wide = cnnviz.zoo.describe(Tiny().eval(), input_size=(3, 32, 64))
    with pytest.raises(ValueError, match="square"):
        model_info(wide)


def test_sample_models_need_no_arguments(resnet20):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = model_info(resnet20)
    assert info.size == 32 and info.labels == cnnviz.zoo.cifar10_labels()
