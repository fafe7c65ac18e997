"""``cnnviz.run``: attribution methods and analysis jobs over a whole dataset, resumable, from
one process to many (torchrun)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import image as _image
from . import dist as _dist
from .analysis import ANALYSES
from . import store as _store
from .data import ImageFiles, Indexed, Preprocess, collate, label_from_name
from .methods import STOCHASTIC, Method, MethodSpec, make_methods

TargetsLike = Union[str, int, Sequence[int], torch.Tensor]


@dataclass
class RunSummary:
    """What a run did. ``images``: rows in the store (all sessions); ``new_images``: images
    this session computed (all ranks); ``seconds``: this session's wall time; ``failed``:
    ``(dataset index, error)`` of every image that could not be read."""

    out: str
    images: int
    new_images: int
    seconds: float
    chunks: int
    resumed_chunks: int
    ranks: int
    failed: List[Tuple[int, str]] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Images per second this session (all ranks together)."""
        return self.new_images / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [f"cnnviz run: {self.images} images in {self.out} ({self.chunks} chunks, "
                 f"{self.resumed_chunks} already done); this session {self.new_images} images in "
                 f"{self.seconds:.1f} s ({self.throughput:.1f} images/s) on {self.ranks} "
                 f"process{'es' if self.ranks > 1 else ''}; {len(self.failed)} failed"]
        lines += [f"  failed: #{i}: {e}" for i, e in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more (failed/ in run.h5)")
        return "\n".join(lines)


def _zoo_spec(name: str):
    from ..cli import ZOO

    if name not in ZOO:
        raise ValueError(f"cnnviz: unknown model {name!r}: choose {', '.join(ZOO)}, a module or a TorchScript file")
    return ZOO[name]


def _load_model(model) -> Tuple[Any, str]:
    """(model, identity for the settings)."""
    if isinstance(model, str):
        if model.endswith((".pt", ".pth")) and os.path.isfile(model):
            return torch.jit.load(model, map_location="cpu").eval(), os.path.basename(model)
        from .. import zoo

        _zoo_spec(model)
        return zoo.pretrained(model), model
    if not callable(model):
        raise ValueError(f"cnnviz: model must be a torch.nn.Module, a TorchScript module or a zoo name, got {type(model).__name__}")
    return model, type(model).__name__


def _preprocess(model, size, resize, mean, std) -> Preprocess:
    """The run's preprocessing: what is given, else what the model was built for (its
    ``cnnviz.zoo`` info: the sample models, or one recorded with ``zoo.describe``), else each
    image's own size and the ImageNet statistics."""
    from .. import zoo

    spec = zoo.info(model)
    if spec is not None:
        if size is None and spec.input_size:
            size = tuple(spec.input_size[1:])
            resize = spec.resize if resize is None else resize
        mean = spec.mean if mean is None else mean
        std = spec.std if std is None else std
    mean = _image.IMAGENET_MEAN if mean is None else mean
    std = _image.IMAGENET_STD if std is None else std
    if isinstance(size, tuple) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    return Preprocess(size, resize, tuple(mean), tuple(std))


def _weights_digest(model) -> str:
    h = hashlib.sha256()
    if hasattr(model, "state_dict"):
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _dataset(dataset, labels, prep: Preprocess) -> Any:
    if isinstance(dataset, (str, os.PathLike)) or (isinstance(dataset, (list, tuple)) and dataset
                                                    and all(isinstance(p, (str, os.PathLike)) for p in dataset)):
        if labels == "auto":
            root = os.fspath(dataset) if isinstance(dataset, (str, os.PathLike)) else None
            if root and os.path.isdir(root) and any(os.path.isdir(os.path.join(root, d)) for d in os.listdir(root)):
                labels = "folders"
            else:
                labels = "name"
        # Files are decoded and preprocessed with the run's size/resize/mean/std.
        return ImageFiles(dataset, prep, labels=labels)
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise ValueError("cnnviz: dataset must be a map-style torch Dataset (len and [i]), a folder or a list of files")
    return dataset


def _dataset_identity(dataset) -> Dict[str, Any]:
    ident: Dict[str, Any] = {"type": type(dataset).__name__, "length": len(dataset)}
    files = getattr(dataset, "files", None) or [p for p, _ in getattr(dataset, "samples", [])] or None
    if files:
        ident["files_digest"] = hashlib.sha256("\n".join(os.path.abspath(f) for f in files).encode()).hexdigest()[:16]
    return ident


def _targets_setting(targets: TargetsLike, n: int) -> Tuple[Any, Optional[torch.Tensor]]:
    if isinstance(targets, str):
        if targets not in ("labels", "predictions"):
            raise ValueError(f"cnnviz: targets must be 'labels', 'predictions', an int or one class per image, got {targets!r}")
        return targets, None
    if isinstance(targets, int):
        return int(targets), None
    t = torch.as_tensor(targets, dtype=torch.int64).flatten()
    if t.numel() != n:
        raise ValueError(f"cnnviz: {t.numel()} targets for a dataset of {n} images")
    return "given:" + hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16], t


