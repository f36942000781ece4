"""The common sections of the real parameter sets (notebooks/params/*.yaml): the paper's
datasets and query budget, the fake set of CI, and the chapters `make reproduce` runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from isoclip.data import available_datasets, dataset_info
from isoclip.notebooks import PARAMS_DIR, load_params, notebook_parameters
from isoclip.studies.dataset_inversion import DEFAULT_QUERIES, check_queries

ROOT = Path(__file__).resolve().parent.parent
REAL_SETS = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml") if p.stem != "default")
PAPER_SETS = [s for s in REAL_SETS if s != "fake-vit-b-32"]


def test_the_five_paper_backbones_have_a_set() -> None:
    assert set(PAPER_SETS) == {"vit-b-32-openai", "vit-b-16-openai", "vit-l-14-openai",
                               "vit-b-16-datacomp-xl", "pe-core-b-16-meta"}


@pytest.mark.parametrize("name", REAL_SETS)
def test_lists_name_registered_sets_of_the_right_modality(name: str) -> None:
    common = load_params(name)["common"]
    assert {dataset_info(n).modality for n in common["datasets"]} == {"image"}
    assert {dataset_info(n).modality for n in common["text_datasets"]} == {"text"}
    check_queries(common["inversion_queries"])


@pytest.mark.parametrize("name", PAPER_SETS)
def test_paper_set_evaluates_the_papers_13_image_and_3_caption_sets(name: str) -> None:
    common = load_params(name)["common"]
    assert common["datasets"] == [i.name for i in available_datasets("image")]
    assert len(common["datasets"]) == 13
    assert common["text_datasets"] == ["coco_text", "flickr30k_text", "nocaps_text"]
    assert common["inversion_queries"] == DEFAULT_QUERIES  # the documented default
    assert "13 image sets and 3 caption sets" in " ".join(load_params(name)["description"].split())


def test_fake_set_gives_several_rows_and_an_average() -> None:
    common = load_params("fake-vit-b-32")["common"]
    assert common["pretrained"] is None  # random init: no weights needed in CI
    assert len(common["datasets"]) >= 3 and "roxford5k" in common["datasets"]  # E/M/H rows
    assert len(common["text_datasets"]) >= 2
    assert common["inversion_queries"] == "all" and common["oti_steps"] <= 5
    assert common["ovi_steps"] <= 5


def test_makefile_reproduces_chapters_that_take_the_lists() -> None:
    """REPRO_NOTEBOOKS holds results chapters that take a model and either the dataset lists
    or no data at all (spectrum, latency): none that would ignore DATA_ROOT."""
    mk = (ROOT / "Makefile").read_text()
    (line,) = [x for x in mk.splitlines() if x.startswith("REPRO_NOTEBOOKS ?=")]
    chapters = line.split("?=")[1].split()
    assert {"05", "06"} <= set(chapters) and chapters == sorted(chapters)
    for stem in chapters:
        names = {p.name for p in notebook_parameters(stem)}
        assert "model" in names, stem
        assert "datasets" in names or "data_root" not in names, stem
