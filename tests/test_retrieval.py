"""Retrieval metrics: hand-computed rankings, torchmetrics / scikit-learn agreement, chunking,
same-split and the official quirk, cross-modal Recall@k, Revisited Oxford/Paris, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torchmetrics.functional.retrieval import (
    retrieval_average_precision,
    retrieval_hit_rate,
    retrieval_precision,
    retrieval_r_precision,
)

from isoclip.evaluate.retrieval import (
    evaluate,
    evaluate_cross_modal,
    evaluate_revisited,
    evaluate_revisited_scores,
    evaluate_scores,
    query_metrics,
    query_metrics_scores,
    relevant_ranks,
)

KEYS = {"mAP", "mAP@R", "P@R", "P@1", "P@5", "P@10", "R@1", "R@5", "R@10", "n_queries",
        "n_no_relevant"}


def one(scores, relevant, **kw) -> dict[str, float]:
    """Metrics of a single query: ``relevant`` = gallery indices with the query's label."""
    s = torch.tensor([scores], dtype=torch.float64)
    gl = torch.ones(len(scores), dtype=torch.long)
    gl[list(relevant)] = 0
    return evaluate_scores(s, torch.tensor([0]), gl, **kw)


# ---------------------------------------------------------------------------------------------
# hand-computed rankings

def test_hand_computed_ranking():
    # ranking = gallery order; relevant at ranks 1 and 3, R = 2
    m = one([0.9, 0.8, 0.7, 0.6, 0.5], {0, 2})
    assert set(m) == KEYS
    assert m["mAP"] == pytest.approx(100 * (1 / 1 + 2 / 3) / 2)
    assert m["mAP@R"] == pytest.approx(100 * (1 / 1) / 2)  # only rank 1 is within R = 2
    assert m["P@R"] == pytest.approx(50.0)
    assert m["P@1"] == 100.0 and m["P@5"] == pytest.approx(40.0) and m["P@10"] == 20.0
    assert m["R@1"] == m["R@5"] == m["R@10"] == 100.0
    assert m["n_queries"] == 1.0 and m["n_no_relevant"] == 0.0


def test_single_relevant_item():
    m = one([0.1, 0.9, 0.8, 0.7, 0.6, 0.5], {0})  # rank 6
    assert m["mAP"] == pytest.approx(100 / 6)
    assert m["mAP@R"] == 0.0 and m["P@R"] == 0.0 and m["R@1"] == 0.0 and m["R@5"] == 0.0
    assert m["R@10"] == 100.0 and m["P@10"] == pytest.approx(10.0)


def test_ties_are_broken_by_gallery_index():
    assert one([0.5, 0.5, 0.5], {2})["mAP"] == pytest.approx(100 / 3)
    assert one([0.5, 0.5, 0.5], {0})["mAP"] == pytest.approx(100.0)
    # relevant tied with a non-relevant item of lower index, after an untied negative
    m = one([0.9, 0.4, 0.7, 0.7], {3})
    assert m["mAP"] == pytest.approx(100 / 3) and m["R@1"] == 0.0
    # ties among relevant items only: order between them is irrelevant
    assert one([0.3, 0.8, 0.8, 0.1], {1, 2})["mAP"] == pytest.approx(100.0)
    # ranks agree with a stable descending argsort on many tied rows
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 3, (40, 30), generator=g).double()
    gl = torch.randint(0, 4, (30,), generator=g)
    ql = torch.randint(0, 4, (40,), generator=g)
    ranks, r = relevant_ranks(s, ql, gl, chunk_size=7)
    for i in range(40):
        order = torch.sort(s[i], descending=True, stable=True).indices
        expected = torch.nonzero(gl[order] == ql[i]).flatten() + 1
        assert int(r[i]) == len(expected)
        assert torch.equal(ranks[i, : len(expected)], expected)


def test_query_without_relevant_item_is_skipped_and_counted():
    s = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4]])
    with pytest.warns(UserWarning, match="1 of 2 queries have no relevant"):
        m = evaluate_scores(s, [0, 7], [0, 1, 1])  # class 7 is absent from the gallery
    assert m["n_queries"] == 1.0 and m["n_no_relevant"] == 1.0
    assert m["mAP"] == 100.0  # the first query alone
    per_query = query_metrics_scores(s, [0, 7], [0, 1, 1])
    assert torch.isnan(per_query["mAP"][1]) and per_query["mAP"][0] == 1.0
    with pytest.raises(ValueError, match="no query has a relevant item"):
        evaluate_scores(s, [5, 7], [0, 1, 1])


