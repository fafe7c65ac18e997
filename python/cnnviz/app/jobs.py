"""One job at a time: a newer request cancels the running one (its progress callback returns
False at the next step), and the stop button does the same. Each job runs in its own
worker thread; the page polls its state."""
from __future__ import annotations

import itertools
import threading
import time
import traceback
from typing import Any, Callable, Dict, Optional

from .session import Cancelled, RequestError

JOB_THREAD_PREFIX = "cnnviz-job-"


class Job:
    """The state the page polls: queued, running, done, stopped or error."""

    def __init__(self, job_id: str, total: int) -> None:
        self.id = job_id
        self.state = "queued"
        self.step = 0
        self.total = total
        self.loss: Optional[float] = None
        self.preview: Optional[Dict[str, Any]] = None  # {"step", "src", "pane"}
        self.result: Optional[Dict[str, Any]] = None
        self.error: Optional[str] = None
        self.pane = "a"
        self.cancelled = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def progress(self, step: int, total: int, loss: float) -> bool:
        with self._lock:
            self.step, self.total, self.loss = int(step), int(total), float(loss)
        return not self.cancelled.is_set()

    def show(self, step: int, total: int, src: str) -> None:
        with self._lock:
            self.preview = {"step": int(step), "total": int(total), "src": src, "pane": self.pane}

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return {"id": self.id, "state": self.state, "step": self.step, "total": self.total, "loss": self.loss,
                    "preview": self.preview, "result": self.result, "error": self.error,
                    "seconds": round(time.monotonic() - self.started, 2)}

    def _finish(self, state: str, result=None, error: Optional[str] = None) -> None:
        with self._lock:
            self.state, self.result, self.error = state, result, error


class JobRunner:
    """Starts jobs in worker threads; at most one is meant to run (a new one cancels the
    previous). Old job states are kept a while so late polls get an answer."""

    keep = 16

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._jobs: Dict[str, Job] = {}
        self._current: Optional[Job] = None
        self._lock = threading.Lock()

    def start(self, work: Callable[[Job], Dict[str, Any]], total: int = 0) -> Job:
        job = Job(f"j{next(self._ids)}", total)
        with self._lock:
            if self._current is not None:
                self._current.cancelled.set()
            self._current = job
            self._jobs[job.id] = job
            for old in list(self._jobs)[:-self.keep]:
                if self._jobs[old].state not in ("queued", "running"):
                    del self._jobs[old]

        def run() -> None:
            job.state = "running"
            try:
                if job.cancelled.is_set():
                    raise Cancelled()
                result = work(job)
                job._finish("stopped" if job.cancelled.is_set() else "done", result)
            except Cancelled:
                job._finish("stopped")
            except RequestError as e:
                job._finish("error", error=str(e))
            except (ValueError, IndexError, RuntimeError, TypeError) as e:
                # cnnviz explains bad input in the first line; the rest is a C++ backtrace.
                job._finish("error", error=str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            except Exception as e:  # noqa: BLE001 - one bad job never takes the server down
                traceback.print_exc()
                job._finish("error", error=f"internal error: {type(e).__name__}")

        job.thread = threading.Thread(target=run, name=JOB_THREAD_PREFIX + job.id, daemon=True)
        job.thread.start()
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def stop(self, wait: float = 0) -> Optional[Job]:
        """Cancels the running job; with ``wait`` > 0 waits up to that long for its thread."""
        with self._lock:
            job = self._current
        if job is None:
            return None
        job.cancelled.set()
        if wait > 0 and job.thread is not None:
            job.thread.join(wait)
        return job

    def join_all(self, timeout: float = 30) -> bool:
        """Waits for every worker thread; True when none is left running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        return not any(j.thread is not None and j.thread.is_alive() for j in jobs)
