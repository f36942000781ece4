"""The regime study's library code (isoclip.studies.regimes) against naive references."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from isoclip.data.world.config import WorldConfig
from isoclip.evaluate.retrieval import evaluate
from isoclip.method.bands import Band
from isoclip.method.operator import effective_rank, svd
from isoclip.method.projectors import Projectors
from isoclip.selection.rules import select_band
from isoclip.selection.sweep import naive_band_metrics
from isoclip.studies.regimes import (
    REGIME_KEYS,
    band_metrics,
    combine_sweeps,
    direction_factor_share,
    domain_groups,
    grouped_query_ap,
    grouped_sweep,
    run_regime,
    spectrum_flatness,
)
from isoclip.training.trainer import TrainConfig


def _naive_capacity(S: np.ndarray) -> float:
    """max over contiguous bands of kept * min / max, by brute force."""
    r = len(S)
    return max((b - a + 1) * S[b] / S[a] for a in range(r) for b in range(a + 1, r))


def test_flatness_of_reference_spectra() -> None:
    exp = torch.exp(-0.1 * torch.arange(40, dtype=torch.float64))
    f = spectrum_flatness(exp)
    assert f["flatness_mid_ratio"] == pytest.approx(1.0)
    assert f["decay_mid"] == pytest.approx(0.1) or math.isnan(f["decay_mid"])
    flat = torch.ones(16, dtype=torch.float64)
    g = spectrum_flatness(flat)
    assert g["flatness_iso_capacity"] == pytest.approx(1.0)
    assert g["effective_rank_frac"] == pytest.approx(1.0)
    # CLIP-like: steep top and bottom, slowly decaying middle
    rates = np.r_[np.full(10, 0.3), np.full(20, 0.01), np.full(9, 0.4)]
    S = torch.from_numpy(np.exp(-np.r_[0.0, np.cumsum(rates)]))
    h = spectrum_flatness(S)
    assert h["flatness_mid_ratio"] < 0.1
    assert h["decay_mid"] < min(h["decay_top"], h["decay_bottom"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flatness_matches_naive_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(0.01, 1.0, size=24))[::-1].copy()
    f = spectrum_flatness(torch.from_numpy(s))
    assert f["flatness_iso_capacity"] * 24 == pytest.approx(_naive_capacity(s))
    rate = [math.log(s[j]) - math.log(s[j + 1]) for j in range(23)]
    mid = np.median(rate[6:18])
    ends = np.median(rate[:6] + rate[18:])
    assert f["flatness_mid_ratio"] == pytest.approx(mid / ends)
    assert f["effective_rank_frac"] == pytest.approx(effective_rank(torch.from_numpy(s)) / 24)
    # only the first `rank` values count (Psi's null space)
    padded = torch.from_numpy(np.r_[s, np.zeros(8)])
    assert spectrum_flatness(padded, rank=24) == pytest.approx(f, nan_ok=True)


@pytest.mark.parametrize("S, kwargs, message", [
    (torch.ones(3, 3), {}, "S: expected a 1-D"),
    (torch.tensor([1.0, 2.0, 0.5, 0.1]), {}, "non-increasing"),
    (torch.tensor([1.0, 0.5, 0.2, -0.1]), {}, "non-negative"),
    (torch.ones(8), {"rank": 3}, "rank: expected an int in [4, 8]"),
    (torch.ones(8), {"rank": 9}, "rank"),
])
def test_flatness_errors_name_the_argument(S, kwargs, message) -> None:
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        spectrum_flatness(S, **kwargs)


def _random(seed: int, d: int = 12, d_i: int = 10, d_t: int = 8, n: int = 90):
    g = torch.Generator().manual_seed(seed)
    P = Projectors(W_i=torch.randn(d, d_i, generator=g), W_t=torch.randn(d, d_t, generator=g),
                   b_i=torch.randn(d, generator=g), b_t=None)
    f = torch.randn(n, d_i, generator=g)
    labels = torch.randint(0, 5, (n,), generator=g)
    # make the labels matter: add a class direction
    f += 2.0 * torch.randn(5, d_i, generator=g)[labels]
    return P, f, labels


def _naive(P, q, g, ql, gl, band) -> float:
    return naive_band_metrics(P, q, g, ql, gl, band, "image")["mAP"]


@pytest.mark.parametrize("d, stride", [(12, 1), (12, 2), (6, 1), (6, 3)])
def test_band_metrics_match_the_naive_per_band_path(d: int, stride: int) -> None:
    P, f, y = _random(3, d=d)
    q, g, ql, gl = f[:30], f[30:], y[:30], y[30:]
    dec = svd(P)
    rank, null = min(dec.r, P.d), dec.r - min(dec.r, P.d)
    out = band_metrics(P, q, g, ql, gl, "image", stride=stride)
    grid = [Band(kt, null + kb) for kt in range(0, rank, stride) for kb in range(0, rank, stride)
            if kt + kb < rank]
    naive = {(b.k_top, b.k_bottom): _naive(P, q, g, ql, gl, b) for b in grid}
    clip = evaluate(P.project_image(q), P.project_image(g), ql, gl)["mAP"]
    assert out["clip_mAP"] == pytest.approx(clip, abs=1e-3)
    assert out["full_band_mAP"] == pytest.approx(naive[(0, null)], abs=1e-3)
    assert out["oracle_mAP"] == pytest.approx(max(naive.values()), abs=1e-3)
    assert naive[tuple(out["oracle_band"])] == pytest.approx(out["oracle_mAP"], abs=1e-3)
    top = {k: v for k, v in naive.items() if k[1] == null}
    bottom = {k: v for k, v in naive.items() if k[0] == 0}
    assert out["top_only_mAP"] == pytest.approx(max(top.values()), abs=1e-3)
    assert out["bottom_only_mAP"] == pytest.approx(max(bottom.values()), abs=1e-3)
    auto = select_band(P, "isotropy")
    assert out["auto_band"] == [auto.k_top, auto.k_bottom]
    assert out["auto_mAP"] == pytest.approx(_naive(P, q, g, ql, gl, auto), abs=1e-3)
    # held-out oracle: choose on even queries, score on odd ones, and vice versa
    halves = [np.arange(0, 30, 2), np.arange(1, 30, 2)]
    scores = []
    for a, b in ((0, 1), (1, 0)):
        ia, ib = torch.as_tensor(halves[a]), torch.as_tensor(halves[b])
        by_band = {k: _naive(P, q[ia], g, ql[ia], gl, Band(*k)) for k in naive}
        best = max(by_band, key=lambda k: (by_band[k], -grid.index(Band(*k))))
        scores.append(_naive(P, q[ib], g, ql[ib], gl, Band(*best)))
    assert out["oracle_heldout_mAP"] == pytest.approx(np.mean(scores), abs=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    ({"stride": 0}, "stride: expected an int >= 1"),
    ({"stride": 1.5}, "stride"),
    ({"modality": "audio"}, "modality"),
])
def test_band_metrics_errors_name_the_argument(kwargs, message) -> None:
    P, f, y = _random(4)
    args = {"modality": "image", **kwargs}
    with pytest.raises(ValueError, match=message):
        band_metrics(P, f[:20], f[20:], y[:20], y[20:], args.pop("modality"), **args)


TINY_WORLD = WorldConfig(scene="compositional", shapes=("circle", "square"),
                         colours=("red", "blue"), n_train_per_class=8, n_query_per_class=3,
                         n_gallery_per_class=4, n_text_query_per_class=2,
                         n_text_gallery_per_class=3)
TINY_TRAIN = TrainConfig(steps=3, batch_size=16, log_every=1, checkpoint_fracs=(1.0,))


def test_run_regime_on_a_tiny_configuration(isolated_cache, one_thread) -> None:
    a = run_regime(TINY_WORLD, TINY_TRAIN, stride=8)
    assert set(REGIME_KEYS) <= set(a)
    assert a["world"]["scene"] == "compositional" and a["train"]["steps"] == 3
    assert a["rank"] == 64 and a["sweep_stride"] == 8
    for k in ("i2i", "t2t"):
        assert a[f"{k}_oracle_mAP"] >= a[f"{k}_mAP"] - 1e-9
        assert a[f"{k}_oracle_mAP"] >= a[f"{k}_auto_mAP"] - 1e-9
        assert 0 <= a[f"{k}_mAP"] <= 100
    json.dumps(a, allow_nan=False)  # JSON-ready, NaN as null
    b = run_regime(TINY_WORLD, TINY_TRAIN, stride=8)  # from the cache: same numbers
    assert {k: v for k, v in a.items() if k != "eval_seconds"} == \
        {k: v for k, v in b.items() if k != "eval_seconds"}
    fixed = run_regime(TINY_WORLD, replace(TINY_TRAIN, temperature=0.01), stride=8)
    assert fixed["final_temperature"] == pytest.approx(0.01)
    # the default data mode stays out of the row (committed rows predate it); a stream run
    # records it and trains another model
    assert "data" not in a["train"]
    stream = run_regime(TINY_WORLD, replace(TINY_TRAIN, data="stream"), stride=8)
    assert stream["train"]["data"] == "stream" and stream["final_loss"] != a["final_loss"]


def test_run_regime_argument_errors() -> None:
    with pytest.raises(TypeError, match="world_cfg"):
        run_regime({}, TINY_TRAIN)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train_cfg"):
        run_regime(TINY_WORLD, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride"):
        run_regime(TINY_WORLD, TINY_TRAIN, stride=0)


# ---------------------------------------------------------------------------------------------
# sub-domain retrieval: each query ranked only against its group's gallery

def _naive_grouped(P, q, g, ql, gl, qg, gg, band) -> float:
    """mAP over all queries, each query evaluated alone against its group's gallery."""
    aps = []
    for i in range(len(ql)):
        keep = torch.as_tensor(gg == qg[i])
        if not bool((gl[keep] == ql[i]).any()):
            continue
        aps.append(naive_band_metrics(P, q[i:i + 1], g[keep], ql[i:i + 1], gl[keep], band,
                                      "image")["mAP"])
    return float(np.mean(aps))