def _batch_seed(seed: int, chunk: int, batch: int, method: int) -> int:
    # A seed per (chunk, batch, method): the same numbers whichever rank or session runs it.
    return int.from_bytes(hashlib.sha256(f"{seed}/{chunk}/{batch}/{method}".encode()).digest()[:7], "little")


def _first_example(data: Indexed) -> torch.Tensor:
    for i in range(len(data)):
        item = data[i]
        if not hasattr(item, "error"):
            return item[1].unsqueeze(0)
    raise ValueError("cnnviz: no readable image in the dataset")


def run(model, dataset, methods: Union[MethodSpec, Sequence[MethodSpec]], out: str, *,
        batch_size: int = 32, num_workers: int = 0, targets: TargetsLike = "predictions",
        chunk_size: Optional[int] = None, size: Optional[Union[int, Tuple[int, int]]] = None,
        resize: Optional[int] = None, mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None, labels: Any = "auto", seed: int = 0,
        device: Optional[Union[str, torch.device]] = None, progress: bool = True,
        overwrite: bool = False, distributed: Optional[bool] = None) -> RunSummary:
    """Runs attribution ``methods`` (and analysis jobs) over every image of ``dataset`` and
    writes a chunked HDF5 store to the folder ``out`` (layout in docs/runs.md).

    ``model``: a ``torch.nn.Module`` / TorchScript module in eval mode, a zoo name
    (``"resnet20"``) or a TorchScript file. ``dataset``: a map-style torch ``Dataset`` whose
    items are ``x`` or ``(x, label)`` with ``x`` a float tensor (C, H, W) or an image (PIL,
    uint8 (H, W, 3)) that is preprocessed with ``size``/``resize``/``mean``/``std`` (each left
    at None comes from what the model was built for, see ``cnnviz.zoo.info``; else each
    image keeps its size and the ImageNet statistics apply); or a
    folder, a list of image files, or a ``.txt`` list of them, decoded with
    ``cnnviz.load_image`` (``labels="auto"``: class subfolders, else the number ending each
    file name, as in the sample data). ``methods``: names (``"saliency"``, ``"grad_cam"``,
    ``"ig"``, ...), ``(name, options)`` pairs, dicts with ``method=`` (and ``name=`` for the
    store group) or ``AnalysisJob`` objects. ``targets``: ``"predictions"``, ``"labels"``, one
    class for all, or one class per dataset image.

    Images are split into chunks of ``chunk_size`` (default: 256 rounded up to a multiple of
    ``batch_size``); chunk ``k`` is computed by rank ``k % world_size`` in batches of
    ``batch_size`` and written atomically. Running again with the same settings resumes:
    complete chunks are kept (never rewritten), damaged ones are redone, and the result
    equals that of an uninterrupted run. Stochastic methods draw from a seed per (``seed``,
    chunk, batch, method). Unreadable images are reported and skipped. Memory stays bounded
    by one chunk. Under torchrun every rank calls ``run`` with the same arguments.

    Returns a :class:`RunSummary` (the same on every rank).
    """
    if batch_size < 1:
        raise ValueError(f"cnnviz: batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"cnnviz: num_workers must be >= 0, got {num_workers}")
    if chunk_size is None:
        chunk_size = batch_size * max(1, math.ceil(256 / batch_size))
    if chunk_size < 1:
        raise ValueError(f"cnnviz: chunk_size must be >= 1, got {chunk_size}")
    model, model_name = _load_model(model)
    prep = _preprocess(model, size, resize, mean, std)
    ds = _dataset(dataset, labels, prep)
    n = len(ds)
    if n == 0:
        raise ValueError("cnnviz: the dataset is empty")
    data = Indexed(ds, prep)
    target_setting, given = _targets_setting(targets, n)
    jobs = make_methods(methods, ANALYSES)
    if device is None:
        p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)

    ctx = _dist.setup(distributed)
    try:
        return _run(model, model_name, ds, data, jobs, out, n, batch_size, num_workers, chunk_size, prep,
                    target_setting, given, seed, device, progress, overwrite, ctx)
    finally:
        ctx.close()


