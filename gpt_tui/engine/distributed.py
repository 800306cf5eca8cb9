"""Data-parallel training over processes started by ``torchrun`` (one per GPU, or several CPU processes).

``torchrun --nproc_per_node=N -m gpt_tui train ...`` sets RANK, LOCAL_RANK and
WORLD_SIZE; the trainer then joins a process group (NCCL on GPUs, gloo on
CPUs), wraps the model in DistributedDataParallel and reads global batches of
``batch_size * world_size`` windows, of which each rank takes its own rows.
The order of global batches is the single-process order, so a run resumes
exactly and N processes with batch B match one process with batch N * B.
Only rank 0 writes logs, metrics and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gpt_tui.engine.device import resolve_device
from gpt_tui.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: int) -> slice:
        """This rank's rows of a global batch of ``rows`` (the first ranks get one more when it does not divide)."""
        base, extra = divmod(rows, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))


SINGLE = DistInfo()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(
            f"Environment variable {name}={value!r} is not a whole number; start the run with torchrun."
        ) from None


def from_env() -> DistInfo:
    """The rank layout torchrun set up, or a single process when it did not."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UserError(f"Inconsistent torchrun settings RANK={rank}, WORLD_SIZE={world}; start the run with torchrun.")
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def device_for(info: DistInfo, requested: str) -> "torch.device":
    """Each GPU rank uses GPU LOCAL_RANK; ``--device cpu`` (or a machine without CUDA) runs every rank on the CPU."""
    name = (requested or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        resolve_device("cuda")  # a clear error when there is no GPU
        if info.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {info.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "lower --nproc_per_node."
            )
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    if name != "cpu":
        raise UserError(f"Distributed training runs on cuda or cpu, not {requested!r}.")
    return torch.device("cpu")


def init(info: DistInfo, device: "torch.device") -> bool:
    """Join the process group (NCCL for GPUs, gloo for CPUs); True when this call created it."""
    if not info.enabled or dist.is_initialized():
        return False
    if not dist.is_available():
        raise UserError("This PyTorch build has no torch.distributed; run a single process instead.")
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, **kwargs)
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: "torch.nn.Module", device: "torch.device") -> "torch.nn.Module":
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(model)


def all_reduce_sum(tensor: "torch.Tensor") -> "torch.Tensor":
    """Sum ``tensor`` over ranks in place (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
