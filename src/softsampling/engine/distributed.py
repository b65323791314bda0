"""Several processes under ``torchrun``: process group, sharding, merging in rank 0.

Training (:mod:`softsampling.engine.train`) splits each global batch over the
processes. Inference (``predict``, ``calibrate``, ``evaluate --run``) splits
the *batches* of images: batch ``b`` (images ``b*B .. b*B+B-1``, the same
batches one process forms) goes to process ``b % world``, and rank 0 puts the
results back in batch order. Each batch sees exactly the inputs it would see
in one process, so the merged output is the same as one process's.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) every function here is the
one-process identity: rank 0 of 1, no communication.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

T = TypeVar("T")


def distributed_context() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun.

    The backend is NCCL with CUDA, gloo without; each process uses the GPU of its
    ``LOCAL_RANK``. Call it before moving a model to the GPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch_dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch_dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    rank = torch_dist.get_rank() if torch_dist.is_initialized() else 0
    return rank, world


def is_main_process() -> bool:
    """True in rank 0, or when not distributed."""
    return not torch_dist.is_initialized() or torch_dist.get_rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in one process)."""
    if torch_dist.is_initialized():
        torch_dist.barrier()


def owned(index: int, rank: int, world: int) -> bool:
    """Whether work item ``index`` (a batch, a chunk) belongs to process ``rank`` of ``world``: round robin."""
    return index % world == rank


def gather_in_main(items: list[tuple[int, T]]) -> list[tuple[int, T]]:
    """Every process's ``(index, value)`` pairs, in rank 0, sorted by index; ``[]`` in the other ranks.

    In one process: ``items`` sorted by index.
    """
    if not torch_dist.is_initialized() or torch_dist.get_world_size() == 1:
        return sorted(items, key=lambda pair: pair[0])
    rank = torch_dist.get_rank()
    gathered: list[Any] = [None] * torch_dist.get_world_size() if rank == 0 else []
    torch_dist.gather_object(items, gathered if rank == 0 else None, dst=0)
    if rank != 0:
        return []
    return sorted((pair for part in gathered for pair in part), key=lambda pair: pair[0])
