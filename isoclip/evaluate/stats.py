"""Paired statistics: per-item values of several methods on the same items, their mean
differences with percentile-bootstrap intervals, and seeded class-balanced subsets.

Every comparison in the book is paired: the methods rank the same queries (or classify
the same images), so an interval reflects which items were drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.evaluate.retrieval import query_metrics

__all__ = ["balanced_subset", "compare_accuracy", "compare_retrieval", "correct_top1", "integer_labels", "paired_bootstrap", "relative_gain"]


def _paired_columns(name: str, baseline: str, base: Any, values: Any, n_boot: int,
                    seed: int) -> dict[str, float]:
    """``delta, lo, hi`` of ``values − base`` (paired bootstrap); NaN on the baseline's row."""
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
        n_boot, seed: :func:`isoclip.evaluate.stats.paired_bootstrap` over the queries' AP.

    Returns:
        One row per method, in the order of ``methods``: ``method, queries, mAP, mAP@R, P@R,
        R@1`` (percent) and ``delta, lo, hi`` (mAP minus the baseline's with a 95 % paired
        bootstrap interval; NaN on the baseline's row).

    Raises:
        ValueError: ``baseline`` not in ``methods``.
    """
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
        n_boot, seed: :func:`isoclip.evaluate.stats.paired_bootstrap` over the items.

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


def relative_gain(value: Any, baseline: Any) -> Any:
    """Gain of ``value`` over ``baseline`` in percent of the baseline: ``100 (v - b) / b``."""
    return 100.0 * (np.asarray(value, dtype=float) - np.asarray(baseline, dtype=float)) \
        / np.asarray(baseline, dtype=float)


def integer_labels(y: Any) -> Tensor:
    """Integer labels [N] as a CPU int64 tensor."""
    t = y.detach().cpu().clone() if isinstance(y, Tensor) else torch.as_tensor(np.array(y))
    if t.ndim != 1 or t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"labels: expected a 1-D integer vector, got {t.dtype} "
                         f"{tuple(t.shape)}")
    return t.long()


def balanced_subset(labels: Any, per_class: int | None, seed: int) -> Tensor:
    """Seeded class-balanced subset: ``per_class`` random indices of every class, sorted.

    Args:
        labels: [N] integer class labels.
        per_class: items per class; a class with fewer items contributes all of them.
            None: every index (``arange(N)``).
        seed: seed of the draw (numpy ``default_rng``); classes are visited in increasing
            label order, so the subset depends only on ``labels``, ``per_class`` and ``seed``.

    Returns:
        LongTensor of sorted indices into ``labels``.

    Raises:
        ValueError: ``per_class`` not None and not an int >= 1, or empty ``labels``.
    """
    y = integer_labels(labels).numpy()
    if y.size == 0:
        raise ValueError("labels: expected at least one label")
    if per_class is None:
        return torch.arange(len(y))
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class: expected None or an int >= 1, got {per_class!r}")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        picked.append(idx if len(idx) <= per_class else rng.choice(idx, per_class, replace=False))
    return torch.from_numpy(np.sort(np.concatenate(picked))).long()


def paired_bootstrap(a: Any, b: Any, *, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Mean paired difference ``mean(b - a)`` with a percentile bootstrap interval.

    The items (queries, images) are resampled with replacement ``n_boot`` times; the two
    methods are evaluated on the same items, so the interval reflects which items were drawn,
    not a difference between two independent samples.

    Args:
        a, b: [N] per-item values of two methods on the same items (e.g. per-query AP, or
            per-image 0/1 correctness); NaN items (no relevant item) are dropped from both.
        n_boot: bootstrap resamples.
        seed: seed of the resampling.
        level: coverage of the interval.

    Returns:
        ``{"delta", "lo", "hi", "n"}`` in the units of ``a`` and ``b``.

    Raises:
        ValueError: different lengths, no finite pair, ``n_boot < 1`` or ``level`` not in (0, 1).
    """
    x = np.asarray(torch.as_tensor(a, dtype=torch.float64).cpu())
    y = np.asarray(torch.as_tensor(b, dtype=torch.float64).cpu())
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"a and b: expected two vectors of the same length, got {x.shape} and "
                         f"{y.shape}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot: expected an int >= 1, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a value in (0, 1), got {level!r}")
    d = (y - x)[np.isfinite(x) & np.isfinite(y)]
    if d.size == 0:
        raise ValueError("a and b: no pair of finite values")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return {"delta": float(d.mean()), "lo": float(lo), "hi": float(hi), "n": int(d.size)}