def test_domain_groups_and_errors() -> None:
    assert domain_groups([0, 2, 1, 2], [5, 6, 7]).tolist() == [5, 7, 6, 7]
    with pytest.raises(ValueError, match=r"labels: expected class ids in \[0, 3\)"):
        domain_groups([0, 3], [5, 6, 7])


def test_grouped_sweep_matches_per_query_naive_path() -> None:
    P, f, y = _random(5, d=8)
    y = np.asarray(y)
    groups = domain_groups(y, [0, 0, 1, 1, 2])  # class 4 is alone in its group
    q, g = f[:40], f[40:]
    ql, gl, qg, gg = y[:40], y[40:], groups[:40], groups[40:]
    dec = svd(P)
    df = grouped_sweep(P, q, g, ql, gl, "image", [0, 2], [0, 1, 3], dec=dec,
                       query_groups=qg, gallery_groups=gg)
    for row in df.itertuples():
        band = Band(int(row.k_top), int(row.k_bottom))
        assert row.mAP == pytest.approx(_naive_grouped(P, q, g, ql, gl, qg, gg, band), abs=1e-3)
    # the groups change the answer (the test would pass vacuously otherwise)
    flat = grouped_sweep(P, q, g, ql, gl, "image", [0, 2], [0, 1, 3], dec=dec)
    assert not np.allclose(flat["mAP"], df["mAP"])
    # per-query AP with groups equals evaluate() on each query's restricted gallery
    ap = grouped_query_ap(P.project_image(q), P.project_image(g), ql, gl, qg, gg)
    for i in (0, 7, 21):
        keep = torch.as_tensor(gg == qg[i])
        ref = evaluate(P.project_image(q[i:i + 1]), P.project_image(g[keep]), ql[i:i + 1],
                       gl[keep])["mAP"]
        assert float(ap[i]) == pytest.approx(ref, abs=1e-4)
    # with a per-group transform: each group centred on its own gallery mean
    from isoclip.baselines.whitening import mean_center

    zq, zg = P.project_image(q), P.project_image(g)
    cap = grouped_query_ap(zq, zg, ql, gl, qg, gg, transform=mean_center)
    for i in (0, 7, 21):
        keep = torch.as_tensor(gg == qg[i])
        mu = zg[keep].double().mean(0)
        ref = evaluate((zq[i:i + 1].double() - mu).float(), (zg[keep].double() - mu).float(),
                       ql[i:i + 1], gl[keep])["mAP"]
        assert float(cap[i]) == pytest.approx(ref, abs=1e-4)
    assert not torch.allclose(cap.nan_to_num(), ap.nan_to_num())


