"""Throughput of the real path on this machine, and the time and disk it implies per dataset.

    .venv/bin/python benchmarks/real_path_throughput.py            # ~2-3 min on one core
    .venv/bin/python benchmarks/real_path_throughput.py --json benchmarks/results/real_path_throughput.json

Measured here, on random-init open_clip models (the weights do not change the cost), with
``--threads`` torch threads (default 1: one core, what each ``torchrun`` process on a CPU uses):

* feature extraction, images/s of ``encode_image`` on 224-pixel inputs for ViT-B-32,
  ViT-B-16 and ViT-L-14, and captions/s of ``encode_text``; the JPEG decode + ``preprocess``
  cost per image (model-independent) is measured separately;
* OTI seconds per query at the paper's 150 steps on ViT-B-32 (``isoclip.baselines.inversion.oti``,
  a batch of ``--inversion-batch`` queries, ``--oti-steps`` steps timed and scaled linearly to
  150: every step is the same forward/backward pass), and OVI at its 1000 steps likewise;
* the FLOPs of each of these (``torch.utils.flop_counter``), hence the FLOP/s this CPU
  achieved.

Estimated from those: OTI/OVI on the other backbones (scaled by the FLOPs of their text /
image towers), and every GPU figure: time = FLOPs / (``--gpu-tflops`` x ``--gpu-efficiency``),
by default an NVIDIA A100's float32 peak (19.5 TFLOP/s, the dtype of this package's extraction
and inversion) at 50 % efficiency, with the JPEG decode of one process as a floor for
extraction. The dataset sizes are the query and gallery counts of the official splits
(CoOp's dataset table for the ten test -> train sets; CUB-200-2011, revisited Oxford/Paris,
Karpathy's COCO/Flickr30k splits, nocaps val). Prints markdown tables (the ones of
``book/reproduce.md``) and optionally writes every number to ``--json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from isoclip.baselines.inversion import OTI_STEPS, OVI_STEPS, oti, ovi
from isoclip.common.threads import torch_threads
from isoclip.models.loading import load_model
from isoclip.studies.dataset_inversion import DEFAULT_QUERIES

#: name -> (classes, query items, gallery items, same split, modality, download GB approx.)
#: Counts of the official splits (query -> gallery); download sizes are approximate archive
#: sizes of the sources named in the dataset registry.
DATASETS: dict[str, tuple[int, int, int, bool, str, float]] = {
    "cub2011": (200, 11788, 11788, True, "image", 1.1),
    "roxford5k": (1, 70, 4993, False, "image", 1.8),  # one label: relevance from gnd
    "rparis6k": (1, 70, 6322, False, "image", 2.4),
    "stanford_cars": (196, 8041, 6509, False, "image", 1.9),
    "oxford_pets": (37, 3669, 2944, False, "image", 0.8),
    "oxford_flowers": (102, 2463, 4093, False, "image", 0.3),
    "fgvc_aircraft": (100, 3333, 3334, False, "image", 2.6),
    "dtd": (47, 1692, 2820, False, "image", 0.6),
    "eurosat": (10, 8100, 13500, False, "image", 0.1),
    "food101": (101, 30300, 50500, False, "image", 5.0),
    "sun397": (397, 19850, 15880, False, "image", 37.0),
    "caltech101": (100, 2465, 4128, False, "image", 0.1),
    "ucf101": (101, 3783, 7639, False, "image", 0.2),
    "coco_text": (5000, 5000, 20014, False, "text", 0.2),
    "flickr30k_text": (1014, 1014, 4056, False, "text", 0.03),
    "nocaps_text": (4500, 4500, 40500, False, "text", 0.01),
}
#: (embedding dim d, image width d_i) per backbone, for the feature cache size.
DIMS = {"ViT-B-32": (512, 768), "ViT-B-16": (512, 768), "ViT-L-14": (768, 1024)}


def flops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def decode_seconds(repeats: int, preprocess: Callable) -> float:
    """JPEG decode + preprocess of a 500x375 photo-sized image (CUB's typical size)."""
    rng = np.random.default_rng(0)
    pixels = (rng.random((375, 500, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return timed(lambda: preprocess(Image.open(io.BytesIO(data)).convert("RGB")), repeats)


def measure_model(name: str, args: argparse.Namespace) -> dict:
    """Throughput and FLOPs of one random-init backbone (and, for ``--inversion-model``, the
    decode cost and OTI/OVI per query)."""
    bundle = load_model(name, None, seed=0)
    model, size = bundle.model, bundle.image_size
    images = torch.randn(args.image_batch, 3, size, size)
    texts = bundle.tokenizer([f"a photo of a small bird number {i}"
                              for i in range(args.text_batch)])
    img_flops = flops(lambda: model.encode_image(images[:1]))
    txt_flops = flops(lambda: model.encode_text(texts[:1]))
    t_img = timed(lambda: model.encode_image(images), args.repeats)
    t_txt = timed(lambda: model.encode_text(texts), args.repeats)
    rec = {"image_gflops": img_flops / 1e9, "text_gflops": txt_flops / 1e9,
           "images_per_s": args.image_batch / t_img, "texts_per_s": args.text_batch / t_txt,
           "cpu_gflops_per_s_image": img_flops * args.image_batch / t_img / 1e9}
    if name != args.inversion_model:
        return rec
    rec["decode_ms"] = 1e3 * decode_seconds(5, bundle.preprocess)
    targets_i = model.encode_image(torch.randn(args.inversion_batch, 3, size, size))
    targets_t = model.encode_text(texts[:args.inversion_batch])

    def run_oti(steps: int, batch: int) -> None:
        oti(model, bundle.tokenizer, targets_i[:batch], steps=steps, progress=False)

    def run_ovi(steps: int, batch: int) -> None:
        ovi(model, targets_t[:batch], steps=steps, progress=False)

    with torch.enable_grad():
        for method, run, steps, paper in (("OTI", run_oti, args.oti_steps, OTI_STEPS),
                                          ("OVI", run_ovi, args.ovi_steps, OVI_STEPS)):
            step_flops = flops(lambda run=run: run(1, 1))
            t0 = time.perf_counter()
            run(steps, args.inversion_batch)
            per_step = (time.perf_counter() - t0) / steps
            rec[f"{method}_gflops_per_query_step"] = step_flops / 1e9
            rec[f"{method}_s_per_query"] = per_step * paper / args.inversion_batch
            rec[f"{method}_steps_timed"] = steps
    return rec


def measure(args: argparse.Namespace) -> dict:
    out: dict = {"models": {}, "threads": args.threads}
    with torch_threads(args.threads), torch.no_grad():
        for name in args.models:
            out["models"][name] = measure_model(name, args)
    return out


def estimates(m: dict, args: argparse.Namespace) -> dict:
    ref = m["models"][args.inversion_model]
    gpu = args.gpu_tflops * 1e12 * args.gpu_efficiency
    decode_s = ref["decode_ms"] / 1e3
    rows = {}
    for ds, (classes, nq, ng, same, modality, gb) in DATASETS.items():
        encode = nq if same else nq + ng
        budget = min(nq, DEFAULT_QUERIES if DEFAULT_QUERIES // classes == 0
                     else DEFAULT_QUERIES // classes * classes)
        row = {"classes": classes, "queries": nq, "gallery": ng, "encoded": encode,
               "budget": budget, "download_gb": gb, "modality": modality, "models": {}}
        for name, rec in m["models"].items():
            d, d_i = DIMS[name]
            inv = "OTI" if modality == "image" else "OVI"
            tower = "text" if inv == "OTI" else "image"
            # OTI/OVI cost scaled from the measured model by the FLOPs of the inverted tower
            scale = rec[f"{tower}_gflops"] / ref[f"{tower}_gflops"]
            cpu_inv = ref[f"{inv}_s_per_query"] * scale
            step_flops = ref[f"{inv}_gflops_per_query_step"] * 1e9 * scale
            steps = OTI_STEPS if inv == "OTI" else OVI_STEPS
            per_item = rec["image_gflops"] * 1e9 if modality == "image" else \
                rec["text_gflops"] * 1e9
            rate = rec["images_per_s"] if modality == "image" else rec["texts_per_s"]
            # two passes (projected and pre-projection features), as the chapters extract
            cpu_feat = 2 * encode / rate + (encode * decode_s if modality == "image" else 0)
            gpu_feat = max(2 * encode * per_item / gpu,
                           encode * decode_s if modality == "image" else 0.0)
            row["models"][name] = {
                "cpu_features_h": cpu_feat / 3600, "gpu_features_min": gpu_feat / 60,
                "cpu_inversion_h": cpu_inv * budget / 3600,
                "gpu_inversion_h": step_flops * steps * budget / gpu / 3600,
                "features_mb": encode * (d + (d_i if modality == "image" else d)) * 4 / 1e6,
            }
        rows[ds] = row
    return rows


def markdown(m: dict, est: dict, args: argparse.Namespace) -> str:
    ref = m["models"][args.inversion_model]
    names = list(m["models"])
    gpu = f"{args.gpu_tflops:g} TFLOP/s x {args.gpu_efficiency:.0%}"
    lines = [(f"Measured on {m['cpu']}, {m['threads']} thread(s), torch {m['torch']}, "
              f"{m['date']}:"), "",
             "| backbone | image GFLOPs | images/s | caption GFLOPs | captions/s |",
             "|---|---|---|---|---|"]
    for name, r in m["models"].items():
        lines.append(f"| {name} | {r['image_gflops']:.1f} | {r['images_per_s']:.2f} | "
                     f"{r['text_gflops']:.1f} | {r['texts_per_s']:.1f} |")
    lines += ["", (f"JPEG decode + preprocess: {ref['decode_ms']:.1f} ms per image. "
                   f"{args.inversion_model}: OTI {ref['OTI_s_per_query']:.0f} s per query at "
                   f"{OTI_STEPS} steps, OVI {ref['OVI_s_per_query']:.0f} s per query at "
                   f"{OVI_STEPS} steps (batch {args.inversion_batch}, "
                   f"{ref['OTI_steps_timed']} and {ref['OVI_steps_timed']} steps timed, "
                   "scaled linearly)."), "",
              (f"Feature extraction (estimated; GPU: {gpu}, one process, projected and "
               "pre-projection passes):"), "",
              ("| dataset | items encoded | download | feature cache | "
               + " | ".join(f"GPU {n}" for n in names) + f" | CPU {args.inversion_model} |"),
              "|---|---|---|---|" + "---|" * (len(names) + 1)]
    total: dict[str, float] = {}
    for ds, row in est.items():
        e = row["models"]
        cache = f"{e[names[0]]['features_mb']:.0f}–{e[names[-1]]['features_mb']:.0f} MB"
        for n in names:
            total[f"f{n}"] = total.get(f"f{n}", 0.0) + e[n]["gpu_features_min"]
            total[f"i{n}"] = total.get(f"i{n}", 0.0) + e[n]["gpu_inversion_h"]
        total["fcpu"] = total.get("fcpu", 0.0) + e[args.inversion_model]["cpu_features_h"]
        total["icpu"] = total.get("icpu", 0.0) + e[args.inversion_model]["cpu_inversion_h"]
        lines.append(f"| `{ds}` | {row['encoded']:,} | ≈{row['download_gb']:g} GB | {cache} | "
                     + " | ".join(f"{e[n]['gpu_features_min']:.1f} min" for n in names)
                     + f" | {e[args.inversion_model]['cpu_features_h']:.1f} h |")
    lines.append("| all | | | | " + " | ".join(f"{total[f'f{n}']:.0f} min" for n in names)
                 + f" | {total['fcpu']:.0f} h |")
    lines += ["", (f"OTI (image sets) and OVI (caption sets) at the default budget of "
                   f"{DEFAULT_QUERIES} queries (estimated; GPU: {gpu}):"), "",
              ("| dataset | method | queries inverted | "
               + " | ".join(f"GPU {n}" for n in names) + f" | CPU {args.inversion_model} |"),
              "|---|---|---|" + "---|" * (len(names) + 1)]
    for ds, row in est.items():
        e = row["models"]
        lines.append(f"| `{ds}` | {'OTI' if row['modality'] == 'image' else 'OVI'} | "
                     f"{row['budget']:,} of {row['queries']:,} | "
                     + " | ".join(f"{e[n]['gpu_inversion_h']:.2f} h" for n in names)
                     + f" | {e[args.inversion_model]['cpu_inversion_h']:.0f} h |")
    lines.append("| all | | | " + " | ".join(f"{total[f'i{n}']:.1f} h" for n in names)
                 + f" | {total['icpu']:.0f} h |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--models", nargs="+", default=["ViT-B-32", "ViT-B-16", "ViT-L-14"])
    add("--inversion-model", default="ViT-B-32")
    add("--threads", type=int, default=1)
    add("--image-batch", type=int, default=4)
    add("--text-batch", type=int, default=16)
    add("--repeats", type=int, default=2, help="timed batches (median) after one untimed")
    add("--inversion-batch", type=int, default=8)
    add("--oti-steps", type=int, default=2)
    add("--ovi-steps", type=int, default=2)
    add("--gpu-tflops", type=float, default=19.5, help="GPU float32 peak (A100: 19.5)")
    add("--gpu-efficiency", type=float, default=0.5)
    add("--json", default=None, help="write every measured and estimated number here")
    args = ap.parse_args()
    if args.inversion_model not in args.models:
        ap.error("--inversion-model must be one of --models")

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    t0 = time.perf_counter()
    m = measure(args)
    m.update(cpu=f"{cpu} ({os.cpu_count()} cores, load average "
                 f"{os.getloadavg()[0]:.1f} at the end)",
             torch=torch.__version__.split("+")[0],
             date=datetime.now(UTC).strftime("%Y-%m-%d"), seconds=time.perf_counter() - t0,
             gpu={"tflops": args.gpu_tflops, "efficiency": args.gpu_efficiency})
    est = estimates(m, args)
    print(markdown(m, est, args))
    print(f"\n[benchmark] {m['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"measured": m, "estimated": est}, indent=1))


if __name__ == "__main__":
    main()
