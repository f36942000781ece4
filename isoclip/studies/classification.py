"""Classification with intra-modal and inter-modal classifiers: zero-shot, NCM and
iso-NCM on the same images, with paired intervals (IsoCLIP's NCM table; Cross the
Gap's zero-shot through OTI).

* :func:`classification_study`: the classifiers on one synthetic world (the chapter's detailed
  analysis of the whole world).
* :func:`classification_suite`: the paper's table (IsoCLIP Sec. 5, classification; official
  ``src/classification/zero_shot_classification.py`` with ``--eval-type zeroshot / ncm /
  iso_ncm``) over a list of registered sets, one row per set:
  prototypes from the set's training split, accuracy on its test split
  (:func:`isoclip.data.classification.load_classification`), zero-shot with the set's class
  prompts, NCM on projected features, iso-NCM on the isotropic band under several band rules,
  and zero-shot through OTI (Cross the Gap, ``ZeroShotOTI`` of its
  ``src/classification/trainers.py``) on the inverted test images. Every classifier is scored
  per test image, so averages over sets come with paired intervals
  (:func:`classification_table`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.data.classification import ClassificationData
from isoclip.data.world.synthetic import SyntheticWorld
from isoclip.evaluate.classification import cosine_logits
from isoclip.evaluate.stats import compare_accuracy, correct_top1, integer_labels
from isoclip.method.bands import Band
from isoclip.method.operator import SVD
from isoclip.method.projectors import Projectors, get_projectors
from isoclip.models.features import image_features, zero_shot_weights
from isoclip.models.loading import ModelBundle

__all__ = ["CLASSIFICATION_CODE", "CLASSIFIERS", "FAMILY_SCOPES", "GAINS", "OTI_ZERO_SHOT", "ClassificationSuite",
           "SetClassification", "SetInputs", "average_accuracy_gain", "classification_layout",
           "classification_study", "classification_suite", "classification_table",
           "classify_set", "default_stride", "family_verdicts", "iso_ncm_sweep", "ncm_correct",
           "result_rows", "sweep_grid"]


def ncm_correct(train: Tensor, train_labels: Any, test: Tensor, test_labels: Any, *,
                project: Any = None, n_classes: int | None = None) -> Tensor:
    """Per-test-item correctness (percent) of the nearest class mean: prototypes are means of
    the **unnormalised** ``train`` features; ``project`` (e.g. ``iso.project_image`` for
    iso-NCM on pre-projection features) maps prototypes and test features before the cosine.
    Its mean equals :func:`isoclip.evaluate.classification.evaluate_ncm` (no ``project``) or
    ``evaluate_iso_ncm`` (with the projectors' ``project_image``)."""
    from isoclip.evaluate.classification import ncm_logits

    return correct_top1(ncm_logits(train, train_labels, test, n_classes, project), test_labels)


def classification_study(bundle: ModelBundle, world: SyntheticWorld | ClassificationData,
                         bands: dict[str, Any], *, train_per_class: int | None = None,
                         subset_seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:
    """Zero-shot, NCM and iso-NCM (one per band) on the test images of one set.

    Args:
        bundle: the model.
        world: a synthetic world (prototypes from ``train``, test images ``query``) or any
            set's :class:`isoclip.data.classification.ClassificationData` (``train``,
            ``test``; no zero-shot row when it has no prompts).
        bands: label -> :class:`isoclip.method.bands.Band` of an iso-NCM row each.
        train_per_class: training images per class for the prototypes
            (:func:`isoclip.evaluate.stats.balanced_subset`; None: the whole train split).
        subset_seed: seed of that subset and of the bootstrap.
        n_boot: bootstrap resamples.

    Returns:
        ``{"table"``: :func:`compare_accuracy` against ``"NCM"`` with rows ``zero-shot``,
        ``NCM`` and ``iso-NCM (<label>)``; ``"correct"``: name -> [N] correctness;
        ``"n_train"``: prototypes' training images; ``"weights"``: zero-shot class weights}.
    """
    from isoclip.evaluate.stats import balanced_subset
    from isoclip.method.bands import iso_projectors

    test_ds = world.query if isinstance(world, SyntheticWorld) else world.test
    if world.train.labels is None or test_ds.labels is None:
        raise ValueError("world: classification needs labelled train and test images")
    train_labels = np.array(world.train.labels)
    idx = balanced_subset(train_labels, train_per_class, subset_seed).numpy()
    tr_proj = image_features(bundle, world.train, "projected", progress=False)[idx]
    tr_pre = image_features(bundle, world.train, "preproj", progress=False)[idx]
    te_proj = image_features(bundle, test_ds, "projected", progress=False)
    te_pre = image_features(bundle, test_ds, "preproj", progress=False)
    ytr, yte = train_labels[idx], np.array(test_ds.labels)
    c = len(world.class_names)
    weights = (None if world.prompts is None
               else zero_shot_weights(bundle, world.prompts, progress=False))
    P = get_projectors(bundle.model)
    correct = {} if weights is None else {
        "zero-shot": correct_top1(cosine_logits(te_proj, weights), yte)}
    correct["NCM"] = ncm_correct(tr_proj, ytr, te_proj, yte, n_classes=c)
    for label, band in bands.items():
        iso = iso_projectors(P, band).to(te_pre.dtype)
        correct[f"iso-NCM ({label})"] = ncm_correct(tr_pre, ytr, te_pre, yte,
                                                    project=iso.project_image, n_classes=c)
    table = compare_accuracy(correct, baseline="NCM", n_boot=n_boot, seed=subset_seed)
    return {"table": table, "correct": correct, "n_train": len(idx), "weights": weights}


# ---------------------------------------------------------------------------------------------
# the paper's classification table over a list of sets

#: Classifiers scored on every test image of a set, in table order. ``iso-NCM (paper)`` uses
#: the paper's image band of the backbone, or the ViT-B/32 band scaled to the model's rank
#: (:func:`isoclip.studies.verdicts.paper_band`); ``held-out``: the best band of the sweep
#: chosen on the even test images scores the odd ones and vice versa; ``oracle``: the best
#: band on all test images (an upper bound, never a verdict).
CLASSIFIERS = ("zero-shot", "NCM", "iso-NCM (automatic)", "iso-NCM (paper)",
               "iso-NCM (held-out)", "iso-NCM (oracle)")
#: Zero-shot through OTI (Cross the Gap): scored on the inverted test images only (NaN on
#: the others), compared with zero-shot on the same images.
OTI_ZERO_SHOT = "zero-shot via OTI"


@dataclass
class SetClassification:
    """One set's classifiers, per test image.

    Attributes:
        name: the set's registry name.
        n_train: training images of the prototypes; n_classes: classes of the set.
        correct: classifier (:data:`CLASSIFIERS`, :data:`OTI_ZERO_SHOT`) -> [N] float64
            correctness in percent (100 = right), NaN where the classifier did not score the
            image (zero-shot without prompts; images not inverted by OTI).
        bands: ``"automatic"``, ``"paper"``, ``"oracle"``, ``"held-out (even)"`` (chosen on
            the even test images, scores the odd ones), ``"held-out (odd)"``.
        meta: table descriptors (:func:`isoclip.studies.suite.set_meta`).
    """

    name: str
    n_train: int
    n_classes: int
    correct: dict[str, Tensor]
    bands: dict[str, Band]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_test(self) -> int:
        return int(next(iter(self.correct.values())).shape[0])

    def accuracy(self, method: str) -> float:
        """Top-1 accuracy (%) of ``method`` over the images it scored (NaN: none)."""
        v = self.correct[method]
        ok = ~torch.isnan(v)
        return float(v[ok].mean()) if bool(ok.any()) else math.nan


def sweep_grid(dec: SVD, P: Projectors, stride: int) -> list[Band]:
    """The bands of the held-out sweep: k_top and k_bottom in steps of ``stride`` below
    rank = min(r, d), the r − rank null directions of Ψ always dropped (the grid of
    :func:`isoclip.studies.suite.evaluate_set`)."""
    from isoclip.selection.sweep import grid_bands

    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    rank = min(dec.r, P.d)
    null = dec.r - rank
    return grid_bands(dec.r, range(0, rank, stride), range(null, null + rank, stride))


def iso_ncm_sweep(P: Projectors, train_pre: Tensor, train_labels: Any, test_pre: Tensor,
                  test_labels: Any, bands: Sequence[Band], *, n_classes: int | None = None,
                  dec: SVD | None = None) -> Tensor:
    """[B, N] per-test-image correctness (percent) of iso-NCM under every band (IsoCLIP Sec.
    5, official ``IsoNCM``; notation page, eq-iso-ncm).

    The prototypes are the class means of the unnormalised pre-projection ``train_pre``
    [M, d_i]; a band's image projector is affine, so it maps a mean to the mean of the
    projections and the band's logits are the cosines of the projected test features
    ``test_pre`` [N, d_i] with the projected prototypes: one
    :class:`isoclip.selection.sweep.BandScorer` (coordinates in Ψ's singular basis computed
    once) gives every band without re-projecting. Equal to :func:`ncm_correct` with
    ``iso_projectors(P, band).project_image`` up to float round-off.
    """
    from isoclip.evaluate.classification import ncm_prototypes
    from isoclip.selection.sweep import BandScorer

    protos = ncm_prototypes(train_pre, train_labels, n_classes)
    y = integer_labels(test_labels)
    scorer = BandScorer(P, test_pre, protos, "image", dec, dtype=torch.float64)
    out = torch.empty(len(bands), test_pre.shape[0], dtype=torch.float64)
    for i, band in enumerate(bands):
        out[i] = correct_top1(scorer.scores(band), y)
    return out


@dataclass
class SetInputs:
    """Features and labels of one set for :func:`classify_set`.

    Attributes:
        train_pre, train: [M, d_i] pre-projection and [M, d] projected training features.
        test_pre, test: [N, d_i], [N, d] of the test images.
        train_labels, test_labels: [M], [N] class indices in ``[0, n_classes)``.
        n_classes: C.
        weights: [C, d] zero-shot class weights (None: no zero-shot classifier).
        inverted: ``(rows [n], features [n, d])``: test rows inverted by OTI and their OTI
            (text-side) features, or None.
    """

    train_pre: Tensor
    train: Tensor
    test_pre: Tensor
    test: Tensor
    train_labels: Any
    test_labels: Any
    n_classes: int
    weights: Tensor | None = None
    inverted: tuple[Tensor, Tensor] | None = None


def classify_set(P: Projectors, x: SetInputs, *, auto_band: Band, paper_band: Band,
                 dec: SVD | None = None, stride: int = 2, name: str = "") -> SetClassification:
    """Every classifier of :data:`CLASSIFIERS` (and zero-shot via OTI when ``x.inverted`` is
    given) on the test images of one set.

    Args:
        P: the model's projectors; ``dec = svd(P)`` if already computed.
        x: the set's features and labels.
        auto_band, paper_band: the bands of ``iso-NCM (automatic)`` and ``iso-NCM (paper)``.
        stride: grid step of the held-out / oracle sweep (:func:`sweep_grid`).
        name: the set's name.

    Raises:
        ValueError: fewer than 2 test images, a class without a training image, or a bad
            stride.
    """
    from isoclip.method.operator import svd

    dec = svd(P) if dec is None else dec
    n = int(x.test.shape[0])
    if n < 2:
        raise ValueError(f"test: expected at least 2 test images (held-out band), got {n}")
    ytr, yte = integer_labels(x.train_labels), integer_labels(x.test_labels)
    c = x.n_classes
    nan = torch.full((n,), math.nan, dtype=torch.float64)
    correct: dict[str, Tensor] = {
        "zero-shot": nan.clone() if x.weights is None else correct_top1(
            cosine_logits(x.test, x.weights), yte),
        "NCM": ncm_correct(x.train, ytr, x.test, yte, n_classes=c)}
    grid = sweep_grid(dec, P, stride)
    fixed = iso_ncm_sweep(P, x.train_pre, ytr, x.test_pre, yte, [auto_band, paper_band, *grid],
                          n_classes=c, dec=dec)
    correct["iso-NCM (automatic)"], correct["iso-NCM (paper)"] = fixed[0], fixed[1]
    acc = fixed[2:]  # [B, N]
    every = torch.arange(n)
    bands: dict[str, Band] = {"automatic": auto_band, "paper": paper_band}
    heldout = nan.clone()
    for label, chooser, scored in (("held-out (even)", every[0::2], every[1::2]),
                                   ("held-out (odd)", every[1::2], every[0::2])):
        b = int(torch.argmax(acc[:, chooser].mean(1)))
        heldout[scored] = acc[b, scored]
        bands[label] = grid[b]
    oracle = int(torch.argmax(acc.mean(1)))
    bands["oracle"] = grid[oracle]
    correct["iso-NCM (held-out)"] = heldout
    correct["iso-NCM (oracle)"] = acc[oracle]
    oti = nan.clone()
    if x.inverted is not None and x.weights is not None and len(x.inverted[0]):
        rows = torch.as_tensor(x.inverted[0], dtype=torch.long)
        oti[rows] = correct_top1(cosine_logits(x.inverted[1].float(), x.weights), yte[rows])
    correct[OTI_ZERO_SHOT] = oti
    return SetClassification(name=name, n_train=int(x.train.shape[0]), n_classes=c,
                             correct=correct, bands=bands)


@dataclass
class ClassificationSuite:
    """:func:`classification_suite`'s output.

    Attributes:
        results: one :class:`SetClassification` per set, in the order asked.
        bundles: model label -> the model that classified its sets.
        stride: the sweep's grid step per model label.
        skipped: paper datasets of the list without a train/test split (cub2011, the
            revisited Oxford / Paris sets): left out of the table.
    """

    results: list[SetClassification]
    bundles: dict[str, ModelBundle]
    stride: dict[str, int]
    skipped: list[str] = field(default_factory=list)


#: Modules whose code changes a :class:`SetClassification` besides the suite's
#: (:data:`isoclip.studies.suite.SUITE_CODE`): part of every cache key.
CLASSIFICATION_CODE = ("isoclip.studies.classification", "isoclip.data.classification",
                       "isoclip.evaluate.classification")


def default_stride(rank: int, steps: int = 32) -> int:
    """Grid step giving about ``steps`` values of k_top (and k_bottom) below ``rank``: 2 for
    the tiny models' rank 64, 16 for ViT-B/32's 512."""
    return max(1, rank // steps)


def _whole_inputs(bundle: ModelBundle, name: str, data_root: Any, config: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """Features of a whole set's test and training images (cached on disk by the feature
    cache), with the whole set's test labels (for the inversion subset)."""
    from isoclip.data.classification import load_classification

    data = load_classification(name, data_root, **config)
    return {"test_pre": image_features(bundle, data.test, "preproj", progress=False),
            "test": image_features(bundle, data.test, "projected", progress=False),
            "train_pre": image_features(bundle, data.train, "preproj", progress=False),
            "train": image_features(bundle, data.train, "projected", progress=False),
            "test_labels": data.test.labels}


def classification_suite(datasets: str | Sequence[str], *, model: str = "embedded",
                         pretrained: str | None = None, data_root: Any = None,
                         device: str = "cpu", world: Any = None, train: Any = None,
                         stride: int | None = None, inversion: Any = None,
                         progress: bool = False, cache: bool = True) -> ClassificationSuite:
    """The classification rows of every set of ``datasets`` (suites expanded): zero-shot,
    NCM, iso-NCM (automatic, paper, held-out, oracle bands) and zero-shot via OTI.

    Args:
        datasets: names or suites (:func:`isoclip.data.registry.datasets_list`), e.g.
            ``["synthetic", "emoji"]`` or the paper's ``["oxford_pets", "dtd"]``
            (:data:`isoclip.data.classification.CLASSIFICATION_DATASETS`).
        model, pretrained, device: ``"embedded"`` classifies each embedded set with its own
            family's model (:func:`isoclip.training.embedded.model_for_set`: the default tiny
            model for the synthetic sets, the emoji model for the emoji sets); an open_clip
            name classifies every set with that model.
        data_root: folder of the paper's datasets (only for those).
        world, train: the synthetic world and the default model's training (None: the
            book's defaults).
        stride: grid step of the held-out sweep (None: :func:`default_stride` of the rank).
        inversion: :class:`isoclip.studies.suite.InversionSettings` of zero-shot via OTI
            (its image per-class budgets; None: no OTI). The inversion of a whole set's test
            images is :func:`isoclip.studies.suite.suite_study`'s (same cache entries), shared
            by its slices.
        cache: keep each set's per-image results in the cache (kind ``classification``,
            keyed by the model's fingerprint, the set and its data, the stride, the bands, the
            inversion settings and the code of :data:`CLASSIFICATION_CODE` and the suite's).

    Sets without a train/test split (paper datasets not in
    :data:`isoclip.data.classification.CLASSIFICATION_DATASETS`, and the retrieval-only
    ``emoji/cross-style``; :func:`isoclip.data.classification.has_classification_split`) are
    skipped and named in ``skipped``, so a run over the retrieval chapters' list classifies
    what can be classified.

    Raises:
        ValueError: unknown names, no set to classify, or bad arguments.
    """
    from isoclip.common.cache import cached
    from isoclip.data import suites
    from isoclip.data.classification import (
        CLASSIFICATION_DATASETS,
        has_classification_split,
        load_classification,
    )
    from isoclip.data.registry import datasets_list
    from isoclip.method.operator import svd
    from isoclip.selection.rules import select_band
    from isoclip.studies.suite import (
        SUITE_CODE,
        SetFeatures,
        _invert_whole,
        _positions,
        code_fingerprint,
        set_key_material,
        set_meta,
    )
    from isoclip.studies.verdicts import paper_band
    from isoclip.training import embedded as emb

    world = emb.DEFAULT_WORLD if world is None else world
    train = emb.DEFAULT_TRAIN if train is None else train
    config = {"world": world}
    listed = datasets_list(datasets if isinstance(datasets, str) else list(datasets), **config)
    names = [n for n in listed if has_classification_split(n)]
    if not names:
        raise ValueError(f"datasets: none of {listed} has a train/test classification split; "
                         f"classification datasets: {', '.join(CLASSIFICATION_DATASETS)} and the "
                         "embedded sets but emoji/cross-style")
    bundles: dict[str, ModelBundle] = {}
    models: dict[str, tuple[Projectors, SVD, Band, Band, int]] = {}
    wholes: dict[tuple[str, str], dict[str, Any]] = {}
    code = code_fingerprint((*SUITE_CODE, *CLASSIFICATION_CODE))
    results = []
    for name in names:
        key = emb.model_for_set(name, model)
        if key not in bundles:
            bundles[key] = emb.resolve_model(key, pretrained, device=device, world=world,
                                             train=train, progress=progress)
            P = get_projectors(bundles[key].model)
            dec = svd(P)
            r = dec.r
            step = default_stride(min(r, P.d)) if stride is None else stride
            models[key] = (P, dec, select_band(P, "isotropy", dec=dec),
                           paper_band(model, pretrained, "image", r).band, step)
        bundle = bundles[key]
        P, dec, auto, paper, step = models[key]
        meta = set_meta(name, key, **config)
        data = load_classification(name, data_root, **config)
        family = str(meta["family"])
        data_id: Any = ({"family": family, "config": world if family == "synthetic" else None}
                        if suites.is_embedded(name) else
                        {"train": data.train.fingerprint(), "test": data.test.fingerprint()})
        material = {**set_key_material(bundle.fingerprint, name, "image", family=family,
                                       data=data_id, stride=step, calibration_pairs=0, seed=0,
                                       inversion=inversion, code=code),
                    "kind": "classification-set", "bands": [[auto.k_top, auto.k_bottom],
                                                            [paper.k_top, paper.k_bottom]]}

        def build(name: str = name, key: str = key, data: Any = data,
                  meta: dict[str, Any] = meta) -> dict[str, Any]:
            bundle = bundles[key]
            P, dec, auto, paper, step = models[key]
            whole = suites.whole_set(name)
            if (key, whole) not in wholes:
                w = _whole_inputs(bundle, whole, data_root, config)
                per = {} if inversion is None else inversion.per_class.get(meta["family"], {})
                w["inverted"] = None
                if "image" in per:
                    feats = SetFeatures(w["test_pre"], w["train_pre"], w["test"], w["train"])
                    w["inverted"] = _invert_whole(bundle, feats, w["test_labels"], "image",
                                                  int(per["image"]), inversion, meta["family"])
                wholes[(key, whole)] = w
            w = wholes[(key, whole)]
            if name == whole:
                rows = {"query": np.arange(len(data.test)),
                        "calibration": np.arange(len(data.train))}
            else:
                rows = suites.rows_in_whole(name, "image", **config)
            q, t = torch.as_tensor(rows["query"]), torch.as_tensor(rows["calibration"])
            inverted = None
            if w["inverted"] is not None:
                pos, js = _positions(w["inverted"][0], rows["query"])
                inverted = (pos, w["inverted"][1][js])
            weights = (None if data.prompts is None
                       else zero_shot_weights(bundle, data.prompts, progress=False))
            x = SetInputs(train_pre=w["train_pre"][t], train=w["train"][t],
                          test_pre=w["test_pre"][q], test=w["test"][q],
                          train_labels=data.train.labels, test_labels=data.test.labels,
                          n_classes=data.n_classes, weights=weights, inverted=inverted)
            res = classify_set(P, x, auto_band=auto, paper_band=paper, dec=dec, stride=step,
                               name=name)
            return {"name": res.name, "n_train": res.n_train, "n_classes": res.n_classes,
                    "correct": {m: v.clone() for m, v in res.correct.items()},
                    "bands": {k: [b.k_top, b.k_bottom] for k, b in res.bands.items()}}

        d = cached("classification", material, build, enabled=cache)
        results.append(SetClassification(
            name=str(d["name"]), n_train=int(d["n_train"]), n_classes=int(d["n_classes"]),
            correct=dict(d["correct"]),
            bands={k: Band(int(v[0]), int(v[1])) for k, v in d["bands"].items()},
            meta={**meta, "n_classes": int(d["n_classes"])}))
    return ClassificationSuite(results=results, bundles=bundles,
                               stride={k: v[4] for k, v in models.items()},
                               skipped=[n for n in listed if n not in names])


# ---------------------------------------------------------------------------------------------
# tables and averages


def _as_set_results(results: Sequence[SetClassification]) -> list[Any]:
    """The sets as :class:`isoclip.studies.suite.SetResult` whose per-query values are the
    per-image correctness, so that the suite's stratified average and its interval apply
    unchanged."""
    from isoclip.studies.suite import SetResult

    return [SetResult(name=r.name, modality="image", n_query=r.n_test, n_gallery=r.n_train,
                      same_split=False, ap=r.correct, bands=r.bands, meta=r.meta)
            for r in results]


def average_accuracy_gain(results: Sequence[SetClassification], method: str,
                          baseline: str = "NCM", *, n_boot: int = 2000, seed: int = 0
                          ) -> dict[str, float]:
    """The mean over sets of ``method``'s accuracy gain over ``baseline`` (points; each set
    weighs the same, as the paper's average over datasets), with a 95 % bootstrap interval
    that resamples the test images within each set, paired
    (:func:`isoclip.studies.suite.average_gain`). Images one of the two did not score
    (NaN) are left out of that set.

    Returns:
        ``delta``, ``lo``, ``hi`` (points), ``n_sets``.
    """
    from isoclip.studies.suite import average_gain

    return average_gain(_as_set_results(results), method, baseline, n_boot=n_boot, seed=seed)


#: The comparisons of the table: (column, classifier, baseline).
GAINS = (("Δ iso-NCM (held-out) − NCM", "iso-NCM (held-out)", "NCM"),
         ("Δ iso-NCM (automatic) − NCM", "iso-NCM (automatic)", "NCM"),
         ("Δ zero-shot via OTI − zero-shot", OTI_ZERO_SHOT, "zero-shot"))


def classification_table(results: Sequence[SetClassification], *, n_boot: int = 2000,
                         seed: int = 0) -> pd.DataFrame:
    """One row per set (in order), then per family the mean over its fine-grained sets; the
    whole sets stay rows of their own, never averaged in (as
    :func:`isoclip.studies.suite.suite_table`).

    Columns: ``set`` (row label), ``name``, ``family``, ``kind`` (``"fine-grained"``,
    ``"whole"``, ``"average"``, ``"dataset"``), ``classes``, ``n`` (test images), ``train``,
    every classifier of :data:`CLASSIFIERS` and :data:`OTI_ZERO_SHOT` (top-1 %), ``oti_n``
    (images inverted), ``zs_on_oti`` (zero-shot on those images), and for each of
    :data:`GAINS` its point estimate, ``lo`` and ``hi`` (95 % paired bootstrap over the test
    images; stratified over the sets for an average). Paper datasets form the family
    ``"paper"``, whose average is over all of them.
    """
    from isoclip.evaluate.stats import paired_bootstrap

    def gains(sets: Sequence[SetClassification]) -> dict[str, float]:
        out: dict[str, float] = {}
        for col, m, b in GAINS:
            ok = [r for r in sets if bool((~torch.isnan(r.correct[m])
                                          & ~torch.isnan(r.correct[b])).any())]
            if len(ok) < len(sets) or not ok:
                out.update({col: math.nan, f"{col} lo": math.nan, f"{col} hi": math.nan})
                continue
            if len(sets) == 1:
                d = paired_bootstrap(sets[0].correct[b], sets[0].correct[m], n_boot=n_boot,
                                     seed=seed)
            else:
                d = average_accuracy_gain(sets, m, b, n_boot=n_boot, seed=seed)
            out.update({col: d["delta"], f"{col} lo": d["lo"], f"{col} hi": d["hi"]})
        return out

    def zs_on_oti(r: SetClassification) -> float:
        ok = ~torch.isnan(r.correct[OTI_ZERO_SHOT])
        return float(r.correct["zero-shot"][ok].mean()) if bool(ok.any()) else math.nan

    rows = []
    for r in results:
        fine = r.meta.get("fine_grained")
        kind = "fine-grained" if fine else "whole" if fine is False else "dataset"
        rows.append({"set": r.meta.get("label", r.name), "name": r.name,
                     "family": r.meta.get("family", ""), "kind": kind, "classes": r.n_classes,
                     "n": r.n_test, "train": r.n_train,
                     **{m: r.accuracy(m) for m in (*CLASSIFIERS, OTI_ZERO_SHOT)},
                     "oti_n": int((~torch.isnan(r.correct[OTI_ZERO_SHOT])).sum()),
                     "zs_on_oti": zs_on_oti(r), **gains([r])})
    df = pd.DataFrame(rows)
    avg_rows = []
    for fam in dict.fromkeys(df["family"]):
        sets = [r for r, row in zip(results, rows)
                if row["family"] == fam and row["kind"] in ("fine-grained", "dataset")]
        if len(sets) < 2:
            continue
        part = df[df["name"].isin([r.name for r in sets])]
        num = part[["classes", *CLASSIFIERS, OTI_ZERO_SHOT, "zs_on_oti"]].mean()
        label = "fine-grained sets" if fam != "paper" else "datasets"
        avg_rows.append({"set": f"average ({len(sets)} {label})", "name": "", "family": fam,
                         "kind": "average", **num.to_dict(), "n": int(part["n"].sum()),
                         "train": int(part["train"].sum()), "oti_n": int(part["oti_n"].sum()),
                         **gains(sets)})
    return pd.concat([df, pd.DataFrame(avg_rows)], ignore_index=True) if avg_rows else df


def classification_layout(table: pd.DataFrame, *, control: pd.DataFrame | None = None,
                          decimals: int = 1) -> pd.DataFrame:
    """:func:`classification_table` in the paper's layout: rows (family, set) with each
    family's fine-grained sets (or datasets), their average, then its whole set; columns
    zero-shot, zero-shot via OTI (its accuracy on the inverted images and its change against
    zero-shot on the same images), NCM, iso-NCM under the automatic, paper and held-out bands,
    Δ (held-out − NCM with its 95 % paired interval) and the oracle band (an upper bound).
    A set whose NCM accuracy is within :data:`isoclip.studies.verdicts.NEAR_CEILING_HEADROOM`
    points of 100 is marked ``†`` (little room for any classifier to gain).

    Args:
        table: :func:`classification_table`.
        control: the same table of the random-init control (``pretrained=None``): its NCM and
            held-out iso-NCM are added as two columns, matched by set.
        decimals: of the formatted cells.
    """
    from isoclip.studies.suite import FAMILY_LABELS
    from isoclip.studies.verdicts import fmt_delta, near_ceiling

    order = {"fine-grained": 0, "dataset": 0, "average": 1, "whole": 2}
    fams = {f: i for i, f in enumerate(dict.fromkeys(table["family"]))}
    t = table.assign(_f=table["family"].map(fams), _o=table["kind"].map(order),
                     _p=range(len(table))).sort_values(["_f", "_o", "_p"], kind="stable")
    ctrl = None if control is None else control.set_index("set")
    held = GAINS[0][0]
    rows = []
    for r in t.to_dict("records"):
        oti = (f"{r[OTI_ZERO_SHOT]:.{decimals}f} ({r[OTI_ZERO_SHOT] - r['zs_on_oti']:+.{decimals}f})"
               if r["oti_n"] else "")
        delta = ("" if math.isnan(r[held]) else
                 fmt_delta(r[held], r[f"{held} lo"], r[f"{held} hi"], decimals=decimals))
        label = str(r["set"]) + (" †" if near_ceiling(r["NCM"]) and r["kind"] != "average"
                                 else "")
        classes = f"{r['classes']:.1f}" if r["kind"] == "average" else f"{int(r['classes'])}"
        row = {("", "family"): FAMILY_LABELS.get(r["family"], r["family"]),
               ("", "set"): label, ("", "classes"): classes,
               ("", "test images"): int(r["n"]), ("", "zero-shot"): r["zero-shot"],
               ("", "via OTI (Δ)"): oti, ("", "NCM"): r["NCM"],
               ("iso-NCM", "automatic"): r["iso-NCM (automatic)"],
               ("iso-NCM", "paper"): r["iso-NCM (paper)"],
               ("iso-NCM", "held-out"): r["iso-NCM (held-out)"],
               ("", "Δ held-out − NCM [95 % CI]"): delta,
               ("", "oracle"): r["iso-NCM (oracle)"]}
        if ctrl is not None:
            c = ctrl.loc[r["set"]] if r["set"] in ctrl.index else None
            row[("random init", "NCM")] = math.nan if c is None else float(c["NCM"])
            row[("random init", "iso-NCM held-out")] = (math.nan if c is None else
                                                        float(c["iso-NCM (held-out)"]))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out.set_index([("", "family"), ("", "set")]).rename_axis(["", "set"])


def result_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Tidy rows of :func:`isoclip.studies.results.write_result` (task
    ``"classification"``, metric ``"top-1 accuracy"``): one per set and classifier, the
    averages left out (the result file's tables average the datasets themselves)."""
    rows = []
    for r in table[table["kind"] != "average"].to_dict("records"):
        for m in (*CLASSIFIERS, OTI_ZERO_SHOT):
            if not math.isnan(r[m]):
                rows.append({"dataset": r["name"], "task": "classification", "method": m,
                             "metric": "top-1 accuracy", "value": float(r[m]),
                             "queries": int(r["oti_n"] if m == OTI_ZERO_SHOT else r["n"])})
    return rows


#: The model each family of sets is classified with on the embedded default, as a verdict
#: scope (:func:`isoclip.studies.verdicts.scope` for a real model).
FAMILY_SCOPES = {"synthetic": "on the tiny model trained here", "emoji": "on the emoji model"}


def family_verdicts(table: pd.DataFrame, model: str = "embedded",
                    pretrained: str | None = None) -> pd.DataFrame:
    """Per family with an average row, the verdict of iso-NCM (held-out band) against NCM
    and of zero-shot via OTI against zero-shot, each read off the 95 % interval of the
    fine-grained average (:func:`isoclip.studies.verdicts.change`), scoped to the model the
    family was measured on.

    Returns:
        Columns ``family, scope, n_sets, NCM, iso`` (held-out), ``delta, lo, hi, verdict``,
        ``oti_delta, oti_lo, oti_hi, oti_verdict`` (NaN / "" without OTI) and ``sentence``.
    """
    from isoclip.studies.verdicts import change, change_of_accuracy, scope

    held, _, oti = (g[0] for g in GAINS)
    rows = []
    for r in table[table["kind"] == "average"].to_dict("records"):
        fam = r["family"]
        where = (FAMILY_SCOPES.get(fam, scope(model, pretrained)) if model == "embedded"
                 else scope(model, pretrained))
        verdict = change(r[f"{held} lo"], r[f"{held} hi"])
        n_sets = int(str(r["set"]).split("(")[1].split()[0])
        text = (f"{where[0].upper()}{where[1:]}, over the {n_sets} "
                f"{'fine-grained sets' if fam != 'paper' else 'datasets'}, iso-NCM with the "
                f"held-out band averages {r['iso-NCM (held-out)']:.1f} % against NCM's "
                f"{r['NCM']:.1f} % ({r[held]:+.1f} points, 95 % interval {r[f'{held} lo']:+.1f} "
                f"to {r[f'{held} hi']:+.1f}): the band {verdict} NCM accuracy.")
        row = {"family": fam, "scope": where, "n_sets": n_sets, "NCM": r["NCM"],
               "iso": r["iso-NCM (held-out)"], "delta": r[held], "lo": r[f"{held} lo"],
               "hi": r[f"{held} hi"], "verdict": verdict, "oti_delta": r[oti],
               "oti_lo": r[f"{oti} lo"], "oti_hi": r[f"{oti} hi"], "oti_verdict": ""}
        if not math.isnan(r[oti]):
            row["oti_verdict"] = change_of_accuracy(r[f"{oti} lo"], r[f"{oti} hi"])
            text += (f" Through OTI, zero-shot accuracy {row['oti_verdict']} on the same "
                     f"images ({r[oti]:+.1f} points, {r[f'{oti} lo']:+.1f} to "
                     f"{r[f'{oti} hi']:+.1f}).")
        row["sentence"] = text
        rows.append(row)
    return pd.DataFrame(rows)
