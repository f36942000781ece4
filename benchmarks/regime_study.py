"""The regime study ("When does IsoCLIP help?" chapter): which settings of world, temperature,
shared dimension and training length make a tiny CLIP show IsoCLIP's effect (an intra-modal band
beating CLIP)?

Each run trains (or loads from ``$ISOCLIP_CACHE``) one tiny model and records the
diagnostics of :func:`isoclip.studies.regimes.run_regime`; the script prints a table and writes
``benchmarks/results/regime_study.json`` (configuration and every metric per run). Runs are
independent and cached, so re-running the script is cheap once trained; results of runs
already in the JSON file are kept when a run is skipped by ``--only``.

Run under the shared torch lock on the project machines (2 cores):

    flock /tmp/isoclip-torch.lock .venv/bin/python benchmarks/regime_study.py
    flock /tmp/isoclip-torch.lock .venv/bin/python benchmarks/regime_study.py --only rich-tau0.01
    .venv/bin/python benchmarks/regime_study.py --list
    nice -n 19 .venv/bin/python benchmarks/regime_study.py --data-scale rich-fixed-learned

The data-scale axis (``--data-scale [names]``, :mod:`isoclip.studies.data_scale`): the
compositional ``rich`` world trained on its fixed train split or on a stream of fresh pairs
(``TrainConfig(data="stream")``), at 800 steps and at longer schedules (one run per length:
the cosine schedule depends on the total steps), each run's weights kept at several steps and
every kept step evaluated like a study run (``--final-only``: the final step only); written
to ``benchmarks/results/data_scale_study.json`` (rows keyed by run and step, merged with the
rows already there; rows already in the file are not evaluated again).

    .venv/bin/python benchmarks/regime_study.py --data-scale rich-stream-learned-2000 --final-only

Factors: world richness (``default`` single-object world vs ``rich`` compositional scenes
with the same 24 classes: up to 3 objects, each optional attribute captioned with
probability 0.5; ``medium``: up to 2 objects, probability 0.25), temperature (learned vs
fixed 0.01 / 0.03 / 0.1), shared dimension (``isoclip-tiny-vit``: d = 64 < d_i = 96;
``isoclip-tiny-vit-d32``: d = 32, well below both tower widths, as CLIP's 768 → 512) and
training length (800 vs 1600 steps), the training seed (0, 1, 2 for the default), nuisance
strength (1, 0.5, 0) and the number of
colours (4 or 8: 24 or 48 classes; a harder fine-grained colour task inside each shape).
Every run is evaluated over the whole world and inside sub-domains (``in_shape``: one shape
at a time, relevance = colour; ``in_colour``: one colour at a time, relevance = shape), the
analogue of the paper's fine-grained datasets; see :mod:`isoclip.studies.regimes`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from isoclip.common.cache import atomic_write_bytes
from isoclip.studies.regimes import run_regime
from isoclip.training.embedded import DEFAULT_TRAIN, DEFAULT_WORLD
from isoclip.training.trainer import TrainConfig

OUT = Path(__file__).parent / "results" / "regime_study.json"
SCALE_OUT = Path(__file__).parent / "results" / "data_scale_study.json"

WORLDS = {
    "default": DEFAULT_WORLD,
    "rich": replace(DEFAULT_WORLD, scene="compositional", max_objects=3, mention_prob=0.5),
    "medium": replace(DEFAULT_WORLD, scene="compositional", max_objects=2, mention_prob=0.25),
    "nuisance0.5": replace(DEFAULT_WORLD, nuisance=0.5),
    "nuisance0": replace(DEFAULT_WORLD, nuisance=0.0),
    "colours8": replace(DEFAULT_WORLD, colours=("red", "green", "blue", "yellow", "orange",
                                                "purple", "cyan", "pink")),
}


def _train(temperature: float | None, model: str = "isoclip-tiny-vit", steps: int = 800
           ) -> TrainConfig:
    return replace(DEFAULT_TRAIN, temperature=temperature, model=model, steps=steps)


#: The grid, in priority order (name -> (world, training)). The first entries are the cached
#: book models (free); the rest are the runs most likely to show the effect first.
RUNS: dict[str, tuple[str, TrainConfig]] = {
    "default-learned": ("default", _train(None)),
    "default-tau0.01": ("default", _train(0.01)),
    "default-tau0.1": ("default", _train(0.1)),
    "rich-learned": ("rich", _train(None)),
    "rich-tau0.01": ("rich", _train(0.01)),
    "default-d32-tau0.01": ("default", _train(0.01, "isoclip-tiny-vit-d32")),
    "default-tau0.03": ("default", _train(0.03)),
    "default-d32-learned": ("default", _train(None, "isoclip-tiny-vit-d32")),
    "rich-tau0.01-1600": ("rich", _train(0.01, steps=1600)),
    "medium-learned": ("medium", _train(None)),
    "nuisance0.5-learned": ("nuisance0.5", _train(None)),
    "nuisance0-learned": ("nuisance0", _train(None)),
    "colours8-learned": ("colours8", _train(None)),
    "colours8-tau0.01": ("colours8", _train(0.01)),
    "default-learned-1600": ("default", _train(None, steps=1600)),
    "default-learned-seed1": ("default", replace(_train(None), seed=1)),
    "default-learned-seed2": ("default", replace(_train(None), seed=2)),
}

#: Written at the top of the JSON file: what the numbers mean.
ABOUT = {
    "script": "benchmarks/regime_study.py (isoclip.studies.regimes.run_regime per run)",
    "mAP": "percent; i2i = world.query -> world.gallery images, t2t = held-out text_query -> "
           "text_gallery; relevance = same class (main object's shape x colour)",
    "oracle": "best band of a sweep with k_top, k_bottom in steps of sweep_stride, chosen on "
              "the evaluation queries (optimistic); *_oracle_heldout_mAP chooses on even "
              "queries and scores odd ones and vice versa",
    "auto": "select_band(P, 'isotropy'): no labels",
    "agree": "*_agree_band/_mAP: the band of highest cross-modal agreement "
             "(isoclip.selection.rules.agreement_sweep, stride-2 grid) on 1000 seeded training "
             "image-caption pairs, averaged over the domain's groups (each group scored on its "
             "own pairs, e.g. the pairs of one shape); no labels, no test data",
    "full_band": "band (0, 0): features restricted to Psi's r = min(d_i, d_t) singular "
                 "directions (differs from CLIP when d_i > r)",
    "flatness_mid_ratio": "median decay of log sigma (per index) in the middle half of the "
                          "non-null spectrum / median in the outer quarters; < 1 = flatter "
                          "middle (the paper's picture), ~1 = uniform decay",
    "flatness_iso_capacity": "max over bands of kept * sigma_min / sigma_max, / rank "
                             "(1 = perfectly flat)",
    "cone": "mean pairwise cosine within a modality (gallery images / their captions)",
    "gap": "norm of the difference of the normalised image and caption centroids",
    "in_shape_": "sub-domain keys: each query ranked only against the gallery items whose "
                 "main object has the query's shape (relevance = same class, i.e. colour); "
                 "one band for all shapes",
    "in_colour_": "likewise within one colour (relevance = shape)",
    "oti": "oti_[<domain>]gain/lo/hi: OTI image->image mAP minus CLIP's on oti_queries "
           "class-balanced query images (4 per class, seed 0), 95 % paired bootstrap",
}

COLUMNS = [  # (header, key, format)
    ("run", "run", "{}"), ("train s", "train_seconds", "{:.0f}"),
    ("tau", "final_temperature", "{:.3f}"), ("zs", "zero_shot_acc", "{:.1f}"),
    ("gap", "gap", "{:.2f}"), ("cone i", "cone_image", "{:.2f}"),
    ("cone t", "cone_text", "{:.2f}"), ("flat", "flatness_mid_ratio", "{:.2f}"),
    ("isocap", "flatness_iso_capacity", "{:.2f}"),
    ("i2i", "i2i_mAP", "{:.1f}"), ("i2i band", "i2i_oracle_band", "{}"),
    ("i2i orc", "i2i_oracle_mAP", "{:.1f}"), ("i2i ho", "i2i_oracle_heldout_mAP", "{:.1f}"),
    ("auto", "auto_band", "{}"), ("i2i auto", "i2i_auto_mAP", "{:.1f}"),
    ("t2t", "t2t_mAP", "{:.1f}"), ("t2t band", "t2t_oracle_band", "{}"),
    ("t2t orc", "t2t_oracle_mAP", "{:.1f}"), ("t2t ho", "t2t_oracle_heldout_mAP", "{:.1f}"),
    ("t2t auto", "t2t_auto_mAP", "{:.1f}"), ("oti", "oti_gain", "{:+.1f}"),
    ("shape i2i", "i2i_in_shape_mAP", "{:.1f}"), ("band", "i2i_in_shape_oracle_band", "{}"),
    ("orc", "i2i_in_shape_oracle_mAP", "{:.1f}"), ("ho", "i2i_in_shape_oracle_heldout_mAP",
                                                    "{:.1f}"),
    ("auto", "i2i_in_shape_auto_mAP", "{:.1f}"), ("agree", "i2i_in_shape_agree_mAP", "{:.1f}"),
    ("oti", "oti_in_shape_gain", "{:+.1f}"),
    ("colour i2i", "i2i_in_colour_mAP", "{:.1f}"),
    ("ho", "i2i_in_colour_oracle_heldout_mAP", "{:.1f}"),
]


def table(rows: list[dict]) -> str:
    """The results as a fixed-width text table."""
    cells = [[h for h, _, _ in COLUMNS]]
    for r in rows:
        cells.append([("-" if r.get(k) is None else f.format(r[k]).replace(" ", ""))
                      for _, k, f in COLUMNS])
    widths = [max(len(row[j]) for row in cells) for j in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


SCALE_ABOUT = {
    **ABOUT,
    "script": "benchmarks/regime_study.py --data-scale (isoclip.studies.data_scale."
              "run_data_scale: one run per data mode and temperature, every kept step "
              "evaluated with isoclip.studies.regimes.evaluate_bundle)",
    "data": "fixed = the world's fixed train split (reshuffled every epoch); stream = fresh "
            "pairs for every batch (isoclip.data.world.stream.TrainStream)",
    "step": "training step whose weights are evaluated (the run's learning-rate schedule is "
            "that of train.steps: intermediate steps are not annealed)",
    "distinct_pairs": "distinct training pairs seen up to step",
    "epochs": "step * batch_size / size of the fixed train split",
    "temperature": "tau at step (1 / exp(logit_scale))",
    "train_seconds": "wall time of the whole run (all steps), one torch thread, on 2 cores "
                     "shared with other jobs (the 800-step stream runs under heavy load, the "
                     "longer runs on a core of their own)",
}


def data_scale(names: list[str], stride: int, out: Path, final_only: bool = False) -> int:
    """Run (or load) the data-scale runs ``names`` and merge their rows into ``out``
    (``final_only``: evaluate each run's final step only; rows already in ``out`` are not
    evaluated again). Training and evaluation use one torch thread."""
    import torch

    from isoclip.studies.data_scale import DATA_SCALE_RUNS, kept_steps, run_data_scale

    torch.set_num_threads(1)
    unknown = [n for n in names if n not in DATA_SCALE_RUNS]
    if unknown:
        raise SystemExit(f"--data-scale: unknown runs {unknown}; known: {list(DATA_SCALE_RUNS)}")
    rows = {}
    if out.exists():
        rows = {(r["run"], r["step"]): r for r in json.loads(out.read_text())["runs"]}
    todo = [(n, s) for n in names for s in kept_steps(n)
            if (not final_only or s == DATA_SCALE_RUNS[n][1].steps) and (n, s) not in rows]
    for name, step in todo:
        # last kept step first; the file is written after each evaluation
        t0 = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name} @ {step} ...", file=sys.stderr, flush=True)
        for r in run_data_scale(name, stride=stride, steps=[step], progress=True):
            rows[(r["run"], r["step"])] = r
        print(f"[{time.strftime('%H:%M:%S')}] {name} @ {step} done in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        # re-read: another process may have merged its runs meanwhile
        if out.exists():
            for r in json.loads(out.read_text())["runs"]:
                rows.setdefault((r["run"], r["step"]), r)
        order = {n: i for i, n in enumerate(DATA_SCALE_RUNS)}
        ordered = sorted(rows.values(), key=lambda r: (order.get(r["run"], 99), r["step"]))
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps({"about": SCALE_ABOUT, "runs": ordered}, indent=1)
                                 + "\n").encode())
        print(table([{**r, "run": f"{r['run']}@{r['step']}"} for r in ordered]))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", help="run only these names (see --list)")
    ap.add_argument("--stride", type=int, default=2, help="band sweep stride (default 2)")
    ap.add_argument("--list", action="store_true", help="list the runs and exit")
    ap.add_argument("--data-scale", nargs="*", metavar="RUN",
                    help="run the data-scale axis instead (fixed vs streaming training; "
                         "default: all its runs) into --scale-out")
    ap.add_argument("--final-only", action="store_true",
                    help="--data-scale: evaluate only each run's final step")
    ap.add_argument("--scale-out", type=Path, default=SCALE_OUT,
                    help=f"JSON output of --data-scale (default {SCALE_OUT})")
    ap.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default {OUT})")
    args = ap.parse_args(argv)
    if args.data_scale is not None:
        from isoclip.studies.data_scale import DATA_SCALE_RUNS

        return data_scale(args.data_scale or list(DATA_SCALE_RUNS), args.stride, args.scale_out,
                          args.final_only)
    if args.list:
        for name, (world, cfg) in RUNS.items():
            print(f"{name:24s} world={world:8s} model={cfg.model} tau={cfg.temperature} "
                  f"steps={cfg.steps}")
        return 0
    names = list(RUNS) if not args.only else args.only
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        ap.error(f"--only: unknown runs {unknown}; known: {list(RUNS)}")
    previous = {}
    if args.out.exists():
        previous = {r["run"]: r for r in json.loads(args.out.read_text())["runs"]}
    results = dict(previous)
    for name in names:
        world, cfg = RUNS[name]
        t0 = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        r = run_regime(WORLDS[world], cfg, stride=args.stride)
        results[name] = {"run": name, "world_name": world, **r}
        print(f"[{time.strftime('%H:%M:%S')}] {name} done in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        ordered = [results[n] for n in RUNS if n in results]
        atomic_write_bytes(args.out, (json.dumps({"about": ABOUT, "runs": ordered}, indent=1)
                                      + "\n").encode())
    ordered = [results[n] for n in RUNS if n in results]
    print(table(ordered))
    for dom in ("", "in_shape_", "in_colour_"):
        best = max(ordered, key=lambda r: r[f"i2i_{dom}oracle_heldout_mAP"] - r[f"i2i_{dom}mAP"])
        clip = best[f"i2i_{dom}mAP"]
        print(f"best image->image held-out band gain ({dom.strip('_') or 'whole world'}): "
              f"{best['run']}: {best[f'i2i_{dom}oracle_heldout_mAP'] - clip:+.1f} mAP points "
              f"over CLIP {clip:.1f} (oracle {best[f'i2i_{dom}oracle_mAP'] - clip:+.1f}, band "
              f"{best[f'i2i_{dom}oracle_band']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
