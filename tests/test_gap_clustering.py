"""Modality-gap metrics (hand values and ModGap's own formulas) and mixed-modality clustering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.neighbors import KNeighborsClassifier

from isoclip.evaluate.clustering import evaluate_clustering, evaluate_mixed_knn, mixed_embeddings
from isoclip.evaluate.gap import (
    alignment,
    centroid_gap,
    gap_report,
    gap_vector,
    intra_modal_cosine,
    shift_gap,
    true_pair_cosine,
    uniformity,
    w2_uniformity,
)


def two_cones(n_per_class: int = 40, n_classes: int = 4, d: int = 16, gap: float = 3.0,
              noise: float = 0.4, centre_scale: float = 2.0, seed: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paired unit image/text embeddings: shared class centres ± a modality offset (the gap)."""
    g = torch.Generator().manual_seed(seed)
    centres = centre_scale * torch.randn(n_classes, d, generator=g)
    offset = gap * F.normalize(torch.randn(d, generator=g), dim=0)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    img = centres[y] + noise * torch.randn(len(y), d, generator=g) + offset
    txt = centres[y] + noise * torch.randn(len(y), d, generator=g) - offset
    return F.normalize(img, dim=1), F.normalize(txt, dim=1), y


# ---------------------------------------------------------------------------------------------
# gap metrics