def test_same_split_removes_the_query_and_singletons_are_skipped():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.9]])
    labels = torch.tensor([0, 1, 0, 2])  # items 1 and 3 are alone in their class
    with pytest.warns(UserWarning, match="2 of 4"):
        m = evaluate(x, x, labels, labels, same_split=True)
    per = query_metrics(x, x, labels, labels, same_split=True)
    # query 0: gallery 1 (neg, cos .99), 3 (.22), 2 (pos, 0.0) -> relevant at rank 3
    assert per["mAP"][0] == pytest.approx(1 / 3)
    # query 1: its class has no other member -> skipped
    assert torch.isnan(per["mAP"][1])
    # query 2: gallery 3 (.98), 1 (.11), 0 (pos, 0.0) -> rank 3
    assert per["mAP"][2] == pytest.approx(1 / 3)
    assert torch.isnan(per["mAP"][3])
    assert m["n_queries"] == 2.0 and m["mAP"] == pytest.approx(100 / 3)


def test_official_map_at_r_counts_r_before_self_removal():
    # query 0 (class 0) ranks: 2 (class 0) at rank 2 -> R = 1; official cutoff R + 1 = 2
    x = torch.tensor([[1.0, 0.0], [0.95, 0.3], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 1])
    textbook = query_metrics(x, x, labels, labels, same_split=True)
    official = query_metrics(x, x, labels, labels, same_split=True, official_map_at_r=True)
    assert textbook["mAP@R"][0] == 0.0
    assert official["mAP@R"][0] == pytest.approx(0.5)  # (1/R) * P@2 = 1 * 1/2
    for key in textbook:  # nothing else changes
        if key != "mAP@R":
            assert torch.equal(textbook[key], official[key])
    # without same_split the flag is a no-op
    q = evaluate(x, x, labels, labels)
    assert q == evaluate(x, x, labels, labels, official_map_at_r=True)


# ---------------------------------------------------------------------------------------------
# agreement with torchmetrics, scikit-learn and the official code on random data

def official_ap_at_k(preds: torch.Tensor, target: torch.Tensor, top_k: int) -> torch.Tensor:
    """IsoCLIP ``retrieval_average_precision_atk`` (src/utils.py:207-232), verbatim logic."""
    top_k = top_k or preds.shape[-1]
    number_of_relevant = target.sum()
    target = target[torch.topk(preds, k=top_k).indices]
    precisions = torch.cumsum(target, dim=0) * target
    precisions = precisions / torch.arange(1, precisions.shape[0] + 1)
    return torch.sum(precisions) / min(number_of_relevant, top_k)


@pytest.mark.parametrize("same_split", [False, True])
def test_agrees_with_torchmetrics_and_sklearn(same_split):
    g = torch.Generator().manual_seed(1)
    n_q, n_g = (60, 60) if same_split else (50, 120)
    gl = torch.randint(0, 6, (n_g,), generator=g)
    ql = gl.clone() if same_split else torch.randint(0, 6, (n_q,), generator=g)
    # scores in (0, 1]: torchmetrics >= 1.8 ignores items scored <= 0 (see the module docs)
    s = torch.rand(n_q, n_g, generator=g) + 1e-3
    ours = query_metrics_scores(s, ql, gl, same_split, official_map_at_r=same_split)
    for i in range(n_q):
        preds, target = s[i], gl == ql[i]
        r_before = int(target.sum())
        if same_split:
            keep = torch.arange(n_g) != i
            preds, target = preds[keep], target[keep]
        if not target.any():
            assert torch.isnan(ours["mAP"][i])
            continue
        assert ours["mAP"][i] == pytest.approx(float(retrieval_average_precision(preds, target)),
                                               abs=1e-6)
        assert ours["mAP"][i] == pytest.approx(
            average_precision_score(target.numpy(), preds.numpy()), abs=1e-9)
        assert ours["P@R"][i] == pytest.approx(float(retrieval_r_precision(preds, target)))
        assert ours["mAP@R"][i] == pytest.approx(
            float(official_ap_at_k(preds, target.long(), r_before)), abs=1e-6)
        for k in (1, 5, 10):
            assert ours[f"P@{k}"][i] == pytest.approx(
                float(retrieval_precision(preds, target, top_k=k)))
            assert ours[f"R@{k}"][i] == float(retrieval_hit_rate(preds, target, top_k=k))


