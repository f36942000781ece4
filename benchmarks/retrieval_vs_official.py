"""Our retrieval metrics against the official per-query loop, on one similarity matrix.

    .venv/bin/python benchmarks/retrieval_vs_official.py [--n 5000] [--classes 100]

The official loop is IsoCLIP ``compute_metrics`` (``src/retrieval.py:522-586``; book notation page,
eq-ap, eq-ap-at-r, eq-r-precision) re-implemented faithfully for same-split data (the query removed
from its own gallery, R counted before the removal): per query, torchmetrics
``retrieval_average_precision`` (in its 1.4.0 form, the version the official environment pins; 1.9
ignores items scored <= 0), ``retrieval_average_precision_atk`` (``src/utils.py:207-232``),
``retrieval_r_precision`` and top-1. Ours is
:func:`isoclip.evaluate.retrieval.evaluate_scores` with
``official_map_at_r=True`` on the same float32 matrix (clustered random features, so every
query has relevant items and cosines of both signs).

Prints both wall times, the speed ratio (target >= 20x), the max abs difference of the
per-query values (in [0, 1]) and of the four reported numbers (in percent; target <= 1e-6).
Queries in which a relevant and a non-relevant item have bit-identical float32 cosines are
counted and reported apart: there the official order is ``torch.topk``'s (unspecified), ours
is by gallery index. For information it also prints the textbook mAP@R and how far the
installed torchmetrics' AP is from the 1.4 definition.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from torchmetrics.functional.retrieval import retrieval_average_precision, retrieval_r_precision

from isoclip.evaluate.retrieval import evaluate_scores, query_metrics_scores


def tm14_average_precision(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """torchmetrics 1.4.0 ``retrieval_average_precision`` (top_k=None; preds cast to float32)."""
    preds = preds.float()
    target = target[preds.topk(preds.shape[-1], sorted=True, dim=-1)[1]]
    if not target.sum():
        return torch.tensor(0.0)
    positions = torch.arange(1, len(target) + 1, dtype=torch.float32)[target > 0]
    return torch.div(torch.arange(len(positions), dtype=torch.float32) + 1, positions).mean()


def official_ap_at_k(preds: torch.Tensor, target: torch.Tensor, top_k: torch.Tensor
                     ) -> torch.Tensor:
    """IsoCLIP ``retrieval_average_precision_atk`` (src/utils.py:207-232)."""
    number_of_relevant = target.sum()
    target = target[torch.topk(preds, k=int(top_k)).indices]
    precisions = torch.cumsum(target, dim=0) * target
    precisions = precisions / torch.arange(1, precisions.shape[0] + 1)
    return torch.sum(precisions) / min(number_of_relevant, top_k)


def official_loop(similarities: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
    """IsoCLIP ``compute_metrics`` with ``is_query_gallery_split_same=True`` (per query)."""
    ground_truth = labels[:, None] == labels[None, :]
    out: dict[str, list[float]] = {"mAP": [], "mAP@R": [], "P@R": [], "R@1": []}
    for query in range(similarities.shape[0]):
        query_sim = similarities[query]
        query_true = ground_truth[query]
        relevant_per_query = torch.sum(query_true)  # counted before removing the query
        query_sim = torch.cat((query_sim[:query], query_sim[query + 1:]))
        query_true = torch.cat((query_true[:query], query_true[query + 1:]))
        top_5_indices = torch.topk(query_sim, 5).indices
        out["mAP"].append(tm14_average_precision(query_sim, query_true).item())
        out["mAP@R"].append(official_ap_at_k(query_sim, query_true.long(),
                                             relevant_per_query).item())
        out["P@R"].append(retrieval_r_precision(query_sim, query_true).item())
        out["R@1"].append(query_true[top_5_indices[0]].int().item())
    return out


def tied_queries(similarities: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """[n] bool: query i (self removed) has a relevant and a non-relevant item of equal score."""
    out = np.zeros(similarities.shape[0], dtype=bool)
    for i in range(similarities.shape[0]):
        s = np.delete(similarities[i].numpy(), i)
        rel = np.delete((labels == labels[i]).numpy(), i)
        out[i] = np.intersect1d(s[rel], s[~rel]).size > 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="items (queries = gallery)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    g = torch.Generator().manual_seed(args.seed)
    labels = torch.randint(0, args.classes, (args.n,), generator=g)
    centres = torch.randn(args.classes, args.dim, generator=g)
    x = F.normalize(centres[labels] + 3.5 * torch.randn(args.n, args.dim, generator=g), dim=1)
    sims = x @ x.T  # float32 [n, n], the one matrix both sides evaluate
    print(f"{args.n} x {args.n} float32 similarities, {args.classes} classes, same-split "
          f"(query removed from its gallery), torch threads {torch.get_num_threads()}; "
          f"{float((sims < 0).float().mean()) * 100:.1f}% of cosines are negative")

    t0 = time.perf_counter()
    ref = official_loop(sims, labels)
    t_official = time.perf_counter() - t0

    t_ours = []
    for _ in range(3):
        t0 = time.perf_counter()
        ours = evaluate_scores(sims, labels, labels, same_split=True, official_map_at_r=True)
        t_ours.append(time.perf_counter() - t0)
    best = min(t_ours)
    per_query = query_metrics_scores(sims, labels, labels, same_split=True, ks=(1,),
                                     official_map_at_r=True)

    print(f"official per-query loop: {t_official:8.2f} s")
    print(f"ours (evaluate_scores):  {best:8.2f} s  (best of 3: "
          f"{', '.join(f'{t:.2f}' for t in t_ours)})")
    print(f"speed ratio: {t_official / best:.0f}x (target >= 20x)")
    tied = torch.from_numpy(tied_queries(sims, labels))
    untied = ~tied
    print(f"{int(tied.sum())} queries have a relevant item whose float32 cosine equals a "
          "non-relevant one's; torch.topk orders such ties arbitrarily, ours by gallery index")
    print(f"{'metric':8s} {'official':>11s} {'ours':>11s} {'|diff| %':>9s} "
          f"{'max|diff| per query':>20s} {'same, tie-free':>15s} {'|diff| % tie-free':>18s}")
    worst = 0.0
    for key in ("mAP", "mAP@R", "P@R", "R@1"):
        off_q = torch.tensor(ref[key], dtype=torch.float64)
        off = 100.0 * float(off_q.mean())
        diff_q = (per_query[key] - off_q).abs()
        diff_free = 100.0 * abs(float(per_query[key][untied].mean() - off_q[untied].mean()))
        worst = max(worst, diff_free)
        print(f"{key:8s} {off:11.6f} {ours[key]:11.6f} {abs(off - ours[key]):9.2e} "
              f"{float(diff_q.max()):20.2e} {float(diff_q[untied].max()):15.2e} "
              f"{diff_free:18.2e}")
    print(f"max abs difference of the reported numbers over tie-free queries: {worst:.2e} "
          "(target <= 1e-6)")

    textbook = evaluate_scores(sims, labels, labels, same_split=True)["mAP@R"]
    n_info = min(500, args.n)
    tm_new = torch.tensor([
        retrieval_average_precision(torch.cat((sims[i, :i], sims[i, i + 1:])),
                                    torch.cat(((labels == labels[i])[:i],
                                               (labels == labels[i])[i + 1:]))).item()
        for i in range(n_info)], dtype=torch.float64)
    print(f"info: textbook mAP@R (R after self-removal) = {textbook:.4f} vs official "
          f"{ours['mAP@R']:.4f}; installed torchmetrics {torchmetrics.__version__} "
          f"retrieval_average_precision (ignores scores <= 0) differs from the 1.4 value by up "
          f"to {float((tm_new - per_query['mAP'][:n_info]).abs().max()):.4f} "
          f"on the first {n_info} queries")

if __name__ == "__main__":
    main()
