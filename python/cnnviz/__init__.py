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
from . import cnn_utils, zoo  # noqa: E402,F401


def data_dir() -> str:
    """The sample-data folder: ``$CNNVIZ_DATA``, else ``../shared/data`` from the working
    directory or from the source tree. Raises FileNotFoundError when none exists."""
    candidates = []
    if _os.environ.get("CNNVIZ_DATA"):
        candidates.append(_os.environ["CNNVIZ_DATA"])
    candidates.append(_os.path.join(_os.getcwd(), "..", "shared", "data"))
    candidates.append(_os.path.join(_os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
    for c in candidates:
        if _os.path.isdir(c):
            return _os.path.abspath(c)
    raise FileNotFoundError(
        "cnnviz: sample data not found; set CNNVIZ_DATA to the folder with weights/ and images/"
    )