def test_hand_values():
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([[0.0, 3.0], [0.0, 1.0]])
    assert centroid_gap(x, y) == pytest.approx(math.sqrt(2))
    torch.testing.assert_close(gap_vector(x, y), torch.tensor([1.0, -1.0], dtype=torch.float64))
    assert true_pair_cosine(x, y) == pytest.approx(0.0)
    assert alignment(x, y) == pytest.approx(2.0)  # ‖x̂ − ŷ‖² = 2 for orthogonal unit vectors
    assert intra_modal_cosine(x) == pytest.approx(1.0)
    assert intra_modal_cosine(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])) == \
        pytest.approx(-1 / 3)
    # uniformity of two orthogonal unit vectors: log exp(-2 * 2)
    assert uniformity(torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(-4.0)


def test_against_modgap_formulas_on_random_data():
    x, y, _ = two_cones(n_per_class=30)
    # ModGap compute_mean_angular_value_of_a_modality (all off-diagonal cosines)
    cos = x @ x.T
    ref = cos[~torch.eye(len(x), dtype=torch.bool)].mean()
    assert intra_modal_cosine(x) == pytest.approx(float(ref), abs=1e-6)
    # alignment with alpha = 2 is 2 - 2 * mean true-pair cosine on unit vectors
    assert alignment(x, y) == pytest.approx(2 - 2 * true_pair_cosine(x, y), abs=1e-9)
    # Wang-Isola uniformity via pdist, chunked or not
    ref_u = torch.pdist(x.double()).pow(2).mul(-2).exp().mean().log()
    assert uniformity(x, chunk_size=7) == pytest.approx(float(ref_u), abs=1e-6)
    assert uniformity(x) == pytest.approx(uniformity(x, chunk_size=7), abs=1e-12)
    # ModGap `uniformity` (metrics.py:290-316), numpy eig version
    z = torch.cat([x, y]).double().numpy()
    mean = z.mean(0)
    cov = (z - mean).T @ (z - mean) / len(z)
    S, Q = np.linalg.eig(cov)
    S = S + 1e-8
    cov_sqrt = Q @ np.diag(np.sqrt(S.clip(min=0))) @ Q.T
    w2 = math.sqrt(float(mean @ mean) + 1 + np.trace(cov - 2.0 / math.sqrt(z.shape[1]) * cov_sqrt))
    assert w2_uniformity(x, y) == pytest.approx(-w2, abs=1e-6)
    report = gap_report(x, y)
    assert set(report) == {"gap", "true_pair_cos", "intra_cos_image", "intra_cos_text",
                           "alignment", "uniformity_image", "uniformity_text", "w2_uniformity"}
    assert report["gap"] == pytest.approx(centroid_gap(x, y))


def test_liang_shift():
    x, y, _ = two_cones()
    xs, ys = shift_gap(x, y, 0.0)
    torch.testing.assert_close(xs, x.double(), atol=1e-7, rtol=0)
    torch.testing.assert_close(ys, y.double(), atol=1e-7, rtol=0)
    # lambda = 0.5 makes the centroids coincide before renormalising
    delta = gap_vector(x, y)
    xn, yn = F.normalize(x.double(), dim=1), F.normalize(y.double(), dim=1)
    before = (xn - 0.5 * delta).mean(0) - (yn + 0.5 * delta).mean(0)
    assert float(before.norm()) < 1e-12
    g0 = centroid_gap(x, y)
    xh, yh = shift_gap(x, y, 0.5)
    assert centroid_gap(xh, yh) < 0.1 * g0  # small but not exactly 0 after renormalising
    xw, yw = shift_gap(x, y, -0.5)
    assert centroid_gap(xw, yw) > g0  # negative lambda widens the gap
    torch.testing.assert_close(xh.norm(dim=1), torch.ones(len(xh), dtype=torch.float64))


def test_gap_bad_input():
    with pytest.raises(ValueError, match="paired rows"):
        true_pair_cosine(torch.ones(3, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="dimensions differ"):
        centroid_gap(torch.ones(3, 2), torch.ones(3, 4))
    with pytest.raises(ValueError, match="x: 1 non-finite"):
        centroid_gap(torch.tensor([[1.0, float("nan")]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="at least 2 rows"):
        intra_modal_cosine(torch.ones(1, 3))


# ---------------------------------------------------------------------------------------------
# clustering and kNN on mixed embeddings

def test_v_measure_rises_as_the_gap_closes():
    # the modality offset dominates the class structure: KMeans splits by modality first
    x, y, labels = two_cones(gap=2.0, noise=0.3, centre_scale=0.5)
    wide = evaluate_clustering(x, y, labels)
    xs, ys = shift_gap(x, y, 0.5)
    closed = evaluate_clustering(xs, ys, labels)
    assert set(wide) == {"v_measure", "ari", "nmi", "homogeneity", "n_clusters"}
    assert wide["n_clusters"] == 4.0
    assert wide["v_measure"] < 60 and closed["v_measure"] > 90


def test_clustering_perfect_and_modgap_fixed_10():
    x, y, labels = two_cones(gap=0.0, noise=0.05)
    m = evaluate_clustering(x, y, labels * 10 + 3)  # any integer labels
    assert m["v_measure"] == pytest.approx(100.0) and m["ari"] == pytest.approx(100.0)
    fixed = evaluate_clustering(x, y, labels, n_clusters=10)
    assert fixed["n_clusters"] == 10.0 and fixed["homogeneity"] == pytest.approx(100.0)
    assert evaluate_clustering(x, y, labels, seed=3) == evaluate_clustering(x, y, labels, seed=3)
    with pytest.raises(ValueError, match="n_clusters"):
        evaluate_clustering(x, y, labels, n_clusters=0)
    with pytest.raises(ValueError, match="paired rows"):
        evaluate_clustering(x, y[:-1], labels)


def test_mixed_knn_matches_sklearn_on_the_same_split():
    x, y, labels = two_cones(gap=1.0, noise=1.5)
    z, zl = mixed_embeddings(x, y, labels)
    assert z.shape == (2 * len(x), x.shape[1]) and torch.equal(zl[: len(x)], labels)
    m = evaluate_mixed_knn(x, y, labels, seed=7)
    assert m == evaluate_mixed_knn(x, y, labels, seed=7)
    assert m["n_train"] == int(0.8 * len(z)) and m["n_test"] == len(z) - m["n_train"]
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(7))
    tr, te = perm[: int(m["n_train"])], perm[int(m["n_train"]):]
    ref = KNeighborsClassifier(n_neighbors=5).fit(z[tr].numpy(), zl[tr].numpy())
    acc = 100 * float((ref.predict(z[te].numpy()) == zl[te].numpy()).mean())
    assert m["knn_acc"] == pytest.approx(acc)
    with pytest.raises(ValueError, match="train_fraction"):
        evaluate_mixed_knn(x, y, labels, train_fraction=1.0)