def test_band_metrics_with_groups_choose_one_band_for_all_groups() -> None:
    P, f, y = _random(6, d=8)
    y = np.asarray(y)
    groups = domain_groups(y, [0, 0, 1, 1, 1])
    q, g, ql, gl = f[:30], f[30:], y[:30], y[30:]
    out = band_metrics(P, q, g, ql, gl, "image", stride=2, query_groups=groups[:30],
                       gallery_groups=groups[30:])
    dec = svd(P)
    rank, null = min(dec.r, P.d), dec.r - min(dec.r, P.d)
    grid = [Band(kt, null + kb) for kt in range(0, rank, 2) for kb in range(0, rank, 2)
            if kt + kb < rank]
    naive = {b: _naive_grouped(P, q, g, ql, gl, groups[:30], groups[30:], b) for b in grid}
    assert out["oracle_mAP"] == pytest.approx(max(naive.values()), abs=1e-3)
    clip = grouped_query_ap(P.project_image(q), P.project_image(g), ql, gl, groups[:30],
                            groups[30:])
    assert out["clip_mAP"] == pytest.approx(float(np.nanmean(clip)), abs=1e-9)
    with pytest.raises(ValueError, match="give both or neither"):
        band_metrics(P, q, g, ql, gl, "image", query_groups=groups[:30])
    with pytest.raises(ValueError, match=r"gallery_groups: expected one group id per row"):
        band_metrics(P, q, g, ql, gl, "image", query_groups=groups[:30],
                     gallery_groups=groups[:5])


