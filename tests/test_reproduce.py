"""The real path's plumbing: resolve_retrieval, the paper parameter sets, offline weights and the
generated reproduction book. The end-to-end run is `make reproduce-fake` (CI, after the book)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import open_clip
import pytest
import yaml

from isoclip.data import DatasetNotFoundError, dataset_info, make_world
from isoclip.data.fakes import make_fake_dataset
from isoclip.method.bands import PAPER_BANDS
from isoclip.models.loading import MissingWeightsError, load_model
from isoclip.notebooks import PARAMS_DIR, load_params
from isoclip.studies.band_study import primary_sets
from isoclip.training.embedded import DEFAULT_WORLD, resolve_retrieval

ROOT = Path(__file__).resolve().parent.parent
PAPER_SETS = {  # set name: (model, pretrained) of the paper's runs (IsoCLIP exp_*/*.sh)
    "vit-b-32-openai": ("ViT-B-32", "openai"),
    "vit-b-16-openai": ("ViT-B-16", "openai"),
    "vit-l-14-openai": ("ViT-L-14", "openai"),
    "vit-b-16-datacomp-xl": ("ViT-B-16", "datacomp_xl_s13b_b90k"),
}
REAL_SETS = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml") if p.stem != "default")


# -- resolve_retrieval --------------------------------------------------------------------------

@pytest.mark.parametrize("modality", ["image", "text"])
def test_embedded_is_the_synthetic_world(modality: str) -> None:
    w = make_world(DEFAULT_WORLD)
    d = resolve_retrieval("embedded", None, modality)
    q, g = (w.query, w.gallery) if modality == "image" else (w.text_query, w.text_gallery)
    assert not d.same_split and d.gnd is None and d.name == "embedded"
    assert d.query.fingerprint() == q.fingerprint()
    assert d.gallery.fingerprint() == g.fingerprint()
    assert (d.query.labels == q.labels).all() and (d.gallery.labels == g.labels).all()


def test_embedded_ignores_data_root(tmp_path: Path) -> None:
    d = resolve_retrieval("embedded", tmp_path / "nothing-here", "image")
    assert len(d.query) == len(make_world(DEFAULT_WORLD).query)


def test_real_image_and_text_sets_from_data_root(tmp_path: Path) -> None:
    make_fake_dataset("cub2011", tmp_path, n_classes=3, per_class=2, image_size=8)
    make_fake_dataset("flickr30k_text", tmp_path, n_classes=3)
    img = resolve_retrieval("cub2011", tmp_path, "image")
    assert img.same_split and img.query is img.gallery and len(img.query) == 6
    assert sorted(set(img.query.labels.tolist())) == [0, 1, 2]
    txt = resolve_retrieval("flickr30k_text", str(tmp_path), "text")
    assert not txt.same_split and len(txt.query) == 3 and len(txt.gallery) == 12


@pytest.mark.parametrize("root", [None, ""])
def test_real_dataset_without_data_root_says_what_to_do(root: str | None) -> None:
    with pytest.raises(ValueError) as e:
        resolve_retrieval("cub2011", root, "image")
    msg = str(e.value)
    assert "data_root" in msg and "CUB_200_2011/" in msg and "images.txt" in msg
    assert dataset_info("cub2011").source in msg


def test_wrong_modality_lists_the_right_sets() -> None:
    with pytest.raises(ValueError, match=r"text retrieval.*image retrieval.*cub2011"):
        resolve_retrieval("flickr30k_text", "/data", "image")
    with pytest.raises(ValueError, match="modality"):
        resolve_retrieval("embedded", None, "audio")
    with pytest.raises(ValueError, match="registered"):
        resolve_retrieval("no-such-set", "/data", "image")


def test_missing_dataset_under_data_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="CUB_200_2011"):
        resolve_retrieval("cub2011", tmp_path, "image")


# -- parameter sets -----------------------------------------------------------------------------

def test_the_paper_sets_and_the_fake_set_exist() -> None:
    assert set(PAPER_SETS) | {"fake-vit-b-32"} <= set(REAL_SETS)


@pytest.mark.parametrize("name", REAL_SETS)
def test_real_set_names_a_loadable_model_and_registered_datasets(name: str) -> None:
    data = load_params(name)
    common = data["common"]
    model, pretrained = common["model"], common["pretrained"]
    assert model in open_clip.list_models()
    assert pretrained is None or pretrained in open_clip.list_pretrained_tags_by_model(model)
    assert "data_root" not in common, "data_root is machine-specific: make reproduce DATA_ROOT="
    ch6 = {**common, **data["notebooks"]["06_band_analysis"]}
    _, image_set, text_set = primary_sets(ch6["datasets"], ch6["text_datasets"], model)
    assert dataset_info(image_set).modality == "image"
    assert dataset_info(text_set).modality == "text"
    assert dataset_info(image_set).layout != "revisited"  # no gnd in the band sweep


@pytest.mark.parametrize("name", sorted(PAPER_SETS))
def test_paper_set_uses_the_published_band(name: str) -> None:
    data = load_params(name)
    model, pretrained = PAPER_SETS[name]
    assert (data["common"]["model"], data["common"]["pretrained"]) == (model, pretrained)
    k_top, k_bottom, r = PAPER_BANDS[(model, pretrained, "image")]
    ch5 = data["notebooks"]["05_spectrum"]
    assert (ch5["k_top"], ch5["k_bottom"]) == (k_top, k_bottom)
    cfg = open_clip.get_model_config(model)
    assert cfg["vision_cfg"]["width"] >= r and cfg["text_cfg"]["width"] >= r  # rank of Psi is r
    assert str(r) in " ".join(data["description"].split())


def test_fake_set_needs_no_weights() -> None:
    data = load_params("fake-vit-b-32")
    assert data["common"]["model"] == "ViT-B-32" and data["common"]["pretrained"] is None
    ch6 = {**data["common"], **data["notebooks"]["06_band_analysis"]}
    assert ch6["datasets"][0] == "cub2011" and ch6["text_datasets"][0] == "flickr30k_text"


def test_makefile_reproduce_fake_uses_the_fake_set() -> None:
    mk = (ROOT / "Makefile").read_text()
    assert "reproduce-fake:" in mk and "PARAMS=fake-vit-b-32" in mk
    assert "make reproduce-fake" in (ROOT / ".ci" / "run").read_text()


# -- offline weights ----------------------------------------------------------------------------

def test_offline_env_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as if imported before the env
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as e:
        load_model("ViT-B-32", pretrained="openai", cache_dir=tmp_path / "weights")
    msg = str(e.value)
    assert "HF_HUB_OFFLINE is set" in msg and str(tmp_path / "weights") in msg
    assert "models--timm--vit_base_patch32_clip_224.openai" in msg
    assert constants.HF_HUB_OFFLINE is False  # restored


# -- the generated book -------------------------------------------------------------------------

def test_reproduce_book_skeleton(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import reproduce_book
    finally:
        sys.path.pop(0)
    (tmp_path / "executed").mkdir()
    for stem in ("05_spectrum", "20_real_results", "06_band_analysis"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / "executed" / f"{stem}.ipynb")
    monkeypatch.delenv("DATASETS", raising=False)
    monkeypatch.setenv("TEXT_DATASETS", "coco_text")
    assert reproduce_book.main(str(tmp_path), "fake-vit-b-32", "/data") == 0
    toc = yaml.safe_load((tmp_path / "_toc.yml").read_text())
    assert toc["root"] == "intro"
    assert [c["file"] for c in toc["chapters"]] == ["book/notation", "executed/05_spectrum",
                                                     "executed/06_band_analysis",
                                                     "executed/20_real_results",
                                                     "book/reproduce", "book/bibliography"]
    assert (tmp_path / "book" / "references.bib").is_file()
    assert (tmp_path / "book" / "reproduce.md").is_file()
    intro = (tmp_path / "intro.md").read_text()
    assert "make reproduce PARAMS=fake-vit-b-32 TEXT_DATASETS=coco_text DATA_ROOT=/data" in intro
    cfg = yaml.safe_load((tmp_path / "_config.yml").read_text())
    assert "fake-vit-b-32" in cfg["title"] and cfg["execute"]["execute_notebooks"] == "off"
    assert {"ref.numref", "ref.mod", "ref.func"} <= set(
        cfg["sphinx"]["config"]["suppress_warnings"])
    static = (ROOT / "_static" / "mathjax").is_dir()
    assert (tmp_path / "_static" / "mathjax").is_dir() or not static
    monkeypatch.delenv("TEXT_DATASETS")
    assert reproduce_book.main(str(tmp_path), "fake-vit-b-32", "/data") == 0
    assert "make reproduce PARAMS=fake-vit-b-32 DATA_ROOT=/data\n" in (tmp_path / "intro.md"
                                                                       ).read_text()


# -- the fake data root -------------------------------------------------------------------------

def test_fake_root_writes_every_set_with_its_own_content(tmp_path: Path) -> None:
    from isoclip.data.fakes import make_fake_root
    from isoclip.data.registry import load_retrieval_dataset

    names = ["cub2011", "roxford5k", "oxford_pets", "coco_text", "flickr30k_text", "cub2011"]
    folders = make_fake_root(tmp_path, names, n_classes=3, per_class=2, image_size=8)
    assert [f.relative_to(tmp_path).as_posix() for f in folders] == [
        "CUB_200_2011", "roxford5k", "CoOp/oxford_pets", "COCO2014", "Flickr30K"]
    rox = load_retrieval_dataset("roxford5k", tmp_path)
    assert rox.gnd is not None and len(rox.query) == 3
    assert len(load_retrieval_dataset("coco_text", tmp_path).query) == 3
    # a set's pixels do not depend on the sets written beside it, and differ between sets
    alone = make_fake_root(tmp_path / "alone", ["oxford_pets"], n_classes=3, per_class=2,
                           image_size=8)[0]
    a = sorted(p.read_bytes() for p in alone.rglob("*.jpg"))
    b = sorted(p.read_bytes() for p in (tmp_path / "CoOp/oxford_pets").rglob("*.jpg"))
    assert a == b
    cub = load_retrieval_dataset("cub2011", tmp_path).query
    pets = load_retrieval_dataset("oxford_pets", tmp_path).query
    assert cub.image(0).tobytes() != pets.image(0).tobytes()


def test_fake_root_checks_every_name_before_writing(tmp_path: Path) -> None:
    from isoclip.data.fakes import make_fake_root

    with pytest.raises(ValueError, match="no-such-set"):
        make_fake_root(tmp_path / "r", ["cub2011", "no-such-set"])
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="names"):
        make_fake_root(tmp_path / "r", [])


def test_fake_root_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from isoclip.data import fakes

    assert fakes.main([str(tmp_path), "dtd", "nocaps_text", "--n-classes", "2"]) == 0
    assert "2 datasets" in capsys.readouterr().out
    assert (tmp_path / "CoOp" / "dtd").is_dir() and (tmp_path / "nocaps").is_dir()
    with pytest.raises(SystemExit):
        fakes.main([str(tmp_path), "nope"])


# -- dataset parameters checked before any notebook runs ----------------------------------------

_CHAPTER = '''---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---
# A chapter

```{code-cell} ipython3
:tags: [parameters]

model = "embedded"      # "embedded" or an open_clip name
data_root = None        # folder of the datasets, None: embedded only
datasets = ["synthetic", "emoji"]        # image sets
text_datasets = ["synthetic", "emoji"]   # caption sets
```
'''


@pytest.fixture
def chapter_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notebooks folder holding one chapter with the list parameters, and two sets."""
    import isoclip.notebooks as nb

    (tmp_path / "params").mkdir()
    (tmp_path / "07_chapter.md").write_text(_CHAPTER)
    (tmp_path / "params" / "default.yaml").write_text("common: {}\n")
    (tmp_path / "params" / "paper.yaml").write_text(
        "common:\n  model: ViT-B-32\n  datasets: [cub2011, roxford5k]\n"
        "  text_datasets: [coco_text]\n")
    monkeypatch.setattr(nb, "NOTEBOOK_DIR", tmp_path)
    monkeypatch.setattr(nb, "PARAMS_DIR", tmp_path / "params")
    return tmp_path


