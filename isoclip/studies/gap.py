"""The modality gap and the training-time fixes (chapters 2 and 11).

Chapter 2 (Liang et al. 2022, Secs. 2.1 and 4.2; book notation page, eq-gap, eq-shift): the gap,
true-pair cosine and cone of a model; Liang's shift x' = normalize(x̂ − λΔ),
y' = normalize(ŷ + λΔ) with the contrastive loss at several temperatures and the zero-shot
accuracy as functions of λ; the gap against τ.

Chapter 11: one row of metrics per training variant (:mod:`isoclip.training.variants`), the gap vs
V-measure trade-off under Liang's shift (ModGap Fig. 1 analogue), Cross-the-Gap's τ table
analogue (intra-modal vs OTI), and the operator of SharedCLIP.

Everything here composes :mod:`isoclip.evaluate`, :mod:`isoclip.models.features`,
:mod:`isoclip.method.bands` and :mod:`isoclip.studies.inversion`; the definitions live there.

Data used, on a synthetic world (relevance is always "same class"):

- paired set: the **gallery** images and their captions (gap, true-pair cosine, cone, loss
  under the shift, V-measure and kNN on the stacked ``[text; image]`` embeddings);
- zero-shot: the **query** images against the class prompts;
- cross-modal R@1: query images → gallery captions;
- intra-modal mAP: query → gallery images, held-out-template caption queries → captions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from isoclip.baselines.losses import clip_loss
from isoclip.data.world.synthetic import SyntheticWorld
from isoclip.evaluate.classification import evaluate_zero_shot
from isoclip.evaluate.clustering import evaluate_clustering, evaluate_mixed_knn
from isoclip.evaluate.gap import centroid_gap, gap_vector, shift_gap, shift_rows
from isoclip.evaluate.retrieval import evaluate
from isoclip.evaluate.stats import compare_retrieval
from isoclip.models.loading import ModelBundle
from isoclip.studies.world import WorldFeatures, sanity_metrics, world_features

if TYPE_CHECKING:  # matplotlib is imported by the figure functions only
    from matplotlib.figure import Figure

__all__ = [
    "OTI_GAP_ROWS",
    "VARIANT_COLUMNS",
    "apply_shift",
    "gap_by_temperature",
    "shared_operator_check",
    "shift_grid",
    "shift_loss_curves",
    "shift_metrics",
    "tau_inversion_table",
    "variant_metrics",
]


# ---------------------------------------------------------------------------------------------
# Liang's shift

#: One side of Liang's shift with a given Δ (:func:`isoclip.evaluate.gap.shift_rows`).
apply_shift = shift_rows


def shift_grid(lam_min: float, lam_max: float, lam_step: float) -> list[float]:
    """The shifts λ from ``lam_min`` to ``lam_max`` (inclusive) in steps of ``lam_step``,
    rounded to 6 decimals so that 0 and 0.5 are exact grid points."""
    if not lam_step > 0 or lam_max < lam_min:
        raise ValueError(f"lam_step must be > 0 and lam_max >= lam_min, got lam_min={lam_min}, "
                         f"lam_max={lam_max}, lam_step={lam_step}")
    return [float(v) for v in np.round(np.arange(lam_min, lam_max + lam_step / 2, lam_step), 6)]


def _batched_clip_loss(x: Tensor, y: Tensor, tau: float, batch_size: int) -> float:
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x, y: need at least 2 pairs, got {n}")
    scale = torch.tensor(1.0 / tau, dtype=x.dtype)
    losses, weights = [], []
    for a in range(0, n, batch_size):
        xb, yb = x[a:a + batch_size], y[a:a + batch_size]
        if xb.shape[0] < 2:
            continue
        losses.append(float(clip_loss(xb, yb, scale)))
        weights.append(xb.shape[0])
    return float(np.average(losses, weights=weights))


def shift_loss_curves(image: Any, text: Any, lambdas: Sequence[float], taus: Sequence[float],
                      batch_size: int = 256) -> pd.DataFrame:
    """CLIP's contrastive loss of the shifted paired embeddings, per λ and τ (Liang Fig. 4).

    Args:
        image, text: paired [N, d] embeddings (row i describes the same item).
        lambdas: shift amounts (0 = as trained, 0.5 = centroids meet before renormalising,
            negative = a wider gap).
        taus: temperatures at which the loss is evaluated (the embeddings do not change).
        batch_size: the loss is ½(CE + CE) over consecutive batches of this many pairs
            (the training batch), averaged weighted by batch size.

    Returns:
        One row per (λ, τ): ``lam, tau, gap`` (after the shift), ``loss``.
    """
    rows = []
    for lam in lambdas:
        xs, ys = shift_gap(image, text, lam)
        gap = centroid_gap(xs, ys)
        for tau in taus:
            rows.append({"lam": float(lam), "tau": float(tau), "gap": gap,
                         "loss": _batched_clip_loss(xs, ys, float(tau), batch_size)})
    return pd.DataFrame(rows)


def shift_metrics(f: WorldFeatures, world: SyntheticWorld, class_weights: Tensor,
                  lambdas: Sequence[float], *, clustering: bool = True,
                  n_clusters: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Downstream metrics as the gap is shifted by λ (Liang §4.3; ModGap Fig. 1 analogue).

    Δ is the gap vector of the paired gallery set (gallery images, their captions); every
    image row (gallery and query images) moves by −λΔ, every text row (captions, class
    weights) by +λΔ, then is renormalised.

    Returns:
        One row per λ: ``lam, gap, true_pair_cos`` (gallery pairs), ``zero_shot_acc`` (query
        images vs shifted class weights), ``i2t_R1`` (query images → gallery captions, class
        relevance) and, with ``clustering``, ``v_measure`` and ``knn_acc`` (ModGap protocol on
        the gallery pairs, :func:`variant_metrics`). Percent for accuracies.
    """
    gi, gc = f.gallery_images, f.gallery_captions
    delta = gap_vector(gi, gc)
    ql, gl = np.array(world.query.labels), np.array(world.gallery.labels)
    rows = []
    for lam in lambdas:
        x, y = apply_shift(gi, delta, lam, "image"), apply_shift(gc, delta, lam, "text")
        q = apply_shift(f.query_images, delta, lam, "image")
        w = apply_shift(class_weights, delta, lam, "text")
        row = {"lam": float(lam), "gap": centroid_gap(x, y),
               "true_pair_cos": float((x * y).sum(1).mean()),
               "zero_shot_acc": evaluate_zero_shot(q.float(), w.float(), ql)["top1"],
               "i2t_R1": evaluate(q.float(), y.float(), ql, gl)["R@1"]}
        if clustering:
            row["v_measure"] = evaluate_clustering(x.float(), y.float(), gl,
                                                   n_clusters=n_clusters, seed=seed)["v_measure"]
            row["knn_acc"] = evaluate_mixed_knn(x.float(), y.float(), gl, seed=seed)["knn_acc"]
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# one row per variant