def test_combine_sweeps_is_the_sweep_of_the_union() -> None:
    P, f, y = _random(7, d=8)
    y = np.asarray(y)
    q, g, ql, gl = f[:30], f[30:], y[:30], y[30:]
    dec = svd(P)
    args = ([0, 1], [0, 2])
    whole = grouped_sweep(P, q, g, ql, gl, "image", *args, dec=dec)
    parts = [grouped_sweep(P, q[s], g, ql[s], gl, "image", *args, dec=dec)
             for s in (slice(0, 11), slice(11, 30))]
    both = combine_sweeps(parts)
    assert both["n"].tolist() == whole["n"].tolist()
    assert np.allclose(both["mAP"], whole["mAP"], atol=1e-9)
    with pytest.raises(ValueError, match="different grids"):
        combine_sweeps([parts[0], grouped_sweep(P, q, g, ql, gl, "image", [0], [0], dec=dec)])


def test_direction_factor_share_matches_a_per_direction_anova() -> None:
    P, f, y = _random(8, d=8)
    y = np.asarray(y)
    groups = {"coarse": domain_groups(y, [0, 0, 1, 1, 1]), "fine": y}
    df = direction_factor_share(P, f, groups, "image")
    dec = svd(P)
    c = (f.double() @ dec.U).numpy()
    for j in (0, 3, dec.r - 1):
        x = c[:, j]
        for name, g in groups.items():
            within = sum(((x[g == k] - x[g == k].mean()) ** 2).sum() for k in np.unique(g))
            total = ((x - x.mean()) ** 2).sum()
            assert df.loc[j, f"eta2_{name}"] == pytest.approx(1 - within / total, abs=1e-9)
    assert (df["eta2_fine"] >= df["eta2_coarse"] - 1e-12).all()  # finer partition explains more
    assert df["sigma_rel"].iloc[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"factors\['bad'\]: expected one group id per row"):
        direction_factor_share(P, f, {"bad": y[:5]}, "image")
    with pytest.raises(ValueError, match="modality"):
        direction_factor_share(P, f, groups, "audio")


