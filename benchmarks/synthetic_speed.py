"""Generation speed of the synthetic world (default config unless overridden).

    .venv/bin/python benchmarks/synthetic_speed.py [--repeats 3] [--image-size 32]

Prints the best wall time over the repeats and the images generated per second. The target
for the default world (24 classes × 620 images at 32 px) is ≤ 15 s on one core.
"""

from __future__ import annotations

import argparse
import time

from isoclip.data.world.config import WorldConfig
from isoclip.data.world.synthetic import make_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    args = parser.parse_args()
    cfg = WorldConfig(image_size=args.image_size)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        world = make_world(cfg, cache=False)
        times.append(time.perf_counter() - t0)
    n_images = len(world.train) + len(world.query) + len(world.gallery)
    best = min(times)
    print(f"world {cfg.name}: {len(world.classes)} classes, {n_images} images of "
          f"{cfg.image_size}px, {len(world.text_query) + len(world.text_gallery)} texts")
    print(f"generation: best {best:.2f} s of {args.repeats} "
          f"({', '.join(f'{t:.2f}' for t in times)}), {n_images / best:,.0f} images/s")


if __name__ == "__main__":
    main()
