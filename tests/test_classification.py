"""Zero-shot, NCM, iso-NCM and kNN classification."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.neighbors import KNeighborsClassifier

from isoclip.evaluate.classification import (
    class_embeddings,
    evaluate_iso_ncm,
    evaluate_knn,
    evaluate_ncm,
    evaluate_zero_shot,
    fill_templates,
    knn_predict,
    ncm_prototypes,
    topk_accuracy,
)
from isoclip.models.features import image_features, text_features, zero_shot_weights
from isoclip.models.loading import load_model


def test_class_embeddings_normalise_average_renormalise():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 0.5])
    w = class_embeddings([torch.stack([a, b]), torch.stack([b])])
    s = 2 ** -0.5
    torch.testing.assert_close(w, torch.tensor([[s, s], [0.0, 1.0]]))
    assert torch.equal(class_embeddings(torch.stack([torch.stack([a, b])])), w[:1])
    with pytest.raises(ValueError, match=r"prompt_features\[0\]"):
        class_embeddings([torch.zeros(0, 2)])


def test_fill_templates():
    assert fill_templates(["cat", "dog"], ["a {}.", "the {}!"]) == [["a cat.", "the cat!"],
                                                                   ["a dog.", "the dog!"]]
    with pytest.raises(ValueError, match="templates"):
        fill_templates(["cat"], ["no placeholder"])


def test_zero_shot_hand_made():
    img = torch.tensor([[1.0, 0.1], [0.2, 1.0], [-1.0, 0.0], [0.6, 0.5]])
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -0.1]])
    labels = torch.tensor([0, 1, 2, 1])
    m = evaluate_zero_shot(img, weights, labels, topk=(1, 2))
    assert m == {"top1": 75.0, "top2": 100.0}
    # scale of weights/features does not matter (cosine)
    assert evaluate_zero_shot(img * 7, weights * 0.1, labels, topk=(1, 2)) == m
    with pytest.raises(ValueError, match="topk"):
        evaluate_zero_shot(img, weights, labels, topk=(4,))
    with pytest.raises(ValueError, match="dimensions differ"):
        evaluate_zero_shot(img, torch.ones(3, 3), labels)


def test_zero_shot_weights_from_a_model(isolated_cache, monkeypatch):
    bundle = load_model("isoclip-tiny-vit")
    prompts = fill_templates(["red circle", "blue square", "green star"],
                             ["a photo of a {}.", "a {} shape."])
    w = zero_shot_weights(bundle, prompts, progress=False)
    feats = text_features(bundle, [p for ps in prompts for p in ps], progress=False)
    torch.testing.assert_close(w, class_embeddings(feats.view(3, 2, -1)))
    torch.testing.assert_close(w.norm(dim=1), torch.ones(3))
    calls = []
    monkeypatch.setattr(bundle.model, "encode_text", lambda *a: calls.append(1))
    assert torch.equal(zero_shot_weights(bundle, prompts, progress=False), w) and not calls
    with pytest.raises(ValueError, match="prompts"):
        zero_shot_weights(bundle, [["x"], []], progress=False)


def test_ncm_prototypes_are_means_of_unnormalised_features():
    x = torch.tensor([[10.0, 0.0], [0.0, 1.0], [1.0, 1.5], [2.0, 3.0]])
    y = torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(ncm_prototypes(x, y), torch.tensor([[5.0, 0.5], [1.5, 2.25]]))
    # a test point at 40 degrees: nearest to class 1 (56 deg) with the official prototype of
    # class 0 (mean of unnormalised features, 6 deg); a mean of normalised features (45 deg)
    # would have chosen class 0
    test = torch.tensor([[0.766, 0.643]])
    assert evaluate_ncm(x, y, test, [1])["top1"] == 100.0
    normalised_means = torch.stack([F.normalize(x[y == c], dim=1).mean(0) for c in (0, 1)])
    assert evaluate_zero_shot(test, normalised_means, [1])["top1"] == 0.0
    with pytest.raises(ValueError, match=r"classes \[1\] have no training sample"):
        ncm_prototypes(x, torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="n_classes"):
        evaluate_ncm(x, y, test, [0], n_classes=1)


def _naive_iso_ncm_correct(W_i: np.ndarray, W_t: np.ndarray, b_i: np.ndarray | None,
                           k_top: int, k_bottom: int, f_train: np.ndarray, y_train: np.ndarray,
                           f_test: np.ndarray, y_test: np.ndarray) -> list[bool]:
    """iso-NCM from its definition, written out with numpy and loops (IsoCLIP Sec. 4, the
    ``IsoNCM`` of the official classification code; notation page, eq-iso-projectors): SVD of
    Psi = W_i^T W_t, keep singular directions k_top .. r - k_bottom, W_hat = W_i U_S U_S^T; class
    prototypes = means of the unnormalised pre-projection training features; predict the class
    whose projected prototype has the largest cosine with the projected test feature."""
    U, _, _ = np.linalg.svd(W_i.T @ W_t)
    r = min(W_i.shape[1], W_t.shape[1])
    U_S = U[:, k_top:r - k_bottom]
    W_hat = W_i @ U_S @ U_S.T
    bias = np.zeros(W_i.shape[0]) if b_i is None else b_i

    def project(f: np.ndarray) -> np.ndarray:
        return W_hat @ f + bias

    classes = sorted(set(y_train.tolist()))
    protos = []
    for c in classes:
        rows = [f_train[i] for i in range(len(y_train)) if y_train[i] == c]
        protos.append(project(sum(rows) / len(rows)))
    correct = []
    for f, y in zip(f_test, y_test):
        e = project(f)
        cos = [float(e @ p / (np.linalg.norm(e) * np.linalg.norm(p))) for p in protos]
        correct.append(classes[int(np.argmax(cos))] == int(y))
    return correct


@pytest.mark.parametrize("bias", [False, True])
def test_iso_ncm_against_a_hand_written_loop(bias: bool) -> None:
    from isoclip.method.bands import Band, iso_projectors
    from isoclip.method.projectors import Projectors
    from isoclip.studies.classification import ncm_correct

    rng = np.random.default_rng(7)
    d, d_i, d_t, c = 12, 10, 9, 4
    W_i, W_t = rng.normal(size=(d, d_i)), rng.normal(size=(d, d_t))
    b_i = rng.normal(size=d) if bias else None
    y_train, y_test = np.arange(80) % c, rng.integers(0, c, 60)
    centres = 2.0 * rng.normal(size=(c, d_i))
    f_train = centres[y_train] + rng.normal(size=(80, d_i))
    f_test = centres[y_test] + rng.normal(size=(60, d_i))
    P = Projectors(W_i=torch.tensor(W_i), W_t=torch.tensor(W_t),
                   b_i=None if b_i is None else torch.tensor(b_i))
    t = torch.tensor
    for k_top, k_bottom in ((0, 0), (2, 3), (5, 0)):
        want = _naive_iso_ncm_correct(W_i, W_t, b_i, k_top, k_bottom, f_train, y_train, f_test,
                                      y_test)
        iso = iso_projectors(P, Band(k_top, k_bottom))
        got = evaluate_iso_ncm(t(f_train).float(), t(y_train), t(f_test).float(), t(y_test), iso)
        assert got["top1"] == pytest.approx(100.0 * np.mean(want), abs=1e-9), (k_top, k_bottom)
        per_image = ncm_correct(t(f_train), t(y_train), t(f_test), t(y_test),
                                project=iso.to(torch.float32).project_image)
        assert (per_image > 0).tolist() == want, (k_top, k_bottom)
    # the bands differ: the test would notice a band that is ignored
    accs = {b: np.mean(_naive_iso_ncm_correct(W_i, W_t, b_i, *b, f_train, y_train, f_test, y_test))
            for b in ((0, 0), (2, 3), (5, 0))}
    assert len(set(accs.values())) > 1
    with pytest.raises(ValueError, match="projectors.d_i"):
        evaluate_iso_ncm(t(f_train[:, :5]).float(), t(y_train), t(f_test[:, :5]).float(),
                         t(y_test), P)


def test_iso_ncm_on_model_features(isolated_cache):
    """End to end on the tiny model: iso-NCM(0, 0) on pre-projection features == NCM."""
    from isoclip.data import ImageDataset
    from isoclip.method.bands import Band, iso_projectors
    from isoclip.method.projectors import get_projectors

    rng = np.random.default_rng(0)
    ds = ImageDataset(rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), np.arange(12) % 3,
                      ["a", "b", "c"], "toy/ncm")
    bundle = load_model("isoclip-tiny-vit")
    proj = image_features(bundle, ds, progress=False)
    pre = image_features(bundle, ds, kind="preproj", progress=False)
    iso = iso_projectors(get_projectors(bundle.model), Band(0, 0))
    y = torch.as_tensor(ds.labels)
    a = evaluate_ncm(proj[:8], y[:8], proj[8:], y[8:], n_classes=3)
    b = evaluate_iso_ncm(pre[:8], y[:8], pre[8:], y[8:], iso, n_classes=3)
    assert a == b


def test_knn_matches_sklearn_and_breaks_vote_ties_by_lowest_class():
    g = torch.Generator().manual_seed(5)
    train = F.normalize(torch.randn(120, 8, generator=g), dim=1)
    labels = torch.randint(0, 4, (120,), generator=g)
    test = F.normalize(torch.randn(40, 8, generator=g), dim=1)
    for k in (1, 5):
        ours = knn_predict(train, labels, test, k=k, chunk_size=7)
        ref = KNeighborsClassifier(n_neighbors=k).fit(train.numpy(), labels.numpy())
        assert np.array_equal(ours.numpy(), ref.predict(test.numpy()))
    # two neighbours, one vote each for classes 2 and 1: the lower class wins
    tr = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0]])
    assert knn_predict(tr, [2, 1, 0], torch.tensor([[1.0, 0.05]]), k=2).tolist() == [1]
    assert evaluate_knn(tr, [2, 1, 0], torch.tensor([[1.0, 0.0], [-1.0, 0.1]]), [2, 0],
                        k=1) == {"top1": 100.0}
    with pytest.raises(ValueError, match="k: expected"):
        knn_predict(tr, [0, 1, 0], tr, k=4)


def test_topk_accuracy_validates():
    assert topk_accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), [1, 1]) == {"top1": 50.0}
    with pytest.raises(ValueError, match="labels: expected 2"):
        topk_accuracy(torch.rand(2, 3), [0])
    with pytest.raises(ValueError, match="logits"):
        topk_accuracy(torch.rand(0, 3), [])
