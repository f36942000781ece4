"""Benchmark of :func:`isoclip.selection.sweep.sweep_bands`: the full (k_top, k_bottom) grid at stride 1.

On the embedded default query sets (image->image: world.query -> world.gallery; text->text:
world.text_query -> world.text_gallery). Prints the sweep's wall time per modality and the
speed ratio against the naive path (``iso_projectors`` + project + ``evaluate``, float32 like
the book's evaluator) timed on a random subsample of bands, and checks they agree.

Usage: .venv/bin/python benchmarks/band_sweep.py [--naive-bands 16] [--dtype float64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from isoclip.training import embedded
from isoclip.method.bands import Band
from isoclip.selection.sweep import naive_band_metrics, sweep_bands
from isoclip.studies.world import world_features
from isoclip.method.operator import svd
from isoclip.method.projectors import get_projectors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--naive-bands", type=int, default=16, help="bands timed on the naive path")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    emb = embedded.embedded_default(progress=False)
    w = emb.world
    f = world_features(emb.bundle, w, kind="preproj")
    P = get_projectors(emb.bundle.model)
    dec = svd(P)
    r = dec.r
    print(f"embedded default: r = {r}, torch threads = {torch.get_num_threads()}, "
          f"sweep dtype = {args.dtype}")
    total = 0.0
    for modality, q, g, ql, gl in [
            ("image", f.query_images, f.gallery_images, w.query.labels, w.gallery.labels),
            ("text", f.text_query, f.text_gallery, w.text_query.labels, w.text_gallery.labels)]:
        t0 = time.perf_counter()
        sw = sweep_bands(P, q, g, ql, gl, modality, dec=dec, dtype=dtype)
        t_sweep = time.perf_counter() - t0
        total += t_sweep
        rng = np.random.default_rng(0)
        pick = rng.choice(len(sw), size=min(args.naive_bands, len(sw)), replace=False)
        t0 = time.perf_counter()
        diffs = []
        for i in pick:
            row = sw.iloc[int(i)]
            band = Band(int(row.k_top), int(row.k_bottom))
            m = naive_band_metrics(P, q, g, ql, gl, band, modality, dec=dec, exact=False)
            diffs.append(abs(m["mAP"] - row.mAP))
        t_naive = (time.perf_counter() - t0) / len(pick)
        per_band = t_sweep / len(sw)
        print(f"{modality:>5}: {len(sw)} bands ({q.shape[0]} queries x {g.shape[0]} gallery) in "
              f"{t_sweep:.1f} s = {1e3 * per_band:.1f} ms/band; naive path "
              f"{1e3 * t_naive:.1f} ms/band on {len(pick)} bands -> speed ratio "
              f"{t_naive / per_band:.1f}x; max |mAP diff| vs naive (float32) {max(diffs):.1e}")
    print(f"total full-grid sweep wall time: {total:.1f} s (target <= 30 s)")


if __name__ == "__main__":
    main()
