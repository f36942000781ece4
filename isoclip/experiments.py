"""Standard metric sets computed by more than one chapter, on a synthetic world or any data.

These functions only compose :mod:`isoclip.features` and :mod:`isoclip.evaluate`; the
definitions live there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from .data.synthetic import SyntheticWorld
from .evaluate.classification import cosine_logits, evaluate_zero_shot, zero_shot_weights
from .evaluate.gap import gap_report
from .evaluate.retrieval import evaluate
from .features import FeatureKind, image_features, text_features
from .models import ModelBundle


@dataclass
class WorldFeatures:
    """Features of every split of a synthetic world (unnormalised).

    Attributes:
        query_images, gallery_images: [Nq, D], [Ng, D] image features.
        query_captions, gallery_captions: [Nq, D], [Ng, D] features of the images' captions.
        text_query, text_gallery: [Tq, D], [Tg, D] held-out-template caption features.
        kind: ``"projected"`` (shared space, dimension d) or ``"preproj"`` (d_i / d_t).
    """

    query_images: Tensor
    gallery_images: Tensor
    query_captions: Tensor
    gallery_captions: Tensor
    text_query: Tensor
    text_gallery: Tensor
    kind: FeatureKind


def world_features(bundle: ModelBundle, world: SyntheticWorld, kind: FeatureKind = "projected",
                   *, progress: bool = False) -> WorldFeatures:
    """Extract (or load from the cache) the features of every evaluation split of ``world``."""
    def img(ds):  # noqa: ANN001, ANN202
        return image_features(bundle, ds, kind, progress=progress)

    def txt(ds):  # noqa: ANN001, ANN202
        return text_features(bundle, ds, kind, progress=progress)

    return WorldFeatures(query_images=img(world.query), gallery_images=img(world.gallery),
                         query_captions=txt(world.query), gallery_captions=txt(world.gallery),
                         text_query=txt(world.text_query), text_gallery=txt(world.text_gallery),
                         kind=kind)


def calibration_indices(n_train: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """[n] sorted row indices into ``world.train`` of :func:`calibration_pairs`' pairs."""
    return np.sort(np.random.default_rng(seed).choice(n_train, n, replace=False))


def calibration_pairs(bundle: ModelBundle, world: SyntheticWorld, n: int = 1000,
                      seed: int = 0) -> tuple[Tensor, Tensor]:
    """Pre-projection features ([n, d_i], [n, d_t]) of ``n`` seeded training pairs (an image
    and its own caption): the calibration data of ``select_band(P, "agreement", ...)``.

    Drawn from ``world.train`` only, never from the query or gallery splits; no labels used.
    """
    from .data.base import ImageDataset  # noqa: PLC0415

    train = world.train
    if not 3 <= n <= len(train):
        raise ValueError(f"n: expected 3 <= n <= {len(train)} (training pairs), got {n}")
    if train.captions is None or not isinstance(train.images, np.ndarray):
        raise ValueError("world.train must hold images as an array and their captions")
    idx = calibration_indices(len(train), n, seed)
    sub = ImageDataset(images=train.images[idx], labels=train.labels[idx],
                       class_names=train.class_names, name=f"{train.name}[calib {n}, seed {seed}]",
                       captions=[train.captions[i] for i in idx])
    return (image_features(bundle, sub, "preproj", progress=False),
            text_features(bundle, sub, "preproj", progress=False))


