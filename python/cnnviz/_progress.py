"""Progress for long native loops: a tqdm bar or a user callback, and clean Ctrl-C.

Every long loop (optimization, batched attribution, attacks) runs through
:func:`run_native`, the one place that turns Ctrl-C into "stop after this step"."""
from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from typing import Callable, Iterable, Iterator, Optional, TypeVar, Union

ProgressArg = Union[bool, Callable[[int, int, float], Optional[bool]], None]
T = TypeVar("T")


class Progress:
    """Turns ``progress=`` (True for a tqdm bar, a callable ``(step, total, loss) ->
    bool | None`` that returns False to stop, or False/None) into the callback the native
    loop calls. Use as a context manager so the bar is always closed."""

    def __init__(self, progress: ProgressArg, total: Optional[int], desc: str) -> None:
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
                if self._bar.total is None:
                    self._bar.total = total
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


class SigintStops:
    """Turns Ctrl-C into "stop after this step" while a native loop runs.

    With Python's default handler a KeyboardInterrupt would be raised inside a Python
    model's forward (or its hooks) and unwind the loop, losing the partial result; this
    handler only records the signal, and the loop's progress callback then stops it. Only
    installed in the main thread over the default handler (other handlers are left alone;
    elsewhere the native bridge's own signal check stops the loop between steps)."""

    def __init__(self) -> None:
        self.hit = False
        self._previous = None

    def __enter__(self) -> "SigintStops":
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        self.hit = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def wrap(self, callback):
        if self._previous is None:
            return callback

        def step(i: int, total: int, loss: float) -> bool:
            if self.hit:
                return False
            return True if callback is None else callback(i, total, loss)

        return step


def run_native(fn, progress: ProgressArg, total: Optional[int], what: str, *args):
    """Runs a native loop ``fn(*args, callback)`` with a progress bar / callback and Ctrl-C
    handling. Results (one or a list) come back with ``interrupted`` set when Ctrl-C
    stopped the loop, and a RuntimeWarning says so."""
    with Progress(progress, total, what) as bar, SigintStops() as sigint:
        result = fn(*args, sigint.wrap(bar.callback()))
    results = result if isinstance(result, list) else [result]
    for r in results:
        r.interrupted = bool(getattr(r, "interrupted", False) or sigint.hit)
    if results:
        warn_if_interrupted(results[0], what)
    return result


class StreamStops:
    """Ctrl-C for the streaming analyses (a Python loop over the batches of a DataLoader):
    the batch being processed finishes, the loop ends, and the statistics of the batches
    seen come back with ``interrupted=True`` and a warning. Use as a context manager and
    iterate ``stream.batches(iterable)``; a Ctrl-C before the first batch is done is a
    KeyboardInterrupt (there is nothing to return). A DataLoader worker that the same Ctrl-C
    ended (a terminal signals the whole process group) is not an error then."""

    def __init__(self, what: str) -> None:
        self.what, self.done = what, 0
        self._sigint = SigintStops()

    def __enter__(self) -> "StreamStops":
        self._sigint.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._sigint.__exit__(*exc)

    @property
    def interrupted(self) -> bool:
        return self._sigint.hit

    def batches(self, source: Iterable[T]) -> Iterator[T]:
        it = iter(source)
        while not self._sigint.hit:
            try:
                item = next(it)
            except StopIteration:
                return
            except RuntimeError:
                if self._sigint.hit:  # a worker ended by the same Ctrl-C
                    break
                raise
            yield item
            self.done += 1
        if self.done == 0:
            raise KeyboardInterrupt

    def finish(self, result):
        """Marks ``result`` (``interrupted``) and warns when the loop was cut short."""
        result.interrupted = self.interrupted
        warn_if_interrupted(result, self.what)
        return result


def warn_if_interrupted(result, what: str) -> None:
    """Ctrl-C ends a native loop cleanly: the partial result comes back with
    ``interrupted=True`` and this warning."""
    if getattr(result, "interrupted", False):
        warnings.warn(f"cnnviz: {what} interrupted; returning the partial result", RuntimeWarning,
                      stacklevel=_caller_level())


def _caller_level() -> int:
    """The stacklevel of the first frame outside the cnnviz package (the user's call)."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == package:
        frame, level = frame.f_back, level + 1
    return level
