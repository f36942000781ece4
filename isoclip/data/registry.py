"""Registry of the paper's retrieval datasets: names, splits, on-disk layouts and sources.

``load_retrieval_dataset(name, data_root)`` reads one of the 16 datasets of IsoCLIP's
retrieval tables from a copy laid out as the official code expects (folder and file names of
``miccunifi/Cross-the-Gap`` ``src/datasets/``, imported unchanged by ``simomagi/IsoCLIP``;
splits of ``RETRIEVAL_SPLTS`` in their ``src/data_utils.py``):

* ``cub2011``, all -> all (same split): ``CUB_200_2011/`` with ``images.txt``,
  ``image_class_labels.txt``, ``classes.txt``, ``images/``.
* ``roxford5k`` / ``rparis6k``, query -> gallery, relevance from the revisitop ground truth:
  ``roxford5k/`` with ``gnd_roxford5k.pkl``, ``jpg/`` (``rparis6k/`` likewise).
* test -> train, CoOp ``split_zhou_*.json`` next to the image folder, under ``CoOp/``:
  ``stanford_cars/`` (``split_zhou_StanfordCars.json``, ``cars_train/``, ``cars_test/``),
  ``oxford_pets/`` (``split_zhou_OxfordPets.json``, ``images/``),
  ``oxford_flowers/`` (``split_zhou_OxfordFlowers.json``, ``jpg/``),
  ``dtd/`` (``split_zhou_DescribableTextures.json``, ``images/``),
  ``eurosat/`` (``split_zhou_EuroSAT.json``, ``2750/``),
  ``food-101/`` (``split_zhou_Food101.json``, ``images/``),
  ``sun397/`` (``split_zhou_SUN397.json``, ``SUN397/``),
  ``caltech-101/`` (``split_zhou_Caltech101.json``, ``101_ObjectCategories/``),
  ``ucf101/`` (``split_zhou_UCF101.json``, ``UCF-101-midframes/``).
* ``fgvc_aircraft``, test -> train: ``CoOp/fgvc_aircraft/`` with ``variants.txt``,
  ``images_variant_train.txt``, ``images_variant_test.txt``, ``images/``.
* ``coco_text``, test_query -> test_gallery: ``COCO2014/dataset_coco_light.json``.
* ``flickr30k_text``, val_query -> val_gallery: ``Flickr30K/`` with ``results.csv``,
  ``karpathy_val.txt``.
* ``nocaps_text``, val_query -> val_gallery: ``nocaps/nocaps_val_4500_captions.json``.

The embedded models' evaluation sets (``synthetic/world``, ``synthetic/shape=circle``, ...,
and the suites that expand to them, ``synthetic-fine-grained``, ...) are registered beside
these (:mod:`isoclip.data.suites`): :func:`datasets_list` expands a chapter's ``datasets``
list and :func:`load_dataset` reads any registered name.

The CoOp-derived sets are also found directly under ``data_root`` (``data_root/oxford_pets``
...), the layout of CoOp's ``DATASETS.md`` that the official *classification* scripts read.

Protocol details that follow the official code rather than the usual descriptions:

* Caption sets: the query is the first caption of each image and the gallery is **all** its
  other captions (``sentences[1:]``): 4 for most Flickr30K/COCO images, more for the COCO
  images with 6-7 captions, 9 for nocaps (10 captions per image).
* FGVC-Aircraft has no ``split_zhou`` file: the official loader reads the dataset's own
  ``images_variant_{train,test}.txt`` lists.
* ROxf/RPar: the ground truth is read from ``data_root/roxford5k/gnd_roxford5k.pkl``
  (revisitop's ``configdataset``); the official code then copies it to its repository's
  ``data/roxford_rparis_gnds/`` for evaluation, which is a cache, not a ``data_root`` location.
  Queries are **not** cropped to their box and the gallery holds no R1M
  distractors, as in the official loader with an empty ``revisitop1m/jpg``; both are options.
"""

