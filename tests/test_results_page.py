"""The "Results on real models" page's assembly (isoclip.studies.results): the summary of the
files, the per-file tables with the papers' averages beside them, the average-mAP bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from isoclip.studies.reference import load_paper_numbers
from isoclip.studies.results import (
    HEADLINE_CHAPTER,
    average_bars,
    average_figure,
    load_results,
    result_summary,
    result_tables,
    write_result,
)


def _rows(offset: float = 0.0) -> list[dict]:
    """Two image sets, roxford5k with E/M/H (M averaged), one caption set, one latency row."""
    out = []
    for ds, clip, oti, iso in (("cub2011", 20.0, 22.0, 26.0), ("oxford_pets", 40.0, 42.0, 47.0)):
        for m, v in (("CLIP", clip), ("OTI", oti), ("IsoCLIP", iso)):
            out.append({"dataset": ds, "task": "image-image", "method": m, "metric": "mAP",
                        "value": v + offset})
    for variant, v in (("E", 60.0), ("M", 50.0), ("H", 10.0)):
        out.append({"dataset": "roxford5k", "task": "image-image", "method": "CLIP",
                    "metric": "mAP", "value": v + offset, "variant": variant,
                    "in_average": variant == "M"})
    for m, v in (("CLIP", 30.0), ("OVI", 31.0), ("IsoCLIP", 33.0)):
        out.append({"dataset": "flickr30k_text", "task": "text-text", "method": m,
                    "metric": "mAP", "value": v + offset})
    out.append({"dataset": "cub2011", "task": "latency", "method": "IsoCLIP",
                "metric": "latency (ms)", "value": 1.5})
    out.append({"dataset": "projector weights", "task": "spectrum", "method": "ViT-B-32",
                "metric": "effective rank", "value": 372.1})
    return out


@pytest.fixture
def files(tmp_path):
    write_result(HEADLINE_CHAPTER, _rows(), model="ViT-B-32", pretrained="openai",
                 params="vit-b-32-openai", bands={"image": (150, 50)},
                 wall_seconds={"features": 10.0, "inversion": 5.5}, root=tmp_path)
    write_result("03_intra_modal_misalignment", _rows(offset=100.0), model="ViT-B-32",
                 pretrained="openai", params="vit-b-32-openai", root=tmp_path)
    write_result(HEADLINE_CHAPTER, _rows(offset=1.0), model="ViT-B-32", pretrained=None,
                 params="fake-vit-b-32", root=tmp_path)
    return tmp_path


def test_load_results_of_some_parameter_sets(files) -> None:
    assert len(load_results(files)) == 3
    assert {r.meta["params"] for r in load_results(files, "fake-vit-b-32")} == {"fake-vit-b-32"}
    assert len(load_results(files, ["fake-vit-b-32", "vit-b-32-openai"])) == 3
    assert load_results(files, ["other"]) == []
    with pytest.raises(ValueError, match="params"):
        load_results(files, "../up")


def test_summary_lists_every_file_with_its_wall_time(files) -> None:
    s = result_summary(load_results(files))
    assert len(s) == 3 and s["parameter set"].tolist().count("vit-b-32-openai") == 2
    head = s[(s["chapter"] == HEADLINE_CHAPTER) & (s["parameter set"] == "vit-b-32-openai")]
    assert head["wall time (s)"].item() == pytest.approx(15.5)
    assert s.loc[s["parameter set"] == "fake-vit-b-32", "pretrained"].item() == "random init"
    assert s["wall time (s)"].isna().sum() == 2  # files that record no wall time
    assert result_summary([]).empty


def test_tables_per_task_and_metric_with_the_papers_beside(files) -> None:
    results = load_results(files, "vit-b-32-openai")
    tables = [t for t in result_tables(results, load_paper_numbers())
              if t.result.meta["chapter"] == HEADLINE_CHAPTER]
    assert [(t.task, t.metric) for t in tables] == [
        ("image-image", "mAP"), ("text-text", "mAP"), ("latency", "latency (ms)"),
        ("spectrum", "effective rank")]
    img, txt, lat, spectrum = tables
    assert spectrum.caption.startswith("effective rank of spectrum per dataset, ViT-B-32")
    assert list(img.table.index)[-1] == "average (3 datasets)"
    assert img.table.loc["average (3 datasets)", "CLIP"] == pytest.approx((20 + 40 + 50) / 3)
    assert "mAP (%)" in img.caption and "ViT-B-32 (openai)" in img.caption
    assert "k_top = 150, k_bottom = 50" in img.caption and "k_top" not in txt.caption
    assert "latency (ms) of latency per dataset," in lat.caption and "(%)" not in lat.caption
    assert "query split" in img.caption and "query split" not in lat.caption
    # the papers' averages for OpenAI ViT-B/32 beside this run's average
    ref = load_paper_numbers()
    paper = ref[(ref["paper"] == "IsoCLIP") & (ref["backbone"] == "OpenAI ViT-B/32")
                & (ref["task"] == "image-image")].set_index("method")["value"]
    assert img.paper.columns[0] == "this run" and "IsoCLIP" in img.paper.columns
    assert img.paper.loc["IsoCLIP", "IsoCLIP"] == paper["IsoCLIP"]
    assert img.paper.loc["OTI", "this run"] == pytest.approx((22 + 42) / 2)
    assert list(img.paper.index)[:2] == ["CLIP", "OTI"]  # the book's method order
    assert lat.paper.empty


def test_random_init_has_no_paper_numbers(files) -> None:
    tables = result_tables(load_results(files, "fake-vit-b-32"), load_paper_numbers())
    assert tables and all(t.paper.empty for t in tables)
    assert "ViT-B-32 (random init)" in tables[0].caption


def test_average_bars_prefer_the_headline_chapter_and_add_the_papers(files) -> None:
    bars = average_bars(result_tables(load_results(files), load_paper_numbers()))
    assert set(bars["task"]) == {"image→image retrieval", "text→text retrieval"}  # mAP only
    mine = bars[(bars["run"] == "vit-b-32-openai") & (bars["source"] == "this run")]
    clip = mine[(mine["task"] == "image→image retrieval") & (mine["method"] == "CLIP")]
    assert clip["value"].item() == pytest.approx((20 + 40 + 50) / 3)  # not chapter 03's +100
    papers = bars[bars["source"] != "this run"]
    assert set(papers["run"]) == {"vit-b-32-openai"} and "IsoCLIP paper" in set(papers["source"])
    assert not any(m.startswith("Δ") for m in bars["method"])
    assert average_bars([]).empty


def test_average_figure_has_a_panel_per_task(files) -> None:
    bars = average_bars(result_tables(load_results(files), load_paper_numbers()))
    fig = average_figure(bars)
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == ["image→image retrieval: average mAP", "text→text retrieval: average mAP"]
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "OTI / OVI" in labels and "CLIP" in labels and "OTI" not in labels
        bars_drawn = sum(len(c) for ax in fig.axes for c in ax.containers)
        assert bars_drawn >= len(bars)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="bars"):
        average_figure(pd.DataFrame(columns=bars.columns))


def test_a_variant_already_in_the_dataset_name_is_not_repeated(tmp_path) -> None:
    rows = [{"dataset": f"roxford5k ({v})", "task": "image-image", "method": "CLIP",
             "metric": "mAP", "value": x, "variant": v, "in_average": v == "M"}
            for v, x in (("E", 60.0), ("M", 40.0), ("H", 10.0))]
    write_result("07", rows, model="ViT-B-32", pretrained=None, params="p", root=tmp_path)
    (t,) = result_tables(load_results(tmp_path), load_paper_numbers())
    assert list(t.table.index) == ["roxford5k (E)", "roxford5k (M)", "roxford5k (H)",
                                   "average (1 dataset)"]
    assert t.table.loc["average (1 dataset)", "CLIP"] == 40.0
