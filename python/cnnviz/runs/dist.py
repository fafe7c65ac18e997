"""torch.distributed for runs: joining the process group torchrun describes, and the
reductions of analysis states. One process without torchrun is a group of one."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    owns_group: bool = False  #: this run created the process group and destroys it at the end

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(distributed: Optional[bool] = None) -> Context:
    """The process group of this run: an existing one, else the one torchrun's environment
    (``WORLD_SIZE`` > 1) describes (NCCL when CUDA is available, gloo otherwise), else none.
    ``distributed=False`` ignores both."""
    if distributed is False or not dist.is_available():
        return Context()
    if dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), False)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        return Context(dist.get_rank(), dist.get_world_size(), True)
    if distributed:
        raise ValueError("cnnviz: distributed=True but no process group: launch with torchrun")
    return Context()


def _device() -> torch.device:
    # NCCL reduces CUDA tensors only.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(ctx: Context, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Sums a dict of tensors over the ranks (every rank gets the sum), in float64 for
    floating tensors. The same keys and shapes on every rank are required."""
    if not ctx.active:
        return {k: v.clone() for k, v in state.items()}
    out = {}
    dev = _device()
    for key in sorted(state):
        v = state[key]
        t = v.to(dev, torch.float64 if v.is_floating_point() else torch.int64).contiguous()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        out[key] = t.to("cpu", v.dtype)
    return out


def all_gather(ctx: Context, value: Any) -> List[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not ctx.active:
        return [value]
    values: List[Any] = [None] * ctx.world
    dist.all_gather_object(values, value)
    return values


def broadcast(ctx: Context, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not ctx.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
