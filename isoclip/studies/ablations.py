"""Ablations of IsoCLIP's band (the IsoCLIP paper's ablation table): training-free
baselines (whitening, pre-projection, mean-centring) and band controls (only-top,
only-bottom, random band), on the same queries with paired intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from isoclip.common.types import Modality
from isoclip.data.world.synthetic import SyntheticWorld
from isoclip.models.loading import ModelBundle
from isoclip.studies.world import world_features

__all__ = ["ABLATION_ROWS", "ablation_metrics", "ablation_study", "ablation_table"]


#: Rows of the ablation table: (key, label). Keys of ``baselines.ablation_transforms`` plus
#: ``"full_band"`` (IsoCLIP with the band (0, 0), which must equal CLIP).
ABLATION_ROWS: tuple[tuple[str, str], ...] = (
    ("clip", "CLIP"),
    ("pre_projection", "pre-projection features f"),
    ("mean_centred", "mean-centred"),
    ("zca", "ZCA whitening"),
    ("drop_top_only", "remove top band only"),
    ("drop_bottom_only", "remove bottom band only"),
    ("random_band", "random band, same width"),
    ("full_band", "full band (0, 0)"),
    ("isoclip", "IsoCLIP"),
)


def ablation_ap(P: Any, query: Tensor, gallery: Tensor, query_labels: Any,
                gallery_labels: Any, band: Any, modality: Modality, *,
                seeds: Sequence[int] = (0, 1, 2, 3, 4), eps: float | None = None,
                same_split: bool = False,
                ap_of: Callable[[Tensor, Tensor], Tensor] | None = None
                ) -> tuple[dict[str, Tensor], list[float]]:
    """Per-query AP (percent) of every ablation of :data:`ABLATION_ROWS` for one modality.

    Args:
        P, query, gallery, query_labels, gallery_labels, band, modality, seeds, eps: as in
            :func:`ablation_metrics`.
        same_split: query i is gallery item i (all→all, CUB): removed from its own ranking.
        ap_of: ``(query', gallery') -> [Nq]`` per-query AP in percent of transformed features
            (default: :func:`isoclip.evaluate.retrieval.query_metrics` with the labels and
            ``same_split``); e.g. a revisited Oxford/Paris setting (:func:`revisited_ap`).

    Returns:
        ``(ap, random_means)``: key -> [Nq] float64 AP (NaN: no relevant item; the random band
        averaged over the seeds, query by query) and the random band's mAP of each seed.

    Raises:
        ValueError: no seeds, or the errors of
            :func:`isoclip.baselines.whitening.ablation_transforms`.
    """
    import torch

    from isoclip.baselines.whitening import (
        ZCA_EPS,
        ablation_transforms,
        projected,
        random_band_projectors,
    )
    from isoclip.evaluate.retrieval import query_metrics
    from isoclip.method.bands import Band, iso_projectors

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed for the random band")
    transforms = dict(ablation_transforms(P, band, modality, eps=ZCA_EPS if eps is None else eps))
    transforms["full_band"] = projected(iso_projectors(P, Band(0, 0)), modality)

    def ap(q: Tensor, g: Tensor) -> Tensor:
        if ap_of is not None:
            return ap_of(q, g)
        return 100.0 * query_metrics(q, g, query_labels, gallery_labels, same_split)["mAP"]

    out: dict[str, Tensor] = {}
    means: list[float] = []
    for key, _ in ABLATION_ROWS:
        if key == "random_band":
            per_seed = [ap(*projected(random_band_projectors(P, band, s), modality)(query, gallery))
                        for s in seeds]
            means = [float(np.nanmean(a.numpy())) for a in per_seed]
            out[key] = torch.stack(per_seed).mean(0)
        else:
            out[key] = ap(*transforms[key](query, gallery))
    return out, means


def ablation_rows(ap: Mapping[str, Tensor], random_means: Sequence[float], band: Any, r: int,
                  modality: Modality, *, n_boot: int = 2000, boot_seed: int = 0
                  ) -> pd.DataFrame:
    """The table rows of :func:`ablation_metrics` from per-query AP (:func:`ablation_ap`):
    mAP (the random band: mean and sample sd over its seeds), and the paired difference with
    CLIP with its 95 % bootstrap interval over the queries."""
    from isoclip.evaluate.stats import paired_bootstrap

    kept = band.kept(r)
    bands = {"drop_top_only": (f"({band.k_top}, 0)", r - band.k_top),
             "drop_bottom_only": (f"(0, {band.k_bottom})", r - band.k_bottom),
             "random_band": (f"random {kept}-dim", kept), "full_band": ("(0, 0)", r),
             "isoclip": (f"({band.k_top}, {band.k_bottom})", kept)}
    rows = []
    for key, label in ABLATION_ROWS:
        per_query = ap[key]
        values = list(random_means) if key == "random_band" else \
            [float(np.nanmean(per_query.numpy()))]
        diff = paired_bootstrap(ap["clip"], per_query, n_boot=n_boot, seed=boot_seed)
        text, k = bands.get(key, ("", None))
        rows.append({"modality": modality, "key": key, "method": label, "band": text,
                     "kept": k, "mAP": float(np.mean(values)),
                     "sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                     "runs": len(values), "delta": diff["delta"], "lo": diff["lo"],
                     "hi": diff["hi"]})
    return pd.DataFrame(rows)


def ablation_metrics(P: Any, query: Tensor, gallery: Tensor, query_labels: Any,
                     gallery_labels: Any, band: Any, modality: Modality, *,
                     seeds: Sequence[int] = (0, 1, 2, 3, 4), eps: float | None = None,
                     n_boot: int = 2000, boot_seed: int = 0, same_split: bool = False,
                     ap_of: Callable[[Tensor, Tensor], Tensor] | None = None) -> pd.DataFrame:
    """mAP of every ablation of :data:`ABLATION_ROWS` for one modality, and its paired
    difference with CLIP.

    Args:
        P: the model's projectors (``isoclip.method.projectors.get_projectors``).
        query, gallery: [Nq, k], [Ng, k] **pre-projection** features of one modality
            (k = d_i for ``"image"``, d_t for ``"text"``).
        query_labels, gallery_labels: [Nq], [Ng]; relevant = same label.
        band: IsoCLIP's :class:`isoclip.method.bands.Band` for this modality; it also defines the
            remove-top-only / remove-bottom-only bands and the random band's width.
        modality: ``"image"`` or ``"text"``.
        seeds: seeds of the random band (one draw each; the row reports mean and sd).
        eps: relative ridge of the ZCA whitening (None: ``baselines.ZCA_EPS``).
        n_boot, boot_seed: bootstrap of the paired differences with CLIP
            (:func:`isoclip.evaluate.stats.paired_bootstrap` over the queries' AP).
        same_split, ap_of: as in :func:`ablation_ap`.

    Returns:
        One row per ablation, in table order: ``modality, key, method, band, kept`` (number of
        singular directions kept, for band rows), ``mAP`` (mean over seeds for the random
        band), ``sd`` (sample sd over seeds; NaN elsewhere or with one seed), ``runs``, and
        ``delta, lo, hi``: mAP minus CLIP's with a 95 % paired bootstrap interval over the
        queries (for the random band, each query's AP is first averaged over the seeds).

    Raises:
        ValueError: no seeds, or the errors of :func:`isoclip.baselines.whitening.ablation_transforms`.
    """
    ap, means = ablation_ap(P, query, gallery, query_labels, gallery_labels, band, modality,
                            seeds=seeds, eps=eps, same_split=same_split, ap_of=ap_of)
    return ablation_rows(ap, means, band, min(P.d_i, P.d_t), modality, n_boot=n_boot,
                         boot_seed=boot_seed)


def ablation_study(bundle: ModelBundle, world: SyntheticWorld, *, image_band: Any = None,
                   text_band: Any = None, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                   eps: float | None = None) -> pd.DataFrame:
    """:func:`ablation_metrics` for image→image (query → gallery images) and text→text
    (held-out-template captions) on a synthetic world, concatenated.

    ``image_band`` / ``text_band`` default to the paper's ViT-B/32 image-image and text-text
    bands scaled to the rank of Psi (:func:`isoclip.method.bands.paper_scaled_band`).
    """
    from isoclip.method.bands import paper_scaled_band
    from isoclip.method.projectors import get_projectors

    P = get_projectors(bundle.model)
    r = min(P.d_i, P.d_t)
    image_band = image_band or paper_scaled_band(r, task="image")
    text_band = text_band or paper_scaled_band(r, task="text")
    f = world_features(bundle, world, "preproj")
    # labels copied: the world's arrays are read-only, which torch.from_numpy warns about
    ql, gl = np.array(world.query.labels), np.array(world.gallery.labels)
    tql, tgl = np.array(world.text_query.labels), np.array(world.text_gallery.labels)
    return pd.concat([
        ablation_metrics(P, f.query_images, f.gallery_images, ql, gl, image_band, "image",
                         seeds=seeds, eps=eps),
        ablation_metrics(P, *f.text_task(), tql, tgl, text_band, "text",
                         seeds=seeds, eps=eps),
    ], ignore_index=True)


def ablation_table(tidy: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """:func:`ablation_study` output as the book's table: one row per method and, per task, a
    band, an mAP (``mean ± sd`` for the random band) and a ``Δ vs CLIP [95 % interval]``
    column (empty for CLIP itself)."""
    def fmt(row: pd.Series) -> str:
        value = f"{row['mAP']:.{digits}f}"
        return value if np.isnan(row["sd"]) else f"{value} ± {row['sd']:.{digits}f}"

    def fmt_delta(row: pd.Series) -> str:
        if row["key"] == "clip":
            return ""
        return f"{row['delta']:+.{digits}f} [{row['lo']:+.{digits}f}, {row['hi']:+.{digits}f}]"

    names = {"image": "image→image", "text": "text→text"}
    out = pd.DataFrame(index=pd.Index([label for _, label in ABLATION_ROWS], name="method"))
    for modality, grp in tidy.groupby("modality", sort=False):
        g = grp.set_index("method")
        name = names.get(modality, modality)
        out[f"{name} band"] = g["band"]
        out[f"{name} mAP"] = g.apply(fmt, axis=1)
        out[f"{name} Δ vs CLIP"] = g.apply(fmt_delta, axis=1)
    return out.dropna(how="all")