def _settings(model, model_name, ds, jobs, n, batch_size, chunk_size, prep, target_setting, seed) -> Dict[str, Any]:
    import cnnviz

    return {
        "format": _store.FORMAT, "model": model_name, "model_weights": _weights_digest(model),
        "dataset": _dataset_identity(ds), "images_in_dataset": n, "batch_size": batch_size,
        "chunk_size": chunk_size, "preprocess": prep.settings(), "targets": target_setting, "seed": seed,
        "methods": {j.group: j.settings() for j in jobs}, "cnnviz_version": cnnviz.__version__,
        "torch_version": str(torch.__version__),
    }


def _digest(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def _prepare_folder(ctx, out: str, settings: Dict[str, Any], overwrite: bool) -> None:
    """Rank 0 creates ``out`` and its settings file (or checks that a run there has these
    settings); every rank then checks, so that all raise together."""
    text = json.dumps(settings, sort_keys=True, indent=1)
    error = None
    if ctx.rank == 0:
        try:
            if overwrite and os.path.isdir(out):
                shutil.rmtree(out)
            os.makedirs(os.path.join(out, _store.CHUNKS), exist_ok=True)
            path = os.path.join(out, _store.SETTINGS)
            if not os.path.exists(path):
                with open(path + ".tmp", "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(path + ".tmp", path)
        except OSError as e:
            error = f"cnnviz: cannot prepare {out}: {e}"
    error = _dist.broadcast(ctx, error)
    if error:
        raise OSError(error)
    with open(os.path.join(out, _store.SETTINGS), encoding="utf-8") as f:
        old = json.load(f)
    volatile = ("cnnviz_version", "torch_version")
    diff = sorted(k for k in set(old) | set(settings)
                  if k not in volatile and old.get(k) != json.loads(json.dumps(settings.get(k))))
    if diff:
        raise ValueError(f"cnnviz: {out} holds a run with other settings ({', '.join(diff)}): "
                         f"choose another folder or pass overwrite=True")


def _warn_idle_ranks(n: int, chunk_size: int, world: int) -> None:
    """Chunks are the unit of work: with fewer chunks than ranks some ranks only wait."""
    n_chunks = math.ceil(n / chunk_size)
    if n_chunks < world:
        warnings.warn(f"cnnviz.run: {n} images in chunks of {chunk_size} make {n_chunks} chunk"
                      f"{'s' if n_chunks != 1 else ''} for {world} ranks, so {world - n_chunks} rank"
                      f"{'s' if world - n_chunks != 1 else ''} will have nothing to do; pass chunk_size="
                      f"{max(1, math.ceil(n / world))} or less", RuntimeWarning, stacklevel=3)


def _run(model, model_name, ds, data, jobs, out, n, batch_size, num_workers, chunk_size, prep, target_setting,
         given, seed, device, progress, overwrite, ctx) -> RunSummary:
    t0 = time.perf_counter()
    example = _first_example(data).to(device)
    for j in jobs:
        j.resolve(model, example)
    settings = _settings(model, model_name, ds, jobs, n, batch_size, chunk_size, prep, target_setting, seed)
    digest = _digest(settings)
    _prepare_folder(ctx, out, settings, overwrite)
    n_chunks = math.ceil(n / chunk_size)
    if ctx.rank == 0:
        _warn_idle_ranks(n, chunk_size, ctx.world)

    # This rank's chunks: those already complete are kept, damaged ones moved aside and redone.
    mine = list(range(ctx.rank, n_chunks, ctx.world))
    pending, done_images = [], 0
    for k in mine:
        path = _store.chunk_path(out, k)
        if os.path.exists(path + ".tmp"):
            os.remove(path + ".tmp")
        if os.path.exists(path):
            why = _store.verify_chunk(path, digest)
            if why is None:
                done_images += min(n, (k + 1) * chunk_size) - k * chunk_size
                continue
            os.replace(path, path + ".corrupt")
            warnings.warn(f"cnnviz: chunk {k} ({path}) is damaged ({why}); moved to .corrupt and redone",
                          RuntimeWarning, stacklevel=3)
        pending.append(k)
    resumed = len(mine) - len(pending)

    batches, owner = [], []
    for k in pending:
        stop = min(n, (k + 1) * chunk_size)
        for b, s in enumerate(range(k * chunk_size, stop, batch_size)):
            batches.append(list(range(s, min(s + batch_size, stop))))
            owner.append((k, b, min(s + batch_size, stop) == stop))
    loader = DataLoader(data, batch_sampler=batches, num_workers=num_workers, collate_fn=collate,
                        pin_memory=device.type == "cuda")

    bar = None
    if progress and ctx.rank == 0:
        from tqdm.auto import tqdm

        share = sum(min(n, (k + 1) * chunk_size) - k * chunk_size for k in mine)
        bar = tqdm(total=share, initial=done_images, unit="img", dynamic_ncols=True,
                   desc="cnnviz run" + (f" (rank 0 of {ctx.world})" if ctx.active else ""), file=sys.stderr)
    new_images = 0
    buffer: Dict[str, List[np.ndarray]] = {}
    failed: List[Tuple[int, str]] = []
    states: Dict[str, Dict[str, torch.Tensor]] = {}
    try:
        for bi, batch in enumerate(loader):
            k, b, last = owner[bi]
            if b == 0:
                buffer, failed = {}, []
                states = {j.group: j.new_state() for j in jobs if j.kind == "analysis"}
            for i, e in batch["failed"]:
                name = ds.name(i) if hasattr(ds, "name") else f"#{i}"
                failed.append((i, f"{name}: {e}"))
                msg = f"cnnviz: skipped unreadable image {name}: {e}"
                (bar.write(msg, file=sys.stderr) if bar is not None else print(msg, file=sys.stderr))
            if batch["x"] is not None:
                rows = _compute(model, jobs, batch, device, target_setting, given, seed, k, b, states)
                for key, value in rows.items():
                    buffer.setdefault(key, []).append(value)
            count = len(batches[bi])
            new_images += count
            if bar is not None:
                bar.update(count)
            if last:
                arrays = {key: np.concatenate(v) for key, v in buffer.items()}
                if "index" not in arrays:
                    arrays.update({"index": np.zeros(0, np.int64), "label": np.zeros(0, np.int64)})
                for group, state in states.items():
                    for key, value in state.items():
                        arrays[f"state/{group}/{key}"] = value.detach().cpu().numpy()
                _store.write_chunk(_store.chunk_path(out, k), arrays, failed,
                                   {"chunk": k, "start": k * chunk_size, "stop": min(n, (k + 1) * chunk_size),
                                    "settings_digest": digest})
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"cnnviz: interrupted; complete chunks are kept in {out}: run the same command again to resume",
              file=sys.stderr)
        raise
    if bar is not None:
        bar.close()

    results = _reduce_analyses(ctx, out, jobs, mine)
    ctx.barrier()  # every chunk is on disk
    counts = None
    if ctx.rank == 0:
        counts = _store.consolidate(out, n_chunks, settings, results)
    counts = _dist.broadcast(ctx, counts)
    totals = _dist.all_reduce_sum(ctx, {"new": torch.tensor([new_images], dtype=torch.int64),
                                        "resumed": torch.tensor([resumed], dtype=torch.int64)})
    seconds = max(_dist.all_gather(ctx, time.perf_counter() - t0))
    summary = RunSummary(out=out, images=counts["images"], new_images=int(totals["new"]), seconds=seconds,
                         chunks=n_chunks, resumed_chunks=int(totals["resumed"]), ranks=ctx.world,
                         failed=counts["failed"])
    if progress and ctx.rank == 0:
        print(summary, file=sys.stderr)
    return summary


def _compute(model, jobs, batch, device, target_setting, given, seed, chunk, b, states) -> Dict[str, np.ndarray]:
    x = batch["x"].to(device)
    index, label = batch["index"], batch["label"]
    if target_setting == "predictions":
        target = None  # the first method's forward gives the predictions
    elif target_setting == "labels":
        if (label < 0).any():
            raise ValueError("cnnviz: targets='labels' but the dataset has no label for image "
                             f"#{int(index[label < 0][0])}")
        target = label.to(device)
    elif isinstance(target_setting, int):
        target = torch.full((x.shape[0],), target_setting, dtype=torch.int64, device=device)
    else:
        target = given[index].to(device)
    logits = None
    if not jobs or jobs[0].kind == "analysis":
        with torch.no_grad():
            logits = model(x).detach().float()
        if target is None:
            target = logits.argmax(1)
    rows: Dict[str, np.ndarray] = {}
    for m, job in enumerate(jobs):
        if job.name in STOCHASTIC or job.kind == "analysis":
            torch.manual_seed(_batch_seed(seed, chunk, b, m))
        if job.kind == "analysis":
            states[job.group] = job.update(states[job.group], model, x, batch)
            continue
        out, method_logits, method_target = job.compute(model, x, target)
        if logits is None:  # the first method: its logits (of x itself) and targets serve all
            logits, target = method_logits.float(), method_target.to(device)
        for key, value in out.items():
            rows[f"{job.group}/{key}"] = value
        rows[f"{job.group}/target"] = target.cpu().numpy()
        rows[f"{job.group}/score"] = logits.gather(1, target.view(-1, 1))[:, 0].cpu().numpy()
    rows.update({"index": index.numpy(), "label": label.numpy(), "prediction": logits.argmax(1).cpu().numpy(),
                 "logits": logits.cpu().numpy()})
    return rows


def _reduce_analyses(ctx, out, jobs, mine) -> Dict[str, Dict[str, np.ndarray]]:
    """Each rank merges the stored states of its chunks in chunk order; the ranks' states are
    then all-reduced (sums) or gathered and merged in rank order."""
    results: Dict[str, Dict[str, np.ndarray]] = {}
    for job in jobs:
        if job.kind != "analysis":
            continue
        state: Dict[str, torch.Tensor] = {}
        for k in mine:
            chunk_state = {key: torch.from_numpy(v) for key, v in
                           _store.read_states(_store.chunk_path(out, k), job.group).items()}
            state = job.merge(state, chunk_state)
        if job.reduction == "sum":
            keys = _dist.all_gather(ctx, sorted((k, tuple(v.shape), str(v.dtype)) for k, v in state.items()))
            union = {}
            for spec in keys:
                for key, shape, dtype in spec:
                    union[key] = (shape, dtype)
            for key, (shape, dtype) in union.items():
                if key not in state:  # a rank without images
                    state[key] = torch.zeros(shape, dtype=getattr(torch, dtype.split(".")[-1]))
            state = _dist.all_reduce_sum(ctx, state)
        else:
            merged: Dict[str, torch.Tensor] = {}
            for s in _dist.all_gather(ctx, {k: v.numpy() for k, v in state.items()}):
                merged = job.merge(merged, {k: torch.from_numpy(v) for k, v in s.items()})
            state = merged
        results[job.group] = job.result(state)
    return results
