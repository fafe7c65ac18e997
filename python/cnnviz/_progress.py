"""Progress for long native loops: a tqdm bar or a user callback, and clean Ctrl-C."""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Union

ProgressArg = Union[bool, Callable[[int, int, float], Optional[bool]], None]


class Progress:
    """Turns ``progress=`` (True for a tqdm bar, a callable ``(step, total, loss) ->
    bool | None`` that returns False to stop, or False/None) into the callback the native
    loop calls. Use as a context manager so the bar is always closed."""

    def __init__(self, progress: ProgressArg, total: int, desc: str) -> None:
        self._bar = None
        self._user = None
        if progress is True:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, leave=False)
        elif callable(progress):
            self._user = progress
        elif progress not in (False, None):
            raise ValueError("cnnviz: progress must be True, False, None or a callable")

    def callback(self):
        if self._bar is None and self._user is None:
            return None

        def step(i: int, total: int, loss: float) -> bool:
            if self._bar is not None:
                self._bar.update(i - self._bar.n)
                self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            if self._user is not None:
                return self._user(i, total, loss) is not False
            return True

        return step

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()


def warn_if_interrupted(result, what: str) -> None:
    """Ctrl-C ends a native loop cleanly: the partial result comes back with
    ``interrupted=True`` and this warning."""
    if getattr(result, "interrupted", False):
        warnings.warn(f"cnnviz: {what} interrupted; returning the partial result", RuntimeWarning,
                      stacklevel=3)
