"""The regime study's data-scale axis: configurations, rows from the committed study, summary."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from isoclip.studies import data_scale as ds
from isoclip.studies.regimes import load_study
from isoclip.training.embedded import DEFAULT_TRAIN

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "regime_study.json"


def test_runs_use_the_book_recipe_and_differ_only_by_data_and_tau() -> None:
    for name, (world, cfg) in ds.DATA_SCALE_RUNS.items():
        assert world in ds.DATA_SCALE_WORLDS
        m = re.fullmatch(r"rich-(fixed|stream)-(learned|tau0\.01)(?:-(\d+))?", name)
        assert m is not None, name
        assert cfg.data == m[1] and (cfg.temperature is None) == (m[2] == "learned")
        assert cfg.steps == int(m[3] or 800)
        ignore = ("data", "temperature", "steps")
        assert {k: v for k, v in cfg.key_dict().items() if k not in ignore} \
            == {k: v for k, v in DEFAULT_TRAIN.key_dict().items() if k not in ignore}
    # the book-length runs keep their names (and so their cache entries and rows)
    assert {n for n, (_, c) in ds.DATA_SCALE_RUNS.items() if c.steps == 800} == {
        "rich-fixed-learned", "rich-stream-learned", "rich-fixed-tau0.01", "rich-stream-tau0.01"}
    assert ds.DATA_SCALE_RUNS["rich-stream-learned-5000"][1] == \
        replace(ds.DATA_SCALE_RUNS["rich-stream-learned"][1], steps=5000)
    assert ds.kept_steps("rich-stream-learned") == [800, 400, 200]
    assert ds.kept_steps("rich-stream-learned-2000") == [2000, 1000, 500, 200]
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
    assert s["stream_shape_kept"] == s["stream_shape_rank"] - s["stream_shape_k_top"] \
        - s["stream_shape_k_bottom"]
    fig = ds.data_scale_figure(table, ds.SCALE_GAINS)
    from isoclip.studies.plotting import figure_problems
    assert figure_problems(fig) == []


def _row(**kw: object) -> pd.Series:
    base = {"flatness_mid_ratio": 0.9, "i2i_in_shape_oracle_band": (0, 10),
            "i2i_in_shape_gain_heldout": 2.0, "i2i_in_shape_gain_centred": 0.5}
    return pd.Series({**base, **kw})


def test_picture_checks_on_hand_made_rows() -> None:
    assert ds.picture_checks(_row()) == {"flat": False, "top_band": False,
                                         "beats_clip": True, "beats_centred": True}
    assert all(ds.picture_checks(_row(flatness_mid_ratio=0.4,
                                      i2i_in_shape_oracle_band=(2, 10))).values())
    # a gain below min_gain, or within min_gain of centring, is no gain
    c = ds.picture_checks(_row(i2i_in_shape_gain_heldout=0.9, i2i_in_shape_gain_centred=0.0))
    assert not c["beats_clip"] and not c["beats_centred"]
    assert not ds.picture_checks(_row(i2i_in_shape_gain_centred=1.5))["beats_centred"]
    assert ds.picture_checks(_row(flatness_mid_ratio=ds.FLAT_MIDDLE))["flat"]


def test_summary_keys_of_longer_runs_and_the_longest_of_a_series(tmp_path) -> None:
    _, study = load_study(STUDY)
    base = {k: v for k, v in study.set_index("run").loc["rich-learned"].to_dict().items()
            if k in json.loads(STUDY.read_text())["runs"][0]}
    rows = []
    for steps, zs in ((800, 20.0), (2000, 30.0), (5000, 25.0)):
        name = "rich-stream-learned" + ("" if steps == 800 else f"-{steps}")
        r = {**base, "run": name, "step": steps, "data": "stream", "world_name": "rich",
             "distinct_pairs": steps * 256, "epochs": steps * 256 / 12000,
             "temperature": 0.05, "zero_shot_acc": zs, "train_seconds": steps * 0.25}
        r["train"] = {**base["train"], "data": "stream", "steps": steps}
        rows.append(r)
    # a kept step inside the 5000-step run: not a final step
    rows.append({**rows[-1], "step": 2500, "distinct_pairs": 2500 * 256, "zero_shot_acc": 99.0})
    path = tmp_path / "scale.json"
    path.write_text(json.dumps({"about": {}, "runs": rows}))
    _, table = ds.load_data_scale(path)
    assert list(table["length"]) == [800, 2000, 5000, 5000]
    assert list(table["final"]) == [True, True, False, True]
    s = ds.data_scale_summary(table)
    assert s["learned_stream_zero_shot_acc"] == 20.0
    assert s["learned_stream_2000_zero_shot_acc"] == 30.0
    assert s["learned_stream_5000_zero_shot_acc"] == 25.0
    assert s["long_learned_stream_steps"] == 5000 and s["long_learned_stream_zero_shot_acc"] == 25
    assert s["stream_best_zs"] == 99.0  # the best over every evaluated row
    assert s["n_runs_final"] == 3 and s["max_length"] == 5000 and s["n_rows"] == 4
    assert s["train_seconds"] == pytest.approx(0.25 * (800 + 2000 + 5000))
    assert s["picture_claim"].startswith(
        "none of the 4" if s["n_picture"] == 0 else f"{s['n_picture']} of the 4")
    assert s["seconds_per_step"] == pytest.approx(0.25)  # the 800-step stream run
    assert s["seconds_per_step_long"] == pytest.approx(0.25)
    assert s["train_hours"] == pytest.approx(s["train_seconds"] / 3600)
