"""Wall time of each build stage of a clean clone, cold then warm, with the cores used.

    .venv/bin/python benchmarks/build_time.py [--stages venv test models notebooks book]
        [--runs cold warm] [--jobs N] [--reuse-venv] [--cache DIR] [--json out.json]

Cold: a fresh ``git clone`` of this repository's HEAD with an empty model cache
(``ISOCLIP_CACHE`` in a new temporary folder) and, unless ``--reuse-venv``, a new ``.venv``.
Warm: the same stages again in the same clone (venv, models, features and data cached).
``--runs warm --cache DIR`` times a warm run only, on an already filled cache.
Stages are make targets run in the order of CI, each without remaking the previous ones:

=========  ==================================================================================
venv       ``make venv``: the virtual environment with the pinned dependencies
test       ``make test``: the test suite (pytest-xdist, one worker per core)
data       ``make emoji-data`` (when the Makefile has it): data fetched from npm
models     ``make models``: every model of the manifest before any chapter (not in the default
           stages: ``make notebooks`` trains the missing models beside the chapters)
notebooks  ``make notebooks``: the chapters (papermill, one per core) and, with the default
           parameter set, the trainings of the missing models on the same cores
book       ``make book`` without re-running the notebooks: MathJax and ``jupyter-book build``
=========  ==================================================================================

Goals on the 2-core project machine: cold ``make book`` (venv, data, models, notebooks, book)
at most 20 min, warm at most 3 min; ``make test`` at most 4 min cold, 2 min warm. Prints one
line per stage as it ends and a table at the end; the numbers depend on what else the machine
runs (the load average before and after each stage is printed with it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("venv", "test", "data", "models", "notebooks", "book")
#: make arguments of each stage; ``-o`` marks an earlier stage as done (never remade).
MAKE_ARGS = {
    "venv": ["venv"],
    "test": ["test"],
    "data": ["emoji-data"],
    "models": ["models"],
    "notebooks": ["-o", "models", "notebooks"],
    "book": ["-o", "models", "-o", "notebooks", "book"],
}


def _has_target(clone: Path, target: str) -> bool:
    return subprocess.run(["make", "-n", "-o", ".venv/.installed", target], cwd=clone,
                          capture_output=True).returncode == 0


def _load() -> float:
    return os.getloadavg()[0]


def run_stage(clone: Path, stage: str, env: dict[str, str], log: Path,
              venv: Path | None, jobs: int | None) -> dict[str, object]:
    """Run one stage's make command in ``clone``; its output goes to ``log``."""
    args = ["make", "--no-print-directory"]
    if venv is not None:  # an existing environment: never rebuild its stamp
        args += ["-o", f"{venv}/.installed", f"VENV={venv}", f"PY={venv / 'bin' / 'python'}"]
    if jobs is not None:
        args += [f"JOBS={jobs}", f"TEST_JOBS={jobs}"]
    args += MAKE_ARGS[stage]
    load_before = _load()
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n==== {stage}: {' '.join(args)}\n")
        f.flush()
        rc = subprocess.run(args, cwd=clone, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    return {"stage": stage, "seconds": round(seconds, 1), "rc": rc,
            "load_before": round(load_before, 2), "load_after": round(_load(), 2)}


def run_all(clone: Path, stages: list[str], env: dict[str, str], log: Path,
            venv: Path | None, jobs: int | None, label: str) -> list[dict[str, object]]:
    rows = []
    for stage in stages:
        r = run_stage(clone, stage, env, log, venv, jobs)
        r["run"] = label
        rows.append(r)
        print(f"[build-time] {label:4s} {stage:9s} {r['seconds']:8.1f} s  rc={r['rc']}  "
              f"load {r['load_before']} -> {r['load_after']}", flush=True)
        if r["rc"] != 0:
            print(f"[build-time] {stage} failed; see {log}", file=sys.stderr)
            break
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", nargs="+", default=[s for s in STAGES if s != "models"],
                    choices=STAGES, help="stages to time, in this order (default: all but "
                    "models, which the notebooks stage trains)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="cores for the models and test stages (default: every core)")
    ap.add_argument("--reuse-venv", action="store_true",
                    help="use this repository's .venv instead of building one (venv stage "
                         "then measures nothing)")
    ap.add_argument("--runs", nargs="+", default=["cold", "warm"], choices=["cold", "warm"],
                    help="cold (empty cache, new clone) and/or warm (default: both)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="ISOCLIP_CACHE to use (default: a new empty folder in the workdir)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="folder for the clone, cache and log (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the clone and the cache")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    stages = [s for s in STAGES if s in args.stages]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="isoclip-build-time-"))
    work.mkdir(parents=True, exist_ok=True)
    clone, log = work / "clone", work / "build.log"
    cache = args.cache or work / "cache"
    if "cold" in args.runs and cache.exists() and any(cache.iterdir()):
        ap.error(f"--runs cold needs an empty cache; {cache} is not empty")
    if not clone.exists():
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    cache.mkdir(exist_ok=True)
    env = {**os.environ, "ISOCLIP_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    venv = ROOT / ".venv" if args.reuse_venv else None
    if "data" in stages and not _has_target(clone, "emoji-data"):
        stages.remove("data")
    if venv is not None and "venv" in stages:
        stages.remove("venv")
    cores = args.jobs or os.cpu_count()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                          capture_output=True, text=True).stdout.strip()
    print(f"[build-time] clone of {head} in {clone}, cache {cache}, {cores} core(s) "
          f"(os.cpu_count() = {os.cpu_count()}), log {log}", flush=True)
    rows: list[dict[str, object]] = []
    for label in ("cold", "warm"):
        if label in args.runs and all(r["rc"] == 0 for r in rows):
            rows += run_all(clone, stages, env, log, venv, args.jobs, label)
    print(f"\n{'stage':10s} {'cold s':>8s} {'warm s':>8s}   ({cores} cores)")
    for stage in stages:
        got = {r["run"]: r["seconds"] for r in rows if r["stage"] == stage}
        print(f"{stage:10s} {got.get('cold', float('nan')):8.1f} "
              f"{got.get('warm', float('nan')):8.1f}")
    book = [s for s in stages if s != "test"]
    for label in ("cold", "warm"):
        done = [r for r in rows if r["run"] == label and r["stage"] in book]
        if len(done) == len(book):
            print(f"make book ({label}, {' + '.join(book)}): "
                  f"{sum(float(r['seconds']) for r in done) / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps({"head": head, "cores": cores, "rows": rows}, indent=1))
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