def sanity_metrics(bundle: ModelBundle, world: SyntheticWorld) -> dict[str, float]:
    """Is it a CLIP? Zero-shot, cross-modal and intra-modal retrieval, gap and cone.

    Retrieval relevance is "same class" everywhere (captions name the class, not the scene).

    Keys (percent for accuracies and mAP):
        ``zero_shot_acc``, ``chance_acc``: zero-shot top-1 on the query images (prompt
        ensembles ``world.prompts``) and the chance level.
        ``i2t_R1``, ``i2t_mAP``: query images -> gallery captions.
        ``t2i_R1``, ``t2i_mAP``: query captions -> gallery images.
        ``i2i_mAP``: query images -> gallery images (intra-modal).
        ``t2t_mAP``: held-out-template captions -> held-out-template captions (intra-modal).
        ``gap``, ``true_pair_cos``, ``cone_image``, ``cone_text``: on the gallery images and
        their captions (:func:`isoclip.evaluate.gap.gap_report`).
    """
    f = world_features(bundle, world)
    ql, gl = world.query.labels, world.gallery.labels
    weights = zero_shot_weights(bundle, world.prompts, progress=False)
    zs = evaluate_zero_shot(f.query_images, weights, ql)
    i2t = evaluate(f.query_images, f.gallery_captions, ql, gl)
    t2i = evaluate(f.query_captions, f.gallery_images, ql, gl)
    i2i = evaluate(f.query_images, f.gallery_images, ql, gl)
    t2t = evaluate(f.text_query, f.text_gallery, world.text_query.labels, world.text_gallery.labels)
    g = gap_report(f.gallery_images, f.gallery_captions)
    return {
        "zero_shot_acc": zs["top1"],
        "chance_acc": 100.0 / len(world.class_names),
        "i2t_R1": i2t["R@1"],
        "i2t_mAP": i2t["mAP"],
        "t2i_R1": t2i["R@1"],
        "t2i_mAP": t2i["mAP"],
        "i2i_mAP": i2i["mAP"],
        "t2t_mAP": t2t["mAP"],
        "gap": g["gap"],
        "true_pair_cos": g["true_pair_cos"],
        "cone_image": g["intra_cos_image"],
        "cone_text": g["intra_cos_text"],
    }


_LABELS = {
    "zero_shot_acc": ("zero-shot top-1 accuracy (%)", "classification"),
    "chance_acc": ("chance level (%)", "classification"),
    "i2t_R1": ("image→text R@1 (%)", "cross-modal"),
    "i2t_mAP": ("image→text mAP", "cross-modal"),
    "t2i_mAP": ("text→image mAP", "cross-modal"),
    "i2i_mAP": ("image→image mAP", "intra-modal"),
    "t2t_mAP": ("text→text mAP", "intra-modal"),
    "gap": ("centroid gap ‖mean x − mean y‖", "geometry"),
    "true_pair_cos": ("mean true-pair cosine", "geometry"),
    "cone_image": ("mean image–image cosine (cone)", "geometry"),
    "cone_text": ("mean text–text cosine (cone)", "geometry"),
}


def sanity_table(metrics: dict[str, float]) -> pd.DataFrame:
    """:func:`sanity_metrics` as a readable two-level table."""
    rows = [{"group": _LABELS[k][1], "metric": _LABELS[k][0], "value": round(v, 3)}
            for k, v in metrics.items() if k in _LABELS]
    return pd.DataFrame(rows).set_index(["group", "metric"])


# ---------------------------------------------------------------------------------------------
# chapter 10: ablations (training-free baselines and band controls, isoclip.baselines)

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


