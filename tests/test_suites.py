"""The embedded evaluation suites: registered set names, their expansion, and slices that are
exactly the right subsets of a hand-made world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from isoclip.data.fakes import make_fake_dataset
from isoclip.data.registry import datasets_list, is_registered, load_dataset
from isoclip.data.suites import embedded_set, embedded_sets, suite_members
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.synthetic import make_world
from isoclip.training.embedded import resolve_retrieval

WORLD = WorldConfig(shapes=("circle", "square", "star"), colours=("red", "blue"),
                    n_train_per_class=6, n_query_per_class=3, n_gallery_per_class=4,
                    n_text_query_per_class=2, n_text_gallery_per_class=3)


def _naive_rows(classes, labels, facet: str, value: str) -> list[int]:
    """Rows whose class has ``value`` as its shape (facet 'shape') or colour, by a loop."""
    pos = 0 if facet == "shape" else 1
    return [i for i, y in enumerate(labels) if classes[y][pos] == value]


@pytest.mark.parametrize("modality", ["image", "text"])
@pytest.mark.parametrize(("facet", "value"), [("shape", "circle"), ("shape", "star"),
                                              ("colour", "red"), ("colour", "blue")])
def test_slices_are_the_items_of_one_shape_or_colour(modality: str, facet: str,
                                                     value: str) -> None:
    w = make_world(WORLD)
    d = load_dataset(f"synthetic/{facet}={value}", modality, world=WORLD)
    q_all, g_all = (w.query, w.gallery) if modality == "image" else (w.text_query, w.text_gallery)
    assert d.name == f"synthetic/{facet}={value}" and not d.same_split and d.gnd is None
    for part, full in ((d.query, q_all), (d.gallery, g_all), (d.calibration, w.train)):
        rows = _naive_rows(w.classes, full.labels.tolist(), facet, value)
        assert len(part) == len(rows) > 0
        assert part.labels.tolist() == [int(full.labels[i]) for i in rows]
        if modality == "image" or part is d.calibration:
            assert np.array_equal(part.images, full.images[rows])
            assert part.captions == [full.captions[i] for i in rows]
        else:
            assert part.texts == [full.texts[i] for i in rows]
        assert part.name == f"{full.name}[{facet}={value}]"
    # relevance inside the set is the other attribute: one label per colour (or shape)
    other = 1 if facet == "shape" else 0
    kinds = {w.classes[y][other] for y in d.query.labels.tolist()}
    assert len(kinds) == len(set(d.query.labels.tolist())) == (
        len(WORLD.colours) if facet == "shape" else len(WORLD.shapes))


def test_slices_of_one_facet_partition_the_world() -> None:
    w = make_world(WORLD)
    for facet in ("shape", "colour"):
        names = suite_members(f"synthetic-{facet}s", world=WORLD)
        sizes = [len(load_dataset(n, "image", world=WORLD).query) for n in names]
        assert sum(sizes) == len(w.query)


def test_world_set_is_the_whole_world_and_embedded_keeps_its_name() -> None:
    w = make_world(WORLD)
    d = load_dataset("synthetic/world", "image", world=WORLD)
    assert d.query is w.query and d.gallery is w.gallery and d.calibration is w.train
    old = resolve_retrieval("embedded", None, "text", world=WORLD)
    assert old.name == "embedded" and old.query is w.text_query and old.calibration is None
    assert resolve_retrieval("synthetic/shape=circle", None, "image", world=WORLD).name == \
        "synthetic/shape=circle"


def test_suites_expand_in_order_without_repeats() -> None:
    fine = ["synthetic/shape=circle", "synthetic/shape=square", "synthetic/shape=star",
            "synthetic/colour=red", "synthetic/colour=blue"]
    assert datasets_list("synthetic-fine-grained", world=WORLD) == fine
    assert datasets_list(["synthetic", "synthetic/shape=star", "cub2011"], world=WORLD) == \
        ["synthetic/world", *fine, "cub2011"]
    default = datasets_list("synthetic-fine-grained")
    assert len(default) == 6 + 4 and default[0] == "synthetic/shape=circle"
    info = embedded_set("synthetic/colour=blue", world=WORLD)
    assert (info.facet, info.value, info.relevance, info.fine_grained) == \
        ("colour", "blue", "shape", True)
    assert not embedded_set("synthetic/world").fine_grained
    assert next(s.name for s in embedded_sets("synthetic", world=WORLD)) == "synthetic/world"
    assert is_registered("cub2011") and is_registered("synthetic-shapes")
    assert not is_registered("birds")


def test_bad_names_are_named() -> None:
    with pytest.raises(ValueError, match=r"'synthetic/shape=heart'.*registered: synthetic/world"):
        datasets_list(["synthetic/shape=heart"], world=WORLD)
    with pytest.raises(ValueError, match=r"'birds': unknown; paper datasets: cub2011.*suites"):
        datasets_list(["synthetic", "birds"])
    with pytest.raises(ValueError, match="text retrieval.*image retrieval"):
        datasets_list(["flickr30k_text"], "image")
    with pytest.raises(ValueError, match="at least one"):
        datasets_list([])
    with pytest.raises(TypeError, match="names"):
        datasets_list([3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="suite of several sets"):
        load_dataset("synthetic-fine-grained")
    with pytest.raises(ValueError, match="modality"):
        load_dataset("synthetic/world", "audio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs data_root"):
        load_dataset("cub2011")


def test_paper_and_embedded_sets_load_through_one_function(tmp_path: Path) -> None:
    make_fake_dataset("cub2011", tmp_path, n_classes=3, per_class=2, image_size=8)
    sets = {n: load_dataset(n, "image", tmp_path, world=WORLD)
            for n in datasets_list(["cub2011", "synthetic/shape=square"], world=WORLD)}
    assert sets["cub2011"].same_split and sets["cub2011"].calibration is None
    assert len(sets["synthetic/shape=square"].query) == 2 * 3


def test_subset_keeps_rows_and_names_bad_indices() -> None:
    w = make_world(WORLD)
    sub = w.query.subset([4, 0], "q[two]")
    assert np.array_equal(sub.images, w.query.images[[4, 0]])
    assert sub.captions == [w.query.captions[4], w.query.captions[0]]
    assert sub.class_names == w.query.class_names and sub.name == "q[two]"
    assert w.text_query.subset([1], "t[one]").texts == [w.text_query.texts[1]]
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 18\)"):
        w.query.subset([18], "x")
    with pytest.raises(ValueError, match="indices: expected a 1-D"):
        w.query.subset([[0]], "x")
    with pytest.raises(ValueError, match="name"):
        w.text_query.subset([0], "")


def test_rows_in_whole_index_the_whole_sets_splits() -> None:
    from isoclip.data.suites import rows_in_whole, whole_set

    assert whole_set("synthetic/colour=red") == "synthetic/world"
    assert whole_set("cub2011") == "cub2011"
    for name in ("synthetic/world", "synthetic/colour=red", "synthetic/shape=star"):
        for modality in ("image", "text"):
            whole = load_dataset(whole_set(name), modality, world=WORLD)
            part = load_dataset(name, modality, world=WORLD)
            rows = rows_in_whole(name, modality, world=WORLD)
            for key, a, b in (("query", part.query, whole.query),
                              ("gallery", part.gallery, whole.gallery),
                              ("calibration", part.calibration, whole.calibration)):
                assert (a.labels == b.labels[rows[key]]).all()
                if hasattr(a, "texts"):
                    assert a.texts == [b.texts[i] for i in rows[key]]
                else:
                    assert np.array_equal(a.images, b.images[rows[key]])