#: Columns of :func:`variant_metrics` shown in chapter 11's table: (key, label).
VARIANT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("train_seconds", "train s"),
    ("tau", "final τ"),
    ("gap", "gap"),
    ("true_pair_cos", "true-pair cos"),
    ("zero_shot_acc", "zero-shot %"),
    ("i2t_R1", "i→t R@1"),
    ("i2i_mAP", "i→i mAP"),
    ("t2t_mAP", "t→t mAP"),
    ("v_measure", "V-measure"),
    ("knn_acc", "kNN %"),
    ("iso_band", "auto band"),
    ("i2i_mAP_iso", "i→i mAP IsoCLIP"),
    ("t2t_mAP_iso", "t→t mAP IsoCLIP"),
)


def variant_metrics(bundle: ModelBundle, world: SyntheticWorld, *, band_method: str = "isotropy",
                    n_clusters: int | None = None, seed: int = 0,
                    n_boot: int = 2000) -> dict[str, Any]:
    """Every chapter-11 metric of one trained model on a synthetic world.

    Args:
        bundle: the model.
        world: the world it was trained on.
        band_method: :func:`isoclip.selection.rules.select_band` method of the IsoCLIP columns (the
            automatic band: from the weights alone, no labels).
        n_clusters: KMeans clusters of the ModGap protocol; None = the number of classes
            (ModGap fixes 10, for COCO's single-object subset; we have more classes).
        seed: KMeans ``random_state``, the seed of kNN's 80/20 split and of the bootstrap.
        n_boot: paired bootstrap resamples (over the queries) of IsoCLIP − CLIP.

    Returns:
        ``zero_shot_acc, i2t_R1, t2i_R1, i2i_mAP, t2t_mAP`` (percent), ``gap, true_pair_cos,
        cone_image, cone_text`` (gallery pairs), ``v_measure, ari, nmi`` and ``knn_acc`` (ModGap
        protocol on the gallery pairs: KMeans on the stacked normalised ``[text; image]``,
        kNN k = 5 on a seeded 80/20 split), ``iso_band`` ("(k_top, k_bottom)"), ``iso_kept``,
        ``i2i_mAP_iso, t2t_mAP_iso`` (IsoCLIP with that band), ``i2i_iso_delta, i2i_iso_lo,
        i2i_iso_hi`` (IsoCLIP − CLIP mAP with a 95 % paired bootstrap interval; same for
        ``t2t``), ``n_classes``.
    """
    from isoclip.method.bands import iso_projectors
    from isoclip.method.projectors import get_projectors
    from isoclip.selection.rules import select_band

    f = world_features(bundle, world)
    ql, gl = np.array(world.query.labels), np.array(world.gallery.labels)
    tql, tgl = np.array(world.text_query.labels), np.array(world.text_gallery.labels)
    sanity = sanity_metrics(bundle, world)
    clus = evaluate_clustering(f.gallery_images, f.gallery_captions, gl, n_clusters=n_clusters,
                               seed=seed)
    out: dict[str, Any] = {
        **{k: sanity[k] for k in ("zero_shot_acc", "i2t_R1", "t2i_R1", "i2i_mAP", "t2t_mAP",
                                  "gap", "true_pair_cos", "cone_image", "cone_text")},
        "v_measure": clus["v_measure"], "ari": clus["ari"], "nmi": clus["nmi"],
        "n_clusters": int(clus["n_clusters"]),
        "knn_acc": evaluate_mixed_knn(f.gallery_images, f.gallery_captions, gl,
                                      seed=seed)["knn_acc"],
        "n_classes": len(world.class_names),
    }
    P = get_projectors(bundle.model)
    band = select_band(P, band_method)
    iso = iso_projectors(P, band)
    pre = world_features(bundle, world, "preproj")
    iso = iso.to(pre.query_images.dtype)
    out["iso_band"] = f"({band.k_top}, {band.k_bottom})"
    out["iso_kept"] = band.kept(min(P.d_i, P.d_t))
    with torch.no_grad():
        pairs = {"i2i": ((f.query_images, f.gallery_images),
                         (iso.project_image(pre.query_images),
                          iso.project_image(pre.gallery_images)), ql, gl),
                 "t2t": (f.text_task(),
                         (iso.project_text(pre.text_task()[0]),
                          iso.project_text(pre.text_task()[1])),
                         tql, tgl)}
    for task, (clip_qg, iso_qg, a, b) in pairs.items():
        iso_row = compare_retrieval({"CLIP": clip_qg, "IsoCLIP": iso_qg}, a, b,
                                    n_boot=n_boot, seed=seed).set_index("method").loc["IsoCLIP"]
        out[f"{task}_mAP_iso"] = float(iso_row["mAP"])
        out[f"{task}_iso_delta"] = iso_row["delta"]
        out[f"{task}_iso_lo"], out[f"{task}_iso_hi"] = iso_row["lo"], iso_row["hi"]
    return out


