"""Executes a notebook headless with nbclient and writes the executed copy (with figures).

    python examples/run_notebook.py [IN.ipynb] [OUT.ipynb] [--fast] [--timeout SECONDS]

Runs in the kernel ``cnnviz`` (``make kernel`` registers it for the venv); when no such
kernel is registered, a temporary kernelspec for this interpreter is used. ``--fast`` sets
``CNNVIZ_NOTEBOOK_FAST=1`` (cut iteration counts). MPLBACKEND is removed from the kernel's
environment so that figures are captured inline. Prints the wall time.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL = "cnnviz"


class _Client(NotebookClient):
    def on_comm_open_jupyter_widget(self, msg):
        # nbclient 0.7 expects ipywidgets 7's comm_open (a "state" in the data); ipywidgets 8
        # may open comms without it. Such a widget simply gets no headless model.
        if "state" not in msg.get("content", {}).get("data", {}):
            return None
        return super().on_comm_open_jupyter_widget(msg)


@contextlib.contextmanager
def _kernel_env(fast: bool):
    """Environment for the kernel: the fast flag, no MPLBACKEND, and a kernelspec named
    ``cnnviz`` for this interpreter when none is registered."""
    saved = dict(os.environ)
    tmp = None
    try:
        os.environ.pop("MPLBACKEND", None)
        if fast:
            os.environ["CNNVIZ_NOTEBOOK_FAST"] = "1"
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            spec = KernelSpecManager().get_kernel_spec(KERNEL)
            ok = os.path.exists(spec.argv[0]) or spec.argv[0] == "python"
        except NoSuchKernel:
            ok = False
        if not ok:
            tmp = tempfile.TemporaryDirectory()
            d = os.path.join(tmp.name, "kernels", KERNEL)
            os.makedirs(d)
            with open(os.path.join(d, "kernel.json"), "w") as f:
                json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                           "display_name": "Python (cnnviz)", "language": "python"}, f)
            os.environ["JUPYTER_PATH"] = tmp.name + os.pathsep + os.environ.get("JUPYTER_PATH", "")
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if tmp is not None:
            tmp.cleanup()


def execute(src: str, dst: str | None = None, fast: bool = False, timeout: int = 1800):
    """Runs every cell of ``src`` (in its folder); writes the executed notebook to ``dst``.
    Returns (notebook, seconds). Raises nbclient's CellExecutionError on the first error."""
    nb = nbformat.read(src, as_version=4)
    start = time.perf_counter()
    with _kernel_env(fast):
        client = _Client(nb, timeout=timeout, kernel_name=KERNEL,
                                resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}})
        try:
            client.execute()
        finally:
            seconds = time.perf_counter() - start
            if dst:
                os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
                nbformat.write(nb, dst)
    return nb, seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", nargs="?", default=os.path.join(HERE, "cnn_visualization.ipynb"))
    p.add_argument("dst", nargs="?", default=os.path.join("out", "cnn_visualization.ipynb"))
    p.add_argument("--fast", action="store_true", help="set CNNVIZ_NOTEBOOK_FAST=1")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    a = p.parse_args(argv)
    _, seconds = execute(a.src, a.dst, a.fast, a.timeout)
    print(f"executed {a.src} in {seconds:.0f} s ({'fast' if a.fast else 'full'} settings, "
          f"{os.cpu_count()} CPUs) -> {a.dst}")


if __name__ == "__main__":
    main()
