"""Projected wall time of the models-and-chapters stage on 1, 2, 4, 8 ... cores.

    .venv/bin/python benchmarks/build_schedule.py [--durations executed/.durations.json]
        [--cores 1 2 4 8]

``make notebooks`` trains the manifest's missing models and executes the chapters in one
schedule (:func:`isoclip.common.schedule.run_tasks`). This script replays that schedule
(:func:`isoclip.common.schedule.simulate`, the same priority rule) with measured durations: the
``.durations.json`` a cold build writes next to its executed notebooks (wall seconds of every
chapter and training; default: the committed ``notebooks/durations.json``). For each core
count it prints the projected makespan, the CPU seconds of all tasks (a two-thread training
counts twice), and the two lower bounds no schedule can beat: CPU seconds / cores and the
longest chain (a model, then the chapter that needs it).

A projection, not a measurement: it assumes tasks side by side run as fast as alone, and uses
the durations of the machine that measured them (its chapters ran two at a time, so a
chapter's duration already includes some contention).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from isoclip.common.schedule import Task, remaining_paths, simulate
from isoclip.notebooks import DURATIONS_HINT, model_needs, notebook_paths
from isoclip.studies import manifest


def _never() -> Future[Any]:  # a simulated task is never started
    raise RuntimeError("simulated task")


def graph(durations: dict[str, float]) -> list[Task]:
    """Every model of the manifest and every chapter, with the build's dependencies."""
    models = manifest.unique_models()
    stems = {p.stem for p in notebook_paths()}
    needs = model_needs(models, stems)
    missing = sorted(n for n in [f"model:{s.name}" for s, _, _ in models] + sorted(stems)
                     if n not in durations)
    if missing:
        raise SystemExit(f"--durations: no duration for {missing}")
    tasks = [Task(f"model:{s.name}", _never, cores=s.threads,
                  estimate=durations[f"model:{s.name}"]) for s, _, _ in models]
    tasks += [Task(stem, _never, needs=needs.get(stem, frozenset()),
                   estimate=durations[stem]) for stem in sorted(stems)]
    return tasks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--durations", type=Path, default=DURATIONS_HINT,
                    help="JSON name -> wall seconds of a cold build (default: %(default)s)")
    ap.add_argument("--cores", type=int, nargs="+", default=[1, 2, 4, 8])
    args = ap.parse_args(argv)
    durations = {k: float(v) for k, v in json.loads(args.durations.read_text()).items()}
    tasks = graph(durations)
    chain = max(remaining_paths(tasks).values())
    print(f"[build-schedule] {len(tasks)} tasks from {args.durations}; longest chain "
          f"{chain / 60:.1f} min")
    print(f"{'cores':>5s} {'projected':>10s} {'CPU / cores':>12s} {'chain':>7s}   first starts")
    for cores in args.cores:
        makespan, starts = simulate(tasks, cores)
        cpu = sum(t.estimate * min(t.cores, cores) for t in tasks)
        first = ", ".join(f"{name}@{start / 60:.0f}" for start, name in starts[:4])
        print(f"{cores:5d} {makespan / 60:8.1f} m {cpu / cores / 60:10.1f} m {chain / 60:5.1f} m"
              f"   {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
