"""The ``isoclip`` command: IsoCLIP on any open_clip model from the shell.

Subcommands (``isoclip <command> --help`` explains each):

- ``spectrum MODEL``: the singular values of Psi = W_iᵀW_t, their statistics, the paper's band
  and the automatic band; ``--plot FILE`` draws them, ``--json`` prints JSON.
- ``evaluate MODEL --dataset NAME[,NAME] --data-root DIR``: intra-modal retrieval per dataset
  with CLIP, IsoCLIP and the inversion baseline (OTI for images, OVI for captions); a table on
  stdout and one JSON result file per run.
- ``export MODEL --band ... -o FILE``: the filtered projectors as a safetensors file
  (:func:`isoclip.dropin.export_projectors`).
- ``book`` / ``reproduce PARAMS --data-root DIR``: the book's notebook runner and builds (the
  repository's ``make book`` / ``make reproduce``).

Exit codes: 0 success, 1 runtime error (a one-line message on stderr, e.g. missing weights or
data), 2 usage error (argparse's).

May import: every other layer (a top-level module).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["main", "parse_band"]

METHODS = ("clip", "isoclip", "oti")


class UsageError(Exception):
    """A bad argument found after parsing (exit code 2, like argparse's own errors)."""


def parse_band(text: str) -> str | tuple[int, int]:
    """``--band`` value: ``auto``, ``paper`` or ``K_TOP,K_BOTTOM`` (e.g. ``150,50``).

    Raises:
        argparse.ArgumentTypeError: anything else (argparse turns it into exit code 2).
    """
    t = text.strip().lower()
    if t in ("auto", "paper"):
        return t
    parts = t.replace(":", ",").split(",")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(
        f"expected 'auto', 'paper' or K_TOP,K_BOTTOM (two non-negative integers), got {text!r}")


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
    return items


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _methods(text: str) -> list[str]:
    items = [t.lower() for t in _csv(text)]
    unknown = [m for m in items if m not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    return items


def _load(args: argparse.Namespace) -> Any:
    from isoclip.models.loading import load_model

    return load_model(args.model, args.pretrained, device=args.device)


def _band_label(band: Any) -> str:
    return f"({band.k_top}, {band.k_bottom})"


# ---------------------------------------------------------------------------------------------
# spectrum

def _spectrum(args: argparse.Namespace) -> int:
    from isoclip.method.bands import PAPER_BANDS, paper_scaled_band
    from isoclip.method.operator import spectrum_stats, svd
    from isoclip.method.projectors import get_projectors
    from isoclip.selection.rules import select_band

    bundle = _load(args)
    P = get_projectors(bundle.model)
    dec = svd(P)
    stats = spectrum_stats(dec.S, window=min(32, max(2, dec.r // 4)))
    auto = select_band(P, "isotropy", dec=dec)
    paper: dict[str, Any] = {}
    for task in ("image", "text"):
        key = (args.model, bundle.pretrained or "", task)
        if key in PAPER_BANDS:
            b = paper_scaled_band(dec.r, args.model, bundle.pretrained or "", task)
            paper[task] = {"k_top": b.k_top, "k_bottom": b.k_bottom, "kept": b.kept(dec.r)}
    S = dec.S
    out: dict[str, Any] = {
        "model": args.model, "pretrained": bundle.pretrained,
        "d": P.d, "d_i": P.d_i, "d_t": P.d_t, "rank": dec.r,
        "image_linearized": P.image_linearized,
        "sigma_max": float(S[0]), "sigma_min": float(S[-1]),
        "condition_number": float(S[0] / S[-1]) if float(S[-1]) > 0 else float("inf"),
        "effective_rank": float(stats.effective_rank),
        "auto_band": {"k_top": auto.k_top, "k_bottom": auto.k_bottom, "kept": auto.kept(dec.r)},
        "paper_band": paper or None,
        "singular_values": [float(v) for v in S],
    }
    if args.plot:
        _plot_spectrum(S, auto, paper, f"{args.model} / {bundle.pretrained}", Path(args.plot))
        out["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.model} / {bundle.pretrained}: W_i [{P.d}, {P.d_i}], W_t [{P.d}, {P.d_t}], "
          f"Psi [{P.d_i}, {P.d_t}] of rank r = {dec.r}")
    print(f"  sigma_max {out['sigma_max']:.4g}  sigma_min {out['sigma_min']:.4g}  "
          f"condition number {out['condition_number']:.4g}  effective rank "
          f"{out['effective_rank']:.1f}")
    print(f"  automatic band (isotropy rule): (k_top, k_bottom) = {_band_label(auto)}, keeps "
          f"{auto.kept(dec.r)} of {dec.r}")
    if paper:
        for task, b in paper.items():
            print(f"  paper band ({task} retrieval): ({b['k_top']}, {b['k_bottom']}), keeps "
                  f"{b['kept']} of {dec.r}")
    else:
        print("  paper band: none for this backbone (known: "
              f"{sorted({(m, p) for m, p, _ in PAPER_BANDS})})")
    if args.plot:
        print(f"  figure: {args.plot}")
    return 0


def _plot_spectrum(S: Any, auto: Any, paper: dict[str, Any], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = int(S.shape[0])
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.semilogy(range(1, r + 1), S.numpy(), color="black", lw=1.2, label="σ_j of Ψ")
    ax.axvspan(auto.k_top + 0.5, r - auto.k_bottom + 0.5, color="tab:blue", alpha=0.15,
               label=f"automatic band {_band_label(auto)}")
    styles = {"image": "tab:red", "text": "tab:green"}
    for task, b in paper.items():
        for x in (b["k_top"] + 0.5, r - b["k_bottom"] + 0.5):
            ax.axvline(x, color=styles[task], ls="--", lw=1)
        ax.plot([], [], color=styles[task], ls="--",
                label=f"paper band, {task} ({b['k_top']}, {b['k_bottom']})")
    ax.set_xlabel("index j")
    ax.set_ylabel("singular value")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# evaluate

def _evaluate_one(bundle: Any, P: Any, dec: Any, band_spec: Any, name: str, modality: str,
                  data_root: str | None, methods: Sequence[str], oti_steps: int,
                  oti_per_class: int | None) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from isoclip.data.registry import load_dataset
    from isoclip.dropin import resolve_band
    from isoclip.evaluate.retrieval import FixedLabelRanker, evaluate
    from isoclip.evaluate.stats import balanced_subset, integer_labels
    from isoclip.method.bands import iso_projectors

    t0 = time.perf_counter()
    data = load_dataset(name, modality, data_root)  # type: ignore[arg-type]
    if data.gnd is not None:
        raise UsageError(f"dataset {name!r}: revisited Oxford/Paris (mAP per difficulty) is not "
                         "supported by `isoclip evaluate`; use the book's chapter 7")
    feats = _set_features(bundle, data)
    ql = integer_labels(data.query.labels)
    gl = integer_labels(data.gallery.labels)
    band = resolve_band(P, band_spec, dec=dec, model_name=bundle.name,
                        pretrained=bundle.pretrained, task=modality)
    row: dict[str, Any] = {"dataset": name, "modality": modality,
                           "n_query": int(feats.query.shape[0]),
                           "n_gallery": int(feats.gallery.shape[0]),
                           "same_split": data.same_split,
                           "band": {"k_top": band.k_top, "k_bottom": band.k_bottom},
                           "metrics": {}}
    if "clip" in methods:
        row["metrics"]["clip"] = evaluate(feats.query, feats.gallery, ql, gl, data.same_split)
    if "isoclip" in methods:
        Q = iso_projectors(P, band, dec)
        proj = Q.project_image if modality == "image" else Q.project_text
        row["metrics"]["isoclip"] = evaluate(proj(feats.query_pre), proj(feats.gallery_pre), ql,
                                             gl, data.same_split)
    if "oti" in methods:
        from isoclip.studies.inversion import invert

        rows = balanced_subset(ql, oti_per_class, 0)
        method: Literal["OTI", "OVI"] = "OTI" if modality == "image" else "OVI"
        run = invert(bundle, feats.query[rows], method, steps=oti_steps, progress=False)
        # rank the whole query set with the inverted rows substituted (same-split
        # self-exclusion unchanged), score the inverted rows: mAP over them, and CLIP's on
        # the same rows for comparison
        gn = F.normalize(feats.gallery.float(), dim=1)
        s = F.normalize(feats.query.float(), dim=1) @ gn.T
        clip_ap = FixedLabelRanker(ql, gl, data.same_split).per_query(s)["mAP"][rows]
        s[rows] = F.normalize(run.features.float(), dim=1) @ gn.T
        inv_ap = FixedLabelRanker(ql, gl, data.same_split).per_query(s)["mAP"][rows]
        ok = ~torch.isnan(inv_ap)
        row["metrics"]["oti"] = {"mAP": float(100.0 * inv_ap[ok].mean()),
                                 "mAP_clip_same_queries": float(100.0 * clip_ap[ok].mean()),
                                 "n_queries": int(ok.sum()), "inversion": method,
                                 "steps": oti_steps}
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


@dataclass
class _SetFeatures:
    query_pre: Any  # [Q, d_m] pre-projection features
    gallery_pre: Any  # [G, d_m]
    query: Any  # [Q, d] projected (the model's own features)
    gallery: Any  # [G, d]


def _set_features(bundle: Any, data: Any) -> _SetFeatures:
    """Pre-projection and projected features of a set's query and gallery (feature cache)."""
    from isoclip.data.base import TextDataset
    from isoclip.models.features import image_features, text_features

    def feats(ds: Any, kind: Literal["projected", "preproj"]) -> Any:
        if isinstance(ds, TextDataset):
            return text_features(bundle, ds, kind, progress=False)
        return image_features(bundle, ds, kind, progress=False)

    q_pre, q = feats(data.query, "preproj"), feats(data.query, "projected")
    if data.same_split:
        return _SetFeatures(q_pre, q_pre, q, q)
    return _SetFeatures(q_pre, feats(data.gallery, "preproj"), q, feats(data.gallery, "projected"))


def _table(rows: list[dict[str, Any]], methods: Sequence[str]) -> str:
    cols = ["dataset", "task", "band"] + [f"{m} mAP" for m in methods]
    if "clip" in methods:
        cols += ["clip R@1"]
    if "isoclip" in methods:
        cols += ["isoclip R@1"]
    lines = []
    for r in rows:
        cells = [r["dataset"], f"{r['modality']}→{r['modality']}",
                 f"({r['band']['k_top']}, {r['band']['k_bottom']})"]
        cells += [f"{r['metrics'][m]['mAP']:.2f}" for m in methods]
        for m in ("clip", "isoclip"):
            if m in methods:
                cells.append(f"{r['metrics'][m]['R@1']:.2f}")
        lines.append(cells)
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def _evaluate(args: argparse.Namespace) -> int:
    from isoclip.method.operator import svd
    from isoclip.method.projectors import get_projectors

    bundle = _load(args)
    P = get_projectors(bundle.model)
    dec = svd(P)
    t0 = time.perf_counter()
    rows = []
    for name in args.dataset:
        modality = args.modality or _dataset_modality(name)
        rows.append(_evaluate_one(bundle, P, dec, args.band, name, modality, args.data_root,
                                  args.method, args.oti_steps, args.oti_per_class))
    import open_clip
    import torch

    result = {
        "isoclip_version": _version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "isoclip " + " ".join(shlex.quote(a) for a in args.argv),
        "model": args.model, "pretrained": bundle.pretrained,
        "band": args.band if isinstance(args.band, str) else list(args.band),
        "methods": list(args.method), "data_root": args.data_root,
        "environment": {"python": sys.version.split()[0], "torch": torch.__version__,
                        "open_clip": open_clip.__version__, "device": str(bundle.device)},
        "seconds": round(time.perf_counter() - t0, 2),
        "results": rows,
    }
    out = Path(args.out) if args.out else _default_out(args.model, bundle.pretrained)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows, args.method))
    print(f"results: {out}")
    return 0


def _dataset_modality(name: str) -> str:
    from isoclip.data.registry import dataset_info, is_registered

    if not is_registered(name):
        raise UsageError(f"--dataset: unknown dataset {name!r} (see the book's reproduction "
                         "page for the registered names)")
    try:
        return str(dataset_info(name).modality)
    except ValueError:  # an embedded set: both sides exist, image retrieval by default
        return "image"


def _default_out(model: str, pretrained: str | None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = f"{model}_{pretrained or 'random'}".replace("/", "-").replace(":", "-")
    return Path("results") / f"isoclip_eval_{tag}_{stamp}.json"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("isoclip")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# export

def _export(args: argparse.Namespace) -> int:
    from isoclip.dropin import apply, export_projectors

    bundle = _load(args)
    iso = apply(bundle, args.band, task=args.task)
    path = export_projectors(iso, None, args.output)
    print(f"{path}: W_i {tuple(iso.W_i.shape)}, W_t {tuple(iso.W_t.shape)}, band "
          f"{_band_label(iso.band)} of r = {iso.rank} ({args.model} / {bundle.pretrained}); "
          f"{path.stat().st_size} bytes")
    return 0


# ---------------------------------------------------------------------------------------------
# book / reproduce

def _repository(given: str | None) -> Path:
    """The companion's repository: ``--repo``, else the current folder or a parent, else the
    checkout this package is installed from (editable install)."""
    def is_repo(p: Path) -> bool:
        return (p / "Makefile").is_file() and (p / "_config.yml").is_file() and (
            p / "notebooks").is_dir()

    if given:
        p = Path(given).expanduser().resolve()
        if not is_repo(p):
            raise RuntimeError(f"--repo {p}: not the companion's repository (needs Makefile, "
                               "_config.yml and notebooks/)")
        return p
    here = Path.cwd().resolve()
    for p in (here, *here.parents, Path(__file__).resolve().parent.parent):
        if is_repo(p):
            return p
    raise RuntimeError("the book needs the companion's repository (Makefile, _config.yml, "
                       "notebooks/): run from inside a clone or pass --repo DIR")


def _run_make(repo: Path, target: str, variables: dict[str, str], dry_run: bool) -> int:
    cmd = ["make", "-C", str(repo), target] + [f"{k}={v}" for k, v in variables.items() if v]
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if dry_run:
        return 0
    return subprocess.call(cmd)


def _book(args: argparse.Namespace) -> int:
    repo = _repository(args.repo)
    return _run_make(repo, "book", {"PARAMS": args.params}, args.dry_run)


def _reproduce(args: argparse.Namespace) -> int:
    repo = _repository(args.repo)
    root = Path(args.data_root).expanduser()
    if not root.is_dir():
        raise UsageError(f"--data-root {root}: no such folder (it holds the datasets in their "
                         "official layouts, see book/reproduce.md)")
    from isoclip.notebooks import load_params

    load_params(args.params)  # an unknown parameter set fails here, with the known ones
    variables = {"PARAMS": args.params, "DATA_ROOT": str(root.resolve())}
    if args.only:
        variables["REPRO_NOTEBOOKS"] = " ".join(args.only)
    if args.datasets:
        variables["DATASETS"] = args.datasets
    if args.text_datasets:
        variables["TEXT_DATASETS"] = args.text_datasets
    if args.jobs is not None:
        variables["REPRO_JOBS"] = str(args.jobs)
    return _run_make(repo, "reproduce", variables, args.dry_run)


# ---------------------------------------------------------------------------------------------
# parser

def _model_args(p: argparse.ArgumentParser, pretrained_required: bool = False) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="open_clip model name (ViT-B-32, ViT-B-16, ...), an isoclip tiny config "
                        "(isoclip-tiny-vit) or an hf-hub:/local-dir: identifier")
    p.add_argument("--pretrained", metavar="TAG", required=pretrained_required,
                   help="open_clip pretrained tag (openai, datacomp_xl_s13b_b90k, ...) or a "
                        "checkpoint file; omitted: random initialisation (seed 0). Offline, "
                        "set HF_HUB_OFFLINE=1 and put the weights in the Hugging Face cache")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``isoclip`` command."""
    ap = argparse.ArgumentParser(
        prog="isoclip",
        description="IsoCLIP (CVPR 2026) on any open_clip model: the spectrum of Psi = W_i^T W_t "
                    "and its bands, intra-modal retrieval with CLIP / IsoCLIP / OTI, the "
                    "filtered projectors as a file, and the companion book.",
        epilog="Exit codes: 0 success, 1 runtime error (missing weights or data, ...), 2 usage "
               "error. `isoclip COMMAND --help` explains each command.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("spectrum", help="singular values of Psi, the paper's and the automatic "
                       "band", description="Print the spectrum of Psi = W_i^T W_t of MODEL: its "
                       "rank, extreme singular values, condition number, effective rank, the "
                       "automatic band (isotropy rule, from the weights alone) and the paper's "
                       "band for that backbone when there is one.")
    _model_args(p)
    p.add_argument("--plot", metavar="FILE", help="write a figure of the spectrum and the bands "
                   "(PNG, PDF or SVG by the extension)")
    p.add_argument("--json", action="store_true", help="print JSON (with every singular value) "
                   "instead of text")
    p.set_defaults(func=_spectrum)

    p = sub.add_parser("evaluate", help="intra-modal retrieval per dataset: CLIP, IsoCLIP, OTI",
                       description="Intra-modal retrieval (image→image for image sets, "
                       "text→text for caption sets) on each dataset: mAP and R@k of CLIP "
                       "(the model's features), IsoCLIP (the filtered projectors) and the "
                       "inversion baseline (OTI for images, OVI for captions, on a class-"
                       "balanced query subset). Prints a table; writes one JSON file per run.")
    _model_args(p, pretrained_required=False)
    p.add_argument("--dataset", required=True, type=_csv, metavar="NAME[,NAME...]",
                   help="registered dataset names (cub2011, flickr30k_text, ...) or embedded "
                        "sets (synthetic/world)")
    p.add_argument("--data-root", metavar="DIR",
                   help="folder holding the paper's datasets in their official layouts")
    p.add_argument("--method", type=_methods, default=["clip", "isoclip"],
                   metavar="clip,isoclip,oti", help="methods (default: clip,isoclip; oti runs an "
                   "optimisation per query: slow)")
    p.add_argument("--band", type=parse_band, default="auto", metavar="auto|paper|K_TOP,K_BOTTOM",
                   help="IsoCLIP's band (default: auto); 'paper' is the paper's band of the "
                        "backbone for each dataset's task")
    p.add_argument("--modality", choices=("image", "text"),
                   help="task for embedded sets (default: the dataset's own; image for "
                        "embedded sets)")
    p.add_argument("--oti-steps", type=int, default=150, metavar="N",
                   help="optimisation steps of OTI/OVI (default 150)")
    p.add_argument("--oti-per-class", type=int, default=None, metavar="N",
                   help="inverted queries per class (default: all queries)")
    p.add_argument("--out", metavar="FILE.json", help="result file (default: "
                   "results/isoclip_eval_<model>_<tag>_<UTC time>.json)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("export", help="write the filtered projectors to a safetensors file",
                       description="Write IsoCLIP's filtered projectors W_i U_S U_S^T and "
                       "W_t V_S V_S^T of MODEL (with its biases and metadata) to FILE "
                       "(safetensors). Another code base applies them as features @ W.T (+ b) "
                       "to the model's pre-projection features.")
    _model_args(p)
    p.add_argument("--band", type=parse_band, default="auto", metavar="auto|paper|K_TOP,K_BOTTOM",
                   help="which singular directions to keep (default: auto)")
    p.add_argument("--task", choices=("image", "text"), default="image",
                   help="which paper band --band paper means (default: image)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the .safetensors file to write")
    p.set_defaults(func=_export)

    p = sub.add_parser("book", help="execute the notebooks and build the book (make book)",
                       description="Run the companion book's notebooks with a parameter set "
                       "and build the book strictly (the repository's `make book`).")
    p.add_argument("--params", default="default", help="parameter set (notebooks/params/)")
    p.add_argument("--repo", metavar="DIR", help="the companion's repository (default: the "
                   "current folder or a parent, else the installed checkout)")
    p.add_argument("--dry-run", action="store_true", help="print the command only")
    p.set_defaults(func=_book)

    p = sub.add_parser("reproduce", help="the real path: chapters on real models and datasets "
                       "(make reproduce)", description="Execute the chapters that take a model "
                       "and datasets with parameter set PARAMS and DATA_ROOT, into a separate "
                       "book (the repository's `make reproduce`).")
    p.add_argument("params", metavar="PARAMS",
                   help="parameter set name (vit-b-32-openai, ...) or a YAML path")
    p.add_argument("--data-root", required=True, metavar="DIR",
                   help="folder holding the datasets in their official layouts")
    p.add_argument("--only", nargs="*", metavar="NN", help="notebook numbers (default: the "
                   "Makefile's REPRO_NOTEBOOKS)")
    p.add_argument("--datasets", metavar="A,B", help="image sets of this run, comma-separated "
                   "(default: the parameter set's datasets)")
    p.add_argument("--text-datasets", metavar="A,B", help="caption sets of this run, "
                   "comma-separated (default: the parameter set's text_datasets)")
    p.add_argument("--jobs", type=_positive_int, metavar="N", help="chapters executed at once "
                   "(default 1: each loads the model and its features, so N multiplies the "
                   "memory of a large model)")
    p.add_argument("--repo", metavar="DIR", help="the companion's repository (as for book)")
    p.add_argument("--dry-run", action="store_true", help="print the command only")
    p.set_defaults(func=_reproduce)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 runtime error, 2 usage error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as e:  # --help (0) or a usage error (2)
        return int(e.code or 0)
    args.argv = args_list
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"isoclip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"isoclip {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line, not a traceback, for users
        print(f"isoclip {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
