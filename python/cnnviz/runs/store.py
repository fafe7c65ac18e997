"""The on-disk store of a run (HDF5, readable with plain h5py or any HDF5 1.10+ tool).

Layout of the folder ``out``::

    out/settings.json            the run's settings (a restart must match them)
    out/chunks/chunk_000000.h5   rows [0, chunk_size) of the dataset, one file per chunk
    out/chunks/chunk_000001.h5   ...
    out/run.h5                   the index: settings as attributes, every per-image array of
                                 the chunks as one virtual dataset, failures, analysis results

A chunk is written to ``chunk_K.h5.tmp`` and renamed when complete (atomic on POSIX), with a
Fletcher-32 checksum on every dataset and a ``complete`` attribute, so a half-written or
damaged chunk is detected on restart and redone; a complete chunk is never rewritten.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

CHUNKS = "chunks"
INDEX = "run.h5"
SETTINGS = "settings.json"
FORMAT = "cnnviz-run/1"


def _h5py():
    # Imported on first use so that ``import cnnviz`` does not need h5py.
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError("cnnviz: runs store their results with h5py: apt install python3-h5py "
                          "(or pip install h5py)") from e
    return h5py


def chunk_path(out: str, k: int) -> str:
    return os.path.join(out, CHUNKS, f"chunk_{k:06d}.h5")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put(f, name: str, value: np.ndarray) -> None:
    value = np.ascontiguousarray(value)
    if value.size:
        # Checksummed, and no timestamps so that equal contents give equal files.
        f.create_dataset(name, data=value, chunks=True, fletcher32=True, track_times=False)
    else:
        f.create_dataset(name, data=value, track_times=False)


def write_chunk(path: str, arrays: Mapping[str, np.ndarray], failed: List[Tuple[int, str]],
                attrs: Mapping[str, Any]) -> None:
    """Writes one chunk atomically: a temporary file, flushed to disk, then renamed."""
    h5py = _h5py()
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    with h5py.File(tmp, "w") as f:
        for name in sorted(arrays):
            _put(f, name, arrays[name])
        _put(f, "failed/index", np.array([i for i, _ in failed], dtype=np.int64))
        f.create_dataset("failed/error", data=np.array([e for _, e in failed], dtype=object),
                         dtype=h5py.string_dtype(), track_times=False)
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["complete"] = 1  # last: a file without it was cut short
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def verify_chunk(path: str, digest: str) -> Optional[str]:
    """None when ``path`` is a complete chunk of the run with this settings digest, else why
    not. Reads every dataset, so the Fletcher-32 checksums are checked."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            if int(f.attrs.get("complete", 0)) != 1:
                return "incomplete"
            if f.attrs.get("settings_digest") != digest:
                return "written with other settings"

            def check(name, obj):
                if isinstance(obj, h5py.Dataset):
                    obj[()]  # raises on a checksum mismatch or a short file

            f.visititems(check)
    except Exception as e:  # unreadable, truncated, checksum mismatch
        return f"{type(e).__name__}: {e}"
    return None


def read_states(path: str, group: str) -> Dict[str, np.ndarray]:
    """The analysis state ``state/<group>/*`` stored in one chunk."""
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        g = f.get(f"state/{group}")
        return {} if g is None else {k: g[k][()] for k in g}


def _datasets(f, skip: Tuple[str, ...]) -> Dict[str, Any]:
    found: Dict[str, Any] = {}
    h5py = _h5py()

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and not name.startswith(skip):
            found[name] = obj

    f.visititems(visit)
    return found


def _attr(value: Any) -> Any:
    """A settings value as an HDF5 attribute (nested values as JSON text)."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return str(value)  # also str subclasses (torch's version string)
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return np.asarray(value)
    return json.dumps(value)


def consolidate(out: str, n_chunks: int, settings: Mapping[str, Any],
                results: Mapping[str, Mapping[str, np.ndarray]]) -> Dict[str, Any]:
    """Writes ``out/run.h5``: every per-image dataset of the chunks as one virtual dataset
    (rows in dataset order, failed images left out), the failures and the analysis results.
    Returns counts for the summary."""
    h5py = _h5py()
    shapes: Dict[str, Tuple[np.dtype, Tuple[int, ...]]] = {}
    rows: List[int] = []
    failed_index: List[np.ndarray] = []
    failed_error: List[str] = []
    for k in range(n_chunks):
        with h5py.File(chunk_path(out, k), "r") as f:
            rows.append(int(f["index"].shape[0]))
            for name, d in _datasets(f, ("failed/", "state/")).items():
                if d.shape[0]:
                    shapes.setdefault(name, (d.dtype, d.shape[1:]))
            failed_index.append(f["failed/index"][()])
            failed_error += [e.decode() if isinstance(e, bytes) else str(e) for e in f["failed/error"][()]]
    total = int(sum(rows))
    tmp = os.path.join(out, INDEX + ".tmp")
    if os.path.exists(tmp):
        os.remove(tmp)
    with h5py.File(tmp, "w", libver=("v110", "latest")) as f:
        f.attrs["format"] = FORMAT
        f.attrs["settings"] = json.dumps(settings, sort_keys=True)
        for key, value in settings.items():
            f.attrs[key] = _attr(value)
        f.attrs["images"] = total
        f.attrs["chunks"] = n_chunks
        for name, (dtype, tail) in sorted(shapes.items()):
            layout = h5py.VirtualLayout(shape=(total,) + tuple(tail), dtype=dtype)
            start = 0
            for k, n in enumerate(rows):
                if n:
                    layout[start:start + n] = h5py.VirtualSource(
                        os.path.join(CHUNKS, os.path.basename(chunk_path(out, k))), name, shape=(n,) + tuple(tail))
                start += n
            f.create_virtual_dataset(name, layout)
        f.create_dataset("failed/index", data=np.concatenate(failed_index).astype(np.int64))
        f.create_dataset("failed/error", data=np.array(failed_error, dtype=object), dtype=h5py.string_dtype())
        for group, arrays in results.items():
            for key, value in arrays.items():
                f.create_dataset(f"{group}/{key}", data=np.asarray(value))
    os.replace(tmp, os.path.join(out, INDEX))
    _fsync_dir(out)
    return {"images": total, "failed": [(int(i), e) for i, e in zip(np.concatenate(failed_index), failed_error)]}


def open_run(out: str):
    """The consolidated store ``out/run.h5`` opened read-only (an ``h5py.File``): per-image
    arrays (``index``, ``label``, ``prediction``, ``logits``, ``<method>/map``, ...) read as one
    array each; ``attrs["settings"]`` holds the run's settings as JSON."""
    h5py = _h5py()
    path = out if out.endswith(".h5") else os.path.join(out, INDEX)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cnnviz: no finished run at {out} ({INDEX} missing)")
    return h5py.File(path, "r")