from __future__ import annotations

import os
from pathlib import Path

from isoclip.common.types import Modality
from isoclip.data import suites
from isoclip.data.base import Collection, ImageDataset
from isoclip.data.paper_datasets import (
    READERS,
    DatasetFormatError,
    DatasetInfo,
    DatasetNotFoundError,
    GroundTruth,
    ReadContext,
    RetrievalData,
)
from isoclip.data.world.config import WorldConfig

__all__ = ["DatasetFormatError", "DatasetInfo", "DatasetNotFoundError", "GroundTruth",
           "RetrievalData", "available_datasets", "dataset_info", "datasets_list",
           "is_registered", "load_collection", "load_dataset", "load_retrieval_dataset"]

_CTG = "miccunifi/Cross-the-Gap src/datasets/"
_ISO = "simomagi/IsoCLIP src/datasets/"
_COOP_SPLITS = "CoOp DATASETS.md (github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md)"


def _coop(name: str, folder: str, image_dir: str, split_file: str, images: str,
          image_folders: tuple[str, ...] = ()) -> DatasetInfo:
    """A CoOp ``split_zhou_*.json`` dataset (test -> train)."""
    return DatasetInfo(
        name=name, modality="image", layout="coop_split", query_split="test",
        gallery_split="train", same_split=False, dirs=(f"CoOp/{folder}", folder),
        files=(split_file,) + (image_folders or (f"{image_dir}/",)),
        source=f"{images}; {split_file} from {_COOP_SPLITS}",
        official_loader=f"{_CTG}dassl/{name}.py", image_dir=image_dir, index_file=split_file)


def _revisited(name: str, images: str) -> DatasetInfo:
    return DatasetInfo(
        name=name, modality="image", layout="revisited", query_split="query",
        gallery_split="gallery", same_split=False, dirs=(name,),
        files=(f"gnd_{name}.pkl", "jpg/"),
        source=(f"{images}, with gnd_{name}.pkl from cmp.felk.cvut.cz/revisitop/data/datasets/"
                f"{name}/ (both fetched by github.com/filipradenovic/revisitop "
                "python/download.py)"),
        official_loader=f"{_CTG}roxford_rparis.py", image_dir="jpg", index_file=f"gnd_{name}.pkl")


