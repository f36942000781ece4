"""The spectrum chapter's study: the spectrum of Ψ = W_iᵀ W_t of one or several models, its
three bands and how flat each is (IsoCLIP, Magistri et al., CVPR 2026, Sec. 3-4: the spectrum
figure; book notation page, eq-psi).

:func:`spectrum_study` computes everything the chapter reports for one model from its
projector weights alone (no data): the SVD of Ψ, the normalised singular values, the local
flatness measures of :func:`isoclip.method.operator.spectrum_stats`, the band to shade (the
paper's own band for the backbone where one is published, else the ViT-B/32 band scaled to
rank r, or the band the parameters give), the spread of each region and the median decay of
log σ per region (:func:`isoclip.selection.analysis.region_decay_rates`).
:func:`spectrum_table` lays several models side by side, :func:`spectra_figure` draws their
spectra side by side and :func:`spectrum_rows` gives the tidy rows of a result file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from isoclip.method.bands import Band
from isoclip.method.operator import SVD, SpectrumStats, spectrum_stats, svd
from isoclip.method.projectors import Projectors, get_projectors
from isoclip.models.loading import ModelBundle
from isoclip.selection.analysis import region_decay_rates

__all__ = ["EMBEDDED_LABELS", "SpectrumStudy", "spectra_figure", "spectrum_models",
           "spectrum_reading", "spectrum_rows", "spectrum_study", "spectrum_table"]

#: Labels of the two embedded models (``model="embedded"``), in the chapter's order.
EMBEDDED_LABELS = {"embedded": "default model (synthetic world)",
                   "embedded-emoji": "emoji model (emoji images and names)"}


@dataclass(frozen=True)
class SpectrumStudy:
    """The spectrum of Ψ of one model.

    Attributes:
        label: the model's name in tables and legends.
        P: its projectors (W_i [d, d_i], W_t [d, d_t]); dec: ``svd(P)``.
        stats: :func:`isoclip.method.operator.spectrum_stats` of the r singular values.
        window: width of the local flatness windows.
        band: the shaded band; band_origin: ``"parameters"``, ``"paper"`` (the paper's own
            band of this backbone) or ``"paper-scaled"`` (ViT-B/32's scaled to r).
        spread: region -> σ_min/σ_max inside the region (``top``, ``middle``, ``bottom``; NaN
            for an empty region).
        decay: region -> median decay of log σ per index (``top``, ``mid``, ``bottom``).
    """

    label: str
    P: Projectors
    dec: SVD
    stats: SpectrumStats
    window: int
    band: Band
    band_origin: str
    spread: dict[str, float]
    decay: dict[str, float]

    @property
    def r(self) -> int:
        return self.dec.r

    @property
    def flatter_middle(self) -> bool:
        """The middle band decays more slowly than both ends
        (:func:`isoclip.studies.verdicts.flatter_middle`)."""
        from isoclip.studies.verdicts import flatter_middle

        return flatter_middle(self.decay)


def spectrum_models(model: str = "embedded", pretrained: str | None = None, *,
                    device: str = "auto") -> dict[str, ModelBundle]:
    """The models a spectrum chapter shows, label -> model: with ``"embedded"`` both embedded
    tiny models (:data:`EMBEDDED_LABELS`); with an open_clip name that model and, when it is
    pretrained, its random-init control (:mod:`isoclip.studies.controls`), labelled
    ``"<model> (<tag>)"`` and ``"<model> (random init)"``."""
    from isoclip.studies.controls import RANDOM_INIT, random_init_bundle
    from isoclip.training.embedded import resolve_model

    if model == "embedded":
        return {label: resolve_model(key, progress=False)
                for key, label in EMBEDDED_LABELS.items()}
    bundle = resolve_model(model, pretrained, device=device, progress=False)
    out = {f"{model} ({pretrained or RANDOM_INIT})": bundle}
    if pretrained is not None:
        out[f"{model} ({RANDOM_INIT})"] = random_init_bundle(bundle)
    return out


def _region_spread(S: np.ndarray, band: Band) -> dict[str, float]:
    r = len(S)
    parts = {"top": S[: band.k_top], "middle": S[band.indices(r)],
             "bottom": S[r - band.k_bottom:] if band.k_bottom else S[:0]}
    return {k: float(p.min() / p.max()) if len(p) else float("nan") for k, p in parts.items()}


def spectrum_study(bundle: ModelBundle | Projectors, *, label: str, model: str = "embedded",
                   pretrained: str | None = None, band: Band | None = None,
                   window: int | None = None) -> SpectrumStudy:
    """The spectrum of Ψ of one model with its band.

    Args:
        bundle: the model (or its projectors).
        label: its name in tables and figures.
        model, pretrained: the names :func:`isoclip.studies.verdicts.paper_band` looks up the
            paper's band with (``"embedded"`` for the tiny models: the ViT-B/32 band scaled).
        band: the band to shade instead of the paper's (the chapter's ``k_top``/``k_bottom``).
        window: width of the flatness windows (None: r/16, at least 4).

    Raises:
        ValueError: a band that does not fit rank r, or a window < 2.
    """
    from isoclip.studies.verdicts import paper_band

    P = bundle if isinstance(bundle, Projectors) else get_projectors(bundle.model)
    dec = svd(P)
    r = dec.r
    w = window if window is not None else max(4, r // 16)
    if isinstance(w, bool) or not isinstance(w, int) or w < 2:
        raise ValueError(f"window: expected an int >= 2 (or None), got {window!r}")
    origin: str
    if band is None:
        paper = paper_band(model, pretrained, "image", r)
        band, origin = paper.band, paper.label
    else:
        origin = "parameters"
    band.indices(r)  # validate against r
    stats = spectrum_stats(dec.S, window=w)
    S = stats.S.numpy()
    return SpectrumStudy(label=label, P=P, dec=dec, stats=stats, window=w, band=band,
                         band_origin=origin, spread=_region_spread(S, band),
                         decay=region_decay_rates(S, band))


def spectrum_table(studies: Mapping[str, SpectrumStudy]) -> pd.DataFrame:
    """One row per model: shapes, rank, the band, effective rank, σ_min/σ_max per region,
    median decay of log σ per region and whether the middle is flatter than both ends."""
    rows = []
    for s in studies.values():
        rows.append({"model": s.label, "d_i": s.P.d_i, "d_t": s.P.d_t, "d": s.P.d, "r": s.r,
                     "band (k_top, k_bottom)": f"({s.band.k_top}, {s.band.k_bottom})",
                     "band": s.band_origin, "kept": s.band.kept(s.r),
                     "effective rank": float(s.stats.effective_rank),
                     **{f"σ_min/σ_max {k}": v for k, v in s.spread.items()},
                     "decay top": s.decay["top"], "decay middle": s.decay["mid"],
                     "decay bottom": s.decay["bottom"],
                     "middle flatter": "yes" if s.flatter_middle else "no"})
    return pd.DataFrame(rows).set_index("model")


def spectrum_reading(studies: Mapping[str, SpectrumStudy], model: str = "embedded",
                     pretrained: str | None = None) -> str:
    """The chapter's verdict on the paper's premise (the middle of the spectrum is flatter than
    both ends), one sentence per model, each scoped to the model it was measured on; on a
    pretrained model, whether the verdict differs from its random-init control."""
    from isoclip.studies.controls import RANDOM_INIT

    parts = []
    for s in studies.values():
        d = s.decay
        name = f"the {s.label}" if model == "embedded" else s.label
        parts.append(f"On {name} the middle band decays at {d['mid']:.3f} per index "
                     f"against {d['top']:.3f} (top) and {d['bottom']:.3f} (bottom): its middle "
                     f"{'is' if s.flatter_middle else 'is not'} flatter than both ends.")
    if model != "embedded" and pretrained is not None and len(studies) == 2:
        ours, control = studies.values()
        same = ours.flatter_middle == control.flatter_middle
        parts.append(f"The {RANDOM_INIT} control gives the same verdict, so on {model} it says "
                     "nothing about what pretraining learned." if same else
                     f"The {RANDOM_INIT} control gives the opposite verdict: on {model} the "
                     "difference comes from pretraining.")
    return " ".join(parts)


def spectrum_rows(studies: Mapping[str, SpectrumStudy]) -> list[dict[str, Any]]:
    """Tidy rows of a result file (:func:`isoclip.studies.results.write_result`): per model
    (``method`` = its label), ``dataset`` = ``"projector weights"``, task ``"spectrum"``,
    metrics: effective rank, σ_min/σ_max and median decay of log σ in each region."""
    rows: list[dict[str, Any]] = []
    for s in studies.values():
        metrics = {"effective rank": float(s.stats.effective_rank),
                   **{f"sigma_min/sigma_max ({k})": v for k, v in s.spread.items()},
                   **{f"median decay of log sigma ({k})": v for k, v in s.decay.items()}}
        rows += [{"dataset": "projector weights", "task": "spectrum", "method": s.label,
                  "metric": m, "value": v} for m, v in metrics.items() if np.isfinite(v)]
    return rows


def spectra_figure(studies: Mapping[str, SpectrumStudy]) -> Figure:
    """The normalised spectra σ_j/σ_1 of several models side by side, each with its own band
    shaded (one panel per model, log scale: the ends and the middle on one axis)."""
    from isoclip.studies.plotting import _shade_bands, legend_below, page_figure

    if not studies:
        raise ValueError("studies: expected at least one model")
    fig, axes = page_figure(1, len(studies), aspect=0.5 if len(studies) > 1 else 0.45,
                            squeeze=False, sharey=True)
    for ax, s in zip(axes[0], studies.values()):
        r = s.r
        _shade_bands(ax, r, s.band.k_top, s.band.k_bottom, labels=ax is axes[0][0])
        y = np.clip(s.stats.normalized.numpy(), 1e-12, None)
        ax.semilogy(np.arange(r), y, color="black", lw=1.5, marker="o", ms=2.0,
                    label=r"$\sigma_j/\sigma_1$")
        ax.set(xlabel=r"index $j$", xlim=(-0.5, r - 0.5),
               title=f"{s.label}\n(r = {r}, band ({s.band.k_top}, {s.band.k_bottom}))")
    axes[0][0].set_ylabel(r"$\sigma_j/\sigma_1$ (log scale)")
    legend_below(fig, ax=axes[0][0], ncol=2)
    return fig
