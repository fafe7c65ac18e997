"""Dataset runs: the store against direct computations, torchrun over 2 ranks against one
process, SIGKILL and restart against an uninterrupted run, unreadable files, bad input."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

import cnnviz
import _runs_job
from cnnviz import cli

HERE = os.path.dirname(os.path.abspath(__file__))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE] + [p for p in sys.path if p])
    return env


def _read(path):
    """Every dataset of a store (virtual datasets resolved) and its settings."""
    arrays = {}
    with h5py.File(os.path.join(path, "run.h5"), "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        settings = json.loads(f.attrs["settings"])
    return arrays, settings


def _assert_same(a, b, exact_floats=True):
    assert sorted(a) == sorted(b)
    for key in a:
        if a[key].dtype.kind == "f" and not exact_floats:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def cifar_dir(data_dir):
    return os.path.join(data_dir, "images", "cifar10_samples")


@pytest.fixture(scope="module")
def reference(cifar_dir, tmp_path_factory):
    """One uninterrupted run in this process: the store every other test compares with."""
    out = str(tmp_path_factory.mktemp("runs") / "reference")
    summary = _runs_job.job(cifar_dir, out)
    return out, summary


def _batch(cifar_samples):
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(p), size=32) for p, _ in cifar_samples])
    return x, torch.tensor([label for _, label in cifar_samples])


def test_store_matches_direct_computation(reference, cifar_samples, resnet20):
    out, summary = reference
    assert summary.images == 20 and summary.new_images == 20 and not summary.failed
    assert summary.chunks == 5 and summary.resumed_chunks == 0 and summary.throughput > 0
    a, settings = _read(out)
    x, labels = _batch(cifar_samples)
    np.testing.assert_array_equal(a["index"], np.arange(20))
    np.testing.assert_array_equal(a["label"], labels.numpy())
    with torch.no_grad():
        logits = resnet20(x)
    np.testing.assert_allclose(a["logits"], logits.numpy(), atol=1e-5)
    np.testing.assert_array_equal(a["prediction"], logits.argmax(1).numpy())
    # Saliency by plain autograd, per image.
    for i in (0, 7, 19):
        xi = x[i:i + 1].clone().requires_grad_(True)
        resnet20(xi)[0, int(a["saliency/target"][i])].backward()
        np.testing.assert_allclose(a["saliency/map"][i], xi.grad.abs().amax(1)[0].numpy(), atol=1e-5)
        assert a["saliency/score"][i] == pytest.approx(float(logits[i, a["saliency/target"][i]]), abs=1e-5)
    # Grad-CAM at the layer the run chose (the last spatial block), per batch of the run.
    assert settings["methods"]["grad_cam"]["layer"] == "layer3"
    cam = cnnviz.grad_cam(resnet20, x[:2], "layer3")
    np.testing.assert_allclose(a["grad_cam/map"][:2], cam.map.detach().numpy(), atol=1e-5)
    # Integrated gradients: completeness deltas are those of the method, one per image.
    ig = cnnviz.integrated_gradients(resnet20, x[:2], steps=4, batch_size=16)
    np.testing.assert_allclose(a["integrated_gradients/delta"][:2], ig.delta.numpy(), atol=1e-4)
    np.testing.assert_allclose(a["integrated_gradients/map"][:2], ig.map.numpy(), atol=1e-5)
    assert a["smooth_grad/map"].shape == (20, 32, 32)
    # The analysis job reduced over chunks equals a direct computation over all images.
    acts = cnnviz.feature_maps(resnet20, x, ["layer2"])["layer2"].double()
    np.testing.assert_allclose(a["channel_moments/mean"], acts.mean((0, 2, 3)).numpy(), rtol=1e-9)
    np.testing.assert_allclose(a["channel_moments/var"], acts.var((0, 2, 3), unbiased=False).numpy(), rtol=1e-7)
    assert settings["images_in_dataset"] == 20 and settings["batch_size"] == 2


@pytest.mark.skipif(not _runs_job.HAVE_ACCUMULATORS, reason="this build has no analysis accumulators")
def test_analysis_jobs_equal_direct_calls(reference, cifar_samples, resnet20):
    a, settings = _read(reference[0])
    x, _ = _batch(cifar_samples)
    fs = cnnviz.filter_statistics(resnet20, x, _runs_job.LAYER, top_k=3)
    for key in ("mean", "std", "max", "fraction_active", "selectivity", "top_values"):
        np.testing.assert_allclose(a[f"filter_statistics/{key}"], getattr(fs, key).numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    np.testing.assert_array_equal(a["filter_statistics/top_indices"], fs.top_indices.numpy())
    assert int(a["filter_statistics/count"]) == 20
    # Minibatch CKA over the run's batches (2 images, chunk boundaries fall between batches).
    ck = cnnviz.cka(resnet20, None, x, _runs_job.CKA_LAYERS, unbiased=False, batch_size=2)
    np.testing.assert_allclose(a["cka/matrix"], ck.matrix.numpy(), rtol=1e-6)
    assert [v.decode() for v in a["cka/layers_a"]] == _runs_job.CKA_LAYERS


@pytest.mark.skipif(not _runs_job.HAVE_FAITHFULNESS, reason="this build has no deletion_insertion")
def test_faithfulness_equals_deletion_insertion(reference, cifar_samples, resnet20):
    a, _ = _read(reference[0])
    x, _ = _batch(cifar_samples)
    cam = cnnviz.grad_cam(resnet20, x[:2], "layer3")
    di = cnnviz.deletion_insertion(resnet20, x[:2], cam.upsampled, cam.target, steps=4)
    np.testing.assert_allclose(a["grad_cam/deletion_auc"][:2], di.deletion_auc.numpy(), atol=1e-5)
    np.testing.assert_allclose(a["grad_cam/insertion_auc"][:2], di.insertion_auc.numpy(), atol=1e-5)


def test_store_is_readable_without_cnnviz(reference):
    code = ("import h5py, json, sys; f = h5py.File(sys.argv[1] + '/run.h5', 'r'); "
            "print(f['saliency/map'].shape, f['integrated_gradients/delta'].shape, json.loads(f.attrs['settings'])['chunk_size'])")
    r = subprocess.run([sys.executable, "-c", code, reference[0]], capture_output=True, text=True,
                       env={"PATH": os.environ.get("PATH", "")}, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(20,", "32,", "32)", "(20,)", "4"]


def test_rerun_resumes_without_rewriting(reference, cifar_dir, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(reference[0], out)
    before = {f: os.stat(os.path.join(out, "chunks", f)).st_mtime_ns for f in os.listdir(os.path.join(out, "chunks"))}
    s = _runs_job.job(cifar_dir, out)
    assert s.new_images == 0 and s.resumed_chunks == 5 and s.images == 20
    after = {f: os.stat(os.path.join(out, "chunks", f)).st_mtime_ns for f in os.listdir(os.path.join(out, "chunks"))}
    assert before == after
    _assert_same(_read(out)[0], _read(reference[0])[0])


def test_torchrun_two_ranks_equals_one_process(reference, cifar_dir, tmp_path):
    out = str(tmp_path / "two")
    cmd = [sys.executable, "-m", "cnnviz.runs.torchrun", "--standalone", "--nproc_per_node=2",
           os.path.join(HERE, "_runs_job.py"), cifar_dir, out, "--workers", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    if r.returncode and "RendezvousConnectionError" in r.stderr:
        # torchrun's own rendezvous store can time out on a saturated machine: once more.
        shutil.rmtree(out, ignore_errors=True)
        r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("rank-summary images=20 new=20 ranks=2") == 2
    assert "nothing to do" not in r.stderr  # 5 chunks for 2 ranks
    two, settings = _read(out)
    one, _ = _read(reference[0])
    # Every per-image array bit for bit; the reduced statistics to 1e-6 (summed in another order).
    stats = {k for k in one if k.startswith(("channel_moments/", "filter_statistics/", "cka/"))
             and one[k].dtype.kind == "f"}
    _assert_same({k: v for k, v in two.items() if k not in stats}, {k: v for k, v in one.items() if k not in stats})
    for k in stats:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-6, atol=0, err_msg=k)
    # Chunks are the same files whoever wrote them.
    for k in range(5):
        name = f"chunks/chunk_{k:06d}.h5"
        with open(os.path.join(out, name), "rb") as f2, open(os.path.join(reference[0], name), "rb") as f1:
            assert f1.read() == f2.read(), name


def test_fewer_chunks_than_ranks_warns():
    from cnnviz.runs import runner
    with pytest.warns(RuntimeWarning, match=r"20 images in chunks of 32 make 1 chunk for 2 ranks, so 1 rank will "
                                            r"have nothing to do; pass chunk_size=10 or less"):
        runner._warn_idle_ranks(20, 32, 2)
    with pytest.warns(RuntimeWarning, match="make 2 chunks for 8 ranks, so 6 ranks"):
        runner._warn_idle_ranks(100, 64, 8)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner._warn_idle_ranks(20, 4, 2)   # 5 chunks
        runner._warn_idle_ranks(20, 32, 1)  # one process


def test_sigkill_and_restart_equals_uninterrupted(reference, cifar_dir, tmp_path):
    out = str(tmp_path / "killed")
    cmd = [sys.executable, os.path.join(HERE, "_runs_job.py"), cifar_dir, out, "--slow", "0.15"]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = os.path.join(out, "chunks")
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if os.path.isdir(chunks) and len([f for f in os.listdir(chunks) if f.endswith(".h5")]) >= 2:
            break
        time.sleep(0.02)
    assert p.poll() is None, "the run ended before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = sorted(f for f in os.listdir(chunks) if f.endswith(".h5"))
    assert 2 <= len(done) < 5 and not os.path.exists(os.path.join(out, "run.h5"))
    stamps = {f: os.stat(os.path.join(chunks, f)).st_mtime_ns for f in done[:-1]}
    # A damaged chunk (the last one, cut in half) and a stale temporary file are redone.
    last = os.path.join(chunks, done[-1])
    with open(last, "r+b") as f:
        f.truncate(os.path.getsize(last) // 2)
    open(os.path.join(chunks, "chunk_000004.h5.tmp"), "wb").write(b"partial")
    with pytest.warns(RuntimeWarning, match="damaged"):
        s = _runs_job.job(cifar_dir, out)
    assert s.resumed_chunks == len(done) - 1 and s.new_images == 20 - 4 * (len(done) - 1)
    assert {f: os.stat(os.path.join(chunks, f)).st_mtime_ns for f in done[:-1]} == stamps
    assert not os.path.exists(os.path.join(chunks, "chunk_000004.h5.tmp"))
    _assert_same(_read(out)[0], _read(reference[0])[0])


def test_unreadable_file_is_reported_and_skipped(cifar_samples, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for p, _ in cifar_samples[:5]:
        os.symlink(p, folder / os.path.basename(p))
    (folder / "cifar10_01b_1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    s = cnnviz.run("resnet20", str(folder), ["saliency"], str(tmp_path / "out"), batch_size=4, progress=False)
    assert s.images == 5 and s.new_images == 6 and len(s.failed) == 1
    index, error = s.failed[0]
    assert index == 2 and "cifar10_01b_1.png" in error
    assert "cifar10_01b_1.png" in capsys.readouterr().err
    with cnnviz.open_run(str(tmp_path / "out")) as f:
        assert list(f["index"][()]) == [0, 1, 3, 4, 5]
        assert list(f["failed/index"][()]) == [2]
        x = torch.cat([cnnviz.preprocess(cnnviz.load_image(p), size=32) for p, _ in cifar_samples[:5]])
        np.testing.assert_array_equal(f["label"][()], [label for _, label in cifar_samples[:5]])
        assert f["saliency/map"].shape == (5, 32, 32)
        sal = cnnviz.saliency(cnnviz.zoo.pretrained("resnet20"), x)
        np.testing.assert_allclose(f["saliency/map"][()], sal.map.numpy(), atol=1e-5)


def test_torchvision_image_folder(cifar_samples, tmp_path):
    """An ImageFolder without a transform (PIL images) is preprocessed with size=; its class
    indices are the labels; the maps equal those of the same files given as a list."""
    torchvision = pytest.importorskip("torchvision")
    root = tmp_path / "folder"
    for k, (p, _) in enumerate(cifar_samples[:6]):
        (root / f"class{k % 2}").mkdir(parents=True, exist_ok=True)
        os.symlink(p, root / f"class{k % 2}" / os.path.basename(p))
    ds = torchvision.datasets.ImageFolder(str(root))
    cnnviz.run("resnet20", ds, ["saliency"], str(tmp_path / "a"), size=32, batch_size=4, progress=False)
    files = [path for path, _ in ds.samples]
    cnnviz.run("resnet20", files, ["saliency"], str(tmp_path / "b"), batch_size=4, progress=False)
    with cnnviz.open_run(str(tmp_path / "a")) as a, cnnviz.open_run(str(tmp_path / "b")) as b:
        assert list(a["label"][()]) == [label for _, label in ds.samples]
        np.testing.assert_allclose(a["saliency/map"][()], b["saliency/map"][()], atol=1e-5)


def test_targets_labels_given_and_constant(cifar_samples, tmp_path):
    files = [p for p, _ in cifar_samples[:6]]
    labels = [label for _, label in cifar_samples[:6]]
    given = [3, 1, 4, 1, 5, 9]
    for name, targets, expect in (("labels", "labels", labels), ("given", given, given), ("const", 7, [7] * 6)):
        cnnviz.run("resnet20", files, ["saliency"], str(tmp_path / name), targets=targets, batch_size=4, progress=False)
        with cnnviz.open_run(str(tmp_path / name)) as f:
            assert list(f["saliency/target"][()]) == expect


def test_cli_run(cifar_dir, tmp_path, capsys):
    out = str(tmp_path / "cli")
    rc = cli.main(["run", "--model", "resnet20", "--data", cifar_dir, "--methods", "saliency,ig",
                          "--set", "ig.steps=4", "--out", out, "--batch-size", "8", "--workers", "0", "--no-progress"])
    assert rc == 0
    assert "20 images" in capsys.readouterr().out
    with cnnviz.open_run(out) as f:
        assert f["integrated_gradients/map"].shape == (20, 32, 32)
        assert json.loads(f.attrs["settings"])["methods"]["integrated_gradients"]["steps"] == 4
    assert cli.main(["run", "--model", "resnet20", "--data", cifar_dir, "--methods", "nope",
                            "--out", out]) == 2


def test_bad_input(cifar_dir, cifar_samples, tmp_path):
    files = [p for p, _ in cifar_samples[:4]]
    out = str(tmp_path / "bad")
    with pytest.raises(ValueError, match="unknown method"):
        cnnviz.run("resnet20", files, ["nope"], out)
    with pytest.raises(ValueError, match="no option"):
        cnnviz.run("resnet20", files, [("saliency", {"stepz": 3})], out)
    with pytest.raises(ValueError, match="batch_size"):
        cnnviz.run("resnet20", files, ["saliency"], out, batch_size=0)
    with pytest.raises(ValueError, match="4 targets|3 targets"):
        cnnviz.run("resnet20", files, ["saliency"], out, targets=[1, 2, 3])
    with pytest.raises(ValueError, match="targets must be"):
        cnnviz.run("resnet20", files, ["saliency"], out, targets="truth")
    with pytest.raises(ValueError, match="twice"):
        cnnviz.run("resnet20", files, ["saliency", "saliency"], out)
    with pytest.raises(ValueError, match="unknown model"):
        cnnviz.run("resnet21", files, ["saliency"], out)
    with pytest.raises(ValueError, match="neither a folder"):
        cnnviz.run("resnet20", os.path.join(cifar_dir, "missing"), ["saliency"], out)
    with pytest.raises(ValueError, match="faithfulness must be"):
        cnnviz.run("resnet20", files, [("saliency", {"faithfulness": "yes"})], out)
    if _runs_job.HAVE_ACCUMULATORS:
        with pytest.raises(ValueError, match="keep_per_image"):
            cnnviz.run("resnet20", files, [("filter_statistics", {"keep_per_image": True})], out)
        with pytest.raises(ValueError, match="cka needs layers"):
            cnnviz.run("resnet20", files, ["cka"], out)
        with pytest.raises(ValueError, match="linear kernel"):
            cnnviz.run("resnet20", files, [("cka", {"layers": ["layer1"], "kernel": "rbf"})], out)
    else:
        with pytest.raises(ValueError, match="lacks"):
            cnnviz.run("resnet20", files, ["filter_statistics"], out)
    if not _runs_job.HAVE_FAITHFULNESS:
        with pytest.raises(ValueError, match="lacks"):
            cnnviz.run("resnet20", files, [("saliency", {"faithfulness": True})], out)
    nolabels = str(tmp_path / "nolabels")
    os.mkdir(nolabels)
    shutil.copy(files[0], os.path.join(nolabels, "photo.png"))
    with pytest.raises(ValueError, match="no label"):
        cnnviz.run("resnet20", nolabels, ["saliency"], str(tmp_path / "nl"), targets="labels", progress=False)
    # A folder holding a run with other settings is not mixed into.
    cnnviz.run("resnet20", files, ["saliency"], out, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        cnnviz.run("resnet20", files, ["saliency"], out, batch_size=3, progress=False)
    s = cnnviz.run("resnet20", files, ["saliency"], out, batch_size=3, progress=False, overwrite=True)
    assert s.new_images == 4


def test_files_follow_the_runs_preprocessing(cifar_samples, tmp_path):
    """A folder or list of files is preprocessed with the run's size, resize, mean and std
    (not the files' own size): the stored maps and logits equal the direct calls on the
    same preprocessed batch."""
    files = [p for p, _ in cifar_samples[:4]]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    cnnviz.run("resnet20", files, ["saliency"], str(tmp_path / "out"), size=24, resize=28, mean=mean, std=std,
               batch_size=4, progress=False)
    x = torch.cat([cnnviz.preprocess(cnnviz.load_image(p), size=24, resize=28, mean=mean, std=std) for p in files])
    direct = cnnviz.saliency(cnnviz.zoo.pretrained("resnet20"), x)
    with cnnviz.open_run(str(tmp_path / "out")) as r:
        assert r["saliency/map"].shape == (4, 24, 24)
        np.testing.assert_allclose(r["logits"][()], direct.logits.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r["saliency/map"][()], direct.map.numpy(), rtol=1e-5, atol=1e-6)
