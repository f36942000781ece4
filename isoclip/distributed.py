"""Feature extraction and OTI/OVI over several processes or GPUs, started by ``torchrun``.

The chapters run in one process; the two stages that dominate a paper-scale run, feature
extraction of the large image sets and the inversion of every query, can be done beforehand
on all GPUs of a machine (or all cores of a CPU). The results land in the cache
(``$ISOCLIP_CACHE``, default ``~/.cache/isoclip``) under exactly the keys the chapters look
up, so a later ``make reproduce`` with the same parameter set reads them instead of
recomputing::

    torchrun --standalone --nproc-per-node 8 -m isoclip.distributed invert \\
        --params vit-b-32-openai --data-root /data
    torchrun --standalone --nproc-per-node 8 -m isoclip.distributed features \\
        --params vit-b-32-openai --data-root /data --datasets sun397,food101

``invert`` extracts the projected query features of each dataset and inverts its query
budget: OTI for image sets, OVI for caption sets (:func:`isoclip.studies.dataset_inversion
.invert_dataset`). ``features`` extracts projected and pre-projection features of the query
and gallery splits. Work is shared out batch by batch (:mod:`isoclip.common.dist`: NCCL and
one GPU per process with CUDA, gloo on CPU); rank 0 writes the merged cache entries, and the
results equal a one-process run. An interrupted ``invert`` keeps its finished batches:
running the same command again resumes. Without torchrun the module runs in one process.

Options default to the parameter set named by ``--params`` (its ``common`` section: ``model``,
``pretrained``, ``datasets``, ``text_datasets``, ``inversion_queries``, ``subset_seed``,
``oti_steps``, ``ovi_steps``, ``num_pseudo_tokens``, ``num_pseudo_patches``,
``inversion_seed``, ``inversion_batch_size``); command-line options override them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

_PARAM_KEYS = ("model", "pretrained", "datasets", "text_datasets", "inversion_queries",
               "subset_seed", "oti_steps", "ovi_steps", "num_pseudo_tokens",
               "num_pseudo_patches", "inversion_seed", "inversion_batch_size")


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _queries(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or 'all', got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="torchrun --standalone --nproc-per-node N -m isoclip.distributed",
        description="Feature extraction and OTI/OVI sharded over torchrun processes; results "
                    "go to the isoclip cache under the keys the chapters read.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("invert", "OTI of image sets' and OVI of caption sets' query budget"),
                        ("features", "projected and pre-projection features of every split")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--params", help="parameter set (notebooks/params/<name>.yaml or a path) "
                                        "whose common section gives the defaults")
        p.add_argument("--model", help="open_clip model name (or an isoclip tiny config)")
        p.add_argument("--pretrained", help="pretrained tag or checkpoint path; 'none' for "
                                            "random init")
        p.add_argument("--data-root", required=True, help="folder holding the datasets")
        p.add_argument("--datasets", help="comma-separated image sets (default: the "
                                          "parameter set's datasets)")
        p.add_argument("--text-datasets", help="comma-separated caption sets (default: the "
                                               "parameter set's text_datasets)")
        p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        p.add_argument("--feature-batch-size", type=int, default=64,
                       help="images (or texts) per forward pass of the extraction")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        if name == "invert":
            p.add_argument("--queries", type=_queries,
                           help="query budget per dataset (int or 'all'; default: the "
                                "parameter set's inversion_queries, else 1000)")
            p.add_argument("--subset-seed", type=int)
            p.add_argument("--oti-steps", type=int)
            p.add_argument("--ovi-steps", type=int)
            p.add_argument("--num-pseudo-tokens", type=int)
            p.add_argument("--num-pseudo-patches", type=int)
            p.add_argument("--inversion-seed", type=int)
            p.add_argument("--inversion-batch-size", type=int)
            p.add_argument("--num-threads", type=int, default=1,
                           help="torch threads per process during the inversion")
    return ap


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from isoclip.notebooks import load_params

    values: dict[str, Any] = {}
    if args.params:
        values.update({k: v for k, v in (load_params(args.params).get("common") or {}).items()
                       if k in _PARAM_KEYS})
    for key in _PARAM_KEYS:
        flag = {"inversion_queries": "queries"}.get(key, key)
        given = getattr(args, flag, None)
        if given is not None:
            values[key] = given
    if values.get("pretrained") in ("none", "None", ""):
        values["pretrained"] = None
    if not values.get("model"):
        raise SystemExit("isoclip.distributed: --model (or --params with a model) is required")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    s = _settings(args)

    from isoclip.common import dist
    from isoclip.data.registry import load_retrieval_dataset
    from isoclip.models.features import image_features, text_features
    from isoclip.models.loading import load_model
    from isoclip.studies.dataset_inversion import DEFAULT_QUERIES, invert_dataset

    device = dist.init_distributed(args.device)
    try:
        bundle = load_model(s["model"], s.get("pretrained"), device=device)
        image_sets, text_sets = _names(s.get("datasets")), _names(s.get("text_datasets"))
        if not image_sets and not text_sets:
            raise SystemExit("isoclip.distributed: no datasets (give --datasets / "
                             "--text-datasets or a parameter set that lists them)")
        progress = not args.no_progress
        for name in [*image_sets, *text_sets]:
            data = load_retrieval_dataset(name, args.data_root)
            t0 = time.perf_counter()
            if args.command == "features":
                splits = [data.query] if data.same_split else [data.query, data.gallery]
                extract = image_features if name in image_sets else text_features
                for split in splits:
                    for kind in ("projected", "preproj"):
                        extract(bundle, split, kind,  # type: ignore[arg-type]
                                batch_size=args.feature_batch_size, progress=progress)
                what = f"{sum(len(x) for x in splits)} items"
            else:
                ov = name in text_sets
                run = invert_dataset(
                    bundle, data, queries=s.get("inversion_queries", DEFAULT_QUERIES),
                    subset_seed=s.get("subset_seed", 0),
                    steps=s.get("ovi_steps" if ov else "oti_steps"),
                    num_pseudo=s.get("num_pseudo_patches" if ov else "num_pseudo_tokens"),
                    seed=s.get("inversion_seed", 42),
                    batch_size=s.get("inversion_batch_size", 64),
                    feature_batch_size=args.feature_batch_size, num_threads=args.num_threads,
                    progress=progress)
                what = (f"{run.method} of {len(run.subset)} of {run.n_queries} queries, "
                        f"{'from the cache' if run.inverted.from_cache else 'computed'}")
            if dist.is_main():
                print(f"[isoclip.distributed] {args.command} {name}: {what} in "
                      f"{time.perf_counter() - t0:.1f} s on {dist.world_size()} process(es)",
                      flush=True)
    finally:
        dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
