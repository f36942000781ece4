"""Retrieval metrics on a 20,000 x 20,000 same-split problem: wall time and peak memory.

    .venv/bin/python benchmarks/retrieval_large.py [--n 20000] [--classes 200] [--dim 512]

Clustered random 512-d features (like CLIP embeddings), same-split (every query removed from
its own gallery), :func:`isoclip.evaluate.retrieval.evaluate` from the features: cosine
similarities are computed chunk by chunk and never held as a dense [n, n] matrix (which
would be 1.6 GB in float32). Prints the wall time (target <= 60 s on 2 cores) and the
process's peak RSS from ``resource.getrusage`` (target <= 2 GB), which includes the Python,
torch and data footprint.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from isoclip.evaluate.retrieval import CHUNK_ELEMENTS, evaluate


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="items (queries = gallery)")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    g = torch.Generator().manual_seed(args.seed)
    labels = torch.randint(0, args.classes, (args.n,), generator=g)
    centres = torch.randn(args.classes, args.dim, generator=g)
    x = centres[labels] + 3.5 * torch.randn(args.n, args.dim, generator=g)
    x = F.normalize(x, dim=1)
    rss_before = peak_rss_mb()
    print(f"{args.n} x {args.n} same-split retrieval, {args.classes} classes, {args.dim}-d "
          f"features, torch threads {torch.get_num_threads()}, "
          f"chunk {max(1, CHUNK_ELEMENTS // args.n)} queries")
    t0 = time.perf_counter()
    m = evaluate(x, x, labels, labels, same_split=True)
    wall = time.perf_counter() - t0
    print("  ".join(f"{k} {v:.3f}" for k, v in m.items() if not k.startswith("n_")))
    print(f"wall time: {wall:.1f} s (target <= 60 s)")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (target <= 2048 MB; {rss_before:.0f} MB before "
          "the evaluation: interpreter, torch, features)")


if __name__ == "__main__":
    main()