def ablation_metrics(P: Any, query: Tensor, gallery: Tensor, query_labels: Any,
                     gallery_labels: Any, band: Any, modality: str, *,
                     seeds: Sequence[int] = (0, 1, 2, 3, 4), eps: float | None = None,
                     n_boot: int = 2000, boot_seed: int = 0) -> pd.DataFrame:
    """mAP of every ablation of :data:`ABLATION_ROWS` for one modality, and its paired
    difference with CLIP.

    Args:
        P: the model's projectors (``isoclip.projectors.get_projectors``).
        query, gallery: [Nq, k], [Ng, k] **pre-projection** features of one modality
            (k = d_i for ``"image"``, d_t for ``"text"``).
        query_labels, gallery_labels: [Nq], [Ng]; relevant = same label.
        band: IsoCLIP's :class:`isoclip.bands.Band` for this modality; it also defines the
            remove-top-only / remove-bottom-only bands and the random band's width.
        modality: ``"image"`` or ``"text"``.
        seeds: seeds of the random band (one draw each; the row reports mean and sd).
        eps: relative ridge of the ZCA whitening (None: ``baselines.ZCA_EPS``).
        n_boot, boot_seed: bootstrap of the paired differences with CLIP
            (:func:`isoclip.inversion_eval.paired_bootstrap` over the queries' AP).

    Returns:
        One row per ablation, in table order: ``modality, key, method, band, kept`` (number of
        singular directions kept, for band rows), ``mAP`` (mean over seeds for the random
        band), ``sd`` (sample sd over seeds; NaN elsewhere or with one seed), ``runs``, and
        ``delta, lo, hi``: mAP minus CLIP's with a 95 % paired bootstrap interval over the
        queries (for the random band, each query's AP is first averaged over the seeds).

    Raises:
        ValueError: no seeds, or the errors of :func:`isoclip.baselines.ablation_transforms`.
    """
    import torch

    from .bands import Band, iso_projectors
    from .baselines import ZCA_EPS, ablation_transforms, projected, random_band_projectors
    from .evaluate.retrieval import query_metrics
    from .inversion_eval import paired_bootstrap

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed for the random band")
    r = min(P.d_i, P.d_t)
    kept = band.kept(r)
    transforms = dict(ablation_transforms(P, band, modality, eps=ZCA_EPS if eps is None else eps))
    transforms["full_band"] = projected(iso_projectors(P, Band(0, 0)), modality)
    bands = {"drop_top_only": (f"({band.k_top}, 0)", r - band.k_top),
             "drop_bottom_only": (f"(0, {band.k_bottom})", r - band.k_bottom),
             "random_band": (f"random {kept}-dim", kept), "full_band": ("(0, 0)", r),
             "isoclip": (f"({band.k_top}, {band.k_bottom})", kept)}

    def ap(transform: Any) -> Tensor:  # per-query AP in percent, NaN: no relevant item
        return 100.0 * query_metrics(*transform(query, gallery), query_labels,
                                     gallery_labels)["mAP"]

    rows = []
    clip_ap = ap(transforms["clip"])
    for key, label in ABLATION_ROWS:
        if key == "random_band":
            per_seed = [ap(projected(random_band_projectors(P, band, s), modality))
                        for s in seeds]
            values = [float(np.nanmean(a.numpy())) for a in per_seed]
            per_query = torch.stack(per_seed).mean(0)
        else:
            per_query = clip_ap if key == "clip" else ap(transforms[key])
            values = [float(np.nanmean(per_query.numpy()))]
        diff = paired_bootstrap(clip_ap, per_query, n_boot=n_boot, seed=boot_seed)
        text, k = bands.get(key, ("", None))
        rows.append({"modality": modality, "key": key, "method": label, "band": text,
                     "kept": k, "mAP": float(np.mean(values)),
                     "sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                     "runs": len(values), "delta": diff["delta"], "lo": diff["lo"],
                     "hi": diff["hi"]})
    return pd.DataFrame(rows)


