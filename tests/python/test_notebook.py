"""examples/cnn_visualization.ipynb, the cnnviz edition of the notebook: the committed file
is what examples/build_notebook.py writes (without outputs), it runs headless to the end in
its fast form (CNNVIZ_NOTEBOOK_FAST=1), and every section tagged ``figure:<section>``
produced a figure."""
import importlib.util
import os
import re

import nbformat
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
NOTEBOOK = os.path.join(EXAMPLES, "cnn_visualization.ipynb")
SECTIONS = ["photos", "filters", "feature-maps", "inversion", "inversion-depths", "saliency", "challenge-1",
            "challenge-2", "challenge-3", "challenge-4", "challenge-5", "challenge-6", "challenge-7", "bonus"]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tags(cell):
    return [t[len("figure:"):] for t in cell.metadata.get("tags", []) if t.startswith("figure:")]


def test_committed_notebook_is_the_builders_without_outputs():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = _load("build_notebook").build()
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in committed.cells if c.cell_type == "code")
    assert committed.metadata["kernelspec"]["name"] == "cnnviz"
    # Every challenge of the original (1-7) and the bonus has its section.
    text = "\n".join(c.source for c in committed.cells if c.cell_type == "markdown")
    for k in range(1, 8):
        assert re.search(rf"^## Challenge {k}:", text, re.M), k
    assert "## Bonus" in text
    assert sorted({t for c in committed.cells for t in _tags(c)}) == sorted(SECTIONS)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb") / "cnn_visualization.ipynb"
    runner = _load("run_notebook")
    cpu0 = runner.kernel_cpu_seconds()
    nb, seconds = runner.execute(NOTEBOOK, str(out), fast=True, timeout=600)
    print(f"fast notebook: {seconds:.0f} s wall, kernel {runner.kernel_cpu_seconds() - cpu0:.0f} s CPU")
    return nb


def test_notebook_runs_and_every_section_draws(executed):
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    figures = {s: 0 for s in SECTIONS}
    for c in executed.cells:
        n = sum(1 for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        for t in _tags(c):
            figures[t] += n
    assert all(figures.values()), {s: n for s, n in figures.items() if not n}


def test_answers_are_printed_from_computed_numbers(executed):
    cell = next(c for c in executed.cells if c.cell_type == "code" and "1. Hierarchical learning" in c.source)
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    for k in range(1, 6):
        assert f"{k}. " in text
    # Numbers in every answer, taken from the run (no prose written in advance).
    answers = re.split(r"^\d\. ", text, flags=re.M)[1:]
    assert len(answers) == 5 and all(re.search(r"\d\.\d", a) for a in answers[:4])


def test_user_kernel_is_offered_by_debians_jupyter(tmp_path):
    # What `make jupyter` does: the venv's Python registers the kernel "cnnviz" for the user;
    # Debian's Jupyter (/usr/bin/python3) then lists it, and it runs this interpreter, which
    # imports cnnviz. HOME is a temporary folder so the test leaves the user's alone.
    import subprocess
    import sys

    system = "/usr/bin/python3"
    probe = "import jupyter_client.kernelspec"
    if not os.path.exists(system) or subprocess.run([system, "-c", probe], capture_output=True).returncode:
        pytest.skip("Debian's Jupyter is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(HOME=str(tmp_path), PYDEVD_DISABLE_FILE_VALIDATION="1")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "cnnviz",
                    "--display-name", "Python (cnnviz)"], env=env, check=True, capture_output=True)
    found = subprocess.run([system, "-c", "from jupyter_client.kernelspec import KernelSpecManager as K; "
                            "s = K().get_kernel_spec('cnnviz'); print(s.argv[0]); print(s.display_name)"],
                           env=env, check=True, capture_output=True, text=True).stdout.split("\n")
    assert os.path.abspath(found[0]) == os.path.abspath(sys.executable) and found[1] == "Python (cnnviz)"
    subprocess.run([found[0], "-c", "import cnnviz"], env=env, check=True)
