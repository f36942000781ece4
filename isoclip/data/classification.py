"""Classification splits of the registered sets: a labelled training split for the class
prototypes, a test split to classify, the set's classes and their zero-shot prompts.

IsoCLIP evaluates zero-shot, NCM and iso-NCM classification on ten of CoOp's datasets
(official ``src/classification/zero_shot_classification.py`` with the Dassl dataset classes of
``src/classification/datasets/``): prototypes from the **train** split, accuracy on the **test**
split, zero-shot with one hand-written template per dataset (``CUSTOM_TEMPLATES`` of Cross the
Gap's ``src/classification/trainers.py``, CoOp's templates). :func:`load_classification` gives
the same for any registered set:

* a paper dataset with a train and a test split (:data:`CLASSIFICATION_DATASETS`): test = its
  retrieval query, train = its retrieval gallery (both read by
  :func:`isoclip.data.registry.load_dataset` from the official layout under ``data_root``),
  prompts = :data:`COOP_TEMPLATES` filled with the class names;
* an embedded set (:mod:`isoclip.data.suites`): test = the set's query images, train = its
  training pairs (the ``calibration`` split: the images the embedded model was trained on, with
  their labels), classes = the labels present in the set (a slice of one shape has one class
  per colour), prompts = the synthetic world's prompt ensembles of those classes, or for an
  emoji subcategory the zero-shot prompts of every emoji it holds (a subcategory is described by
  the names of its emoji: the emoji model was trained on emoji names, never on subcategory
  slugs).

Labels are re-indexed to ``0..C-1`` over the set's classes in increasing order of the
original label, so a slice is a classification problem of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from isoclip.data.base import ImageDataset
from isoclip.data.registry import dataset_info, load_dataset
from isoclip.data.suites import CROSS_STYLE, SUITES, embedded_set, is_embedded

__all__ = ["CLASSIFICATION_DATASETS", "COOP_TEMPLATES", "ClassificationData",
           "has_classification_split", "load_classification"]

#: Zero-shot template of each paper classification dataset (Cross the Gap
#: ``src/classification/trainers.py`` ``CUSTOM_TEMPLATES``, keyed there by Dassl class name).
COOP_TEMPLATES: dict[str, str] = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "sun397": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "ucf101": "a photo of a person doing {}.",
}

#: The paper's classification datasets that the registry reads (the official script also
#: takes ImageNet, which is not registered here).
CLASSIFICATION_DATASETS: tuple[str, ...] = tuple(COOP_TEMPLATES)


def has_classification_split(name: str) -> bool:
    """Whether registered set ``name`` (not a suite) has a train/test split to classify: every
    embedded set but ``emoji/cross-style`` (its gallery, the only images in the other artwork,
    is a retrieval gallery: there is no training split in that artwork), and
    :data:`CLASSIFICATION_DATASETS`."""
    return (is_embedded(name) and name != CROSS_STYLE) or name in CLASSIFICATION_DATASETS


@dataclass(frozen=True, eq=False)
class ClassificationData:
    """One set as a classification problem.

    Attributes:
        name: the registry name.
        train: labelled images of the prototypes, labels in ``[0, C)``.
        test: labelled images to classify, labels in ``[0, C)``.
        class_names: the C class names.
        prompts: ``[C][T_c]`` zero-shot prompts per class (None: no zero-shot classifier).
        original_labels: [C] the label of each class in the set's own label space (its row
            of the whole set's ``class_names``).
        train_split, test_split: the official split names.
    """

    name: str
    train: ImageDataset
    test: ImageDataset
    class_names: list[str]
    prompts: list[list[str]] | None
    original_labels: np.ndarray
    train_split: str
    test_split: str

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _relabel(ds: ImageDataset, classes: np.ndarray, names: list[str]) -> ImageDataset:
    """``ds`` with its labels re-indexed into ``classes`` (sorted original labels)."""
    if ds.labels is None:
        raise ValueError(f"dataset {ds.name!r}: classification needs labels")
    labels = np.searchsorted(classes, ds.labels).astype(np.int64)
    return ImageDataset(images=ds.images, labels=labels, class_names=names, name=ds.name,
                        captions=ds.captions)


def _embedded_prompts(name: str, classes: np.ndarray, **config: Any) -> list[list[str]]:
    info = embedded_set(name, **config)
    if info.family == "emoji":
        from isoclip.data import emoji as em

        data = em.load_emoji(config.get("emoji"))
        sub_of = data.train.labels
        emoji_of = data.emoji_of["train"]
        if sub_of is None:
            raise ValueError("the emoji training split has no subcategory labels")
        members = {int(c): sorted({int(e) for e in emoji_of[sub_of == c]}) for c in classes}
        return [[p for e in members[int(c)] for p in data.name_prompts[e]] for c in classes]
    from isoclip.data.world.config import WorldConfig
    from isoclip.data.world.synthetic import zero_shot_prompts

    world = config.get("world")
    prompts = zero_shot_prompts(world if isinstance(world, WorldConfig) else WorldConfig())
    return [prompts[int(c)] for c in classes]


def load_classification(name: str, data_root: str | os.PathLike[str] | None = None,
                        **config: Any) -> ClassificationData:
    """The train and test splits, classes and zero-shot prompts of set ``name``.

    Args:
        name: a registered set (not a suite): an embedded set (``"synthetic/world"``,
            ``"synthetic/shape=circle"``, ``"emoji/category=food-drink"``, ...) or one of
            :data:`CLASSIFICATION_DATASETS`.
        data_root: the folder holding the paper's datasets (paper datasets only).
        config: ``world=`` / ``emoji=`` configurations of the embedded data.

    Raises:
        ValueError: a suite, a paper dataset without a train/test split (cub2011: all -> all;
            roxford5k / rparis6k; caption sets), ``emoji/cross-style``, or the registry's
            errors (unknown name, missing ``data_root``);
            :class:`isoclip.data.DatasetNotFoundError` for missing data.
    """
    if name in SUITES:
        raise ValueError(f"dataset {name!r} is a suite; expand it with datasets_list() and "
                         "load each set")
    if name == CROSS_STYLE:
        raise ValueError(f"dataset {name!r}: an image→image retrieval set across artworks (Noto "
                         "queries, a Twemoji gallery) with no train/test classification split "
                         "in either artwork; classify 'emoji/all' or an emoji category instead")
    if not is_embedded(name):
        info = dataset_info(name)
        if name not in COOP_TEMPLATES or (info.query_split, info.gallery_split) != (
                "test", "train"):
            raise ValueError(f"dataset {name!r}: no train/test classification split; "
                             f"classification datasets: {', '.join(CLASSIFICATION_DATASETS)} "
                             "and the embedded sets")
    data = load_dataset(name, "image", data_root, **config)
    test, train = data.query, (data.calibration if is_embedded(name) else data.gallery)
    if not isinstance(test, ImageDataset) or not isinstance(train, ImageDataset):
        raise TypeError(f"dataset {name!r}: classification needs images in both splits")
    if test.labels is None or train.labels is None:
        raise ValueError(f"dataset {name!r}: classification needs labels in both splits")
    classes = np.union1d(np.unique(train.labels), np.unique(test.labels)).astype(np.int64)
    missing = np.setdiff1d(np.unique(test.labels), np.unique(train.labels))
    if missing.size:
        raise ValueError(f"dataset {name!r}: test classes {missing.tolist()[:10]} have no "
                         "training image (no prototype)")
    all_names = list(test.class_names or [])
    names = [all_names[int(c)] for c in classes]
    if is_embedded(name):
        prompts: list[list[str]] | None = _embedded_prompts(name, classes, **config)
        train_split = "train"
    else:
        prompts = [[COOP_TEMPLATES[name].format(n)] for n in names]
        train_split = data.gallery_split
    return ClassificationData(name=name, train=_relabel(train, classes, names),
                              test=_relabel(test, classes, names), class_names=names,
                              prompts=prompts, original_labels=classes,
                              train_split=train_split, test_split=data.query_split)