_TABLE: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="cub2011", modality="image", layout="cub", query_split="all", gallery_split="all",
        same_split=True, dirs=("CUB_200_2011",),
        files=("images.txt", "image_class_labels.txt", "classes.txt", "images/"),
        source="CUB-200-2011, www.vision.caltech.edu/datasets/cub_200_2011/ (CUB_200_2011.tgz)",
        official_loader=f"{_CTG}cub.py", image_dir="images"),
    _revisited("roxford5k", "Oxford Buildings images (www.robots.ox.ac.uk/~vgg/data/oxbuildings/)"),
    _revisited("rparis6k", "Paris images (www.robots.ox.ac.uk/~vgg/data/parisbuildings/)"),
    _coop("stanford_cars", "stanford_cars", "", "split_zhou_StanfordCars.json",
          "Stanford Cars, ai.stanford.edu/~jkrause/cars/car_dataset.html (cars_train, cars_test)",
          image_folders=("cars_train/", "cars_test/")),
    _coop("oxford_pets", "oxford_pets", "images", "split_zhou_OxfordPets.json",
          "Oxford-IIIT Pets, www.robots.ox.ac.uk/~vgg/data/pets/ (images.tar.gz)"),
    _coop("oxford_flowers", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
          "Oxford Flowers-102, www.robots.ox.ac.uk/~vgg/data/flowers/102/ (102flowers.tgz)"),
    DatasetInfo(
        name="fgvc_aircraft", modality="image", layout="fgvc_aircraft", query_split="test",
        gallery_split="train", same_split=False, dirs=("CoOp/fgvc_aircraft", "fgvc_aircraft"),
        files=("variants.txt", "images_variant_train.txt", "images_variant_test.txt", "images/"),
        source=("FGVC-Aircraft, www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ "
                "(fgvc-aircraft-2013b.tar.gz: keep its data/ folder, renamed fgvc_aircraft/)"),
        official_loader=f"{_CTG}dassl/fgvc_aircraft.py", image_dir="images"),
    _coop("dtd", "dtd", "images", "split_zhou_DescribableTextures.json",
          "DTD, www.robots.ox.ac.uk/~vgg/data/dtd/ (dtd-r1.0.1.tar.gz)"),
    _coop("eurosat", "eurosat", "2750", "split_zhou_EuroSAT.json",
          "EuroSAT RGB, github.com/phelber/EuroSAT (EuroSAT.zip, folder 2750/)"),
    _coop("food101", "food-101", "images", "split_zhou_Food101.json",
          "Food-101, data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)"),
    _coop("sun397", "sun397", "SUN397", "split_zhou_SUN397.json",
          "SUN397, vision.princeton.edu/projects/2010/SUN/ (SUN397.tar.gz)"),
    _coop("caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
          "Caltech-101, data.caltech.edu/records/mzrjq-6wc02 (101_ObjectCategories)"),
    _coop("ucf101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
          f"UCF101 middle frames, UCF-101-midframes.zip linked in {_COOP_SPLITS}"),
    DatasetInfo(
        name="coco_text", modality="text", layout="coco_karpathy", query_split="test_query",
        gallery_split="test_gallery", same_split=False, dirs=("COCO2014",),
        files=("dataset_coco_light.json",),
        source=("Karpathy's COCO split, dataset_coco.json in cs.stanford.edu/people/karpathy/"
                "deepimagesent/caption_datasets.zip (the official code reads it as "
                "dataset_coco_light.json; a copy or symlink under that name works)"),
        official_loader=f"{_ISO}coco_text.py", index_file="dataset_coco_light.json"),
    DatasetInfo(
        name="flickr30k_text", modality="text", layout="flickr30k_csv", query_split="val_query",
        gallery_split="val_gallery", same_split=False, dirs=("Flickr30K",),
        files=("results.csv", "karpathy_val.txt"),
        source=("results.csv: the '|'-separated Flickr30k captions of Kaggle's "
                "hsankesara/flickr-image-dataset; karpathy_val.txt: the image ids (no .jpg) of "
                "Karpathy's val split (dataset_flickr30k.json in caption_datasets.zip)"),
        official_loader=f"{_ISO}flickr30k_text.py"),
    DatasetInfo(
        name="nocaps_text", modality="text", layout="nocaps_json", query_split="val_query",
        gallery_split="val_gallery", same_split=False, dirs=("nocaps",),
        files=("nocaps_val_4500_captions.json",),
        source="nocaps validation captions, nocaps.org/download (nocaps_val_4500_captions.json)",
        official_loader=f"{_ISO}nocaps_text.py", index_file="nocaps_val_4500_captions.json"),
)
_BY_NAME = {info.name: info for info in _TABLE}


def available_datasets(modality: Modality | None = None) -> list[DatasetInfo]:
    """The registered datasets (paper order), optionally only the image or text ones.

    Each :class:`DatasetInfo` gives the name, modality, layout kind, query/gallery splits,
    ``same_split``, the expected folder and files, the source and the official loader.
    """
    return [i for i in _TABLE if modality is None or i.modality == modality]


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(_BY_NAME)}") from None


def _find_folder(info: DatasetInfo, root: Path) -> Path:
    if not root.is_dir():
        raise DatasetNotFoundError(info, root, f"data_root {root} is not a folder")
    for d in info.dirs:
        if (root / d).is_dir():
            return root / d
    raise DatasetNotFoundError(
        info, root, "no dataset folder: looked for " + ", ".join(str(root / d) for d in info.dirs))


