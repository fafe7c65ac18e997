"""A notebook that calls cnnviz.dashboard(...) runs headless (nbclient) without error and
displays the page inline. The kernel is this test's interpreter, registered in a temporary
Jupyter path (nothing is installed for the user)."""
import json
import os
import sys

import pytest

pytest.importorskip("flask")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

CELLS = [
    "import urllib.request, cnnviz, torch\n"
    "model = cnnviz.zoo.cifar_resnet(20).eval()\n"
    "board = cnnviz.dashboard(model, torch.randint(0, 256, (40, 40, 3), dtype=torch.uint8), samples=False)\n"
    "board",
    "page = urllib.request.urlopen(board.url, timeout=30).read().decode()\n"
    "assert board.token in page\n"
    "board.stop()\n"
    "print('stopped', board.running)",
]


def test_a_notebook_shows_the_dashboard(tmp_path, monkeypatch):
    kernel_dir = tmp_path / "jupyter" / "kernels" / "cnnviz-test"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cnnviz test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))  # a developer build, too
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    client = nbclient.NotebookClient(nb, kernel_name="cnnviz-test", timeout=120, resources={"metadata": {
        "path": str(tmp_path)}})
    client.execute()
    shown = nb.cells[0].outputs[0]["data"]
    assert "<iframe" in shown["text/html"] and "127.0.0.1" in shown["text/html"]
    printed = [o["text"] for o in nb.cells[1].outputs if o.get("name") == "stdout"]
    assert printed == ["stopped False\n"]
    assert not [o for c in nb.cells for o in c.outputs if o.get("name") == "stderr" or o["output_type"] == "error"]