def test_load_study_and_rerun_check(tmp_path) -> None:
    from isoclip.studies.regimes import load_study, rerun_check

    row = {"run": "x", "world": {"shapes": ["circle", "square"], "colours": ["red"],
                                 "nuisance": 1.0},
           "train": {"model": "isoclip-tiny-vit", "temperature": None, "steps": 800},
           "i2i_mAP": 50.0, "i2i_oracle_mAP": 53.0, "i2i_oracle_heldout_mAP": 52.0,
           "i2i_auto_mAP": 40.0}
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"about": {"k": "v"}, "runs": [row]}))
    about, df = load_study(path)
    assert about == {"k": "v"}
    r = df.iloc[0]
    assert (r["tau"], r["d"], r["d_i"], r["n_classes"], r["seed"]) == ("learned", 64, 96, 2, 0)
    assert r["i2i_gain_oracle"] == pytest.approx(3.0)
    assert r["i2i_gain_heldout"] == pytest.approx(2.0)
    assert r["i2i_gain_auto"] == pytest.approx(-10.0)
    assert r["i2i_error_cut_heldout"] == pytest.approx(100 * 2.0 / 50.0)
    assert r["i2i_in_shape_gain_oracle"] is None
    with pytest.raises(FileNotFoundError, match="make regimes"):
        load_study(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="not a regime-study file"):
        load_study(tmp_path / "bad.json")
    tol = {"i2i_mAP": 1.0, "i2i_oracle_mAP": 0.5}
    t = rerun_check(row, {**row, "i2i_mAP": 50.9, "i2i_oracle_mAP": 54.0}, tol)
    assert t["ok"].tolist() == [True, False]
    assert t["abs_diff"].tolist() == pytest.approx([0.9, 1.0])
    with pytest.raises(ValueError, match="'train' configuration differs"):
        rerun_check(row, {**row, "train": {}}, tol)
    with pytest.raises(ValueError, match="missing"):
        rerun_check(row, row, {"nope": 1.0})


def test_domain_agreement_band_averages_the_groups_naive_agreement() -> None:
    from isoclip.selection.rules import naive_agreement
    from isoclip.studies.regimes import domain_agreement_band

    P, fi, y = _random(9, d=8)
    g = torch.Generator().manual_seed(10)
    ft = fi[:, :8] @ torch.randn(8, 8, generator=g) + 0.3 * torch.randn(len(fi), 8, generator=g)
    groups = domain_groups(np.asarray(y), [0, 0, 1, 1, 2])
    band, sweep = domain_agreement_band(P, fi, ft, groups, "image", stride=2)
    dec = svd(P)
    null = dec.r - min(dec.r, P.d)
    for row in sweep.iloc[[0, 3, len(sweep) - 1]].itertuples():
        b = Band(int(row.k_top), int(row.k_bottom))
        ref = np.mean([naive_agreement(P, fi[torch.as_tensor(groups == k)],
                                       ft[torch.as_tensor(groups == k)], b)
                       for k in np.unique(groups)])
        assert row.agreement == pytest.approx(ref, abs=1e-6)
    assert (band.k_top, band.k_bottom) == tuple(
        sweep.loc[sweep["agreement"].idxmax(), ["k_top", "k_bottom"]].astype(int))
    assert (sweep["k_bottom"] >= null).all()
    # one group = the plain agreement sweep
    one, _ = domain_agreement_band(P, fi, ft, None, "image", stride=2)
    assert sweep is not None and isinstance(one, Band)
    with pytest.raises(ValueError, match="at least one group with 3"):
        domain_agreement_band(P, fi[:4], ft[:4], np.arange(4), "image")


def test_clip_likeness_is_the_l1_distance_to_the_target() -> None:
    from isoclip.studies.regimes import clip_likeness

    runs = pd.DataFrame({"cone_image": [0.5, 0.1], "cone_text": [0.5, 0.3], "gap": [0.82, 0.32]})
    assert clip_likeness(runs).tolist() == pytest.approx([0.0, 0.4 + 0.2 + 0.5])
    with pytest.raises(ValueError, match=r"missing diagnostic columns \['gap'\]"):
        clip_likeness(runs.drop(columns="gap"))