def load_retrieval_dataset(name: str, data_root: str | os.PathLike[str], *,
                           verify_images: bool = True, crop_queries: bool = False,
                           with_distractors: bool = False) -> RetrievalData:
    """Read dataset ``name`` from its official layout under ``data_root``.

    Args:
        name: a registered name (see :func:`available_datasets`), e.g. ``"cub2011"``.
        data_root: the folder holding all datasets (the official ``--dataroot``).
        verify_images: check that every listed image file exists (one ``stat`` per image);
            turn off on slow network file systems.
        crop_queries: ROxf/RPar only: crop queries to their ``bbx`` (standard revisitop
            protocol; the official IsoCLIP loader does not crop).
        with_distractors: ROxf/RPar only: append the R1M distractors found under
            ``data_root/revisitop1m/jpg/*/`` to the gallery, as the official loader does.

    Returns:
        The query and gallery containers (lazy image paths or caption strings), whether they
        are the same split, and for ROxf/RPar the ground truth ``gnd``.

    Raises:
        ValueError: unknown ``name``, or a ROxf/RPar-only option for another dataset.
        DatasetNotFoundError: missing folder, file or image; :class:`DatasetFormatError` (a
            subclass) for a file that exists but is malformed. The message names the expected
            layout under ``data_root`` and where the official data comes from.
    """
    info = dataset_info(name)
    if (crop_queries or with_distractors) and info.layout != "revisited":
        raise ValueError(f"crop_queries / with_distractors apply to roxford5k and rparis6k "
                         f"only, not {name!r}")
    root = Path(data_root).expanduser()
    folder = _find_folder(info, root)
    absent = [f for f in info.files if not (folder / f).exists()]
    if absent:
        raise DatasetNotFoundError(info, root, f"missing in {folder}: {', '.join(absent)}")
    ctx = ReadContext(info, root, folder, verify_images)
    if info.layout == "revisited":
        return READERS["revisited"](ctx, crop_queries=crop_queries,
                                    with_distractors=with_distractors)
    return READERS[info.layout](ctx)


def is_registered(name: str) -> bool:
    """Whether ``name`` is a paper dataset, an embedded set or a suite."""
    return name in _BY_NAME or suites.is_embedded(name)


def datasets_list(names: str | list[str] | tuple[str, ...], modality: Modality | None = None,
                  **config: object) -> list[str]:
    """A chapter's ``datasets`` (or ``text_datasets``) parameter as a list of set names: suites
    expanded (:func:`isoclip.data.suites.expand_datasets`), paper datasets kept, order kept,
    repeats dropped.

    Args:
        names: one name or a list, e.g. ``["synthetic-fine-grained", "cub2011"]``.
        modality: if given, every paper dataset must be of this modality (embedded sets have
            both an image and a text side).
        config: ``world=`` / ``emoji=`` configurations of the embedded data.

    Raises:
        ValueError: an unknown name (the message lists the paper datasets and the suites), or
            a paper dataset of the other modality.
    """
    def known(n: str) -> bool:
        if n not in _BY_NAME:
            raise ValueError(f"dataset {n!r}: unknown; paper datasets: {', '.join(_BY_NAME)}; "
                             f"embedded suites: {', '.join(suites.SUITES)}; embedded sets: "
                             "synthetic/world, synthetic/shape=<shape>, synthetic/colour=<colour>"
                             ", emoji/all, emoji/category=<category>, emoji/cross-style (image)")
        if modality is not None and _BY_NAME[n].modality != modality:
            others = [i.name for i in available_datasets(modality)]
            raise ValueError(f"dataset {n!r} is for {_BY_NAME[n].modality} retrieval, but this "
                             f"needs {modality} retrieval; {modality} sets: {', '.join(others)}")
        return True

    return suites.expand_datasets(names, known=known, **config)  # type: ignore[arg-type]