def test_embedded_lists_with_data_root_are_an_error(chapter_dir: Path) -> None:
    from isoclip.notebooks import ParameterError, check_parameters

    with pytest.raises(ParameterError, match=r"reads no data.*\['paper'\]"):
        check_parameters("default", overrides={"data_root": "/data"})
    with pytest.raises(ParameterError, match="reads no data"):  # embedded sets are no data
        check_parameters("default", overrides={"data_root": "/data",
                                               "datasets": ["synthetic/world", "emoji/all"]})
    plan = check_parameters("paper", overrides={"data_root": "/data"})
    assert plan["07_chapter"]["datasets"] == ["cub2011", "roxford5k"]
    # narrowing (make reproduce DATASETS=...) replaces the set's list
    plan = check_parameters("paper", overrides={"data_root": "/data", "datasets": ["dtd"]})
    assert plan["07_chapter"]["datasets"] == ["dtd"]
    assert plan["07_chapter"]["text_datasets"] == ["coco_text"]
    # one paper dataset among embedded ones reads data
    check_parameters("default", overrides={"data_root": "/d", "text_datasets": ["nocaps_text"]})


@pytest.mark.parametrize("override, match", [
    ({"datasets": ["cub2011", "cub_2011"]}, r"'cub_2011' is not a registered.*cub2011"),
    ({"datasets": ["coco_text"]}, r"'datasets': 'coco_text' is a text set; image sets"),
    ({"text_datasets": ["oxford_pets"]}, r"'text_datasets': 'oxford_pets' is an image set"),
])
def test_unknown_or_wrong_modality_datasets_are_named(chapter_dir: Path, override: dict,
                                                      match: str) -> None:
    from isoclip.notebooks import ParameterError, check_parameters

    with pytest.raises(ParameterError, match=match) as e:
        check_parameters("paper", overrides={"data_root": "/data", **override})
    assert str(e.value).startswith("--set: 07_chapter")


