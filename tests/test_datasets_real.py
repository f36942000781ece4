"""The paper's datasets on the real path: official layouts, read from miniature fake copies.

Every fake is written inside ``tmp_path`` by :func:`isoclip.data.fakes.make_fake_dataset`
(8 px images) or by hand; expected folder and file names are spelled out here independently
of the registry, from the official loaders (Cross-the-Gap ``src/datasets/``, IsoCLIP
``src/datasets/*_text.py``, ``RETRIEVAL_SPLTS``).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isoclip.data import (
    DatasetFormatError,
    DatasetNotFoundError,
    ImageDataset,
    TextDataset,
    available_datasets,
    load_retrieval_dataset,
)
from isoclip.data.fakes import make_fake_dataset

# name -> (modality, query split, gallery split, same_split), from RETRIEVAL_SPLTS
SPLITS = {
    "cub2011": ("image", "all", "all", True),
    "roxford5k": ("image", "query", "gallery", False),
    "rparis6k": ("image", "query", "gallery", False),
    **{n: ("image", "test", "train", False) for n in (
        "stanford_cars", "oxford_pets", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat",
        "food101", "sun397", "caltech101", "ucf101")},
    "coco_text": ("text", "test_query", "test_gallery", False),
    "flickr30k_text": ("text", "val_query", "val_gallery", False),
    "nocaps_text": ("text", "val_query", "val_gallery", False),
}
# CoOp-derived: name -> (folder under data_root, split file, image folder inside it)
COOP = {
    "stanford_cars": ("CoOp/stanford_cars", "split_zhou_StanfordCars.json", ""),
    "oxford_pets": ("CoOp/oxford_pets", "split_zhou_OxfordPets.json", "images"),
    "oxford_flowers": ("CoOp/oxford_flowers", "split_zhou_OxfordFlowers.json", "jpg"),
    "fgvc_aircraft": ("CoOp/fgvc_aircraft", None, "images"),  # own lists, no split_zhou file
    "dtd": ("CoOp/dtd", "split_zhou_DescribableTextures.json", "images"),
    "eurosat": ("CoOp/eurosat", "split_zhou_EuroSAT.json", "2750"),
    "food101": ("CoOp/food-101", "split_zhou_Food101.json", "images"),
    "sun397": ("CoOp/sun397", "split_zhou_SUN397.json", "SUN397"),
    "caltech101": ("CoOp/caltech-101", "split_zhou_Caltech101.json", "101_ObjectCategories"),
    "ucf101": ("CoOp/ucf101", "split_zhou_UCF101.json", "UCF-101-midframes"),
}
CAPTIONS = {"coco_text": "COCO2014", "flickr30k_text": "Flickr30K", "nocaps_text": "nocaps"}
SIZE = 8


def test_registry_lists_the_16_datasets_with_their_splits() -> None:
    infos = available_datasets()
    got = {i.name: (i.modality, i.query_split, i.gallery_split, i.same_split) for i in infos}
    assert got == SPLITS
    assert [i.name for i in available_datasets("text")] == list(CAPTIONS)
    assert len(available_datasets("image")) == 13
    for i in infos:
        assert i.source and i.official_loader.startswith(("miccunifi/", "simomagi/"))


def test_cub_all_to_all(tmp_path: Path) -> None:
    folder = make_fake_dataset("cub2011", tmp_path, n_classes=3, per_class=2, image_size=SIZE)
    assert folder == tmp_path / "CUB_200_2011"
    # labels are joined by image id, not by line order
    labels_file = folder / "image_class_labels.txt"
    labels_file.write_text("\n".join(reversed(labels_file.read_text().splitlines())) + "\n")
    data = load_retrieval_dataset("cub2011", tmp_path)
    assert data.same_split and data.query is data.gallery
    assert (data.query_split, data.gallery_split, data.gnd) == ("all", "all", None)
    q = data.query
    assert isinstance(q, ImageDataset)
    assert q.class_names == ["Fake bird 0", "Fake bird 1", "Fake bird 2"]
    assert q.labels.tolist() == [0, 0, 1, 1, 2, 2]
    rels = [line.split()[1] for line in (folder / "images.txt").read_text().splitlines()]
    assert list(q.images) == [folder / "images" / r for r in rels]
    assert q.image(5).size == (SIZE, SIZE)


@pytest.mark.parametrize("name", ["roxford5k", "rparis6k"])
def test_revisited_ground_truth_and_files(tmp_path: Path, name: str) -> None:
    folder = make_fake_dataset(name, tmp_path, n_classes=2, per_class=3, image_size=SIZE)
    assert folder == tmp_path / name
    with open(folder / f"gnd_{name}.pkl", "rb") as f:
        cfg = pickle.load(f)
    data = load_retrieval_dataset(name, tmp_path)
    assert not data.same_split and (data.query_split, data.gallery_split) == ("query", "gallery")
    assert list(data.query.images) == [folder / "jpg" / f"{s}.jpg" for s in cfg["qimlist"]]
    assert list(data.gallery.images) == [folder / "jpg" / f"{s}.jpg" for s in cfg["imlist"]]
    assert len(data.query) == 2 and len(data.gallery) == 8
    assert data.query.labels.tolist() == [0, 0] and set(data.gallery.labels.tolist()) == {0}
    assert data.gnd is not None and len(data.gnd) == 2
    for got, raw in zip(data.gnd, cfg["gnd"]):
        for key in ("easy", "hard", "junk"):
            assert got[key].dtype == np.int64 and got[key].tolist() == raw[key]
        assert got["bbx"].tolist() == raw["bbx"]
    assert data.gnd[0]["easy"].tolist() == [1, 3] and data.gnd[0]["hard"].tolist() == [2]
    # default: queries are not cropped (official loader); crop_queries uses the box
    assert data.query.image(0).size == (SIZE, SIZE)
    cropped = load_retrieval_dataset(name, tmp_path, crop_queries=True)
    assert cropped.query.image(0).size == (SIZE - 2, SIZE - 2)
    assert cropped.query.name != data.query.name


def test_revisited_gnd_accepts_arrays_and_the_evaluator_reads_it(tmp_path: Path) -> None:
    from isoclip.evaluate.retrieval import evaluate_revisited_scores

    folder = make_fake_dataset("roxford5k", tmp_path, n_classes=2, per_class=2, image_size=SIZE)
    path = folder / "gnd_roxford5k.pkl"
    cfg = pickle.loads(path.read_bytes())
    for g in cfg["gnd"]:  # some copies store numpy arrays
        g.update({k: np.asarray(v) for k, v in g.items()})
    path.write_bytes(pickle.dumps(cfg))
    data = load_retrieval_dataset("roxford5k", tmp_path)
    scores = np.zeros((len(data.query), len(data.gallery)), np.float32)
    for qi, g in enumerate(data.gnd or []):
        scores[qi, g["easy"]] = 1.0
    res = evaluate_revisited_scores(scores, data.gnd or [])
    assert res["mAP_easy"] == pytest.approx(100.0)


def test_revisited_distractors(tmp_path: Path) -> None:
    make_fake_dataset("rparis6k", tmp_path, n_classes=2, per_class=2, image_size=SIZE)
    with pytest.raises(DatasetNotFoundError, match="revisitop1m"):
        load_retrieval_dataset("rparis6k", tmp_path, with_distractors=True)
    r1m = tmp_path / "revisitop1m" / "jpg"
    for sub, n in (("b0", 2), ("a9", 1)):
        (r1m / sub).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (SIZE, SIZE)).save(r1m / sub / f"{sub}{i}.jpg")
    data = load_retrieval_dataset("rparis6k", tmp_path, with_distractors=True)
    assert len(data.gallery) == 6 + 3
    assert [p.name for p in data.gallery.images[6:]] == ["a90.jpg", "b00.jpg", "b01.jpg"]
    assert data.gallery.name.endswith("+revisitop1m")
    assert all(max(g["easy"].max(), g["hard"].max()) < 6 for g in data.gnd or [])


@pytest.mark.parametrize("name", list(COOP))
def test_coop_test_to_train(tmp_path: Path, name: str) -> None:
    rel_dir, split_file, image_dir = COOP[name]
    folder = make_fake_dataset(name, tmp_path, n_classes=3, per_class=2, image_size=SIZE)
    assert folder == tmp_path / rel_dir
    data = load_retrieval_dataset(name, tmp_path)
    assert not data.same_split and (data.query_split, data.gallery_split) == ("test", "train")
    q, g = data.query, data.gallery
    assert isinstance(q, ImageDataset) and isinstance(g, ImageDataset)
    assert len(q) == len(g) == 6
    assert q.labels.tolist() == g.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert q.class_names == g.class_names and len(q.class_names) == 3
    if split_file is None:  # FGVC-Aircraft: variants.txt + images_variant_<split>.txt
        variants = (folder / "variants.txt").read_text().splitlines()
        assert q.class_names == variants
        lines = (folder / "images_variant_test.txt").read_text().splitlines()
        ids = [ln.split()[0] for ln in lines]
        assert list(q.images) == [folder / image_dir / f"{i}.jpg" for i in ids]
    else:
        split = json.loads((folder / split_file).read_text())
        assert list(q.images) == [folder / image_dir / p for p, _, _ in split["test"]]
        assert list(g.images) == [folder / image_dir / p for p, _, _ in split["train"]]
        assert q.class_names == ["fake class 0", "fake class 1", "fake class 2"]
    assert all(Path(p).is_file() for p in list(q.images) + list(g.images))
    assert q.image(0).size == (SIZE, SIZE)


@pytest.mark.parametrize("name", ["oxford_pets", "food101", "fgvc_aircraft"])
def test_coop_sets_also_found_in_coop_datasets_md_layout(tmp_path: Path, name: str) -> None:
    folder = make_fake_dataset(name, tmp_path / "tmp", image_size=SIZE)
    plain = tmp_path / "root" / folder.name  # data_root/<dir>, without CoOp/
    shutil.move(str(folder), plain)
    data = load_retrieval_dataset(name, tmp_path / "root")
    assert data.folder == plain and len(data.query) == 6


def _relevance(data_query: TextDataset, data_gallery: TextDataset) -> dict[str, list[str]]:
    return {t: [g for g, gl in zip(data_gallery.texts, data_gallery.labels) if gl == ql]
            for t, ql in zip(data_query.texts, data_query.labels)}


@pytest.mark.parametrize("name", list(CAPTIONS))
def test_captions_first_is_query_rest_is_gallery(tmp_path: Path, name: str) -> None:
    folder = make_fake_dataset(name, tmp_path, n_classes=3, captions_per_image=4)
    assert folder == tmp_path / CAPTIONS[name]
    data = load_retrieval_dataset(name, tmp_path)
    assert (data.query_split, data.gallery_split) == SPLITS[name][1:3]
    q, g = data.query, data.gallery
    assert isinstance(q, TextDataset) and isinstance(g, TextDataset)
    assert q.labels.tolist() == [0, 1, 2] and g.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    # only the evaluated split's images (the fake adds one image to each other split)
    assert _relevance(q, g) == {
        f"caption 0 of fake image {i}": [f"caption {j} of fake image {i}" for j in (1, 2, 3)]
        for i in range(3)}


def test_coco_gallery_keeps_every_caption_after_the_first(tmp_path: Path) -> None:
    folder = make_fake_dataset("coco_text", tmp_path, n_classes=2)
    path = folder / "dataset_coco_light.json"
    data = json.loads(path.read_text())
    test_images = [im for im in data["images"] if im["split"] == "test"]
    test_images[1]["sentences"].append({"raw": "a sixth caption", "sentid": 99})
    path.write_text(json.dumps(data))
    loaded = load_retrieval_dataset("coco_text", tmp_path)
    assert loaded.gallery.labels.tolist() == [0] * 4 + [1] * 5
    assert loaded.gallery.texts[-1] == "a sixth caption"


def test_flickr_strips_and_filters_by_karpathy_list(tmp_path: Path) -> None:
    folder = make_fake_dataset("flickr30k_text", tmp_path, n_classes=2)
    assert (folder / "results.csv").read_text().splitlines()[1] == "val0.jpg| 0| caption 0 of " \
                                                                   "fake image 0"
    (folder / "karpathy_val.txt").write_text("val1\n")
    data = load_retrieval_dataset("flickr30k_text", tmp_path)
    assert data.query.texts == ["caption 0 of fake image 1"] and len(data.gallery) == 4


def test_nocaps_groups_interleaved_annotations_by_image(tmp_path: Path) -> None:
    folder = make_fake_dataset("nocaps_text", tmp_path, n_classes=2)
    anns = json.loads((folder / "nocaps_val_4500_captions.json").read_text())["annotations"]
    assert [a["image_id"] for a in anns[:4]] == [0, 1, 0, 1]  # interleaved in the file
    data = load_retrieval_dataset("nocaps_text", tmp_path)
    assert data.query.texts == ["caption 0 of fake image 0", "caption 0 of fake image 1"]
    assert len(data.gallery) == 2 * 9


# ---------------------------------------------------------------------------------------------
# Clear errors


@pytest.mark.parametrize("name", list(SPLITS))
def test_missing_folder_names_dataset_path_and_source(tmp_path: Path, name: str) -> None:
    info = next(i for i in available_datasets() if i.name == name)
    with pytest.raises(DatasetNotFoundError) as err:
        load_retrieval_dataset(name, tmp_path)
    e = err.value
    assert isinstance(e, FileNotFoundError) and not isinstance(e, DatasetFormatError)
    msg = str(e)
    assert repr(name) in msg and str(tmp_path / info.dirs[0]) in msg and info.source in msg
    assert all(f in msg for f in info.files)
    assert e.dataset == name and e.expected_paths[0] == tmp_path / info.dirs[0]


@pytest.mark.parametrize("name", list(SPLITS))
def test_missing_file_is_named(tmp_path: Path, name: str) -> None:
    info = next(i for i in available_datasets() if i.name == name)
    folder = make_fake_dataset(name, tmp_path, image_size=SIZE)
    victim = folder / info.files[-1]
    shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
    with pytest.raises(DatasetNotFoundError, match=f"missing in {folder}: {info.files[-1]}"):
        load_retrieval_dataset(name, tmp_path)


def test_missing_image_is_reported_unless_not_verified(tmp_path: Path) -> None:
    folder = make_fake_dataset("eurosat", tmp_path, image_size=SIZE)
    gone = folder / "2750" / "fake_class_1" / "test_000.jpg"
    gone.unlink()
    with pytest.raises(DatasetNotFoundError, match=f"1 of 6 listed images are missing.*{gone}"):
        load_retrieval_dataset("eurosat", tmp_path)
    assert len(load_retrieval_dataset("eurosat", tmp_path, verify_images=False).query) == 6


@pytest.mark.parametrize("name,file,content,problem", [
    ("dtd", "split_zhou_DescribableTextures.json", '{"train": [', "invalid JSON"),
    ("dtd", "split_zhou_DescribableTextures.json", '{"train": [], "test": []}', "'val'"),
    ("dtd", "split_zhou_DescribableTextures.json",
     '{"train": [["a.jpg", "0", "x"]], "val": [], "test": []}', r"train\[0\]"),
    ("dtd", "split_zhou_DescribableTextures.json",
     '{"train": [["a.jpg", 0, "x"], ["b.jpg", 0, "y"]], "val": [], "test": []}', "two class"),
    ("dtd", "split_zhou_DescribableTextures.json",
     '{"train": [["a.jpg", 1, "x"]], "val": [], "test": []}', "without gaps"),
    ("coco_text", "dataset_coco_light.json", "[1, 2]", "'images' list"),
    ("coco_text", "dataset_coco_light.json", '{"images": [{"split": "test"}]}', "sentences"),
    ("nocaps_text", "nocaps_val_4500_captions.json", "{not json", "invalid JSON"),
    ("nocaps_text", "nocaps_val_4500_captions.json", '{"annotations": [{"id": 1}]}',
     "image_id"),
    ("flickr30k_text", "results.csv", "image_name| comment_number| comment\nval0.jpg| 0\n",
     "line 2: expected 3"),
    ("flickr30k_text", "results.csv", "a,b,c\n", "header"),
    ("fgvc_aircraft", "images_variant_test.txt", "123 Not-A-Variant\n", "not in variants"),
    ("cub2011", "classes.txt", "1 001.A\n2\n", "line 2"),
    ("cub2011", "image_class_labels.txt", "1 7\n", "not in 1..3"),
    ("roxford5k", "gnd_roxford5k.pkl", "not a pickle", "cannot unpickle"),
])
def test_malformed_files_raise_format_errors(tmp_path: Path, name: str, file: str, content: str,
                                             problem: str) -> None:
    folder = make_fake_dataset(name, tmp_path, image_size=SIZE)
    (folder / file).write_text(content)
    with pytest.raises(DatasetFormatError, match=problem) as err:
        load_retrieval_dataset(name, tmp_path)
    assert isinstance(err.value, DatasetNotFoundError) and str(folder / file) in str(err.value)


def test_malformed_gnd_schema(tmp_path: Path) -> None:
    folder = make_fake_dataset("rparis6k", tmp_path, image_size=SIZE)
    path = folder / "gnd_rparis6k.pkl"
    cfg = pickle.loads(path.read_bytes())
    cfg["gnd"][1]["hard"] = [999]
    path.write_bytes(pickle.dumps(cfg))
    with pytest.raises(DatasetFormatError, match=r"gnd\[1\]\['hard'\] indexes outside imlist"):
        load_retrieval_dataset("rparis6k", tmp_path)
    cfg["gnd"][1]["hard"] = [2]
    cfg["gnd"][0]["bbx"] = "top left"
    path.write_bytes(pickle.dumps(cfg))
    with pytest.raises(DatasetFormatError, match=r"gnd\[0\]\['bbx'\] is not numeric"):
        load_retrieval_dataset("rparis6k", tmp_path)
    path.write_bytes(pickle.dumps({"imlist": []}))
    with pytest.raises(DatasetFormatError, match="'qimlist'"):
        load_retrieval_dataset("rparis6k", tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cub'.*cub2011"):
        load_retrieval_dataset("cub", tmp_path)
    with pytest.raises(ValueError, match="roxford5k and rparis6k only"):
        load_retrieval_dataset("cub2011", tmp_path, crop_queries=True)
    with pytest.raises(ValueError, match="per_class must be >= 2"):
        make_fake_dataset("roxford5k", tmp_path, per_class=1)
    with pytest.raises(ValueError, match="captions_per_image"):
        make_fake_dataset("nocaps_text", tmp_path, captions_per_image=1)


# ---------------------------------------------------------------------------------------------
# Fakes for the end-to-end reproduction


def test_every_registered_dataset_has_a_loadable_fake_of_the_requested_size(
        tmp_path: Path) -> None:
    for info in available_datasets():
        make_fake_dataset(info.name, tmp_path)
        data = load_retrieval_dataset(info.name, tmp_path)
        assert len(data.query) > 0 and len(data.gallery) > 0
        if isinstance(data.query, ImageDataset):
            assert data.query.image(0).size == (32, 32)  # default image_size
    a = make_fake_dataset("sun397", tmp_path / "a", seed=3, image_size=SIZE)
    b = make_fake_dataset("sun397", tmp_path / "b", seed=3, image_size=SIZE)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