def load_dataset(name: str, modality: Modality = "image",
                 data_root: str | os.PathLike[str] | None = None, **config: object
                 ) -> RetrievalData:
    """Any registered retrieval set: an embedded set (generated or read from its local data,
    ``data_root`` unused) or a paper dataset read from ``data_root``
    (:func:`load_retrieval_dataset`).

    Args:
        name: a set name (not a suite: expand those with :func:`datasets_list`).
        modality: ``"image"`` or ``"text"``; a paper dataset must be of that modality.
        data_root: the folder holding the paper's datasets.
        config: ``world=`` / ``emoji=`` configurations of the embedded data.

    Raises:
        ValueError: unknown name, a suite, a paper dataset of the other modality or without
            ``data_root``; :class:`DatasetNotFoundError` for missing data.
    """
    if suites.is_embedded(name):
        return suites.load_embedded_set(name, modality, **config)  # type: ignore[arg-type]
    info = dataset_info(name)
    if info.modality != modality:
        others = [i.name for i in available_datasets(modality)]
        raise ValueError(f"dataset {name!r} is for {info.modality} retrieval, but this "
                         f"needs {modality} retrieval; {modality} sets: {', '.join(others)}")
    if data_root is None or str(data_root).strip() == "":
        raise ValueError(
            f"dataset {name!r} needs data_root: the folder that holds the datasets (the "
            f"official --dataroot), with this layout under it:\n{info.describe_layout()}\n"
            f"Official data: {info.source}\n"
            "Pass data_root (notebook parameter, `--set data_root=DIR`, or "
            "`make reproduce DATA_ROOT=DIR`), or use an embedded set (e.g. 'synthetic/world').")
    return load_retrieval_dataset(name, data_root)


def load_collection(name: str, data_root: str | os.PathLike[str] | None = None,
                    **config: object) -> Collection:
    """A registered set as a :class:`~isoclip.data.base.Collection`, the container every study
    helper takes (:mod:`isoclip.studies.world`, ...).

    An embedded set gives its image side (``query``, ``gallery``), its text side
    (``text_query``, ``text_gallery``) and its calibration pairs as ``train``; for the emoji
    sets ``prompts`` are the emoji names (zero-shot = naming the emoji) and
    ``zero_shot_labels`` each query's emoji. A paper image dataset gives its query and gallery
    only (same-split sets: the query set twice).

    Raises:
        ValueError: a suite, or the errors of :func:`load_dataset`.
        TypeError: a caption set (no images).
    """
    if name in suites.SUITES:
        raise ValueError(f"dataset {name!r} is a suite; load_collection takes one set")
    img = load_dataset(name, "image", data_root, **config)
    if not isinstance(img.query, ImageDataset) or not isinstance(img.gallery, ImageDataset):
        raise TypeError(f"dataset {name!r}: not an image set")
    txt = load_dataset(name, "text", data_root, **config) if suites.is_embedded(name) else None
    prompts, zs = None, None
    if suites.is_embedded(name) and suites.embedded_set(
            name, **config).family == "emoji":  # type: ignore[arg-type]  # world= / emoji=
        from isoclip.data import emoji as em

        data = em.load_emoji(config.get("emoji"))  # type: ignore[arg-type]
        rows = suites.rows_in_whole(name, "image", **config)["query"]  # type: ignore[arg-type]
        prompts = data.name_prompts
        zs = data.emoji_of["query"][rows]
    elif suites.is_embedded(name):
        from isoclip.data.world.synthetic import zero_shot_prompts

        world = config.get("world")
        prompts = zero_shot_prompts(world if world is not None else WorldConfig())  # type: ignore[arg-type]
    return Collection(name=name, train=img.calibration, query=img.query, gallery=img.gallery,
                      text_query=None if txt is None else txt.query,  # type: ignore[arg-type]
                      text_gallery=None if txt is None else txt.gallery,  # type: ignore[arg-type]
                      prompts=prompts, zero_shot_labels=zs)
