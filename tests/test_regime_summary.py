"""regimes.study_summary (every number the regime chapter states) against plain loops over the
committed study, and regimes.verify_rerun on a stubbed re-run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from isoclip.notebooks import ROOT
from isoclip.studies import regimes


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return regimes.load_study(ROOT / "benchmarks" / "results" / "regime_study.json")[1]


def test_summary_against_loops(runs):
    s = regimes.study_summary(runs, min_gain=0.1)
    rows = runs.to_dict("records")
    shape = [float(r["i2i_in_shape_gain_heldout"]) for r in rows]
    best = max(range(len(rows)), key=lambda i: shape[i])
    assert s["best_shape_gain"] == pytest.approx(shape[best])
    assert s["best_shape_run"] == rows[best]["run"]
    assert s["best_shape_band"] == str(tuple(rows[best]["i2i_in_shape_oracle_band"]))
    n_pos = sum(g >= 0.1 for g in shape)
    assert s["n_shape_gain_pos"] == n_pos
    assert s["shape_claim"] in (f"gains in {n_pos} of {len(rows)} runs", "gains in every run")
    rho = spearmanr(shape, [float(r["cone_image"]) for r in rows]).statistic
    assert s["rho_shape_cone_image"] == pytest.approx(rho)
    dist = [abs(r["cone_image"] - 0.5) + abs(r["cone_text"] - 0.5) + abs(r["gap"] - 0.82)
            for r in rows]
    assert s["closest_run"] == rows[int(np.argmin(dist))]["run"]
    assert s["n_comp"] == sum(r["world"]["scene"] == "compositional" for r in rows)
    oti_sig = sum(float(r["oti_in_shape_lo"]) > 0 for r in rows)
    assert s["n_shape_oti_sig"] == oti_sig
    seeds = [r for r in rows if r["run"].startswith("default-learned") and r["steps"] == 800]
    assert s["n_seeds"] == len(seeds)
    assert s["seed_gain_max"] == pytest.approx(max(r["i2i_in_shape_gain_heldout"] for r in seeds))


def test_min_gain_changes_the_counts(runs):
    loose = regimes.study_summary(runs, min_gain=-1e9)
    assert loose["n_shape_gain_pos"] == len(runs) and loose["shape_claim"] == "gains in every run"


def test_verify_rerun(runs, monkeypatch):
    committed = runs.set_index("run").loc["default-learned"].to_dict()
    fresh = {**committed, "eval_seconds": 1.0}
    monkeypatch.setattr(regimes, "run_regime", lambda *a, **k: dict(fresh))
    check, got = regimes.verify_rerun(runs, "default-learned")
    assert check["ok"].all() and got["eval_seconds"] == 1.0
    fresh["i2i_mAP"] = float(committed["i2i_mAP"]) + 5.0
    with pytest.raises(AssertionError, match="i2i_mAP"):
        regimes.verify_rerun(runs, "default-learned")
    with pytest.raises(ValueError, match="not a run"):
        regimes.verify_rerun(runs, "no-such-run")