def test_params_datasets_lists_what_data_root_must_hold(chapter_dir: Path) -> None:
    from isoclip.notebooks import params_datasets

    assert params_datasets("paper") == ["cub2011", "roxford5k", "coco_text"]
    assert params_datasets("default") == []
    assert params_datasets({"common": {"datasets": ["synthetic", "dtd"]},
                            "notebooks": {"06": {"dataset": "dtd", "text_dataset": "nocaps_text"}}}
                           ) == ["dtd", "nocaps_text"]


# -- make reproduce: narrowing and the results page -------------------------------------------

def test_make_reproduce_narrows_the_datasets_and_renders_the_results_page(tmp_path: Path
                                                                          ) -> None:
    """``DATASETS`` / ``TEXT_DATASETS`` reach the check and the run as YAML lists; the results
    page runs after the chapters, on this run's parameter set only; the book gets built."""
    import json

    from test_hostile import _logging_venv, _make, _make_sandbox

    repo = _make_sandbox(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    log = tmp_path / "argv.jsonl"
    stub = _logging_venv(tmp_path, log, run_checks=False)
    mathjax = tmp_path / "tex-svg.js"
    mathjax.write_text("")
    res = _make(repo, "reproduce", "PARAMS=fake-vit-b-32", f"DATA_ROOT={data}",
                "DATASETS=cub2011,oxford_pets", "TEXT_DATASETS=coco_text",
                f"MATHJAX={mathjax}", "REPRO_NOTEBOOKS=05 07", venv=stub)
    assert res.returncode == 0, res.stderr
    lines = log.read_text().splitlines()
    calls = [json.loads(x) for x in lines if x.startswith("[")]
    runs = [c for c in calls if c[:2] == ["-m", "isoclip.notebooks"]]
    check, chapters, page = runs
    for c in (check, chapters):
        assert c[c.index("--only") + 1: c.index("--only") + 3] == ["05", "07"]
        assert "datasets=[cub2011,oxford_pets]" in c and "text_datasets=[coco_text]" in c
        assert f"data_root={data}" in c
    assert "--check" in check and "--check" not in chapters
    assert chapters[chapters.index("--jobs") + 1] == "1"  # REPRO_JOBS: one chapter at a time
    assert page[page.index("--only") + 1] == "20" and "runs=['fake-vit-b-32']" in page
    assert not any(a.startswith(("data_root", "datasets")) for a in page)
    book = [c for c in calls if c and c[0].endswith("reproduce_book.py")]
    assert book and lines[-1] == "jupyter-book"
    # REPRO_JOBS reaches the chapters' run; anything but a positive number is refused first
    log.unlink()
    assert _make(repo, "reproduce", "PARAMS=fake-vit-b-32", f"DATA_ROOT={data}",
                 f"MATHJAX={mathjax}", "REPRO_JOBS=2", venv=stub).returncode == 0
    runs = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("[")]
    chapters = [c for c in runs if c[:2] == ["-m", "isoclip.notebooks"]][1]
    assert chapters[chapters.index("--jobs") + 1] == "2"
    for bad in ("0", "two", "1 --set x=1"):
        log.unlink(missing_ok=True)
        res = _make(repo, "reproduce", "PARAMS=fake-vit-b-32", f"DATA_ROOT={data}",
                    f"MATHJAX={mathjax}", f"REPRO_JOBS={bad}", venv=stub)
        assert res.returncode == 2 and f"REPRO_JOBS='{bad}'" in res.stderr
        assert not log.exists()  # refused before any run
    # without the narrowing, no datasets argument: the parameter set's lists apply
    assert _make(repo, "reproduce", "PARAMS=fake-vit-b-32", f"DATA_ROOT={data}",
                 f"MATHJAX={mathjax}", venv=stub).returncode == 0
    assert not any("datasets=" in a for x in log.read_text().splitlines() if x.startswith("[")
                   for a in json.loads(x))