def test_mean_pair_cosine_matches_a_loop_over_pairs() -> None:
    from isoclip.method.bands import iso_projectors
    from isoclip.studies.regimes import mean_pair_cosine

    P, f, y = _random(11, d=8)
    groups = domain_groups(np.asarray(y), [0, 0, 1, 1, 2])
    f = f[:25]
    groups = groups[:25]
    for band in (None, Band(0, 5), Band(2, 1)):
        proj = P if band is None else iso_projectors(P, band)
        z = torch.nn.functional.normalize(proj.project_image(f).double(), dim=1).numpy()
        vals = [z[i] @ z[j] for i in range(25) for j in range(25)
                if i != j and groups[i] == groups[j]]
        assert mean_pair_cosine(P, f, band, groups) == pytest.approx(np.mean(vals), abs=1e-6)
        all_pairs = [z[i] @ z[j] for i in range(25) for j in range(25) if i != j]
        assert mean_pair_cosine(P, f, band) == pytest.approx(np.mean(all_pairs), abs=1e-6)
    with pytest.raises(ValueError, match="no pair of distinct items"):
        mean_pair_cosine(P, f[:3], None, np.arange(3))


def test_band_metrics_same_split_matches_naive_all_to_all() -> None:
    """CUB's all→all protocol: each query removed from its own ranking, in the sweep, the
    held-out halves, CLIP and the grouped paths."""
    from isoclip.studies.regimes import grouped_band_ap

    P, f, y = _random(5, d=6, n=40)
    y = y.numpy()
    out = band_metrics(P, f, f, y, y, "image", stride=1, same_split=True)
    dec = svd(P)
    rank, null = min(dec.r, P.d), dec.r - min(dec.r, P.d)
    grid = [Band(kt, null + kb) for kt in range(rank) for kb in range(rank) if kt + kb < rank]
    naive = {b: naive_band_metrics(P, f, f, y, y, b, "image", same_split=True)["mAP"]
             for b in grid}
    assert out["clip_mAP"] == pytest.approx(
        evaluate(P.project_image(f), P.project_image(f), y, y, same_split=True)["mAP"], abs=1e-3)
    assert out["oracle_mAP"] == pytest.approx(max(naive.values()), abs=1e-3)
    ap = grouped_band_ap(P, f, f, y, y, "image", grid, dec=dec, same_split=True)
    for b, row in zip(grid, ap):
        assert float(np.nanmean(row.numpy())) == pytest.approx(naive[b], abs=1e-3)
    halves = [np.arange(0, 40, 2), np.arange(1, 40, 2)]
    expected = []
    for a, b in ((0, 1), (1, 0)):
        means = [float(np.nanmean(row.numpy()[halves[a]])) for row in ap]
        best = int(np.argmax(means))
        expected.append(float(np.nanmean(ap[best].numpy()[halves[b]])))
    assert out["oracle_heldout_mAP"] == pytest.approx(np.mean(expected), abs=1e-6)
    # grouped: each group a same-split square of its own
    groups = (np.arange(40) % 2).astype(np.int64)
    sw = grouped_sweep(P, f, f, y, y, "image", [0], [null], dec=dec, query_groups=groups,
                       gallery_groups=groups, same_split=True)
    per, counts = [], []
    for grp in (0, 1):
        rows = np.flatnonzero(groups == grp)
        m = naive_band_metrics(P, f[rows], f[rows], y[rows], y[rows], Band(0, null), "image",
                               same_split=True)
        per.append(m["mAP"] * m["n_queries"])
        counts.append(m["n_queries"])
    assert sw["n"].item() == sum(counts)
    assert sw["mAP"].item() == pytest.approx(sum(per) / sum(counts), abs=1e-3)
    with pytest.raises(ValueError, match="same array"):
        grouped_sweep(P, f, f, y, y, "image", [0], [null], dec=dec, query_groups=groups,
                      gallery_groups=1 - groups, same_split=True)
