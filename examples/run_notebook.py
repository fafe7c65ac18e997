"""Executes a notebook headless with nbclient and writes the executed copy (with figures).

    python examples/run_notebook.py [IN.ipynb] [OUT.ipynb] [--fast] [--timeout SECONDS]

Runs in a kernel named ``cnnviz`` on the interpreter that runs this script (a temporary
kernelspec; ``make jupyter`` registers the same kernel for interactive use). ``--fast`` sets
``CNNVIZ_NOTEBOOK_FAST=1`` (cut iteration counts). MPLBACKEND is removed from the kernel's
environment so that figures are captured inline. Prints the wall time.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
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
    ``cnnviz`` for this interpreter first on JUPYTER_PATH, so that the run uses this
    interpreter even where a ``cnnviz`` kernel of another checkout is registered."""
    saved = dict(os.environ)
    tmp = tempfile.TemporaryDirectory()
    try:
        os.environ.pop("MPLBACKEND", None)
        if fast:
            os.environ["CNNVIZ_NOTEBOOK_FAST"] = "1"
        d = os.path.join(tmp.name, "kernels", KERNEL)
        os.makedirs(d)
        with open(os.path.join(d, "kernel.json"), "w") as f:
            json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       "display_name": "Python (cnnviz)", "language": "python"}, f)
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (tmp.name, os.environ.get("JUPYTER_PATH")) if p)
        os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # the debugger's frozen-modules note
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        tmp.cleanup()


def kernel_cpu_seconds() -> float:
    """CPU seconds (user + system) of the finished child processes so far: the kernels."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


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
    cpu0 = kernel_cpu_seconds()
    _, seconds = execute(a.src, a.dst, a.fast, a.timeout)
    load = os.getloadavg()[0]
    print(f"executed {a.src} in {seconds:.0f} s wall, kernel {kernel_cpu_seconds() - cpu0:.0f} s CPU "
          f"({'fast' if a.fast else 'full'} settings, {os.cpu_count()} CPUs, load average {load:.1f}) -> {a.dst}")


if __name__ == "__main__":
    main()