def test_scores_below_zero_follow_the_textbook_definition():
    """AP depends on the ranking only: shifting every score by a constant changes nothing
    (torchmetrics >= 1.8 would drop relevant items with a negative score)."""
    g = torch.Generator().manual_seed(2)
    s = torch.randn(20, 40, generator=g, dtype=torch.float64)
    gl = torch.randint(0, 3, (40,), generator=g)
    ql = torch.randint(0, 3, (20,), generator=g)
    assert evaluate_scores(s, ql, gl) == evaluate_scores(s + 10.0, ql, gl)
    shifted = query_metrics_scores(s + 10.0, ql, gl)["mAP"]
    tm = torch.stack([retrieval_average_precision(s[i] + 10.0, gl == ql[i]) for i in range(20)])
    torch.testing.assert_close(shifted, tm.double(), atol=1e-6, rtol=0)


def test_chunked_equals_dense_and_features_equal_scores():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(37, 16, generator=g)
    gal = torch.randn(53, 16, generator=g)
    ql = torch.randint(0, 5, (37,), generator=g)
    gl = torch.randint(0, 5, (53,), generator=g)
    dense = evaluate(q, gal, ql, gl, chunk_size=10_000)
    for chunk in (1, 4, 36, None):
        assert evaluate(q, gal, ql, gl, chunk_size=chunk) == dense
    s = F.normalize(q, dim=1) @ F.normalize(gal, dim=1).T
    assert evaluate_scores(s, ql, gl, chunk_size=5) == pytest.approx(dense, abs=1e-9)
    # scale invariance: features are normalised inside
    assert evaluate(3.0 * q, gal * 0.1, ql, gl) == pytest.approx(dense, abs=1e-9)
    # labels may be any integers (equality is all that matters)
    assert evaluate(q, gal, ql * 1000 - 7, gl * 1000 - 7) == dense
    # same-split through features equals same-split through scores
    x = torch.cat([q, gal])
    lab = torch.cat([ql, gl])
    sx = F.normalize(x, dim=1) @ F.normalize(x, dim=1).T
    assert evaluate(x, x, lab, lab, True, chunk_size=9) == pytest.approx(
        evaluate_scores(sx, lab, lab, True), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# cross-modal

def test_cross_modal_recall_with_several_captions_per_image():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.1], [0.1, 1.0], [0.7, 0.7], [-1.0, 0.2]])
    t2i = torch.tensor([0, 1, 1, 0])
    m = evaluate_cross_modal(img, txt, t2i, ks=(1, 2))
    # t2i: caption 0 -> image 0 first (hit); 1 -> image 1 (hit); 2 -> tie, index 0 first
    # (miss @1, hit @2); 3 -> image 1 first (miss @1, hit @2)
    assert m["t2i_R@1"] == pytest.approx(50.0) and m["t2i_R@2"] == 100.0
    # i2t: image 0 -> caption 0 first (its own); image 1 -> caption 1 first (its own)
    assert m["i2t_R@1"] == 100.0 and m["i2t_Ravg"] == 100.0
    assert m["t2i_Ravg"] == pytest.approx(75.0)
    diag = evaluate_cross_modal(img, txt[:2])  # caption i <-> image i
    assert diag["t2i_R@1"] == diag["i2t_R@1"] == 100.0
    with pytest.raises(ValueError, match="text_to_image"):
        evaluate_cross_modal(img, txt)
    with pytest.raises(ValueError, match="text_to_image"):
        evaluate_cross_modal(img, txt, torch.tensor([0, 1, 2, 0]))


# ---------------------------------------------------------------------------------------------
# Revisited Oxford / Paris

