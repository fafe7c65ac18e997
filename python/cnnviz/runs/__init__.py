"""Dataset runs: attribution methods and analysis jobs over a whole dataset, written to a
chunked HDF5 store, resumable, from one process to many with torchrun (docs/runs.md)."""
from .analysis import AnalysisJob
from .data import ImageFiles, Preprocess
from .runner import RunSummary, run
from .store import open_run

__all__ = ["run", "RunSummary", "open_run", "ImageFiles", "Preprocess", "AnalysisJob"]
