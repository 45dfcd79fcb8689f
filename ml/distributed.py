"""Training on several processes: ``torchrun --nproc-per-node N -m facegraft train ...``.

torchrun starts N copies of the command and tells each its place through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). Each process
trains on its share of every step's batch, the gradients are averaged by
DistributedDataParallel (NCCL between GPUs, gloo on CPU), and only the first process
writes: checkpoints, previews, the loss log and progress. Without torchrun, everything
here is the single process's identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..common.errors import FaceGraftError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that writes the model folder and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def ranks_from_environment() -> Ranks:
    """This process's place, as torchrun set it (one process when not under torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as error:
        raise FaceGraftError(f"WORLD_SIZE, RANK or LOCAL_RANK is not a number: {error}") from None
    if world < 1 or not 0 <= rank < world:
        raise FaceGraftError(f"RANK {rank} is not a process of WORLD_SIZE {world}")
    return Ranks(rank, world, local_rank)


def start(ranks: Ranks) -> None:
    """Join the process group (NCCL when each process has a GPU, gloo otherwise)."""
    if not ranks.distributed or dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world)


def stop(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wait_for_all(ranks: Ranks) -> None:
    """Every process reaches this point before any goes on (the first process has set the
    model folder up; the others may read it)."""
    if ranks.distributed:
        dist.barrier()


def mean_across(ranks: Ranks, values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the processes (the values themselves on one)."""
    if not ranks.distributed:
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / ranks.world


def broadcast_flag(ranks: Ranks, flag: bool, device: torch.device) -> bool:
    """The first process's ``flag`` on every process: when to stop is decided once (each
    process's own clock would let them stop at different steps and wait forever)."""
    if not ranks.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(value, 0)
    return bool(value.item())