def revisitop_compute_map(ranks: np.ndarray, gnd: list[dict], kappas: list[int]):
    """Naive re-implementation of revisitop ``compute_map`` (python/evaluate.py), loops kept."""
    mean_ap, nq, nempty = 0.0, len(gnd), 0
    pr = np.zeros(len(kappas))
    for i in range(nq):
        qgnd = np.asarray(gnd[i]["ok"])
        if qgnd.shape[0] == 0:
            nempty += 1
            continue
        qgndj = np.asarray(gnd[i]["junk"])
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], qgnd)]
        junk = np.arange(ranks.shape[0])[np.isin(ranks[:, i], qgndj)]
        k = ij = 0
        if len(junk):
            ip = 0
            while ip < len(pos):
                while ij < len(junk) and pos[ip] > junk[ij]:
                    k += 1
                    ij += 1
                pos[ip] = pos[ip] - k
                ip += 1
        ap = 0.0
        for j in range(len(pos)):
            rank = pos[j]
            p0 = 1.0 if rank == 0 else j / rank
            p1 = (j + 1) / (rank + 1)
            ap += (p0 + p1) / len(qgnd) / 2.0
        mean_ap += ap
        pos = pos + 1
        for j, kap in enumerate(kappas):
            kq = min(max(pos), kap)
            pr[j] += (pos <= kq).sum() / kq
    return mean_ap / (nq - nempty), pr / (nq - nempty), nempty


def _official_settings(gnd):
    easy = [{"ok": g["easy"], "junk": np.concatenate([g["junk"], g["hard"]])} for g in gnd]
    medium = [{"ok": np.concatenate([g["easy"], g["hard"]]), "junk": g["junk"]} for g in gnd]
    hard = [{"ok": g["hard"], "junk": np.concatenate([g["junk"], g["easy"]])} for g in gnd]
    return {"easy": easy, "medium": medium, "hard": hard}


