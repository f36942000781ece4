"""Per-query latency of CLIP, IsoCLIP, OTI and OVI on one device (the latency chapter).

    .venv/bin/python benchmarks/latency.py                       # tiny model, paper's steps
    .venv/bin/python benchmarks/latency.py --model ViT-B-32 --repeats 20 \\
        --inversion-repeats 2 --oti-steps 10 --ovi-steps 5       # random-init ViT-B-32

A query is one raw image (OTI) or caption (OVI): preprocessing / tokenisation, encoding,
projection (and inversion), similarity against a fixed gallery; see ``isoclip.studies.latency``.
Prints the median per-query times and the ratios IsoCLIP/CLIP (target <= 1.05) and
OTI/IsoCLIP (target >= 100) for the paper's 150-step OTI and 1000-step OVI; when fewer steps
are run (``--oti-steps``/``--ovi-steps``) the inversion times are extrapolated linearly from
the measured per-step cost, and the output says so.
"""

from __future__ import annotations

import argparse
import platform

import pandas as pd
import torch

from isoclip.baselines.inversion import OTI_STEPS, OVI_STEPS
from isoclip.studies.latency import PAPER_STEPS, latency_ratios, measure_latency, summarize_latency
from isoclip.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--model", default="isoclip-tiny-vit", help="open_clip / isoclip model name")
    add("--pretrained", default=None, help="pretrained tag or checkpoint (default: random init)")
    add("--device", default="cpu", help="cpu, cuda or auto")
    add("--threads", type=int, default=1,
        help="torch CPU threads during the measurement (1: stable on a shared machine)")
    add("--gallery-size", type=int, default=1000, help="gallery embeddings per query")
    add("--repeats", type=int, default=500, help="timed queries per CLIP / IsoCLIP job")
    add("--inversion-repeats", type=int, default=3, help="timed queries per OTI / OVI job")
    add("--warmup", type=int, default=1, help="untimed rounds before timing")
    add("--oti-steps", type=int, default=OTI_STEPS,
        help=f"OTI steps actually run (paper: {OTI_STEPS}; fewer => extrapolated)")
    add("--ovi-steps", type=int, default=OVI_STEPS,
        help=f"OVI steps actually run (paper: {OVI_STEPS}; fewer => extrapolated)")
    add("--seed", type=int, default=0, help="seed of the query image, galleries and job order")
    add("--csv", default=None, help="also write the raw (tidy) timings to this CSV")
    args = parser.parse_args()

    bundle = load_model(args.model, args.pretrained, device=args.device)
    df = measure_latency(bundle, gallery_size=args.gallery_size, repeats=args.repeats,
                         inversion_repeats=args.inversion_repeats, warmup=args.warmup,
                         oti_steps=args.oti_steps, ovi_steps=args.ovi_steps,
                         num_threads=args.threads, seed=args.seed)
    if args.csv:
        df.to_csv(args.csv, index=False)
    summary = summarize_latency(df)
    ratios = latency_ratios(df)

    print(f"model {bundle.name} ({bundle.pretrained or 'random init'}), device {bundle.device} "
          f"({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{int(df['threads'].iloc[0])} thread(s)")
    print(f"batch of 1 raw query, gallery of {args.gallery_size}, median over "
          f"{args.repeats} (CLIP/IsoCLIP) / {args.inversion_repeats} (OTI/OVI) repeats, "
          f"{args.warmup} warm-up round(s), jobs interleaved")
    extrapolated = summary[summary["extrapolated"]]
    for row in extrapolated.itertuples():
        print(f"NOTE: {row.method} ran {row.steps_run} steps, not the paper's "
              f"{row.steps_reported}: per_query_ms is EXTRAPOLATED linearly from the measured "
              f"per-step cost (0-step and {row.steps_run}-step timings)")
    if extrapolated.empty:
        steps = ", ".join(f"{method} {n}" for method, n in PAPER_STEPS.items())
        print(f"inversions run with the paper's steps ({steps})")
    with pd.option_context("display.width", 200, "display.float_format", "{:,.3f}".format):
        print()
        print(summary.to_string(index=False))
        print()
        print(ratios.to_string(index=False))


if __name__ == "__main__":
    main()
