"""The interactive dashboard (a local web app, also shown inline in Jupyter) and the
self-contained HTML report: ``cnnviz.dashboard`` (:mod:`cnnviz.app.server`, needs Flask)
and ``cnnviz.report`` (:mod:`cnnviz.app.report`), each imported on first use."""
from __future__ import annotations

import importlib

__all__ = ["dashboard", "report"]
# cnnviz.app.report is also the module's name: once imported it shadows the function here,
# so cnnviz.report is the way to the function.
_HOME = {"dashboard": ".server", "Dashboard": ".server", "create_app": ".server", "report": ".report"}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module 'cnnviz.app' has no attribute '{name}'")
