"""The regime study (issue 8): where do CLIP's intra-modal misalignment and IsoCLIP's band
structure appear in models we can train?

:func:`run_regime` trains (or loads from the cache) one tiny CLIP on one synthetic world and
returns every diagnostic of the study as a flat dict of JSON-ready values: the modality gap
and the cone, the flatness of Psi's spectrum, CLIP's image→image and text→text mAP, and the
mAP of IsoCLIP's oracle band (best band of a strided sweep, chosen on the test queries) and of
its automatic band (:func:`isoclip.bands.select_band` ``"isotropy"``, no labels).
``benchmarks/regime_study.py`` runs a grid of them.

Flatness of the spectrum (``S`` = singular values of Psi, ``rank`` = min(r, d) non-null ones,
``rate_j = log σ_j − log σ_{j+1}`` the per-index decay of log σ, as in chapter 5):

* ``flatness_mid_ratio``: median decay rate in the middle half of the spectrum (indices
  ``rank/4 .. 3·rank/4``) divided by the median decay rate in the two outer quarters. Below 1:
  the middle decays more slowly than the ends (the paper's flat middle band, anisotropic top
  and bottom); about 1: a uniform (e.g. exponential) decay; above 1: the middle is steeper.
  Band-independent, so comparable across runs.
* ``flatness_iso_capacity``: the automatic band's objective ``kept · σ_min / σ_max``
  divided by ``rank``, in (0, 1]; 1 means a perfectly flat spectrum.
* ``effective_rank_frac``: :func:`isoclip.operator.effective_rank` of the non-null values
  divided by ``rank``.
* ``decay_top``, ``decay_mid``, ``decay_bottom``: chapter 5's median decay rates inside the
  automatic band's top / middle / bottom regions (NaN for an empty region).

The oracle band is optimistic (chosen on the evaluation queries); ``*_oracle_heldout_mAP``
is an honest version: the band is chosen on the even-indexed queries and scored on the odd
ones and vice versa, and the two scores are averaged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .band_analysis import region_decay_rates
from .bands import Band, best_band, select_band, sweep_bands
from .data.synthetic import SyntheticWorld, WorldConfig, make_world
from .evaluate.retrieval import evaluate
from .experiments import sanity_metrics, world_features
from .operator import SVD, effective_rank, svd
from .projectors import Projectors, get_projectors
from .train import TrainConfig, load_or_train

__all__ = ["spectrum_flatness", "band_metrics", "run_regime", "REGIME_KEYS"]

#: Keys of :func:`run_regime`'s result besides the two configurations, in table order.
REGIME_KEYS = (
    "train_seconds", "final_temperature", "final_loss", "zero_shot_acc", "i2t_mAP", "t2i_mAP",
    "gap", "true_pair_cos", "cone_image", "cone_text", "rank", "flatness_mid_ratio",
    "flatness_iso_capacity", "effective_rank_frac", "decay_top", "decay_mid", "decay_bottom",
    "auto_band", "sweep_stride",
    "i2i_mAP", "i2i_full_band_mAP", "i2i_oracle_band", "i2i_oracle_mAP", "i2i_oracle_heldout_mAP",
    "i2i_top_only_band", "i2i_top_only_mAP", "i2i_bottom_only_band", "i2i_bottom_only_mAP",
    "i2i_auto_mAP",
    "t2t_mAP", "t2t_full_band_mAP", "t2t_oracle_band", "t2t_oracle_mAP", "t2t_oracle_heldout_mAP",
    "t2t_top_only_band", "t2t_top_only_mAP", "t2t_bottom_only_band", "t2t_bottom_only_mAP",
    "t2t_auto_mAP",
)


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def spectrum_flatness(S: Tensor, rank: int | None = None, band: Band | None = None
                      ) -> dict[str, float]:
    """Flatness measures of a spectrum (see the module docstring for the definitions).

    Args:
        S: [r] singular values, non-increasing.
        rank: number of non-null singular values to consider (default r); for Psi this is
            min(r, d) since Psi = W_iᵀW_t has rank ≤ d.
        band: the band whose top / middle / bottom regions give ``decay_*`` (default: the
            isotropy band of the first ``rank`` values).

    Returns:
        ``flatness_mid_ratio``, ``flatness_iso_capacity``, ``effective_rank_frac``,
        ``decay_top``, ``decay_mid``, ``decay_bottom``.

    Raises:
        ValueError: S not 1-D, not non-increasing, negative, or rank outside [4, r].
    """
    from .bands import _isotropy_band

    S = torch.as_tensor(S).double()
    if S.ndim != 1:
        raise ValueError(f"S: expected a 1-D tensor of singular values, got shape "
                         f"{tuple(S.shape)}")
    if bool((S < 0).any()) or bool((S[1:] > S[:-1] * (1 + 1e-12)).any()):
        raise ValueError("S: expected non-negative, non-increasing singular values")
    r = int(S.shape[0])
    rank = r if rank is None else int(rank)
    if not 4 <= rank <= r:
        raise ValueError(f"rank: expected an int in [4, {r}] (len(S)), got {rank}")
    s = S[:rank].numpy()
    rate = -np.diff(np.log(np.clip(s, s[0] * 1e-12, None)))  # [rank - 1]
    q1, q3 = rank // 4, (3 * rank) // 4
    mid = _median(rate[q1:q3])
    ends = _median(np.concatenate([rate[:q1], rate[q3:]]))
    ratio = mid / ends if ends > 0 else float("nan")
    iso = band if band is not None else _isotropy_band(S[:rank])
    sl = iso.indices(rank)
    capacity = (sl.stop - sl.start) * float(s[sl.stop - 1] / s[sl.start]) / rank
    decay = region_decay_rates(s, iso)
    return {
        "flatness_mid_ratio": ratio,
        "flatness_iso_capacity": capacity,
        "effective_rank_frac": effective_rank(S[:rank]) / rank,
        "decay_top": decay["top"],
        "decay_mid": decay["mid"],
        "decay_bottom": decay["bottom"],
    }


def band_metrics(P: Projectors, query: Tensor, gallery: Tensor, query_labels: Any,
                 gallery_labels: Any, modality: str, *, stride: int = 2,
                 auto_band: Band | None = None, dec: SVD | None = None) -> dict[str, Any]:
    """CLIP's, the oracle band's and the automatic band's mAP for one intra-modal task.

    Args:
        P: projectors; ``dec = svd(P)`` if already computed.
        query, gallery: [Q, k], [G, k] pre-projection features of ``modality``.
        query_labels, gallery_labels: [Q], [G]; relevant = same label.
        modality: ``"image"`` or ``"text"``.
        stride: the sweep's step in k_top and in k_bottom (1 = every band).
        auto_band: the automatic band (default ``select_band(P, "isotropy")``).

    Returns:
        ``clip_mAP`` (the model's own projection), ``full_band_mAP`` (band (0, 0): the
        features restricted to the r singular directions of Psi, which differs from CLIP
        when the tower is wider than r, e.g. d_i = 96 > r = 64), ``oracle_band`` /
        ``oracle_mAP`` (best of the sweep:
        k_top in ``0, stride, ...`` below rank = min(r, d), k_bottom likewise above the
        r − rank null directions of Psi, which every band drops),
        ``oracle_heldout_mAP`` (chosen on even queries, scored on odd ones and vice versa,
        averaged), ``top_only_band`` / ``top_only_mAP`` (best dropping no non-null bottom
        direction),
        ``bottom_only_band`` / ``bottom_only_mAP`` (best with k_top = 0), ``auto_band`` /
        ``auto_mAP``. Bands as ``[k_top, k_bottom]`` lists, mAP in percent.

    Raises:
        ValueError: stride < 1, bad modality, fewer than 2 queries, or the errors of
            :func:`isoclip.bands.sweep_bands`.
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    if modality not in ("image", "text"):
        raise ValueError(f"modality: expected 'image' or 'text', got {modality!r}")
    if len(query) < 2:
        raise ValueError(f"query: expected at least 2 queries (held-out oracle), got "
                         f"{len(query)}")
    dec = svd(P) if dec is None else dec
    auto = select_band(P, "isotropy", dec=dec) if auto_band is None else auto_band
    ql = np.array(np.asarray(query_labels))
    gl = np.array(np.asarray(gallery_labels))
    # Psi has rank <= d: its last r - rank singular directions are null and always dropped
    # (as select_band does), so band (0, null) is CLIP itself.
    rank = min(dec.r, P.d)
    null = dec.r - rank
    tops = list(range(0, rank, stride))
    bottoms = [null + k for k in range(0, rank, stride)]
    query = torch.as_tensor(query)

    def sweep(rows: np.ndarray | None) -> Any:
        q, l = (query, ql) if rows is None else (query[torch.as_tensor(rows)], ql[rows])
        return sweep_bands(P, q, gallery, l, gl, modality, tops, bottoms, dec=dec,
                           dtype=torch.float32)

    full = sweep(None)
    full_band = full[(full.k_top == 0) & (full.k_bottom == null)]["mAP"].item()
    project = P.project_image if modality == "image" else P.project_text
    gallery = torch.as_tensor(gallery)
    clip = evaluate(project(query.to(P.dtype)), project(gallery.to(P.dtype)), ql, gl)["mAP"]
    oracle = best_band(full)
    top_only, bottom_only = full[full.k_bottom == null], full[full.k_top == 0]
    halves = [np.arange(0, len(ql), 2), np.arange(1, len(ql), 2)]
    sweeps = [sweep(h) for h in halves]
    heldout = []
    for chooser, scorer in ((0, 1), (1, 0)):
        b = best_band(sweeps[chooser])
        s = sweeps[scorer]
        heldout.append(s[(s.k_top == b.k_top) & (s.k_bottom == b.k_bottom)]["mAP"].item())
    auto_sweep = sweep_bands(P, query, gallery, ql, gl, modality, [auto.k_top],
                             [auto.k_bottom], dec=dec, dtype=torch.float32)
    return {
        "clip_mAP": float(clip),
        "full_band_mAP": float(full_band),
        "oracle_band": [oracle.k_top, oracle.k_bottom],
        "oracle_mAP": float(full["mAP"].max()),
        "oracle_heldout_mAP": float(np.mean(heldout)),
        "top_only_band": [int(top_only.loc[top_only["mAP"].idxmax(), "k_top"]), null],
        "top_only_mAP": float(top_only["mAP"].max()),
        "bottom_only_band": [0, int(bottom_only.loc[bottom_only["mAP"].idxmax(), "k_bottom"])],
        "bottom_only_mAP": float(bottom_only["mAP"].max()),
        "auto_band": [auto.k_top, auto.k_bottom],
        "auto_mAP": float(auto_sweep["mAP"].item()),
    }


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, (np.floating, float)):
            return None if math.isnan(float(v)) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v
    return {k: conv(v) for k, v in d.items()}


