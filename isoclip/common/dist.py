"""Multi-process runs with ``torch.distributed``: the few collectives the library needs.

Processes are started by ``torchrun`` (e.g. ``torchrun --standalone --nproc-per-node 2 -m
isoclip.distributed ...``), never by isoclip itself. :func:`init_distributed` joins the
process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): backend ``nccl`` with one GPU per process
when CUDA is available, ``gloo`` on CPU. Outside torchrun it does nothing, and every helper
below degrades to the single-process case (rank 0 of 1), so library code calls them
unconditionally.

Work is split by :func:`shard` (round-robin over item indices: balanced to within one item);
results are brought together with :func:`gather` / :func:`all_gather` / :func:`broadcast` (pickled Python
objects, so no shared file system is needed between the processes), and
:func:`cached_collective` is :func:`isoclip.common.cache.cached` for a build that every rank
runs together: rank 0 decides hit or miss, stores the result and hands it to the others.
Every function here is a *collective* when a process group is active: all ranks must call it,
in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from isoclip.common.cache import cached, load_verified, save_entry

__all__ = ["DEFAULT_TIMEOUT", "all_gather", "barrier", "broadcast", "cached_collective",
           "gather", "init_distributed", "is_distributed", "is_main", "rank", "shard",
           "shutdown", "world_size"]

T = TypeVar("T")

#: Timeout of every collective: a rank may wait this long for the slowest one (long
#: inversions finish at different times on different ranks).
DEFAULT_TIMEOUT = timedelta(hours=6)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (always true outside a process group)."""
    return rank() == 0


def init_distributed(device: str | None = "auto", *,
                     timeout: timedelta = DEFAULT_TIMEOUT) -> torch.device:
    """Join torchrun's process group if the environment describes one; return this rank's device.

    Args:
        device: ``"auto"``/None (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
            Under torchrun with CUDA, rank ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK``.
        timeout: timeout of the collectives (:data:`DEFAULT_TIMEOUT`).

    Returns:
        The device this process should put its model on.

    Raises:
        ValueError: ``device`` is not one of the accepted values, or ``"cuda"`` without CUDA.
    """
    if device not in (None, "auto", "cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    cuda = torch.cuda.is_available() if device in (None, "auto") else device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but torch.cuda.is_available() is False")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    return torch.device(f"cuda:{local}") if cuda else torch.device("cpu")


def shutdown() -> None:
    """Leave the process group (no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, rank_: int | None = None, world: int | None = None) -> list[int]:
    """The indices of ``range(n)`` this rank owns: ``i % world == rank`` (round-robin).

    Round-robin rather than contiguous blocks keeps the ranks balanced when the items are
    ordered by cost (e.g. finished batches first) and when ``n`` is not a multiple of the
    world size (the loads differ by at most one item).
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if not 0 <= r < w:
        raise ValueError(f"rank: expected 0 <= rank < world={w}, got {r}")
    return list(range(r, n, w))


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if is_distributed():
        dist.barrier()


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather(obj: T, dst: int = 0) -> list[T] | None:
    """Every rank's ``obj`` in rank order on rank ``dst``, None on the others (``[obj]``
    outside a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] | None = [None] * world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def broadcast(obj: T | None, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself outside a process group)."""
    if not is_distributed():
        return obj  # type: ignore[return-value]
    box: list[Any] = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]  # type: ignore[no-any-return]


def cached_collective(kind: str, key_material: dict[str, Any], build: Callable[[], T],
                      root: Path | None = None, enabled: bool = True) -> T:
    """:func:`isoclip.common.cache.cached` for a ``build`` that all ranks run together.

    Outside a process group this *is* ``cached``. Inside one, rank 0 looks the entry up and
    tells the others (so every rank takes the same branch and the collectives inside
    ``build`` match); a hit is sent from rank 0 to the others; on a miss every rank calls
    ``build`` (which must return the same complete result on every rank, e.g. after
    :func:`all_gather`) and rank 0 stores it.
    """
    if not is_distributed():
        return cached(kind, key_material, build, root, enabled)  # type: ignore[no-any-return]
    hit = load_verified(kind, key_material, root) if enabled and is_main() else None
    if broadcast(hit is not None):
        return broadcast(hit)  # type: ignore[no-any-return]
    payload = build()
    if enabled and is_main():
        save_entry(kind, key_material, payload, root)
    return payload
