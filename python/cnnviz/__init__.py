"""cnnviz: CNN visualization and interpretability on PyTorch models.

Everything runs in the native core (``cnnviz._C``, LibTorch); this package adds the
docstrings, type hints, plotting and the notebook helpers. ``torch`` is imported first so
that the core links against the interpreter's already-loaded LibTorch.
"""
import os as _os

import torch as _torch

# A developer build can point at a freshly built _C without installing.
if _os.environ.get("CNNVIZ_C_DIR"):
    __path__.insert(0, _os.environ["CNNVIZ_C_DIR"])  # type: ignore[name-defined]

try:
    from . import _C
except ImportError as _e:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"cnnviz: the native module could not be loaded ({_e}). Reinstall cnnviz against the "
        f"torch of this interpreter ({_torch.__version__}): pip install --no-build-isolation ."
    ) from _e

if _C.built_with_torch != _torch.__version__:
    raise ImportError(
        f"cnnviz was built against torch {_C.built_with_torch} but this interpreter has torch "
        f"{_torch.__version__}; rebuild it: pip install --no-build-isolation --force-reinstall ."
    )

__version__: str = _C.__version__

from .image import *  # noqa: E402,F401,F403
from .regularizers import *  # noqa: E402,F401,F403
from .models import *  # noqa: E402,F401,F403
from .optimization import *  # noqa: E402,F401,F403
from .attribution import *  # noqa: E402,F401,F403
from .adversarial import *  # noqa: E402,F401,F403
from .metrics import *  # noqa: E402,F401,F403
from .faithfulness import *  # noqa: E402,F401,F403
from .layer_analysis import *  # noqa: E402,F401,F403
from .filter_analysis import *  # noqa: E402,F401,F403
from .representation import *  # noqa: E402,F401,F403
from .threads import *  # noqa: E402,F401,F403
from ._plan import inference_plans_enabled, set_inference_plans  # noqa: E402,F401
from . import cnn_utils, zoo  # noqa: E402,F401
from . import _results  # noqa: E402,F401  (reprs and docs of the result classes)
from .runs import RunSummary, open_run, run  # noqa: E402,F401


def data_dir() -> str:
    """The sample-data folder: ``$CNNVIZ_DATA``, else ``shared/data`` beside the working
    directory or beside any folder above it (so ``../shared/data`` from a checkout, and from
    any folder inside it). Raises FileNotFoundError when none exists."""
    env = _os.environ.get("CNNVIZ_DATA")
    if env:
        if _os.path.isdir(env):
            return _os.path.abspath(env)
        raise FileNotFoundError(f"cnnviz: CNNVIZ_DATA={env} is not a folder")
    here = _os.path.abspath(_os.getcwd())
    while True:
        parent = _os.path.dirname(here)
        candidate = _os.path.join(parent, "shared", "data")
        if _os.path.isdir(candidate):
            return candidate
        if parent == here:
            break
        here = parent
    raise FileNotFoundError(
        "cnnviz: sample data not found; set CNNVIZ_DATA to the folder with weights/ and images/"
    )


def __getattr__(name: str):
    # cnnviz.plot imports matplotlib: load it on first use, not with the package.
    if name == "plot":
        import importlib

        return importlib.import_module(".plot", __name__)
    # The dashboard and the report load Flask and the page only when asked for.
    if name in ("dashboard", "report"):
        import importlib

        return getattr(importlib.import_module(".app.server" if name == "dashboard" else ".app.report", __name__), name)
    raise AttributeError(f"module 'cnnviz' has no attribute '{name}'")
