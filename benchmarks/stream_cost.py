"""What a streaming world costs: rendering one fresh batch against one training step.

``TrainConfig(data="stream")`` renders a new batch of image-caption pairs for every step
(:class:`isoclip.data.world.stream.TrainStream`). This script times, in the same process and
with one torch thread, for the default world and the compositional ``rich`` world of the
regime study:

- render: ``TrainStream.batch(b, 256)`` (images and captions);
- prepare: the batch as model input (normalised tensor, tokenised captions);
- step: one optimisation step of the tiny model on that batch (forward, symmetric InfoNCE,
  backward, AdamW), the work a fixed-set step does;

and prints the median of each and the ratio (render + prepare) / step: the fraction by which
streaming slows training down. Run on a quiet machine for absolute figures; the ratio is the
point (both sides share the load).

    .venv/bin/python benchmarks/stream_cost.py [--batches 8] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from isoclip.baselines.losses import clip_loss
from isoclip.data.world.stream import TrainStream
from isoclip.training.embedded import DEFAULT_TRAIN, DEFAULT_WORLD
from isoclip.training.trainer import _param_groups, create_model, dataset_tensor

WORLDS = {
    "default": DEFAULT_WORLD,
    "rich": replace(DEFAULT_WORLD, scene="compositional", max_objects=3, mention_prob=0.5),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=8, help="batches timed per world")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    bundle = create_model(DEFAULT_TRAIN)
    model = bundle.model.train()
    opt = torch.optim.AdamW(_param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    print(f"batch size {args.batch_size}, {args.batches} batches per world, 1 torch thread, "
          f"model {DEFAULT_TRAIN.model}")
    print(f"{'world':8s} {'render s':>9s} {'prepare s':>10s} {'step s':>8s} {'ratio':>6s} "
          f"{'pairs/s':>8s}")
    for name, cfg in WORLDS.items():
        stream = TrainStream(cfg)
        render, prepare, step = [], [], []
        for b in range(args.batches + 1):  # batch 0 warms up (not timed)
            t0 = time.perf_counter()
            batch = stream.batch(b, args.batch_size)
            t1 = time.perf_counter()
            x = dataset_tensor(bundle, batch)
            tok = bundle.tokenizer(list(batch.captions))
            t2 = time.perf_counter()
            loss = clip_loss(model.encode_image(x), model.encode_text(tok),
                             model.logit_scale.exp())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t3 = time.perf_counter()
            if b:
                render.append(t1 - t0)
                prepare.append(t2 - t1)
                step.append(t3 - t2)
        r, p, s = (statistics.median(v) for v in (render, prepare, step))
        print(f"{name:8s} {r:9.3f} {p:10.3f} {s:8.3f} {(r + p) / s:6.2f} "
              f"{args.batch_size / r:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