def run_regime(world_cfg: WorldConfig, train_cfg: TrainConfig, *, stride: int = 2,
               progress: bool = False, cache: bool = True) -> dict[str, Any]:
    """Train (or load) one model and measure every diagnostic of the regime study.

    Args:
        world_cfg: the synthetic world (its train split trains the model; query/gallery and
            text splits evaluate it).
        train_cfg: the training configuration (cached by :func:`isoclip.train.load_or_train`).
        stride: step of the band sweep in k_top and k_bottom (2 or 4 keeps it cheap).
        progress: tqdm bar while training.
        cache: use the training cache (features are cached by the feature extractors).

    Returns:
        A JSON-ready dict: ``world`` and ``train`` (the configurations as dicts), then every
        key of :data:`REGIME_KEYS`; ``rank`` = min(r, d) non-null singular values of Psi;
        ``*_mAP`` in percent; bands as ``[k_top, k_bottom]``; ``train_seconds`` is the wall
        time of the run that filled the cache; ``eval_seconds`` the time of this evaluation.

    Raises:
        TypeError: a configuration of the wrong type.
        ValueError: bad ``stride`` (see :func:`band_metrics`).
    """
    if not isinstance(world_cfg, WorldConfig):
        raise TypeError(f"world_cfg: expected a WorldConfig, got {type(world_cfg).__name__}")
    if not isinstance(train_cfg, TrainConfig):
        raise TypeError(f"train_cfg: expected a TrainConfig, got {type(train_cfg).__name__}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    world = make_world(world_cfg)
    trained = load_or_train(world.train, train_cfg, progress=progress, cache=cache)
    t0 = time.perf_counter()
    result = _evaluate(trained.bundle, world, stride)
    log = trained.log
    out: dict[str, Any] = {
        "world": asdict(world_cfg), "train": asdict(train_cfg),
        "train_seconds": trained.train_seconds,
        "final_temperature": float(log["temperature"].iloc[-1]),
        "final_loss": float(log["loss"].iloc[-1]),
        **result,
    }
    out["eval_seconds"] = time.perf_counter() - t0
    return _jsonable(out)


def _evaluate(bundle: Any, world: SyntheticWorld, stride: int) -> dict[str, Any]:
    sanity = sanity_metrics(bundle, world)
    P = get_projectors(bundle.model)
    dec = svd(P)
    rank = min(dec.r, P.d)
    auto = select_band(P, "isotropy", dec=dec)
    flat = spectrum_flatness(dec.S, rank)
    f = world_features(bundle, world, "preproj")
    image = band_metrics(P, f.query_images, f.gallery_images, world.query.labels,
                         world.gallery.labels, "image", stride=stride, auto_band=auto, dec=dec)
    text = band_metrics(P, f.text_query, f.text_gallery, world.text_query.labels,
                        world.text_gallery.labels, "text", stride=stride, auto_band=auto,
                        dec=dec)
    out: dict[str, Any] = {k: sanity[k] for k in ("zero_shot_acc", "i2t_mAP", "t2i_mAP", "gap",
                                                  "true_pair_cos", "cone_image", "cone_text")}
    out.update(rank=rank, **flat, auto_band=[auto.k_top, auto.k_bottom], sweep_stride=stride)
    for prefix, m in (("i2i", image), ("t2t", text)):
        out[f"{prefix}_mAP"] = m["clip_mAP"]
        for k in ("full_band_mAP", "oracle_band", "oracle_mAP", "oracle_heldout_mAP",
                  "top_only_band", "top_only_mAP", "bottom_only_band", "bottom_only_mAP",
                  "auto_mAP"):
            out[f"{prefix}_{k}"] = m[k]
    return out
