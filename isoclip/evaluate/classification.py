"""Classification: zero-shot with prompt templates, NCM, iso-NCM, kNN.

All follow IsoCLIP's official ``src/classification/trainers.py`` (Magistri et al., CVPR 2026,
classification experiments; book notation page, eq-zero-shot, eq-ncm, eq-iso-ncm):

- **Zero-shot** (``ClipZeroshot``, l.43-72): class weight = the class's prompt embeddings,
  each L2-normalised, averaged, renormalised (CLIP's prompt ensembling; with one template
  this is the normalised prompt embedding); prediction = argmax cosine.
- **NCM** (``ClipNCM``, l.99-217): prototype = mean of the class's **unnormalised** projected
  training features; prediction = argmax cosine(test feature, prototype).
- **iso-NCM** (``IsoNCM``, l.224-356): prototypes = means of unnormalised **pre-projection**
  training features; prototypes and test features both go through the (IsoCLIP-filtered)
  image projector, then cosine. Unlike the official Dassl loader (``drop_last`` on a shuffled
  train loader, which leaves up to 31 random images out), every training image is used.
- **kNN**: the k training features with the highest cosine vote, one vote each; a tie
  between classes goes to the lowest class index (``torch.argmax`` returns the first
  maximum, as scikit-learn's ``KNeighborsClassifier``). Ties in similarity at the k-th
  neighbour are resolved by ``torch.topk`` (unspecified order).

Logit scale does not change an argmax and is left out. Accuracies are in percent. Labels are
class indices in ``[0, n_classes)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from isoclip.evaluate.retrieval import as_features, as_labels, unit_rows

if TYPE_CHECKING:
    from isoclip.method.projectors import Projectors

__all__ = [
    "class_embeddings",
    "evaluate_iso_ncm",
    "evaluate_knn",
    "evaluate_ncm",
    "evaluate_zero_shot",
    "fill_templates",
    "knn_predict",
    "ncm_logits",
    "ncm_prototypes",
    "topk_accuracy",
]


def _n_classes(n_classes: int | None, *labels: Tensor) -> int:
    top = max(int(y.max()) for y in labels) + 1
    if n_classes is None:
        return top
    if top > n_classes:
        raise ValueError(f"n_classes: {n_classes} is too small for label {top - 1}")
    return n_classes


def _check_class_labels(name: str, y: Tensor) -> None:
    if int(y.min()) < 0:
        raise ValueError(f"{name}: class indices must be >= 0, got {int(y.min())}")


def topk_accuracy(logits: Tensor, labels: Any, topk: Sequence[int] = (1,)) -> dict[str, float]:
    """Top-k accuracy in percent of ``logits`` [N, C] against ``labels`` [N].

    Returns ``{"top1": ..., "top5": ...}`` for each k in ``topk`` (k <= C).
    """
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits: expected a non-empty [N, C] matrix, got {tuple(logits.shape)}")
    y = as_labels("labels", labels, logits.shape[0], "logits")
    ks = tuple(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= logits.shape[1]
                     for k in ks):
        raise ValueError(f"topk: expected ints in [1, {logits.shape[1]}] (number of classes), "
                         f"got {topk!r}")
    pred = logits.topk(max(ks), dim=1).indices
    hit = pred == y[:, None]
    return {f"top{k}": 100.0 * float(hit[:, :k].any(1).double().mean()) for k in ks}


def cosine_logits(x: Tensor, w: Tensor) -> Tensor:
    """Cosine similarities [N, C] of the rows of ``x`` [N, D] and ``w`` [C, D] (float32; any
    scale, see :func:`isoclip.evaluate.retrieval.unit_rows`)."""
    return unit_rows(x) @ unit_rows(w).T


# ---------------------------------------------------------------------------------------------
# zero-shot

def fill_templates(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """CoOp/CLIP-style prompts: ``template.format(name)``; returns ``[n_classes][n_templates]``."""
    if not class_names:
        raise ValueError("class_names: expected at least one class")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"templates: expected non-empty templates containing '{{}}', got "
                         f"{list(templates)!r}")
    return [[t.format(name) for t in templates] for name in class_names]


def class_embeddings(prompt_features: Sequence[Tensor] | Tensor) -> Tensor:
    """Class weights from prompt embeddings: normalise each, mean, renormalise.

    Args:
        prompt_features: [C, T, d], or C tensors [T_c, d] (a ragged number of prompts).

    Returns:
        [C, d] unit-norm class weights (CLIP prompt ensembling).
    """
    per_class = list(prompt_features)
    if not per_class:
        raise ValueError("prompt_features: expected at least one class")
    out = []
    for c, p in enumerate(per_class):
        if p.ndim != 2 or p.shape[0] == 0:
            raise ValueError(f"prompt_features[{c}]: expected [T, d] with T >= 1, got "
                             f"{tuple(p.shape)}")
        out.append(F.normalize(unit_rows(p).mean(0), dim=0))
    return torch.stack(out)


def evaluate_zero_shot(image_features: Any, class_weights: Any, labels: Any,
                       topk: Sequence[int] = (1,)) -> dict[str, float]:
    """Zero-shot accuracy: argmax_c cos(image, weight_c).

    Args:
        image_features: [N, d] projected image features.
        class_weights: [C, d] (e.g. :func:`zero_shot_weights`).
        labels: [N] class indices.
        topk: accuracies to report.

    Returns:
        ``{"top1": ...}`` in percent.
    """
    x = as_features("image_features", image_features)
    w = as_features("class_weights", class_weights)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"image_features and class_weights: dimensions differ "
                         f"({x.shape[1]} vs {w.shape[1]})")
    return topk_accuracy(cosine_logits(x, w), labels, topk)


# ---------------------------------------------------------------------------------------------
# NCM / iso-NCM

def ncm_prototypes(features: Any, labels: Any, n_classes: int | None = None) -> Tensor:
    """Class means of **unnormalised** features (official ``ClipNCM``).

    Args:
        features: [N, D]. labels: [N] class indices. n_classes: C (default max label + 1).

    Returns:
        [C, D] float32 prototypes.

    Raises:
        ValueError: a class in ``[0, C)`` has no sample (its prototype is undefined).
    """
    x = as_features("train_features", features)
    y = as_labels("train_labels", labels, x.shape[0], "train_features")
    _check_class_labels("train_labels", y)
    c = _n_classes(n_classes, y)
    counts = torch.bincount(y, minlength=c)
    missing = torch.nonzero(counts == 0).flatten().tolist()
    if missing:
        raise ValueError(f"train_labels: classes {missing[:10]} have no training sample")
    sums = torch.zeros(c, x.shape[1], dtype=torch.float64).index_add_(0, y, x.double())
    return (sums / counts[:, None]).float()


def _ncm(train: Tensor, train_labels: Any, test: Tensor, test_labels: Any,
         n_classes: int | None, topk: Sequence[int], project: Any) -> dict[str, float]:
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train_features and test_features: dimensions differ "
                         f"({train.shape[1]} vs {test.shape[1]})")
    yt = as_labels("test_labels", test_labels, test.shape[0], "test_features")
    _check_class_labels("test_labels", yt)
    ytr = as_labels("train_labels", train_labels, train.shape[0], "train_features")
    c = _n_classes(n_classes, ytr, yt)
    return topk_accuracy(ncm_logits(train, ytr, test, c, project), yt, topk)


def ncm_logits(train: Tensor, train_labels: Any, test: Tensor, n_classes: int | None = None,
               project: Any = None) -> Tensor:
    """[N_test, C] nearest-class-mean cosine logits (IsoCLIP ``ClipNCM`` / ``IsoNCM``):
    prototypes are the means of the **unnormalised** ``train`` features [N, k] per class;
    ``project`` (e.g. ``iso.project_image`` for iso-NCM on pre-projection features) maps the
    prototypes and the ``test`` features [N_test, k] before the cosine (None: identity)."""
    f = (lambda z: z) if project is None else project
    protos = ncm_prototypes(train, train_labels, n_classes)
    return cosine_logits(f(test.float()), f(protos))


def evaluate_ncm(train_features: Any, train_labels: Any, test_features: Any, test_labels: Any,
                 n_classes: int | None = None, topk: Sequence[int] = (1,)) -> dict[str, float]:
    """Nearest-class-mean accuracy with prototypes = means of unnormalised features.

    Args:
        train_features: [N, d] projected training features. train_labels: [N].
        test_features: [M, d]. test_labels: [M].
        n_classes: C (default: max label + 1); every class needs a training sample.
        topk: accuracies to report.

    Returns:
        ``{"top1": ...}`` in percent.
    """
    tr = as_features("train_features", train_features)
    te = as_features("test_features", test_features)
    return _ncm(tr, train_labels, te, test_labels, n_classes, topk, lambda z: z)


def evaluate_iso_ncm(train_preproj: Any, train_labels: Any, test_preproj: Any, test_labels: Any,
                     projectors: Projectors, n_classes: int | None = None,
                     topk: Sequence[int] = (1,)) -> dict[str, float]:
    """iso-NCM accuracy: prototypes of pre-projection features, then the image projector.

    Args:
        train_preproj: [N, d_i] pre-projection training image features. train_labels: [N].
        test_preproj: [M, d_i]. test_labels: [M].
        projectors: e.g. ``iso_projectors(get_projectors(model), Band(k_top, k_bottom))``;
            its ``project_image`` (``f @ W_i.T + b_i``) maps prototypes and test features.
        n_classes, topk: as :func:`evaluate_ncm`.

    Returns:
        ``{"top1": ...}`` in percent.
    """
    tr = as_features("train_preproj", train_preproj)
    te = as_features("test_preproj", test_preproj)
    if tr.shape[1] != projectors.d_i:
        raise ValueError(f"train_preproj: dimension {tr.shape[1]} != projectors.d_i "
                         f"{projectors.d_i}")
    p = projectors.to(torch.float32)
    return _ncm(tr, train_labels, te, test_labels, n_classes, topk, p.project_image)


# ---------------------------------------------------------------------------------------------
# kNN

def knn_predict(train_features: Any, train_labels: Any, test_features: Any, k: int = 5,
                chunk_size: int = 1024) -> Tensor:
    """Cosine k-nearest-neighbour majority vote (see the module docstring for ties).

    Args:
        train_features: [N, d]. train_labels: [N] class indices >= 0.
        test_features: [M, d]. k: neighbours (1 <= k <= N). chunk_size: test rows per chunk.

    Returns:
        [M] int64 predicted class indices.
    """
    tr = as_features("train_features", train_features)
    te = as_features("test_features", test_features)
    if tr.shape[1] != te.shape[1]:
        raise ValueError(f"train_features and test_features: dimensions differ "
                         f"({tr.shape[1]} vs {te.shape[1]})")
    y = as_labels("train_labels", train_labels, tr.shape[0], "train_features")
    _check_class_labels("train_labels", y)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= tr.shape[0]:
        raise ValueError(f"k: expected an int in [1, {tr.shape[0]}] (training size), got {k!r}")
    c = int(y.max()) + 1
    trn = unit_rows(tr)
    ten = unit_rows(te)
    preds = []
    for a in range(0, ten.shape[0], chunk_size):
        nn_idx = (ten[a:a + chunk_size] @ trn.T).topk(k, dim=1).indices
        votes = F.one_hot(y[nn_idx], c).sum(1)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def evaluate_knn(train_features: Any, train_labels: Any, test_features: Any, test_labels: Any,
                 k: int = 5) -> dict[str, float]:
    """kNN accuracy (:func:`knn_predict`) in percent: ``{"top1": ...}``."""
    pred = knn_predict(train_features, train_labels, test_features, k)
    y = as_labels("test_labels", test_labels, pred.shape[0], "test_features")
    return {"top1": 100.0 * float((pred == y).double().mean())}
