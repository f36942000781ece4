"""Band grids the chapters recompute on every build, cached by content.

Chapters 6 and 7 sweep the whole :math:`(k_{top}, k_{bottom})` grid of the embedded world
(:func:`isoclip.selection.sweep.sweep_bands`, the oracle of IsoCLIP Sec. 4's band analysis)
and run the agreement rule on paired calibration data
(:func:`isoclip.selection.rules.select_band` with ``"agreement"``). Both are pure functions of
their tensors, so :func:`grid_sweep` and :func:`agreement_band` key the result by the content
of every input (projector weights, features, labels; :func:`tensor_digest`), the grid, and the
code that computes it (:data:`GRID_CODE`, without docstrings and comments:
:func:`isoclip.common.cache.code_fingerprint`): a rebuild of the book with nothing
changed loads them, and any change of model, data, grid or code computes them again. The
cached values are the computed ones, bit for bit (``tests/test_grids.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.common.cache import cached, code_fingerprint
from isoclip.common.types import Modality, check_modality
from isoclip.method.bands import Band
from isoclip.method.operator import SVD
from isoclip.method.projectors import Projectors
from isoclip.selection.rules import select_band
from isoclip.selection.sweep import sweep_bands

__all__ = ["GRID_CODE", "agreement_band", "grid_sweep", "tensor_digest"]

#: Modules whose code is part of every key (the sweep, the rule, the metrics, the operator).
GRID_CODE = ("isoclip.studies.grids", "isoclip.selection.sweep", "isoclip.selection.rules",
             "isoclip.evaluate.retrieval", "isoclip.method.bands", "isoclip.method.operator",
             "isoclip.method.projectors")


def tensor_digest(*tensors: Tensor | np.ndarray | None) -> str:
    """sha256 over the dtype, shape and bytes of each tensor (None counts as a marker).

    Two digests are equal exactly when every tensor has the same dtype, shape and values.
    """
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none\0")
            continue
        a = t.detach().cpu().contiguous().numpy() if isinstance(t, Tensor) else np.asarray(t)
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _projector_digest(P: Projectors) -> str:
    return tensor_digest(P.W_i, P.W_t, P.b_i, P.b_t) + ("-lin" if P.image_linearized else "")


def _code() -> str:
    return code_fingerprint(GRID_CODE)


def _frame_payload(df: pd.DataFrame) -> dict[str, Any]:
    return {"columns": list(df.columns),
            "values": {c: torch.from_numpy(df[c].to_numpy().copy()) for c in df.columns}}


def _frame(payload: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({c: payload["values"][c].numpy() for c in payload["columns"]},
                        columns=payload["columns"])


def grid_sweep(P: Projectors, query_preproj: Tensor, gallery_preproj: Tensor,
               query_labels: Tensor, gallery_labels: Tensor, modality: Modality,
               k_top_values: Iterable[int], k_bottom_values: Iterable[int], *,
               same_split: bool = False, metric: str | Sequence[str] = "mAP",
               dec: SVD | None = None, cache: bool = True) -> pd.DataFrame:
    """:func:`~isoclip.selection.sweep.sweep_bands` (same arguments, same frame), cached.

    Args:
        P: projectors. query_preproj, gallery_preproj: [Q, d], [G, d] pre-projection features
            of ``modality``. query_labels, gallery_labels: [Q], [G].
        k_top_values, k_bottom_values: the grid. same_split, metric, dec: as ``sweep_bands``.
        cache: False computes and stores nothing.

    Returns:
        One row per valid band: ``k_top, k_bottom, kept`` and the metric column(s).
    """
    modality = check_modality("modality", modality)
    tops, bottoms = [int(k) for k in k_top_values], [int(k) for k in k_bottom_values]
    metrics = [metric] if isinstance(metric, str) else list(metric)
    material = {"kind": "grid-sweep", "projectors": _projector_digest(P),
                "data": tensor_digest(query_preproj, gallery_preproj, query_labels,
                                      gallery_labels),
                "modality": modality, "k_top": tops, "k_bottom": bottoms,
                "same_split": bool(same_split), "metric": metrics, "code": _code()}

    def build() -> dict[str, Any]:
        return _frame_payload(sweep_bands(P, query_preproj, gallery_preproj, query_labels,
                                          gallery_labels, modality, tops, bottoms,
                                          same_split=same_split, metric=metrics, dec=dec))

    return _frame(cached("grids", material, build, enabled=cache))


def agreement_band(P: Projectors, image_preproj: Tensor, text_preproj: Tensor,
                   modality: Modality, stride: int, *, dec: SVD | None = None,
                   cache: bool = True) -> Band:
    """``select_band(P, "agreement", ...)`` (our label-free rule on paired data), cached.

    Args:
        P: projectors. image_preproj, text_preproj: [N, d_i], [N, d_t] pre-projection
            features of N calibration pairs. modality: the task. stride: the grid stride.
        dec: ``svd(P)`` if already computed. cache: False computes and stores nothing.
    """
    modality = check_modality("modality", modality)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    material = {"kind": "agreement-band", "projectors": _projector_digest(P),
                "data": tensor_digest(image_preproj, text_preproj), "modality": modality,
                "stride": stride, "code": _code()}

    def build() -> dict[str, Any]:
        b = select_band(P, "agreement", dec=dec, image_preproj=image_preproj,
                        text_preproj=text_preproj, modality=modality, stride=stride)
        return {"k_top": int(b.k_top), "k_bottom": int(b.k_bottom)}

    payload = cached("grids", material, build, enabled=cache)
    return Band(int(payload["k_top"]), int(payload["k_bottom"]))
