"""OTI / OVI over many targets: in batches, resumable, optionally sharded over torchrun ranks.

A paper-scale inversion is long (Cross the Gap, Sec. 4: 150 OTI / 1000 OVI optimisation
steps per batch of 64 queries; CUB alone has 11,788 query images), so :func:`run_inversion`
runs it as a sequence of independent batches and keeps each finished batch:

* **Batches.** The N targets are cut into consecutive batches of ``batch_size`` rows
  (:func:`batch_bounds`); batch k is one :func:`isoclip.baselines.inversion.oti` /
  :func:`~isoclip.baselines.inversion.ovi` call seeded with ``seed + k`` (the official scripts
  draw each batch's initialisation from a running generator, so their batches differ too).
  The result therefore depends on ``batch_size`` and on nothing else about how the run is
  split.
* **Per-batch cache entries** (kind ``"inversion_batches"``): each finished batch is stored
  atomically under the run's key material plus the batch index and its rows
  (:func:`batch_key_material`). An interrupted run loses at most the batch it was computing;
  the next call with the same arguments loads the finished batches and computes the rest.
* **Merged entry** (kind ``"inversions"``, under the run's key material itself): written once
  every batch exists, in the format of a single-process run (so entries made before batches
  were cached separately stay valid); the batch entries are then deleted.
* **Ranks.** Under ``torchrun`` (:mod:`isoclip.common.dist`) the batches still missing are
  dealt round-robin to the ranks; each rank computes and stores its own batch entries, rank 0
  gathers the batches, merges and stores the merged entry, and every rank returns it. Batch k
  is computed by the same call whichever rank runs it, so the merged result equals the
  single-process run (bitwise on CPU at equal thread counts). Finished batches are found in
  every rank's cache, so the ranks need not share a file system.

* **Processes sharing a run.** Two processes asking for the same run at once (two chapters
  of a parallel build) split its batches instead of computing each of them twice: a batch is
  computed under a lock on its entry (:func:`isoclip.common.cache.try_key_lock`); a process
  that finds the lock held moves on to the next batch and, once it has no other batch left,
  waits for that lock and loads what the other process stored (``InversionRun.shared``). A
  batch is the same call whichever process runs it, so the result does not depend on the
  split; a process that finds the run already merged returns the merged entry.

The merged payload: ``features`` [N, d] and ``snapshots`` {step: [N, d]} (float32, CPU),
``losses`` [steps] float64 (mean over the N targets of each batch's loss, batches weighted by
their size), ``final_cos`` [N] (cosine of each inverted feature with its target) and
``seconds`` (optimisation time summed over the batches, whichever rank and run computed them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from isoclip.baselines import inversion
from isoclip.common import dist
from isoclip.common.cache import (
    CACHE_FORMAT_VERSION,
    entry_paths,
    key_lock,
    load_verified,
    save_entry,
    stable_hash,
    try_key_lock,
)
from isoclip.common.threads import torch_threads

__all__ = ["BATCH_KIND", "MERGED_KIND", "InversionRun", "batch_bounds", "batch_key_material",
           "run_inversion"]

#: Cache kind of the merged result of a run.
MERGED_KIND = "inversions"
#: Cache kind of the per-batch entries of a run in progress.
BATCH_KIND = "inversion_batches"

_HPARAM_KEYS = ("method", "steps", "num_pseudo", "lr", "weight_decay", "init_std", "seed",
                "batch_size", "snapshot_steps")


@dataclass(frozen=True, eq=False)
class InversionRun:
    """What :func:`run_inversion` returns.

    Attributes:
        payload: the merged result (see the module docstring).
        from_cache: the merged entry existed: nothing was computed or loaded batch by batch.
        computed: indices of the batches this process optimised in this call.
        resumed: indices of the batches loaded from per-batch entries of an earlier,
            interrupted run (by any rank).
        shared: indices of the batches another process computed while this call ran (see
            "Processes sharing a run" in the module docstring).
    """

    payload: dict[str, Any]
    from_cache: bool
    computed: tuple[int, ...]
    resumed: tuple[int, ...]
    shared: tuple[int, ...] = ()


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the consecutive batches of ``n`` rows."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    return [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]


def batch_key_material(key_material: dict[str, Any], k: int, start: int,
                       stop: int) -> dict[str, Any]:
    """Key material of batch ``k`` (rows ``start:stop``) of the run keyed by ``key_material``."""
    return {"what": "inversion-batch", "run": key_material, "batch": k, "rows": [start, stop]}


def _entry_paths(kind: str, material: dict[str, Any]) -> tuple[Path, Path]:
    return entry_paths(kind, stable_hash({"format": CACHE_FORMAT_VERSION, **material}))


def _has_entry(kind: str, material: dict[str, Any]) -> bool:
    return all(p.exists() for p in _entry_paths(kind, material))


def _drop_entry(kind: str, material: dict[str, Any]) -> None:
    pt, man = _entry_paths(kind, material)
    for p in (pt, man, pt.with_suffix(".lock")):
        p.unlink(missing_ok=True)


def _check_hparams(hp: dict[str, Any]) -> None:
    missing = [k for k in _HPARAM_KEYS if k not in hp]
    if hp.get("method") == "OTI":
        missing += [k for k in ("template", "placeholder") if k not in hp]
    if missing:
        raise ValueError(f"hparams: missing {missing}")
    if hp["method"] not in ("OTI", "OVI"):
        raise ValueError(f"hparams['method']: expected 'OTI' or 'OVI', got {hp['method']!r}")


def _invert_batch(model: nn.Module, tokenizer: Callable[[list[str]], Tensor], chunk: Tensor,
                  hp: dict[str, Any], k: int) -> dict[str, Any]:
    """Batch ``k``: one OTI/OVI call seeded ``seed + k``; CPU float32 results and its time."""
    start = time.perf_counter()
    common: dict[str, Any] = {
        "steps": hp["steps"], "lr": hp["lr"], "weight_decay": hp["weight_decay"],
        "init_std": hp["init_std"], "seed": hp["seed"] + k,
        "snapshot_steps": hp["snapshot_steps"], "progress": False}
    if hp["method"] == "OTI":
        res = inversion.oti(model, tokenizer, chunk, template=hp["template"],
                            placeholder=hp["placeholder"], num_pseudo_tokens=hp["num_pseudo"],
                            **common)
    else:
        res = inversion.ovi(model, chunk, num_pseudo_patches=hp["num_pseudo"], **common)
    return {"features": res.features.detach().float().cpu(),
            "snapshots": {s: res.snapshots[s].detach().float().cpu() for s in hp["snapshot_steps"]},
            "losses": res.losses.detach().double().cpu(), "n": int(chunk.shape[0]),
            "seconds": time.perf_counter() - start}


def _merge(parts: dict[int, dict[str, Any]], targets: Tensor, hp: dict[str, Any]
           ) -> dict[str, Any]:
    order = sorted(parts)
    n = sum(parts[k]["n"] for k in order)
    weighted = torch.zeros(hp["steps"], dtype=torch.float64)
    for k in order:  # batch order, as the single-process loop accumulates
        weighted += parts[k]["losses"] * parts[k]["n"]
    features = torch.cat([parts[k]["features"] for k in order])
    final_cos = F.cosine_similarity(features, targets.detach().float().cpu(), dim=-1)
    return {"features": features,
            "snapshots": {s: torch.cat([parts[k]["snapshots"][s] for k in order])
                          for s in hp["snapshot_steps"]},
            "losses": weighted / n, "final_cos": final_cos,
            "seconds": float(sum(parts[k]["seconds"] for k in order))}


def run_inversion(
    model: nn.Module,
    tokenizer: Callable[[list[str]], Tensor],
    targets: Tensor,
    hp: dict[str, Any],
    key_material: dict[str, Any],
    *,
    num_threads: int | None = 1,
    cache: bool = True,
    progress: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> InversionRun:
    """Invert every row of ``targets`` batch by batch, resumably, on every torchrun rank.

    Args:
        model: the open_clip model (put in eval mode for the run, then restored).
        tokenizer: its tokenizer (OTI).
        targets: [N, d] targets, on the device of the optimisation.
        hp: the run's hyper-parameters: ``method`` (``"OTI"``/``"OVI"``), ``steps``,
            ``num_pseudo`` (R or P), ``lr``, ``weight_decay``, ``init_std``, ``seed``,
            ``batch_size``, ``snapshot_steps`` (sorted), and for OTI ``template`` and
            ``placeholder``.
        key_material: the run's cache key material (everything that changes the result:
            model, targets, ``hp``, code versions); batch entries extend it.
        num_threads: torch intra-op threads during the optimisation (None: leave as is).
        cache: read and write the merged and per-batch entries.
        progress: a tqdm bar over the queries (ETA included), on rank 0.
        on_batch: called with the batch index after each batch this process computes (and
            stores); an exception raised there stops the run like an interruption.

    Returns:
        :class:`InversionRun`. Under torchrun every rank returns the same merged payload.

    Raises:
        ValueError: missing hyper-parameters, or ``targets`` not a non-empty [N, d] tensor.
    """
    _check_hparams(hp)
    if not isinstance(targets, Tensor) or targets.ndim != 2 or targets.shape[0] == 0:
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets: expected a non-empty tensor [N, d], got {shape}")
    if cache:
        hit = load_verified(MERGED_KIND, key_material) if dist.is_main() else None
        hit = dist.broadcast(hit)
        if hit is not None:
            return InversionRun(payload=hit, from_cache=True, computed=(), resumed=())

    bounds = batch_bounds(int(targets.shape[0]), hp["batch_size"])
    keys = [batch_key_material(key_material, k, a, b) for k, (a, b) in enumerate(bounds)]
    # finished batches as each rank sees them; a batch is loaded by the lowest rank holding it
    local = [k for k in range(len(bounds)) if cache and _has_entry(BATCH_KIND, keys[k])]
    views = dist.all_gather(local)
    holder: dict[int, int] = {}
    for r, view in enumerate(views):
        for k in view:
            holder.setdefault(k, r)
    todo = [k for k in range(len(bounds)) if k not in holder]
    mine = [todo[i] for i in dist.shard(len(todo))]
    parts: dict[int, dict[str, Any]] = {}
    for k in sorted(k for k, r in holder.items() if r == dist.rank()):
        part = load_verified(BATCH_KIND, keys[k])
        if part is None:  # damaged since the scan: compute it again here
            mine.append(k)
        else:
            parts[k] = part

    computed: list[int] = []
    shared: list[int] = []
    model_was_training = model.training
    model.eval()
    rows = sum(b - a for a, b in (bounds[k] for k in mine))
    done = sum(p["n"] for p in parts.values())
    desc = hp["method"] + (f" rank {dist.rank()}/{dist.world_size()}" if dist.is_distributed()
                           else "")
    merged_elsewhere: dict[str, Any] | None = None
    try:
        with torch_threads(num_threads), tqdm(
                total=rows + done, initial=done, desc=desc, unit="query", leave=False,
                disable=not (progress and dist.is_main()), dynamic_ncols=True) as bar:

            def compute(k: int) -> None:
                a, b = bounds[k]
                parts[k] = _invert_batch(model, tokenizer, targets[a:b], hp, k)
                if cache:
                    save_entry(BATCH_KIND, keys[k], parts[k])
                computed.append(k)
                bar.update(b - a)
                if hp["steps"]:
                    bar.set_postfix(loss=f"{float(parts[k]['losses'][-1]):.4f}")
                if on_batch is not None:
                    on_batch(k)

            def finished_elsewhere(k: int) -> bool:
                """Batch k (or the whole run) stored by another process: take it."""
                nonlocal merged_elsewhere
                part = load_verified(BATCH_KIND, keys[k])
                if part is not None:
                    parts[k] = part
                    shared.append(k)
                    bar.update(part["n"])
                    return True
                if not dist.is_distributed():  # the run was merged (batch entries dropped)
                    merged_elsewhere = load_verified(MERGED_KIND, key_material)
                return merged_elsewhere is not None

            if not cache:
                for k in sorted(mine):
                    compute(k)
            else:  # a batch another process is computing is taken up after the others
                waiting = []
                for k in sorted(mine):
                    with try_key_lock(_entry_paths(BATCH_KIND, keys[k])[0]) as got:
                        if got is False:
                            waiting.append(k)
                        elif not finished_elsewhere(k):
                            compute(k)
                    if merged_elsewhere is not None:
                        break
                for k in waiting:
                    if merged_elsewhere is not None:
                        break
                    with key_lock(_entry_paths(BATCH_KIND, keys[k])[0]):
                        if not finished_elsewhere(k):
                            compute(k)
    finally:
        model.train(model_was_training)

    if merged_elsewhere is not None:
        return InversionRun(payload=merged_elsewhere, from_cache=True, computed=tuple(computed),
                            resumed=tuple(sorted(holder)), shared=tuple(shared))

    gathered = dist.gather(parts)
    merged = None
    if gathered is not None:  # rank 0
        everything: dict[int, dict[str, Any]] = {}
        for p in gathered:
            everything.update(p)
        merged = _merge(everything, targets, hp)
        if cache:
            save_entry(MERGED_KIND, key_material, merged)
    merged = dist.broadcast(merged)
    if cache:  # the merged entry holds every batch now
        for k in set(local) | set(computed) | set(shared):
            _drop_entry(BATCH_KIND, keys[k])
    return InversionRun(payload=merged, from_cache=False, computed=tuple(computed),
                        resumed=tuple(sorted(holder)), shared=tuple(shared))
