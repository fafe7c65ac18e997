"""How many intra-op threads cnnviz's calls use.

By default every call sizes its work (input elements per forward pass times the model's
parameters) and runs small work, such as one 32x32 image through ResNet-20, on one thread:
there torch's per-op overhead and its batch-of-one convolution path make a second thread
slower (about 10 ms against 38 ms per forward/backward on a 2-core machine). Larger work
runs at the caller's ``torch.get_num_threads()``, as does a callable that shows no
parameters (its work is unknown). The count applies to the calling thread
for the duration of the call and is restored after; ``torch.set_num_threads`` is never
changed, and calls from several threads do not interfere.

Overrides, strongest first: ``cnnviz.set_num_threads(n)`` (or the ``num_threads(n)``
context manager), then the environment variable ``CNNVIZ_NUM_THREADS`` (a positive integer,
or ``auto``). With either, every call runs on exactly n threads.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

from . import _C

__all__ = ["set_num_threads", "get_num_threads", "num_threads"]

_lock = threading.Lock()


def set_num_threads(n: Optional[int]) -> None:
    """Runs every cnnviz call on ``n`` intra-op threads (process-wide); ``None`` or 0
    restores the automatic choice by the size of the work."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise TypeError(f"cnnviz: the number of threads must be an int or None, got {type(n).__name__}")
    _C.set_num_threads(0 if n is None else n)


def get_num_threads() -> Optional[int]:
    """The count set with ``set_num_threads``, or None when cnnviz chooses by the work."""
    n = _C.get_num_threads()
    return n or None


@contextlib.contextmanager
def num_threads(n: Optional[int]) -> Iterator[None]:
    """``set_num_threads(n)`` for the body of a ``with`` block, the previous setting after.
    The setting is process-wide: other threads' calls see it meanwhile."""
    with _lock:
        previous = get_num_threads()
        set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)
