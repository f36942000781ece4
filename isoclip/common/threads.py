"""Pinning torch's intra-op thread count for a block of code, restored on exit.

Many small tensor ops (ranking, band sweeps, inversion steps on tiny models) run faster on one
thread than on a busy intra-op pool; latency measurements and deterministic trainings need a
fixed count. :func:`torch_threads` sets it inside a ``with`` block and restores the previous
value even when the block raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)``; the previous count is restored on exit.

    Args:
        n: threads inside the block (an int >= 1), or None to leave the count as it is.

    Yields:
        The thread count in effect inside the block.

    Raises:
        ValueError: ``n`` is neither None nor an int >= 1.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n: expected an int >= 1 or None, got {n!r}")
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