# ---------------------------------------------------------------------------------------------
# Cross the Gap's τ table, analogue

#: Rows of :func:`tau_inversion_table` per model: (method, label).
OTI_GAP_ROWS = (("intra-modal", "intra-modal (image features)"), ("OTI", "OTI"))


def tau_inversion_table(models: dict[str, ModelBundle], world: SyntheticWorld, *,
                        per_class: int = 4, subset_seed: int = 0, steps: int | None = None,
                        n_boot: int = 2000) -> pd.DataFrame:
    """Image→image mAP with the image features as queries vs their OTI inversions (CTG's
    fine-tuning-τ table on its poster), for each model.

    Args:
        models: label -> model (e.g. ``{"τ = 1": ..., "τ = 0.01": ...}``).
        world: the synthetic world; queries are a seeded class-balanced subset of the query
            images (``per_class`` each, :func:`isoclip.evaluate.stats.balanced_subset`),
            the gallery is every gallery image.
        per_class, subset_seed: the query subset.
        steps: OTI steps (None: the paper's 150).
        n_boot: paired bootstrap of OTI − intra-modal over the queries.

    Returns:
        One row per model: ``model, gap, n_queries, intra_mAP, oti_mAP, delta, lo, hi``
        (95 % paired bootstrap interval of ``delta = oti_mAP − intra_mAP``), ``oti_cos``
        (mean final cosine of the OTI features with their targets).
    """
    from isoclip.evaluate.stats import balanced_subset
    from isoclip.studies.inversion import invert

    ql, gl = np.array(world.query.labels), np.array(world.gallery.labels)
    sub = balanced_subset(ql, per_class, subset_seed).numpy()
    rows = []
    for label, bundle in models.items():
        f = world_features(bundle, world)
        q = f.query_images[sub]
        inv = invert(bundle, q, "OTI", steps=steps)
        t = compare_retrieval({"intra": (q, f.gallery_images),
                               "OTI": (inv.features, f.gallery_images)}, ql[sub], gl,
                              baseline="intra", n_boot=n_boot, seed=subset_seed
                              ).set_index("method")
        rows.append({"model": label, "gap": centroid_gap(f.gallery_images, f.gallery_captions),
                     "n_queries": len(sub), "intra_mAP": float(t.loc["intra", "mAP"]),
                     "oti_mAP": float(t.loc["OTI", "mAP"]), "delta": t.loc["OTI", "delta"],
                     "lo": t.loc["OTI", "lo"], "hi": t.loc["OTI", "hi"],
                     "oti_cos": float(np.mean(np.asarray(inv.final_cos)))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# SharedCLIP's operator

def shared_operator_check(P: Any) -> dict[str, float]:
    """What W_i = W_t implies for Ψ = W_iᵀW_t, checked numerically (float64).

    Returns:
        ``w_diff`` max ``|W_i − W_t|``; ``asym`` ‖Ψ − Ψᵀ‖/‖Ψ‖; ``psi_i_diff`` ‖Ψ − Ψ_i‖/‖Ψ‖ and
        ``psi_t_diff`` ‖Ψ − Ψ_t‖/‖Ψ‖; ``min_eig`` the smallest eigenvalue of the symmetric part
        over the largest (≥ −1e-12 for PSD); ``sv_vs_w2`` max relative difference between the
        singular values of Ψ and the squared singular values of W (first r); ``uv_overlap``
        mean ``|u_jᵀv_j|`` over the top-r singular pairs (1 when U = V up to sign); ``rank``
        r = min(d_i, d_t, d), the largest possible rank of Ψ.

    Raises:
        ValueError: d_i ≠ d_t (two towers of different widths: Ψ is not square).
    """
    from isoclip.method.operator import psi, psi_image, psi_text, svd

    Pd = P.double()
    if Pd.d_i != Pd.d_t:
        raise ValueError(f"P: W_i [{Pd.d}, {Pd.d_i}] and W_t [{Pd.d}, {Pd.d_t}] have different "
                         "input widths; W_i = W_t (and these checks) need equal ones")
    M = psi(Pd)
    norm = float(torch.linalg.norm(M))
    sym = 0.5 * (M + M.T)
    ev = torch.linalg.eigvalsh(sym)
    dec = svd(Pd)
    r = min(dec.r, Pd.d)  # rank of Psi is at most d: beyond it the singular vectors are arbitrary
    sw = torch.linalg.svdvals(Pd.W_i)[:r]
    overlap = (dec.U[:, :r] * dec.V[:, :r]).sum(0).abs()
    return {
        "w_diff": float((Pd.W_i - Pd.W_t).abs().max()),
        "asym": float(torch.linalg.norm(M - M.T)) / norm,
        "psi_i_diff": float(torch.linalg.norm(M - psi_image(Pd))) / norm,
        "psi_t_diff": float(torch.linalg.norm(M - psi_text(Pd))) / norm,
        "min_eig": float(ev.min() / ev.max()),
        "sv_vs_w2": float(((dec.S[:r] - sw ** 2).abs() / sw ** 2).max()),
        "uv_overlap": float(overlap.mean()),
        "rank": int(r),
    }


def gap_by_temperature(world: SyntheticWorld, base: Any, taus: Sequence[float],
                       lambdas: Sequence[float], *, loss_batch_size: int = 256) -> pd.DataFrame:
    """Liang's gap against the temperature (Sec. 4.2; book notation page, eq-gap): the model
    of ``base`` trained from scratch with τ fixed at each value of ``taus`` (the
    ``clip-tau-<τ>`` variants of :mod:`isoclip.training.variants`, loaded from the cache or
    trained), each measured on the gallery pairs.

    Returns:
        One row per τ: ``model, tau, learned (False), gap, true_pair_cos, cone_image,
        cone_text, own_tau_best_lam`` (the shift λ of ``lambdas`` minimising the contrastive
        loss at the model's own τ: 0 means the model sits at its loss minimum),
        ``zero_shot_acc`` (query images, %), ``train_seconds``.
    """
    from isoclip.evaluate.gap import gap_report
    from isoclip.models.features import zero_shot_weights
    from isoclip.training import variants

    rows = []
    for tau in taus:
        name = f"clip-tau-{tau:g}"
        e = variants.load_variant(name, base=base)
        fv = world_features(e.bundle, world)
        g = gap_report(fv.gallery_images, fv.gallery_captions)
        own = shift_loss_curves(fv.gallery_images, fv.gallery_captions, lambdas, [tau],
                                batch_size=loss_batch_size)
        zs = evaluate_zero_shot(fv.query_images, zero_shot_weights(e.bundle, world.prompts,
                                                                    progress=False),
                                np.array(world.query.labels))["top1"]
        rows.append({"model": variants.VARIANTS[name].label, "tau": float(tau), "learned": False,
                     "gap": g["gap"], "true_pair_cos": g["true_pair_cos"],
                     "cone_image": g["intra_cos_image"], "cone_text": g["intra_cos_text"],
                     "own_tau_best_lam": float(own.loc[own["loss"].idxmin(), "lam"]),
                     "zero_shot_acc": zs, "train_seconds": e.trained.train_seconds})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# figures

def plot_embedding_pca(image: Any, text: Any, max_points: int = 600, seed: int = 0) -> Figure:
    """Liang's Fig. 1 analogue: the first two principal components of the stacked normalised
    image and text embeddings, coloured by modality, centroids marked."""
    from isoclip.studies.plotting import legend_right, page_figure

    x = F.normalize(torch.as_tensor(image).double(), dim=1)
    y = F.normalize(torch.as_tensor(text).double(), dim=1)
    z = torch.cat([x, y])
    zc = z - z.mean(0)
    _, _, Vh = torch.linalg.svd(zc, full_matrices=False)
    p = (zc @ Vh[:2].T).numpy()
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    pick = rng.choice(n, size=min(n, max_points), replace=False)
    fig, ax = page_figure(width=0.75, aspect=0.8)
    for part, label, colour in ((p[:n], "image", "#4C72B0"), (p[n:], "text", "#DD8452")):
        ax.scatter(part[pick, 0], part[pick, 1], s=6, alpha=0.5, label=f"{label} embeddings",
                   color=colour)
        ax.scatter(*part.mean(0), s=120, marker="X", color=colour, edgecolor="black",
                   label=f"{label} centroid")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    legend_right(fig, ax=ax)
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def plot_shift_loss(curves: pd.DataFrame, original_gap: float) -> Figure:
    """Liang's Fig. 4 analogue: loss (minus its minimum, per τ) against the gap after the
    shift, one line per τ; the trained gap is marked and each minimum is dotted."""
    from isoclip.studies.plotting import legend_below, page_figure

    fig, ax = page_figure(aspect=0.5)
    for tau, g in curves.groupby("tau", sort=True):
        g = g.sort_values("lam")
        rel = g["loss"] - g["loss"].min()
        line, = ax.plot(g["lam"], rel, marker=".", label=f"$\\tau$ = {tau:.3g}")
        best = g.loc[g["loss"].idxmin()]
        ax.plot([best["lam"]], [0.0], marker="o", color=line.get_color(), ms=7,
                markerfacecolor="none")
    ax.axvline(0.0, color="black", lw=0.8, ls="--", label=f"trained gap ({original_gap:.2f})")
    ax.set_xlabel(r"shift $\lambda$ (0: as trained; 0.5: centroids meet)")
    ax.set_ylabel(r"loss $-$ min over $\lambda$")
    ax.set_yscale("symlog", linthresh=0.01)
    legend_below(fig, ax=ax, ncol=3)
    return fig


def plot_shift_metrics(df: pd.DataFrame, columns: Sequence[tuple[str, str]],
                       original_gap: float, x: str = "gap") -> Figure:
    """Metrics of :func:`shift_metrics` against the gap after the shift (or ``x="lam"``),
    one panel per (column, label); the trained gap is marked."""
    from isoclip.studies.plotting import page_figure

    fig, axes = page_figure(1, len(columns), aspect=0.75 / len(columns), squeeze=False)
    for ax, (col, label) in zip(axes[0], columns):
        d = df.sort_values(x)
        ax.plot(d[x], d[col], marker=".")
        ax.axvline(original_gap if x == "gap" else 0.0, color="black", lw=0.8, ls="--")
        ax.set_xlabel("gap after the shift" if x == "gap" else r"shift $\lambda$")
        ax.set_ylabel(label)
    return fig


def plot_gap_vs_tau(df: pd.DataFrame) -> Figure:
    """Gap and true-pair cosine against the (final) temperature, one point per model; the
    learned-τ model is drawn hollow. ``df``: columns ``tau, gap, true_pair_cos, learned``."""
    from isoclip.studies.plotting import legend_below, page_figure

    fig, axes = page_figure(1, 2, aspect=0.4)
    for ax, col, label in ((axes[0], "gap", "centroid gap"),
                           (axes[1], "true_pair_cos", "mean true-pair cosine")):
        fixed = df[~df["learned"]].sort_values("tau")
        ax.plot(fixed["tau"], fixed[col], marker="o", label=r"fixed $\tau$")
        learned = df[df["learned"]]
        ax.scatter(learned["tau"], learned[col], s=60, facecolors="none", edgecolors="black",
                   label=r"learned $\tau$ (final value)", zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel(r"temperature $\tau$")
        ax.set_ylabel(label)
    legend_below(fig, ax=axes[0])
    return fig


def plot_spectra(spectra: dict[str, Tensor]) -> Figure:
    """σ_j/σ_1 of Ψ for several models (log scale), one line each."""
    from isoclip.studies.plotting import legend_right, page_figure

    fig, ax = page_figure(aspect=0.5)
    for label, S in spectra.items():
        s = (S / S[0]).numpy()
        ax.plot(np.arange(1, len(s) + 1), s, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(r"singular direction $j$")
    ax.set_ylabel(r"$\sigma_j/\sigma_1$ of $\Psi$")
    legend_right(fig, ax=ax)
    return fig
