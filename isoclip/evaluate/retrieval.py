"""Retrieval metrics: mAP, mAP@R, P@R, P@k, R@k; same-split; cross-modal; Revisited Oxford/Paris.

Definitions (IsoCLIP's official ``src/retrieval.py`` metric loop; book notation page,
eq-precision-at-k, eq-ap, eq-ap-at-r, eq-r-precision, eq-revisited). For one query, the gallery is
ranked by cosine similarity, descending; ``rel_k`` says whether the item at rank k (1-based) is
relevant (same label), R is the number of relevant items and ``P@k = (1/k) sum_{j<=k} rel_j``:

- **AP** (``mAP``) = (1/R) sum_k rel_k P@k over the full ranking: torchmetrics
  ``retrieval_average_precision`` as used by IsoCLIP ``src/retrieval.py:522-586``.
- **AP@R** (``mAP@R``) = (1/R) sum_{k<=R} rel_k P@k: IsoCLIP ``retrieval_average_precision_atk``
  (``src/utils.py:207-232``) with ``top_k = R``, i.e. Musgrave et al.'s MAP@R.
- **P@R** (R-precision) = P@k at k = R: torchmetrics ``retrieval_r_precision``.
- **P@k** = P@k with divisor k even when fewer than k items exist (torchmetrics
  ``retrieval_precision``, ``adaptive_k=False``).
- **R@k** = 1 if a relevant item is among the top k, else 0 (torchmetrics
  ``retrieval_hit_rate``; the official "recall_at_1/5/10"). For paired cross-modal data with
  one relevant item this is the usual Recall@k.

Every metric is averaged over queries and reported in percent, like the papers.

**Same-split** (``same_split=True``; CUB, SOP, Places, iNat): query i is gallery item i and is
removed from its own gallery before ranking (``src/retrieval.py:556-558``), so R counts the
*other* items of its class.

**Official quirk, opt-in** (``official_map_at_r=True``): the official code counts R *before*
the self-removal (``src/retrieval.py:554``), so on same-split data mAP@R is evaluated at
cutoff R+1 while still dividing by R. This never lowers the value. Without ``same_split``
the flag changes nothing.

**Ties** are broken by gallery index: among items with equal similarity the lower index ranks
first (a stable descending sort). torchmetrics has no defined tie order (``torch.topk`` for
AP, ``torch.argsort`` for R-precision, which can disagree with each other); on tie-free
scores all orders coincide and so do the numbers.

**Queries without a relevant item** (query class absent from the gallery, or a singleton
class in same-split retrieval) are skipped: every metric averages over the other queries,
``n_no_relevant`` counts the skipped ones (with a warning) and ``n_queries`` the evaluated
ones. If no query has a relevant item a ValueError is raised. (The official code scores such
queries 0 for mAP and P@R but NaN for mAP@R.)

**torchmetrics versions.** The official environment pins torchmetrics 1.4.0.post0. In
torchmetrics 1.9.0 (installed here; not in 1.4.0) ``retrieval_average_precision`` and
``retrieval_precision`` treat every item with a score <= 0 as non-relevant, which changes AP
whenever a relevant item has a non-positive cosine. The definitions here are the 1.4
(textbook) ones.

**Algorithm.** Queries are processed in chunks of ``chunk_size`` rows (memory is
O(chunk_size x gallery)). For each chunk the similarity rows are sorted once (values only;
numpy's sort on ``torch.get_num_threads()`` blocks of rows in parallel) and the relevant
items' scores are located in the sorted rows by binary search, which gives the rank of every
relevant item; all metrics follow from those ranks. Rows in which a relevant item ties with
a non-relevant one are re-ranked exactly by a stable argsort.
Everything runs on the CPU (inputs on another device are copied).

**Revisited Oxford/Paris** (:func:`evaluate_revisited`): revisitop ``compute_map``
(``filipradenovic/revisitop python/evaluate.py``) as called by IsoCLIP
``compute_roxford_rparis_metrics`` (``src/retrieval.py:461-520``): Easy (ok = easy,
junk = junk + hard), Medium (ok = easy + hard, junk = junk), Hard (ok = hard,
junk = junk + easy); junk items are removed from the ranking; AP is the trapezoidal area
under the precision-recall curve; ``mP@k`` is revisitop's precision at
``min(k, rank of the last positive)``; queries without positives are skipped
(``n_empty_<setting>``). The reported ``mAP`` is Medium; the official code reports Easy
(``src/retrieval.py:702-703``), available with ``official_map_easy=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from isoclip.common.threads import torch_threads

__all__ = [
    "FixedLabelRanker",
    "Relevance",
    "as_features",
    "as_labels",
    "evaluate",
    "evaluate_cross_modal",
    "evaluate_revisited",
    "evaluate_revisited_scores",
    "evaluate_scores",
    "query_metrics",
    "query_metrics_scores",
    "relevant_ranks",
    "unit_rows",
]

#: Default number of similarity entries per chunk (chunk_size = this // gallery size).
CHUNK_ELEMENTS = 1 << 23


# ---------------------------------------------------------------------------------------------
# input validation

def as_features(name: str, x: Any) -> Tensor:
    """``x`` as a detached CPU float tensor [N, D], N >= 1, finite, no all-zero row; else a
    ValueError naming it."""
    t = torch.as_tensor(x).detach().cpu()
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D feature matrix [N, D], got shape "
                         f"{tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name}: empty feature matrix (shape {tuple(t.shape)})")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected floating-point features, got dtype {t.dtype}")
    _check_finite(name, t)
    zero = torch.nonzero(t.abs().amax(dim=1) == 0).flatten()
    if len(zero):
        raise ValueError(f"{name}: {len(zero)} all-zero rows (cosine undefined), "
                         f"first at row {int(zero[0])}")
    return t


#: Rows whose largest entry lies in [2^-32, 2^32] normalise exactly in float32 as they are.
_SAFE_EXPONENT = 32


def unit_rows(x: Tensor) -> Tensor:
    """The rows of ``x`` [N, D] L2-normalised, float32 [N, D], whatever their scale.

    ``F.normalize(x.float())`` overflows for rows of norm above about 1e19 (squares beyond
    float32's range) and leaves rows of norm below its eps 1e-12 unnormalised. When some row's
    largest entry is outside [2^-32, 2^32], every row is first multiplied in float64 by the
    power of two that brings its largest entry into [0.5, 1); a power-of-two factor is exact,
    so the result is the normalisation of the row itself. Otherwise (features of ordinary
    scale) this is ``F.normalize(x.float(), dim=1)``, bit for bit.
    """
    if not x.is_floating_point():
        x = x.float()
    _, e = torch.frexp(x.abs().amax(dim=1, keepdim=True))
    if bool(((e < -_SAFE_EXPONENT) | (e > _SAFE_EXPONENT)).any()):
        # 2^-e in two factors: a single one would overflow for float64 subnormal rows
        half = torch.div(-e, 2, rounding_mode="floor").double()
        x = x.double() * torch.pow(2.0, half) * torch.pow(2.0, -e.double() - half)
    return F.normalize(x.float(), dim=1)


def as_labels(name: str, y: Any, n: int, n_name: str) -> Tensor:
    """``y`` as a CPU int64 tensor [n]; else a ValueError naming it."""
    if isinstance(y, Tensor):
        t = y.detach().cpu()
    else:
        a = np.asarray(y)
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name}: expected integer labels, got dtype {a.dtype}")
        t = torch.from_numpy(np.array(a, dtype=np.int64))  # a copy: inputs may be read-only
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D label vector, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise ValueError(f"{name}: expected integer labels, got dtype {t.dtype}")
    if t.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per row of {n_name}), "
                         f"got {t.shape[0]}")
    return t.to(torch.int64)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(ks)
    if not out or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in out):
        raise ValueError(f"ks: expected a non-empty sequence of positive ints, got {ks!r}")
    return out


def _check_scores(name: str, s: Any) -> Tensor:
    t = torch.as_tensor(s).detach().cpu()
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix [Q, G], got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name}: empty (shape {tuple(t.shape)}); the gallery and the "
                         "queries must be non-empty")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected floating-point similarities, got dtype {t.dtype}")
    _check_finite(name, t)
    return t


def _check_finite(name: str, t: Tensor) -> None:
    if bool(torch.isfinite(t.sum())):
        return  # a finite sum proves every entry finite, in one cheap pass
    if not bool(torch.isfinite(t).all()):  # else it may only have overflowed
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name}: {bad} non-finite values (NaN or inf)")


def _chunk_rows(chunk_size: int | None, n_cols: int) -> int:
    if chunk_size is None:
        return max(1, CHUNK_ELEMENTS // n_cols)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int or None, got {chunk_size!r}")
    return chunk_size


# ---------------------------------------------------------------------------------------------
# ranks of the relevant items

class Relevance:
    """Gallery columns of each class, for gathering the relevant items of a query chunk.

    Labels are compared for equality only (any int64 values). ``order`` lists gallery columns
    grouped by class; class c occupies ``order[start[c] : start[c] + count[c]]``.
    """

    def __init__(self, query_labels: Tensor, gallery_labels: Tensor) -> None:
        classes, inverse = torch.unique(torch.cat([gallery_labels, query_labels]),
                                        return_inverse=True)
        n_g = gallery_labels.shape[0]
        self.gallery_codes = inverse[:n_g]
        self.query_codes = inverse[n_g:]
        self.order = torch.argsort(self.gallery_codes, stable=True)
        self.count = torch.bincount(self.gallery_codes, minlength=len(classes))
        self.start = torch.cumsum(self.count, 0) - self.count

    def columns(self, rows: Tensor, self_cols: Tensor | None) -> tuple[Tensor, Tensor]:
        """(columns [C, Rmax], valid [C, Rmax]) of the relevant gallery items of query ``rows``.

        ``self_cols`` (same-split) are excluded: query i is not relevant to itself.
        """
        codes = self.query_codes[rows]
        count = self.count[codes]
        r_max = max(int(count.max()), 1)
        offs = torch.arange(r_max)
        valid = offs[None, :] < count[:, None]
        pos = (self.start[codes][:, None] + offs[None, :]).clamp_(max=len(self.order) - 1)
        cols = self.order[pos]
        if self_cols is not None:
            valid &= cols != self_cols[:, None]
        return cols, valid


def _count_greater(scores: Tensor, values: Tensor, pool: ThreadPoolExecutor | None = None,
                   n_parts: int = 1) -> tuple[Tensor, Tensor]:
    """Sort each row of ``scores`` [C, G] and count its entries greater than ``values`` [C, R].

    numpy's sort (it releases the GIL) and the binary search run on ``n_parts`` blocks of rows
    in parallel on ``pool`` (``pool=None``: in the calling thread). Returns (rows sorted
    ascending [C, G], counts [C, R] int64).
    """
    out = scores.numpy().copy()
    g = out.shape[1]
    if pool is None:
        out.sort(axis=1)
        srt = torch.from_numpy(out)
        return srt, g - torch.searchsorted(srt, values, right=True)
    bounds = np.linspace(0, out.shape[0], n_parts + 1).astype(int)

    def block(a: int, b: int) -> Tensor:
        out[a:b].sort(axis=1)
        counts: Tensor = g - torch.searchsorted(torch.from_numpy(out[a:b]), values[a:b],
                                                right=True)
        return counts

    parts = pool.map(block, bounds[:-1].tolist(), bounds[1:].tolist())
    return torch.from_numpy(out), torch.cat(list(parts))


def _ranks_chunk(scores: Tensor, cols: Tensor, valid: Tensor, self_cols: Tensor | None,
                 gallery_codes: Tensor, query_codes: Tensor,
                 count_greater: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
                 ) -> tuple[Tensor, Tensor]:
    """1-based ranks of the relevant items of a chunk of queries.

    Args:
        scores: float32/float64 [C, G] similarities, CPU (not modified).
        cols, valid: relevant gallery columns [C, Rmax] and their mask (see ``Relevance``).
        self_cols: [C] gallery column of each query itself (same-split: it is neither relevant
            nor counted) or None.
        gallery_codes, query_codes: class codes [G] and [C] (for the exact tie path).
        count_greater: :func:`_count_greater` bound to a thread pool.

    Returns:
        (ranks [C, Rmax] int64, ascending per row, padded with G + 1 beyond R;
        R [C] int64, the number of relevant items per query).
    """
    g = scores.shape[1]
    r = valid.sum(1)
    r_max = cols.shape[1]
    # relevant scores p, descending, padding (-inf) last
    rel = torch.where(valid, scores.gather(1, cols), -torch.inf)
    rel_desc = torch.sort(rel, dim=1, descending=True).values
    rel_asc = rel_desc.flip(1)  # padding first: Rmax - R entries of -inf
    # ties among relevant items: how many relevant scores are > and >= each p
    rel_gt = r_max - torch.searchsorted(rel_asc, rel_desc, right=True)
    rel_eq = r_max - torch.searchsorted(rel_asc, rel_desc, right=False) - rel_gt
    # all items: sort each row once, count the entries > p
    sorted_rows, n_above = count_greater(scores, rel_desc)
    n_gt, own_eq = n_above, torch.zeros_like(n_above)
    if self_cols is not None:  # the query itself is not in its gallery
        own = scores.gather(1, self_cols[:, None])
        n_gt = n_above - (own > rel_desc).long()
        own_eq = (own == rel_desc).long()
    i = torch.arange(1, r_max + 1)[None, :]
    keep = i <= r[:, None]
    ranks = torch.where(keep, n_gt + i - rel_gt, g + 1)
    # just below the n_above larger entries, sorted_rows holds the rel_eq relevant entries
    # equal to p (and the query itself if equal); one more equal entry is a non-relevant tie,
    # whose order with respect to the relevant ones is by gallery index
    below = g - n_above - rel_eq - own_eq - 1
    tied = keep & (below >= 0) & (sorted_rows.gather(1, below.clamp(min=0)) == rel_desc)
    for row in torch.nonzero(tied.any(1)).flatten().tolist():
        order = torch.sort(scores[row], descending=True, stable=True).indices
        if self_cols is not None:
            order = order[order != self_cols[row]]
        pos = torch.nonzero(gallery_codes[order] == query_codes[row]).flatten() + 1
        ranks[row, : len(pos)] = pos
    return ranks, r


# The ranking stage is a numpy sort plus many small torch ops; on a busy machine the intra-op
# thread pool's synchronisation makes those small ops several times slower than one thread
# (measured: 1.85 s vs 0.7 s for 5k x 5k on 2 shared cores), so they run in
# ``torch_threads(1)``. Matrix products stay outside and use every thread.


def _ranks_iter(n_rows: int, chunk: int, relevance: Relevance, same_split: bool,
                score_rows: Callable[[int, int], Tensor]) -> list[tuple[Tensor, Tensor]]:
    """``_ranks_chunk`` over query chunks; ``score_rows(a, b)`` gives fresh scores [b - a, G]."""
    out = []
    n_threads = torch.get_num_threads()
    with ThreadPoolExecutor(n_threads) as pool:
        def count_greater(x: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
            return _count_greater(x, values, pool, n_threads)

        for a in range(0, n_rows, chunk):
            rows = torch.arange(a, min(a + chunk, n_rows))
            self_cols = rows if same_split else None
            scores = score_rows(a, a + len(rows))
            with torch_threads(1):
                cols, valid = relevance.columns(rows, self_cols)
                out.append(_ranks_chunk(scores, cols, valid, self_cols, relevance.gallery_codes,
                                        relevance.query_codes[rows], count_greater))
    return out


def relevant_ranks(scores: Tensor, query_labels: Any, gallery_labels: Any,
                   same_split: bool = False, chunk_size: int | None = None
                   ) -> tuple[Tensor, Tensor]:
    """Ranks of the relevant gallery items of every query, from a similarity matrix.

    Args:
        scores: [Q, G] similarities (higher = more similar).
        query_labels: [Q] integer labels; gallery_labels: [G]. Relevant = equal labels.
        same_split: query i is gallery item i and is removed from its gallery (needs Q == G).
        chunk_size: queries per chunk (None: about 8M similarity entries per chunk).

    Returns:
        (ranks [Q, Rmax] int64: 1-based ranks of the relevant items of each query in
        ascending order, padded with G + 1; R [Q] int64: number of relevant items).
    """
    s = _check_scores("scores", scores)
    q, g = s.shape
    ql = as_labels("query_labels", query_labels, q, "scores")
    gl = as_labels("gallery_labels", gallery_labels, g, "scores (columns)")
    _check_same_split(same_split, q, g, ql, gl)
    rel = Relevance(ql, gl)
    chunk = _chunk_rows(chunk_size, g)
    dtype = s.dtype if s.dtype in (torch.float32, torch.float64) else torch.float32
    parts = _ranks_iter(q, chunk, rel, same_split, lambda a, b: s[a:b].to(dtype))
    return _stack_ranks(parts, g)


def _stack_ranks(parts: list[tuple[Tensor, Tensor]], g: int) -> tuple[Tensor, Tensor]:
    r_max = max(p[0].shape[1] for p in parts)
    ranks = torch.cat([F.pad(p[0], (0, r_max - p[0].shape[1]), value=g + 1) for p in parts])
    return ranks, torch.cat([p[1] for p in parts])


def _check_same_split(same_split: bool, q: int, g: int, ql: Tensor, gl: Tensor) -> None:
    if not same_split:
        return
    if q != g:
        raise ValueError(f"same_split=True needs the query set to be the gallery set, got "
                         f"{q} queries and {g} gallery items")
    if not torch.equal(ql, gl):
        raise ValueError("same_split=True needs query_labels == gallery_labels (the query set "
                         "is the gallery set)")


# ---------------------------------------------------------------------------------------------
# metrics from ranks

def _metrics_from_ranks(ranks: Tensor, r: Tensor, ks: tuple[int, ...], same_split: bool,
                        official_map_at_r: bool) -> dict[str, Tensor]:
    """Per-query metrics in [0, 1] (float64 [Q]; NaN where R = 0). See the module docstring."""
    i = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64)[None, :]
    rf = r.to(torch.float64)
    keep = i <= rf[:, None]
    prec = torch.where(keep, i / ranks.to(torch.float64), 0.0)  # P@rank_i at each relevant item
    cut = r + 1 if (official_map_at_r and same_split) else r
    out = {
        "mAP": prec.sum(1) / rf,
        "mAP@R": (prec * (ranks <= cut[:, None])).sum(1) / rf,
        "P@R": (keep & (ranks <= r[:, None])).sum(1) / rf,
    }
    for k in ks:
        out[f"P@{k}"] = (keep & (ranks <= k)).sum(1).to(torch.float64) / k
    for k in ks:
        out[f"R@{k}"] = (ranks[:, 0] <= k).to(torch.float64)
    empty = r == 0
    return {name: torch.where(empty, torch.nan, v) for name, v in out.items()}


def query_metrics_scores(scores: Tensor, query_labels: Any, gallery_labels: Any,
                         same_split: bool = False, ks: Sequence[int] = (1, 5, 10),
                         chunk_size: int | None = None, official_map_at_r: bool = False
                         ) -> dict[str, Tensor]:
    """Per-query metrics from a similarity matrix [Q, G]: name -> float64 [Q] in [0, 1].

    NaN marks queries without a relevant item. Arguments as :func:`evaluate_scores`.
    """
    ks_t = _check_ks(ks)
    ranks, r = relevant_ranks(scores, query_labels, gallery_labels, same_split, chunk_size)
    with torch_threads(1):
        return _metrics_from_ranks(ranks, r, ks_t, same_split, official_map_at_r)


def query_metrics(query: Any, gallery: Any, query_labels: Any, gallery_labels: Any,
                  same_split: bool = False, ks: Sequence[int] = (1, 5, 10),
                  chunk_size: int | None = None, official_map_at_r: bool = False
                  ) -> dict[str, Tensor]:
    """Per-query metrics from features: name -> float64 [Q] in [0, 1] (NaN: no relevant item).

    Arguments as :func:`evaluate`. Similarities are computed chunk by chunk (float32 cosine),
    never as a full [Q, G] matrix.
    """
    ks_t = _check_ks(ks)
    qf = as_features("query", query)
    gf = as_features("gallery", gallery)
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(f"query and gallery: feature dimensions differ ({qf.shape[1]} vs "
                         f"{gf.shape[1]})")
    q, g = qf.shape[0], gf.shape[0]
    ql = as_labels("query_labels", query_labels, q, "query")
    gl = as_labels("gallery_labels", gallery_labels, g, "gallery")
    _check_same_split(same_split, q, g, ql, gl)
    qn = unit_rows(qf)
    gn = unit_rows(gf)
    gt = gn.T.contiguous()
    rel = Relevance(ql, gl)
    chunk = _chunk_rows(chunk_size, g)
    with torch.no_grad():
        parts = _ranks_iter(q, chunk, rel, same_split, lambda a, b: qn[a:b] @ gt)
    ranks, r = _stack_ranks(parts, g)
    with torch_threads(1):
        return _metrics_from_ranks(ranks, r, ks_t, same_split, official_map_at_r)


def _summarise(per_query: dict[str, Tensor]) -> dict[str, float]:
    first = next(iter(per_query.values()))
    empty = torch.isnan(first)
    n_empty = int(empty.sum())
    if n_empty == len(first):
        raise ValueError(f"no query has a relevant item in the gallery ({n_empty} queries): "
                         "check query_labels / gallery_labels")
    if n_empty:
        warnings.warn(f"{n_empty} of {len(first)} queries have no relevant item in the gallery "
                      "and are skipped (n_no_relevant)", stacklevel=3)
    out = {name: 100.0 * float(v[~empty].mean()) for name, v in per_query.items()}
    out["n_queries"] = float(len(first) - n_empty)
    out["n_no_relevant"] = float(n_empty)
    return out


def evaluate(query: Any, gallery: Any, query_labels: Any, gallery_labels: Any,
             same_split: bool = False, ks: Sequence[int] = (1, 5, 10),
             chunk_size: int | None = None, official_map_at_r: bool = False
             ) -> dict[str, float]:
    """Retrieval metrics of ``query`` against ``gallery`` features, in percent.

    Args:
        query: [Q, D] query features (any scale; L2-normalised inside).
        gallery: [G, D] gallery features.
        query_labels: [Q] integer labels; gallery_labels: [G]. Relevant = equal labels.
        same_split: the queries are the gallery (Q == G, same labels); query i is removed
            from its own gallery.
        ks: cutoffs of ``P@k`` and ``R@k``.
        chunk_size: queries per chunk; memory is O(chunk_size x G). None: about 8M
            similarity entries per chunk.
        official_map_at_r: reproduce the official mAP@R cutoff R+1 on same-split data.

    Returns:
        ``{"mAP", "mAP@R", "P@R", "P@k"..., "R@k"...}`` in percent, averaged over the
        queries with at least one relevant item, plus ``n_queries`` (evaluated) and
        ``n_no_relevant`` (skipped).

    Raises:
        ValueError: empty inputs, non-finite or all-zero feature rows, mismatched dimensions
            or lengths, an inconsistent ``same_split``, or no query with a relevant item.
    """
    return _summarise(query_metrics(query, gallery, query_labels, gallery_labels, same_split,
                                    ks, chunk_size, official_map_at_r))


def evaluate_scores(scores: Any, query_labels: Any, gallery_labels: Any,
                    same_split: bool = False, ks: Sequence[int] = (1, 5, 10),
                    chunk_size: int | None = None, official_map_at_r: bool = False
                    ) -> dict[str, float]:
    """:func:`evaluate` on a precomputed similarity matrix ``scores`` [Q, G] (higher = closer)."""
    return _summarise(query_metrics_scores(scores, query_labels, gallery_labels, same_split,
                                           ks, chunk_size, official_map_at_r))


class FixedLabelRanker:
    """Retrieval metrics of many similarity matrices over the same labelled queries and gallery.

    A band sweep scores hundreds of [Q, G] matrices against one labelling. The labels are
    checked and the relevant gallery columns of every query gathered once; each call then
    ranks with the core of :func:`query_metrics_scores` (one sort per row, binary search,
    exact tie rule) and takes the metrics from the same definitions, so its numbers equal
    :func:`evaluate_scores` on the same scores, ties included. A call runs in the calling
    thread and never changes torch's thread count, so calls can run in parallel threads
    (numpy's sort and torch ops release the GIL).

    Args:
        query_labels: [Q] integer labels; gallery_labels: [G]. Relevant = equal labels.
        same_split: query i is gallery item i and is removed from its own gallery.

    Raises:
        ValueError: bad labels, an inconsistent ``same_split``, or no query with a relevant
            item.
    """

    def __init__(self, query_labels: Any, gallery_labels: Any, same_split: bool = False) -> None:
        ql = as_labels("query_labels", query_labels, len(query_labels), "query_labels")
        gl = as_labels("gallery_labels", gallery_labels, len(gallery_labels), "gallery_labels")
        _check_same_split(same_split, len(ql), len(gl), ql, gl)
        self.query_labels, self.gallery_labels, self.same_split = ql, gl, same_split
        self.relevance = Relevance(ql, gl)
        rows = torch.arange(len(ql))
        self.self_cols = rows if same_split else None
        self.cols, self.valid = self.relevance.columns(rows, self.self_cols)
        #: [Q] bool: queries with at least one relevant item (the others are skipped)
        self.has_relevant = self.valid.any(1)
        if not bool(self.has_relevant.any()):
            raise ValueError("no query has a relevant item in the gallery: check "
                             "query_labels / gallery_labels")

    @property
    def shape(self) -> tuple[int, int]:
        """(Q, G): the shape of the score matrices this ranker takes."""
        return len(self.query_labels), len(self.gallery_labels)

    def per_query(self, scores: Tensor, ks: Sequence[int] = (1,)) -> dict[str, Tensor]:
        """Per-query metrics of ``scores`` [Q, G] (float32 or float64, CPU): name -> float64 [Q]
        in [0, 1], NaN for queries without a relevant item (as :func:`query_metrics_scores`)."""
        s = _check_scores("scores", scores)
        if tuple(s.shape) != self.shape:
            raise ValueError(f"scores: expected shape {self.shape} (queries x gallery of the "
                             f"labels), got {tuple(s.shape)}")
        if s.dtype not in (torch.float32, torch.float64):
            s = s.to(torch.float32)
        ranks, r = _ranks_chunk(s, self.cols, self.valid, self.self_cols,
                                self.relevance.gallery_codes, self.relevance.query_codes,
                                _count_greater)
        return _metrics_from_ranks(ranks, r, _check_ks(ks), self.same_split, False)

    def metrics(self, scores: Tensor, names: Sequence[str] = ("mAP",)) -> dict[str, float]:
        """The metrics ``names`` (``"mAP"``, ``"mAP@R"``, ``"P@R"``, ``"P@k"``, ``"R@k"``) of
        ``scores`` [Q, G] in percent, averaged over the queries with a relevant item."""
        ks = sorted({int(n[2:]) for n in names if n[:2] in ("P@", "R@") and n[2:].isdigit()})
        per_query = self.per_query(scores, ks or (1,))
        unknown = [n for n in names if n not in per_query]
        if unknown:
            raise ValueError(f"names: unknown metrics {unknown}; expected among "
                             f"{sorted(per_query)}")
        keep = self.has_relevant
        return {n: 100.0 * float(per_query[n][keep].mean()) for n in names}


def evaluate_cross_modal(image_features: Any, text_features: Any,
                         text_to_image: Any | None = None, ks: Sequence[int] = (1, 5, 10),
                         chunk_size: int | None = None) -> dict[str, float]:
    """Image<->text retrieval Recall@k (ModGap ``metrics.py:12-71``; IsoCLIP cross-modal).

    Args:
        image_features: [Ni, d]. text_features: [Nt, d].
        text_to_image: [Nt] index of the image each caption describes; None means caption i
            describes image i (Nt == Ni).
        ks: cutoffs.
        chunk_size: as in :func:`evaluate`.

    Returns:
        ``t2i_R@k`` (text query, the one paired image relevant), ``i2t_R@k`` (image query,
        any of its captions relevant), and their means over ``ks``: ``t2i_Ravg``,
        ``i2t_Ravg``; in percent. Images without a caption are skipped as i2t queries
        (counted in ``i2t_n_no_relevant``).
    """
    img = as_features("image_features", image_features)
    txt = as_features("text_features", text_features)
    ni, nt = img.shape[0], txt.shape[0]
    if text_to_image is None:
        if ni != nt:
            raise ValueError(f"text_to_image: needed when the numbers of images ({ni}) and "
                             f"texts ({nt}) differ")
        t2i = torch.arange(nt)
    else:
        t2i = as_labels("text_to_image", text_to_image, nt, "text_features")
        if len(t2i) and (int(t2i.min()) < 0 or int(t2i.max()) >= ni):
            raise ValueError(f"text_to_image: values must be image indices in [0, {ni}), got "
                             f"range [{int(t2i.min())}, {int(t2i.max())}]")
    image_ids = torch.arange(ni)
    ks_t = _check_ks(ks)
    out: dict[str, float] = {}
    for prefix, q, g, ql, gl in (("t2i", txt, img, t2i, image_ids),
                                 ("i2t", img, txt, image_ids, t2i)):
        res = evaluate(q, g, ql, gl, ks=ks_t, chunk_size=chunk_size)
        for k in ks_t:
            out[f"{prefix}_R@{k}"] = res[f"R@{k}"]
        out[f"{prefix}_Ravg"] = float(np.mean([res[f"R@{k}"] for k in ks_t]))
        out[f"{prefix}_n_no_relevant"] = res["n_no_relevant"]
    return out


# ---------------------------------------------------------------------------------------------
# Revisited Oxford / Paris

_SETTINGS = ("easy", "medium", "hard")


def _gnd_index(name: str, v: Any, g: int) -> np.ndarray:
    a = np.asarray(v if v is not None else [], dtype=np.int64).reshape(-1)
    if len(a) and (a.min() < 0 or a.max() >= g):
        raise ValueError(f"{name}: gallery indices must lie in [0, {g}), got range "
                         f"[{a.min()}, {a.max()}]")
    if len(np.unique(a)) != len(a):
        raise ValueError(f"{name}: duplicate gallery indices")
    return a


def _revisited_settings(entry: Mapping[str, Any], g: int, qi: int
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(ok, junk) per setting, as in IsoCLIP ``compute_roxford_rparis_metrics``."""
    for key in ("easy", "hard", "junk"):
        if key not in entry:
            raise ValueError(f"gnd[{qi}]: missing key {key!r} (expected 'easy', 'hard', 'junk')")
    easy = _gnd_index(f"gnd[{qi}]['easy']", entry["easy"], g)
    hard = _gnd_index(f"gnd[{qi}]['hard']", entry["hard"], g)
    junk = _gnd_index(f"gnd[{qi}]['junk']", entry["junk"], g)
    if len(np.unique(np.concatenate([easy, hard, junk]))) != len(easy) + len(hard) + len(junk):
        raise ValueError(f"gnd[{qi}]: 'easy', 'hard' and 'junk' must be disjoint")
    return {
        "easy": (easy, np.concatenate([junk, hard])),
        "medium": (np.concatenate([easy, hard]), junk),
        "hard": (hard, np.concatenate([junk, easy])),
    }


def _revisited_query(order: np.ndarray, ok: np.ndarray, junk: np.ndarray,
                     ks: tuple[int, ...]) -> tuple[float, np.ndarray]:
    """AP and precision@k of one query, revisitop ``compute_ap`` / ``compute_map``.

    ``order``: gallery indices, best first; ``ok`` and ``junk`` disjoint. Junk items are
    dropped from the ranking, which is revisitop's shift of each positive's rank by the number
    of junk items above it.
    """
    g = len(order)
    is_ok = np.zeros(g, dtype=bool)
    is_ok[ok] = True
    is_junk = np.zeros(g, dtype=bool)
    is_junk[junk] = True
    ranked_ok = is_ok[order]
    kept = ranked_ok[~is_junk[order]]
    pos = np.flatnonzero(kept).astype(np.float64)  # 0-based ranks among non-junk items
    j = np.arange(len(pos), dtype=np.float64)
    prec0 = np.where(pos == 0, 1.0, j / np.maximum(pos, 1.0))
    prec1 = (j + 1.0) / (pos + 1.0)
    ap = float(((prec0 + prec1) / 2.0).sum() / len(ok))
    pos1 = pos + 1.0
    last = pos1.max()
    prs = np.array([(pos1 <= min(last, k)).sum() / min(last, k) for k in ks])
    return ap, prs


def evaluate_revisited_scores(scores: Any, gnd: Sequence[Mapping[str, Any]],
                              ks: Sequence[int] = (1, 5, 10),
                              official_map_easy: bool = False) -> dict[str, float]:
    """Revisited Oxford/Paris metrics from similarities ``scores`` [Q, G], in percent.

    Args:
        scores: [Q, G] similarities of the Q queries to the G database images.
        gnd: Q mappings with gallery-index arrays ``'easy'``, ``'hard'``, ``'junk'`` (the
            revisitop ``gnd_*.pkl`` format; other keys such as ``'bbx'`` are ignored).
        ks: cutoffs of ``mP@k``.
        official_map_easy: report ``mAP`` := Easy like the official code, instead of Medium.

    Returns:
        ``mAP_<s>``, ``mP@k_<s>`` and ``n_empty_<s>`` for s in easy/medium/hard, and ``mAP``.

    Raises:
        ValueError: malformed ``gnd``, or a setting in which no query has a positive.
    """
    s = _check_scores("scores", scores)
    q, g = s.shape
    ks_t = _check_ks(ks)
    if len(gnd) != q:
        raise ValueError(f"gnd: expected {q} entries (one per query row of scores), "
                         f"got {len(gnd)}")
    per_setting: dict[str, list[tuple[float, np.ndarray]]] = {k: [] for k in _SETTINGS}
    n_empty = dict.fromkeys(_SETTINGS, 0)
    for qi in range(q):
        order = torch.sort(s[qi], descending=True, stable=True).indices.numpy()
        for name, (ok, junk) in _revisited_settings(gnd[qi], g, qi).items():
            if len(ok) == 0:
                n_empty[name] += 1
                continue
            per_setting[name].append(_revisited_query(order, ok, junk, ks_t))
    out: dict[str, float] = {}
    for name in _SETTINGS:
        if not per_setting[name]:
            raise ValueError(f"gnd: no query has a positive in the {name} setting")
        aps = np.array([a for a, _ in per_setting[name]])
        prs = np.stack([p for _, p in per_setting[name]])
        out[f"mAP_{name}"] = 100.0 * float(aps.mean())
        for k, v in zip(ks_t, prs.mean(0)):
            out[f"mP@{k}_{name}"] = 100.0 * float(v)
        out[f"n_empty_{name}"] = float(n_empty[name])
    out["mAP"] = out["mAP_easy" if official_map_easy else "mAP_medium"]
    return out


def evaluate_revisited(query: Any, gallery: Any, gnd: Sequence[Mapping[str, Any]],
                       ks: Sequence[int] = (1, 5, 10),
                       official_map_easy: bool = False) -> dict[str, float]:
    """:func:`evaluate_revisited_scores` on the cosine similarities of features
    ``query`` [Q, D] and ``gallery`` [G, D] (normalised inside)."""
    qf = as_features("query", query)
    gf = as_features("gallery", gallery)
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(f"query and gallery: feature dimensions differ ({qf.shape[1]} vs "
                         f"{gf.shape[1]})")
    scores = unit_rows(qf) @ unit_rows(gf).T
    return evaluate_revisited_scores(scores, gnd, ks, official_map_easy)