def ablation_study(bundle: ModelBundle, world: SyntheticWorld, *, image_band: Any = None,
                   text_band: Any = None, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                   eps: float | None = None) -> pd.DataFrame:
    """:func:`ablation_metrics` for image→image (query → gallery images) and text→text
    (held-out-template captions) on a synthetic world, concatenated.

    ``image_band`` / ``text_band`` default to the paper's ViT-B/32 image-image and text-text
    bands scaled to the rank of Psi (:func:`isoclip.bands.paper_scaled_band`).
    """
    from .bands import paper_scaled_band
    from .projectors import get_projectors

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
        ablation_metrics(P, f.text_query, f.text_gallery, tql, tgl, text_band, "text",
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


# ---------------------------------------------------------------------------------------------
# chapter 9: latency beside the paper's figures

#: Per-query latencies attributed to the IsoCLIP paper (ms, on a GPU whose model our sources do
#: not name). From a secondary summary, **unverified** against the paper (papers.md A.e).
PAPER_LATENCY_MS: dict[tuple[str, str], float] = {
    ("CLIP", "image"): 7.0,
    ("IsoCLIP", "image"): 7.0,
    ("OTI", "image"): 1879.0,
}


def latency_comparison(summary: pd.DataFrame,
                       paper: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    """Our per-query latencies beside the paper's.

    Args:
        summary: :func:`isoclip.latency.summarize_latency` output.
        paper: (method, query) -> ms (default :data:`PAPER_LATENCY_MS`).

    Returns:
        One row per (query, method) of ``summary``, same order: ``query, method, steps,
        ours_ms`` (``per_query_ms``), ``iqr_ms``, ``extrapolated``, ``ours_vs_clip`` (ours /
        CLIP's for the same query modality), ``paper_ms`` and ``paper_vs_clip`` (NaN where the
        paper has no figure).
    """
    paper = PAPER_LATENCY_MS if paper is None else paper
    rows = []
    clip = {q: float(g.loc[g["method"] == "CLIP", "per_query_ms"].iloc[0])
            for q, g in summary.groupby("query") if (g["method"] == "CLIP").any()}
    for row in summary.itertuples(index=False):
        p = paper.get((row.method, row.query), float("nan"))
        p_clip = paper.get(("CLIP", row.query), float("nan"))
        base = clip.get(row.query, float("nan"))
        rows.append({"query": row.query, "method": row.method,
                     "steps": int(row.steps_reported), "ours_ms": float(row.per_query_ms),
                     "iqr_ms": float(row.iqr_ms), "extrapolated": bool(row.extrapolated),
                     "ours_vs_clip": float(row.per_query_ms) / base, "paper_ms": p,
                     "paper_vs_clip": p / p_clip})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# chapters 7 and 8: several methods on the same items, paired differences with a baseline

def _paired_columns(name: str, baseline: str, base: Any, values: Any, n_boot: int,
                    seed: int) -> dict[str, float]:
    """``delta, lo, hi`` of ``values − base`` (paired bootstrap); NaN on the baseline's row."""
    from .inversion_eval import paired_bootstrap

    if name == baseline:
        return {"delta": float("nan"), "lo": float("nan"), "hi": float("nan")}
    d = paired_bootstrap(base, values, n_boot=n_boot, seed=seed)
    return {"delta": d["delta"], "lo": d["lo"], "hi": d["hi"]}


def _check_baseline(baseline: str, methods: dict[str, Any]) -> None:
    if baseline not in methods:
        raise ValueError(f"baseline {baseline!r} not among the methods {list(methods)}")


def compare_retrieval(methods: dict[str, tuple[Tensor, Tensor]], query_labels: Any,
                      gallery_labels: Any, *, baseline: str = "CLIP", n_boot: int = 2000,
                      seed: int = 0) -> pd.DataFrame:
    """Retrieval metrics of several methods on the same queries, with the paired difference in
    mAP against ``baseline``.

    Args:
        methods: name -> (query features [Q, .], gallery features [G, .]); every method ranks
            the same Q queries against the same G gallery items (the features may differ,
            e.g. an inverted query against the other modality's gallery).
        query_labels, gallery_labels: [Q], [G]; relevant = same label.
        baseline: the name in ``methods`` the differences are taken against.
        n_boot, seed: :func:`isoclip.inversion_eval.paired_bootstrap` over the queries' AP.

    Returns:
        One row per method, in the order of ``methods``: ``method, queries, mAP, mAP@R, P@R,
        R@1`` (percent) and ``delta, lo, hi`` (mAP minus the baseline's with a 95 % paired
        bootstrap interval; NaN on the baseline's row).

    Raises:
        ValueError: ``baseline`` not in ``methods``.
    """
    from .evaluate.retrieval import query_metrics

    _check_baseline(baseline, methods)
    ql, gl = np.array(query_labels), np.array(gallery_labels)
    per = {name: query_metrics(q, g, ql, gl, ks=(1,)) for name, (q, g) in methods.items()}
    base = 100.0 * per[baseline]["mAP"]
    rows = []
    for name, m in per.items():
        ok = ~m["mAP"].isnan()
        row = {"method": name, "queries": int(ok.sum())}
        for k in ("mAP", "mAP@R", "P@R", "R@1"):
            row[k] = 100.0 * float(m[k][ok].mean())
        row.update(_paired_columns(name, baseline, base, 100.0 * m["mAP"], n_boot, seed))
        rows.append(row)
    return pd.DataFrame(rows)


def correct_top1(logits: Tensor, labels: Any) -> Tensor:
    """Per-item top-1 correctness in percent: [N] float64, 100 where ``argmax`` hits the label
    (ties go to the lowest class index, as ``torch.argmax``)."""
    import torch

    y = (labels.detach().cpu() if isinstance(labels, Tensor)
         else torch.as_tensor(np.array(labels))).long()
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError(f"logits [N, C] and labels [N] expected, got {tuple(logits.shape)} and "
                         f"{tuple(y.shape)}")
    return 100.0 * (logits.argmax(1) == y).double()


def compare_accuracy(correct: dict[str, Tensor], *, baseline: str, n_boot: int = 2000,
                     seed: int = 0) -> pd.DataFrame:
    """Top-1 accuracy of several classifiers on the same items, with the paired difference
    against ``baseline``.

    Args:
        correct: name -> [N] per-item correctness in percent (:func:`correct_top1`).
        baseline: the name the differences are taken against.
        n_boot, seed: :func:`isoclip.inversion_eval.paired_bootstrap` over the items.

    Returns:
        One row per classifier: ``method, n, top1, delta, lo, hi`` (points; NaN on the
        baseline's row).
    """
    _check_baseline(baseline, correct)
    rows = []
    for name, c in correct.items():
        row = {"method": name, "n": len(c), "top1": float(c.double().mean())}
        row.update(_paired_columns(name, baseline, correct[baseline], c, n_boot, seed))
        rows.append(row)
    return pd.DataFrame(rows)


def ncm_correct(train: Tensor, train_labels: Any, test: Tensor, test_labels: Any, *,
                project: Any = None, n_classes: int | None = None) -> Tensor:
    """Per-test-item correctness (percent) of the nearest class mean: prototypes are means of
    the **unnormalised** ``train`` features; ``project`` (e.g. ``iso.project_image`` for
    iso-NCM on pre-projection features) maps prototypes and test features before the cosine.
    Its mean equals :func:`isoclip.evaluate.classification.evaluate_ncm` (no ``project``) or
    ``evaluate_iso_ncm`` (with the projectors' ``project_image``)."""
    from .evaluate.classification import ncm_logits

    return correct_top1(ncm_logits(train, train_labels, test, n_classes, project), test_labels)


def relative_gain(value: Any, baseline: Any) -> Any:
    """Gain of ``value`` over ``baseline`` in percent of the baseline: ``100 (v - b) / b``."""
    return 100.0 * (np.asarray(value, dtype=float) - np.asarray(baseline, dtype=float)) \
        / np.asarray(baseline, dtype=float)


def classification_study(bundle: ModelBundle, world: SyntheticWorld, bands: dict[str, Any], *,
                         train_per_class: int | None = None, subset_seed: int = 0,
                         n_boot: int = 2000) -> dict[str, Any]:
    """Zero-shot, NCM and iso-NCM (one per band) on the query images of ``world``.

    Args:
        bundle, world: the model and the synthetic world.
        bands: label -> :class:`isoclip.bands.Band` of an iso-NCM row each.
        train_per_class: training images per class for the prototypes
            (:func:`isoclip.inversion_eval.balanced_subset`; None: the whole train split).
        subset_seed: seed of that subset and of the bootstrap.
        n_boot: bootstrap resamples.

    Returns:
        ``{"table"``: :func:`compare_accuracy` against ``"NCM"`` with rows ``zero-shot``,
        ``NCM`` and ``iso-NCM (<label>)``; ``"correct"``: name -> [N] correctness;
        ``"n_train"``: prototypes' training images; ``"weights"``: zero-shot class weights}.
    """
    from .bands import iso_projectors
    from .inversion_eval import balanced_subset
    from .projectors import get_projectors

    train_labels = np.array(world.train.labels)
    idx = balanced_subset(train_labels, train_per_class, subset_seed).numpy()
    tr_proj = image_features(bundle, world.train, "projected", progress=False)[idx]
    tr_pre = image_features(bundle, world.train, "preproj", progress=False)[idx]
    te_proj = image_features(bundle, world.query, "projected", progress=False)
    te_pre = image_features(bundle, world.query, "preproj", progress=False)
    ytr, yte = train_labels[idx], np.array(world.query.labels)
    c = len(world.class_names)
    weights = zero_shot_weights(bundle, world.prompts, progress=False)
    P = get_projectors(bundle.model)
    correct = {"zero-shot": correct_top1(cosine_logits(te_proj, weights), yte),
               "NCM": ncm_correct(tr_proj, ytr, te_proj, yte, n_classes=c)}
    for label, band in bands.items():
        iso = iso_projectors(P, band).to(te_pre.dtype)
        correct[f"iso-NCM ({label})"] = ncm_correct(tr_pre, ytr, te_pre, yte,
                                                    project=iso.project_image, n_classes=c)
    table = compare_accuracy(correct, baseline="NCM", n_boot=n_boot, seed=subset_seed)
    return {"table": table, "correct": correct, "n_train": len(idx), "weights": weights}


def intra_modal_retrieval_study(bundle: ModelBundle, world: SyntheticWorld, study: Any,
                                image_bands: dict[str, Any], text_bands: dict[str, Any], *,
                                n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Image→image and text→text retrieval of CLIP, the inversion (OTI / OVI, from chapter 3's
    :class:`isoclip.inversion_eval.InversionStudy`) and IsoCLIP with several bands.

    Args:
        bundle, world: the model and the world the study was run on.
        study: :func:`isoclip.inversion_eval.inversion_study` output (its inverted features and
            query subsets are reused, nothing is re-inverted).
        image_bands, text_bands: label -> :class:`isoclip.bands.Band` of an IsoCLIP row each,
            e.g. ``{"automatic": ..., "oracle": ..., "paper-scaled": ...}``.
        n_boot, seed: paired bootstrap of the differences with CLIP.

    Returns:
        :func:`compare_retrieval` rows with ``task`` (``"image→image"``/``"text→text"``),
        ``scope`` (``"inverted subset"``: the queries OTI/OVI inverted, every method;
        ``"all queries"``: every query, no inversion row) and ``band`` (``"(k_top, k_bottom)"``
        for IsoCLIP rows, empty otherwise) prepended.
    """
    from .bands import iso_projectors
    from .projectors import get_projectors

    f = world_features(bundle, world, "projected")
    pre = world_features(bundle, world, "preproj")
    P = get_projectors(bundle.model)
    specs = (
        ("image→image", "OTI", study.oti.features, study.image_subset, f.query_images,
         f.gallery_images, pre.query_images, pre.gallery_images, world.query.labels,
         world.gallery.labels, image_bands, "image"),
        ("text→text", "OVI", study.ovi.features, study.text_subset, f.text_query,
         f.text_gallery, pre.text_query, pre.text_gallery, world.text_query.labels,
         world.text_gallery.labels, text_bands, "text"),
    )
    out = []
    for task, inv, inv_feats, sub, q, g, pq, pg, ql, gl, bands, mod in specs:
        ql, gl, sub = np.array(ql), np.array(gl), sub.numpy()
        iso = {}
        for label, band in bands.items():
            Pb = iso_projectors(P, band).to(pq.dtype)
            proj = Pb.project_image if mod == "image" else Pb.project_text
            iso[f"IsoCLIP ({label})"] = (proj(pq).detach(), proj(pg).detach(), band)
        band_text = {name: f"({b.k_top}, {b.k_bottom})" for name, (_, _, b) in iso.items()}
        for scope in ("inverted subset", "all queries"):
            rows = sub if scope == "inverted subset" else np.arange(len(ql))
            methods = {"CLIP": (q[rows], g)}
            if scope == "inverted subset":
                methods[inv] = (inv_feats, g)
            methods.update({name: (iq[rows], ig) for name, (iq, ig, _) in iso.items()})
            t = compare_retrieval(methods, ql[rows], gl, n_boot=n_boot, seed=seed)
            t.insert(0, "band", t["method"].map(band_text).fillna(""))
            t.insert(0, "scope", scope)
            t.insert(0, "task", task)
            out.append(t)
    return pd.concat(out, ignore_index=True)
