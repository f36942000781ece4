"""The model manifest: every tiny model the book trains, declared once, trained in parallel.

The book's chapters never train: ``make models`` (``python -m isoclip.studies.manifest``) trains
each missing model of :data:`MODELS` into the training cache, one worker process per core, and
the notebook runner then forbids training (``ISOCLIP_MODELS_ONLY=1``, see
:func:`isoclip.training.trainer.load_or_train`), so a chapter that asks for a model that is not
declared here fails with a message naming its configuration.

Each entry is built from the same objects the notebooks use (``DEFAULT_WORLD``,
``DEFAULT_TRAIN``, :func:`isoclip.training.variants.variant_config`, the committed regime
study's row), so its cache key is exactly the key the chapter computes, and the cache entry a
worker writes is the one the chapter loads (``tests/test_manifest.py`` checks both).

Threads: a worker trains with :attr:`ModelSpec.threads` torch threads. Training is
deterministic for a fixed thread count but not across thread counts (the reductions inside
matrix products are split differently), so every entry fixes the count its cached weights were
trained with: the default model 2 (chapter 1 trained it with torch's default, two threads on the
two-core machine that computed the book's numbers), the variants 1 (chapters 2 and 11 trained
them after ``torch.set_num_threads(1)``). The weights therefore no longer depend on the core
count of the machine that builds the book.

Adding a model: append a :class:`ModelSpec` to :data:`MODELS` (``data`` must be picklable: a
module-level function or a :func:`functools.partial` of one, since workers are spawned).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from isoclip.common.cache import cache_root, entry_key, entry_paths
from isoclip.data.base import ImageDataset
from isoclip.data.emoji import EmojiConfig
from isoclip.data.world.config import WorldConfig
from isoclip.training.embedded import DEFAULT_EMOJI, DEFAULT_TRAIN, DEFAULT_WORLD, EMOJI_TRAIN
from isoclip.training.trainer import (
    MODELS_ONLY_ENV,
    TrainConfig,
    TrainedModel,
    load_or_train,
    train_key_material,
)
from isoclip.training.variants import variant_config

__all__ = [
    "MODELS",
    "ModelSpec",
    "cache_key",
    "is_cached",
    "load",
    "main",
    "missing",
    "spec",
    "train_missing",
    "train_one",
    "trained_line",
    "unique_models",
    "users",
    "world_train_split",
]

#: Repository root (the committed regime study lives under ``benchmarks/results``).
ROOT = Path(__file__).resolve().parents[2]
#: The regime study chapter 13 re-runs one row of (its parameters ``study_json``, ``rerun``).
REGIME_STUDY = ROOT / "benchmarks" / "results" / "regime_study.json"
REGIME_RERUN = "default-learned"


def world_train_split(world: WorldConfig) -> ImageDataset:
    """The training pairs of the synthetic world ``world`` (what the chapters train on)."""
    from isoclip.data.world.synthetic import make_world

    return make_world(world).train


def emoji_train_split(emoji: EmojiConfig) -> ImageDataset:
    """The training pairs of the emoji data ``emoji`` (the emoji model's; needs
    ``make emoji-data``)."""
    from isoclip.data.emoji import load_emoji

    return load_emoji(emoji).train


#: The notebooks that load the emoji model (they report the emoji suite).
_EMOJI_USERS = ("01_embedded_default", "03_intra_modal_misalignment", "05_spectrum",
                "06_band_analysis", "07_intra_modal_retrieval", "08_classification",
                "10_ablations")


@dataclass(frozen=True)
class ModelSpec:
    """One trained model the book needs.

    Attributes:
        name: manifest name (progress lines, ``--only``, :func:`load`).
        train: the training configuration.
        data: builds the training pairs (picklable: workers are spawned processes).
        threads: torch threads of the training run (the weights depend on it; see the module
            docstring).
        used_by: the notebooks (stems) that load it.
    """

    name: str
    train: TrainConfig
    data: Callable[[], ImageDataset]
    threads: int = 1
    used_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: expected a non-empty manifest name")
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train: expected a TrainConfig, got {type(self.train).__name__}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) \
                or self.threads < 1:
            raise ValueError(f"threads: expected an int >= 1, got {self.threads!r}")

    @property
    def work(self) -> int:
        """Training pairs seen (steps × batch): the unit of the ETA."""
        return self.train.steps * self.train.batch_size


def spec(name: str, world: WorldConfig, train: TrainConfig, *, threads: int = 1,
         used_by: Sequence[str] = ()) -> ModelSpec:
    """A :class:`ModelSpec` trained on the training split of the synthetic world ``world``."""
    return ModelSpec(name, train, functools.partial(world_train_split, world), threads,
                     tuple(used_by))


def _regime_rerun() -> tuple[WorldConfig, TrainConfig]:
    """World and training configuration of the regime-study row chapter 13 re-runs."""
    from isoclip.studies.regimes import config_from_row, load_study

    _, runs = load_study(REGIME_STUDY)
    row = runs.set_index("run").loc[REGIME_RERUN].to_dict()
    return config_from_row(row)


def _book_models() -> list[ModelSpec]:
    default_users = ("01_embedded_default", "02_modality_gap", "03_intra_modal_misalignment",
                     "04_projector_decomposition", "05_spectrum", "06_band_analysis",
                     "07_intra_modal_retrieval", "08_classification", "09_latency",
                     "10_ablations", "11_training_time_fixes")
    models = [spec("default", DEFAULT_WORLD, DEFAULT_TRAIN, threads=2, used_by=default_users)]
    for tau in ("0.01", "0.1", "1"):
        models.append(spec(f"clip-tau-{tau}", DEFAULT_WORLD, variant_config(f"clip-tau-{tau}"),
                           used_by=("02_modality_gap", "11_training_time_fixes")))
    for name in ("shared", "shared-imsep", "clip-atp-cu"):
        models.append(spec(name, DEFAULT_WORLD, variant_config(name),
                           used_by=("11_training_time_fixes",)))
    models.append(ModelSpec("emoji", EMOJI_TRAIN, functools.partial(emoji_train_split,
                                                                  DEFAULT_EMOJI),
                            threads=1, used_by=_EMOJI_USERS))
    if REGIME_STUDY.is_file():
        world, train = _regime_rerun()
        models.append(spec(f"regime-{REGIME_RERUN}", world, train, threads=2,
                           used_by=("13_regimes",)))
    return models


#: Every model the book trains, in training priority order. Entries with equal cache keys
#: (the regime re-run is the default model) are trained once (:func:`unique_models`).
MODELS: list[ModelSpec] = _book_models()


def cache_key(s: ModelSpec) -> str:
    """The training-cache entry key of ``s`` (the file name under ``<cache>/checkpoints``)."""
    return entry_key(train_key_material(s.data(), s.train))


def unique_models(models: Iterable[ModelSpec] = ()) -> list[tuple[ModelSpec, list[str], str]]:
    """``(spec, names, key)`` per distinct cache key, first declaration first.

    Raises:
        ValueError: two entries share a key but not the thread count, or share a name.
    """
    models = list(models) or MODELS
    names = [m.name for m in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"manifest: duplicate names {dup}")
    out: dict[str, tuple[ModelSpec, list[str], str]] = {}
    for m in models:
        key = cache_key(m)
        if key in out:
            first = out[key][0]
            if first.threads != m.threads:
                raise ValueError(f"manifest: {m.name!r} is {first.name!r} (same cache key) but "
                                 f"declares threads={m.threads}, not {first.threads}")
            out[key][1].append(m.name)
        else:
            out[key] = (m, [m.name], key)
    return list(out.values())


def is_cached(key: str) -> bool:
    """Whether the training cache holds an entry (payload and manifest) for ``key``."""
    pt, man = entry_paths("checkpoints", key)
    return pt.is_file() and man.is_file()


def missing(models: Iterable[ModelSpec] = ()) -> list[tuple[ModelSpec, list[str], str]]:
    """The entries of :func:`unique_models` without a cache entry."""
    return [u for u in unique_models(models) if not is_cached(u[2])]


def load(name: str, models: Iterable[ModelSpec] = ()) -> TrainedModel | None:
    """The cached model of manifest entry ``name``, or None when it is not trained yet
    (never trains)."""
    by_name = {m.name: m for m in (list(models) or MODELS)}
    if name not in by_name:
        raise ValueError(f"name: expected one of {sorted(by_name)}, got {name!r}")
    s = by_name[name]
    if not is_cached(cache_key(s)):
        return None
    previous = os.environ.get(MODELS_ONLY_ENV)
    os.environ[MODELS_ONLY_ENV] = "1"  # a corrupt entry raises instead of retraining
    try:
        return load_or_train(s.data(), s.train, progress=False)
    finally:
        if previous is None:
            del os.environ[MODELS_ONLY_ENV]
        else:
            os.environ[MODELS_ONLY_ENV] = previous


def train_one(s: ModelSpec) -> dict[str, Any]:
    """Worker: train (or load) ``s`` with ``s.threads`` torch threads into the cache (run it in
    a spawned process: it sets the process's torch thread count)."""
    import torch

    os.environ.pop(MODELS_ONLY_ENV, None)
    torch.set_num_threads(s.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    trained = load_or_train(s.data(), s.train, progress=False)
    return {"name": s.name, "train_seconds": trained.train_seconds,
            "wall_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "threads": torch.get_num_threads()}


def trained_line(r: dict[str, Any], names: Sequence[str]) -> str:
    """One progress line of a :func:`train_one` result (``names``: the entries it trained)."""
    also = f" (= {', '.join(names[1:])})" if len(names) > 1 else ""
    return (f"{r['name']}{also}: trained in {r['train_seconds']:.0f} s on {r['threads']} "
            f"thread(s) ({r['cpu_seconds']:.0f} s CPU with data and loading)")


def users(names: Sequence[str], models: Iterable[ModelSpec] = ()) -> set[str]:
    """The notebooks (stems) that load any of the manifest entries ``names``."""
    wanted = set(names)
    return {u for m in (list(models) or MODELS) if m.name in wanted for u in m.used_by}


def _fmt(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def train_missing(models: Iterable[ModelSpec] = (), jobs: int | None = None,
                  out: TextIO = sys.stdout) -> list[dict[str, Any]]:
    """Train every missing model of ``models`` (default :data:`MODELS`) in spawned worker
    processes, at most ``jobs`` cores busy (default: ``os.cpu_count()``).

    A model with ``threads = t`` takes ``min(t, jobs)`` of the ``jobs`` cores; the longest
    trainings start first. One line per model when it is done, with the ETA of the rest
    (throughput so far in training pairs per second).

    Returns:
        One dict per trained model: ``name, train_seconds`` (the training loop),
        ``wall_seconds, cpu_seconds`` (the worker's task: data, training, saving, loading),
        ``threads``.
    """
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected an int >= 1, got {jobs!r}")
    todo = missing(models)
    total = len(unique_models(models))
    print(f"[models] {total - len(todo)} of {total} cached in {cache_root() / 'checkpoints'}; "
          f"training {len(todo)} on {jobs} core(s)", file=out, flush=True)
    if not todo:
        return []
    # Idle OpenMP threads sleep instead of spinning: a two-thread training beside other work
    # keeps its speed (the results do not depend on it).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    pending = sorted(todo, key=lambda u: -u[0].work * u[0].threads)
    work_total = sum(u[0].work for u in todo)
    work_done = 0
    results: list[dict[str, Any]] = []
    free = jobs
    running: dict[Future[dict[str, Any]], tuple[ModelSpec, list[str], int]] = {}
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        while pending or running:
            for u in list(pending):
                need = min(u[0].threads, jobs)
                if need <= free:
                    running[pool.submit(train_one, u[0])] = (u[0], u[1], need)
                    free -= need
                    pending.remove(u)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                s, names, need = running.pop(fut)
                free += need
                r = fut.result()
                results.append(r)
                work_done += s.work
                elapsed = time.perf_counter() - t0
                eta = elapsed / work_done * (work_total - work_done)
                print(f"[models] {len(results)}/{len(todo)} {trained_line(r, names)}; elapsed "
                      f"{_fmt(elapsed)}, ETA {_fmt(eta)}", file=out, flush=True)
    print(f"[models] done: {len(results)} model(s) in {_fmt(time.perf_counter() - t0)} "
          f"on {jobs} core(s)", file=out, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=None,
                    help="cores to use (default: os.cpu_count())")
    ap.add_argument("--only", nargs="*", default=None, metavar="NAME",
                    help="manifest names to train (default: all)")
    ap.add_argument("--list", action="store_true", help="list the manifest and exit")
    args = ap.parse_args(argv)
    models = MODELS
    if args.only:
        known = {m.name for m in MODELS}
        bad = [n for n in args.only if n not in known]
        if bad:
            ap.error(f"--only {bad}: not in the manifest; names: {sorted(known)}")
        models = [m for m in MODELS if m.name in args.only]
    if args.list:
        for s, names, key in unique_models(models):
            state = "cached" if is_cached(key) else "missing"
            print(f"{' = '.join(names):32s} {key[:12]} {state:7s} threads={s.threads} "
                  f"used by {', '.join(sorted(users(names, models)))}")
        return 0
    train_missing(models, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
