"""The README's Python blocks run as written (the photo is the sample cat)."""
import os
import re
import shutil

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def _blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_the_readme_has_python_blocks_that_compile():
    blocks = _blocks()
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        compile(block, f"README.md block {i}", "exec")


def _run(blocks, data_dir, tmp_path, monkeypatch):
    shutil.copy(os.path.join(data_dir, "images", "cat_chelsea.png"), tmp_path / "cat.png")
    monkeypatch.chdir(tmp_path)
    scope = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md block {i}", "exec"), scope)
    return scope


def test_the_first_python_block_runs(data_dir, tmp_path, monkeypatch):
    scope = _run(_blocks()[:1], data_dir, tmp_path, monkeypatch)
    assert tuple(scope["x"].shape) == (1, 3, 224, 224)
    assert (tmp_path / "maps.png").stat().st_size > 0
    assert scope["cnnviz"].predict(scope["model"], scope["x"], k=1)[0].label == "Egyptian cat"


@pytest.mark.slow
def test_the_library_blocks_run(data_dir, tmp_path, monkeypatch):
    """The first two blocks (the library); the dashboard block starts a server and is only
    compiled above."""
    scope = _run(_blocks()[:2], data_dir, tmp_path, monkeypatch)
    assert (tmp_path / "cam.png").stat().st_size > 0
    assert scope["inv"].feature_loss < scope["inv"].losses[0]
