"""The regime study's data-scale axis: configurations, rows from the committed study, summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isoclip.studies import data_scale as ds
from isoclip.studies.regimes import load_study
from isoclip.training.embedded import DEFAULT_TRAIN

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "regime_study.json"


def test_runs_use_the_book_recipe_and_differ_only_by_data_and_tau() -> None:
    for name, (world, cfg) in ds.DATA_SCALE_RUNS.items():
        assert world in ds.DATA_SCALE_WORLDS
        assert cfg.data in name and (cfg.temperature is None) == name.endswith("learned")
        assert {k: v for k, v in cfg.key_dict().items() if k not in ("data", "temperature")} \
            == {k: v for k, v in DEFAULT_TRAIN.key_dict().items() if k != "temperature"}
    assert ds.kept_steps("rich-stream-learned") == [800, 400, 200]
    with pytest.raises(ValueError, match="name: expected one of"):
        ds.kept_steps("rich-online")


def test_fixed_runs_are_the_regime_study_runs_of_the_same_configuration(tmp_path) -> None:
    _, study = load_study(STUDY)
    rows = ds.study_rows(study)
    assert {(r["run"], r["source"]) for r in rows} == {
        ("rich-fixed-learned", "rich-learned"), ("rich-fixed-tau0.01", "rich-tau0.01")}
    for r in rows:
        assert r["step"] == 800 and r["distinct_pairs"] == 12000
        assert r["epochs"] == pytest.approx(800 * 256 / 12000)
    # a data-scale file with one stream row: merged with the study rows, summarised
    stream = dict(study.set_index("run").loc["rich-learned"].to_dict())
    stream = {k: v for k, v in stream.items() if k in json.loads(STUDY.read_text())["runs"][0]}
    stream.update(run="rich-stream-learned", step=800, data="stream", distinct_pairs=204800,
                  epochs=800 * 256 / 12000, temperature=0.05, world_name="rich")
    stream["train"] = {**stream["train"], "data": "stream"}
    path = tmp_path / "scale.json"
    path.write_text(json.dumps({"about": {}, "runs": [stream]}))
    _, table = ds.load_data_scale(path, study)
    assert list(table["run"]) == ["rich-fixed-learned", "rich-stream-learned",
                                  "rich-fixed-tau0.01"]
    assert list(table["source"]) == ["rich-learned", "data-scale", "rich-tau0.01"]
    s = ds.data_scale_summary(table)
    assert s["learned_fixed_i2i_in_shape_gain_heldout"] == \
        s["learned_stream_i2i_in_shape_gain_heldout"]  # same numbers copied in
    assert s["stream_shape_step"] == 800 and "scale_claim" in s
    fig = ds.data_scale_figure(table, ds.SCALE_GAINS)
    from isoclip.studies.plotting import figure_problems
    assert figure_problems(fig) == []