def test_revisited_hand_made_gnd():
    # one query, 6 database images ranked 0..5 in index order
    s = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    gnd = [{"easy": [1, 4], "hard": [2], "junk": [0]}]
    m = evaluate_revisited_scores(s, gnd, ks=(1, 5))
    # medium: junk 0 removed -> ranking 1, 2, 3, 4, 5; positives 1, 2, 4 at 0-based 0, 1, 3
    ap = ((1 + 1) / 2 + (1 + 1) / 2 + (2 / 3 + 3 / 4) / 2) / 3
    assert m["mAP_medium"] == pytest.approx(100 * ap)
    assert m["mP@1_medium"] == 100.0 and m["mP@5_medium"] == pytest.approx(75.0)
    # easy: junk 0 and 2 removed -> positives 1, 4 at 0, 2
    assert m["mAP_easy"] == pytest.approx(100 * ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    # hard: junk 0, 1, 4 removed -> positive 2 at 0
    assert m["mAP_hard"] == 100.0
    assert m["mAP"] == m["mAP_medium"]
    assert evaluate_revisited_scores(s, gnd, official_map_easy=True)["mAP"] == m["mAP_easy"]


def test_revisited_matches_naive_compute_map():
    rng = np.random.default_rng(4)
    n_q, n_db = 9, 60
    s = torch.from_numpy(rng.standard_normal((n_q, n_db)))
    gnd = []
    for qi in range(n_q):
        perm = rng.permutation(n_db)
        n_e, n_h, n_j = rng.integers(0, 6, 3)
        if qi == 0:
            n_h = 0  # an empty Hard setting for one query: skipped and counted
        gnd.append({"easy": perm[:n_e], "hard": perm[n_e:n_e + n_h],
                    "junk": perm[n_e + n_h:n_e + n_h + n_j], "bbx": None})
    gnd[1]["easy"] = np.array([int(np.argmax(s[1].numpy()))])  # a positive at rank 0
    m = evaluate_revisited_scores(s, gnd)
    ranks = np.argsort(-s.numpy().T, axis=0, kind="stable")
    for name, g in _official_settings(gnd).items():
        ref_map, ref_pr, nempty = revisitop_compute_map(ranks, g, [1, 5, 10])
        assert m[f"mAP_{name}"] == pytest.approx(100 * ref_map, abs=1e-9)
        for k, v in zip((1, 5, 10), ref_pr):
            assert m[f"mP@{k}_{name}"] == pytest.approx(100 * v, abs=1e-9)
        assert m[f"n_empty_{name}"] == nempty
    assert m["n_empty_hard"] >= 1
    # the features entry point gives the same numbers on cosine similarities
    q, d = torch.randn(n_q, 8), torch.randn(n_db, 8)
    cos = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T
    assert evaluate_revisited(q, d, gnd) == pytest.approx(evaluate_revisited_scores(cos, gnd))


def test_revisited_bad_gnd():
    s = torch.rand(2, 5)
    with pytest.raises(ValueError, match="gnd: expected 2 entries"):
        evaluate_revisited_scores(s, [{"easy": [1], "hard": [], "junk": []}])
    with pytest.raises(ValueError, match=r"gnd\[0\]: missing key 'hard'"):
        evaluate_revisited_scores(s, [{"easy": [1], "junk": []}] * 2)
    with pytest.raises(ValueError, match=r"gnd\[1\]\['junk'\]: gallery indices"):
        evaluate_revisited_scores(s, [{"easy": [1], "hard": [], "junk": []},
                                      {"easy": [1], "hard": [], "junk": [5]}])
    with pytest.raises(ValueError, match="disjoint"):
        evaluate_revisited_scores(s, [{"easy": [1], "hard": [1], "junk": []}] * 2)
    with pytest.raises(ValueError, match="no query has a positive in the hard setting"):
        evaluate_revisited_scores(s, [{"easy": [1], "hard": [], "junk": []}] * 2)


# ---------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gallery": torch.zeros(0, 4)}, "gallery: empty"),
        ({"query": torch.zeros(0, 4), "query_labels": torch.zeros(0, dtype=torch.long)},
         "query: empty"),
        ({"gallery_labels": torch.zeros(5, dtype=torch.long)}, "gallery_labels: expected 6"),
        ({"query_labels": torch.zeros(2, dtype=torch.long)}, "query_labels: expected 3"),
        ({"query": torch.tensor([[1.0, float("nan"), 0, 0]] * 3)}, "query: 3 non-finite"),
        ({"gallery": torch.ones(6, 5)}, "feature dimensions differ"),
        ({"gallery": torch.zeros(6, 4)}, "gallery: 6 all-zero rows"),
        ({"query_labels": torch.zeros(3)}, "query_labels: expected integer labels"),
        ({"query": torch.ones(3)}, "query: expected a 2-D"),
        ({"same_split": True}, "same_split=True needs the query set to be the gallery"),
        ({"ks": (0, 5)}, "ks: expected"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {"query": torch.ones(3, 4), "gallery": torch.ones(6, 4),
            "query_labels": torch.zeros(3, dtype=torch.long),
            "gallery_labels": torch.zeros(6, dtype=torch.long)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        evaluate(**args)


def test_bad_scores_and_same_split_labels():
    with pytest.raises(ValueError, match="scores: empty"):
        evaluate_scores(torch.zeros(2, 0), [0, 1], [])
    with pytest.raises(ValueError, match="scores: 1 non-finite"):
        evaluate_scores(torch.tensor([[0.1, float("inf")]]), [0], [0, 1])
    with pytest.raises(ValueError, match="gallery_labels: expected 3"):
        evaluate_scores(torch.rand(2, 3), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="query_labels == gallery_labels"):
        evaluate_scores(torch.rand(2, 2), [0, 1], [1, 0], same_split=True)
    # numpy inputs are accepted
    s = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert evaluate_scores(s, np.array([0, 1]), np.array([0, 1]))["mAP"] == 100.0


def test_inputs_that_require_grad_are_accepted():
    q = torch.randn(4, 3, requires_grad=True)
    g = torch.randn(5, 3, requires_grad=True)
    m = evaluate(q, g, [0, 1, 0, 1], [0, 1, 1, 0, 0])
    assert m == evaluate(q.detach(), g.detach(), [0, 1, 0, 1], [0, 1, 1, 0, 0])
    assert evaluate_scores(q @ g.T, [0, 1, 0, 1], [0, 1, 1, 0, 0])["n_queries"] == 4.0


def test_torch_thread_count_is_restored():
    n = torch.get_num_threads()
    evaluate(torch.randn(6, 3), torch.randn(7, 3), [0, 1, 0, 1, 0, 1], [0, 1, 1, 0, 0, 1, 0])
    assert torch.get_num_threads() == n
    with pytest.raises(ValueError):
        evaluate_scores(torch.rand(2, 2), [5, 6], [0, 1])  # raises after the ranking stage
    assert torch.get_num_threads() == n
