"""The suite study (isoclip.studies.suite) against naive per-band, per-query references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from isoclip.baselines.whitening import mean_center
from isoclip.evaluate.retrieval import evaluate, query_metrics_scores
from isoclip.method.bands import Band
from isoclip.method.operator import svd
from isoclip.method.projectors import Projectors
from isoclip.selection.rules import select_band
from isoclip.selection.sweep import naive_band_metrics
from isoclip.studies.regimes import band_metrics
from isoclip.studies.suite import (
    METHODS,
    SetFeatures,
    SetResult,
    average_gain,
    evaluate_set,
    suite_table,
)


def _random(seed: int, d: int = 12, d_i: int = 10, d_t: int = 8, n: int = 90):
    g = torch.Generator().manual_seed(seed)
    P = Projectors(W_i=torch.randn(d, d_i, generator=g), W_t=torch.randn(d, d_t, generator=g),
                   b_i=torch.randn(d, generator=g), b_t=None)
    labels = torch.randint(0, 5, (n,), generator=g)
    f = torch.randn(n, d_i, generator=g) + 2.0 * torch.randn(5, d_i, generator=g)[labels]
    t = torch.randn(n, d_t, generator=g)
    return P, f, t, labels


def _grid(P, stride):
    dec = svd(P)
    rank, null = min(dec.r, P.d), dec.r - min(dec.r, P.d)
    return [Band(kt, null + kb) for kt in range(0, rank, stride) for kb in range(0, rank, stride)
            if kt + kb < rank]


def _per_query_naive(P, q, g, ql, gl, band, same_split=False, rows=None):
    """Per-query AP (percent) of ``band`` by projecting, normalising and ranking in float64."""
    from isoclip.method.bands import iso_projectors

    Pd = P.double()
    iso = iso_projectors(Pd, band) if band is not None else Pd
    qp = iso.project_image(q.double())
    gp = iso.project_image(g.double())
    s = (qp / qp.norm(dim=1, keepdim=True)) @ (gp / gp.norm(dim=1, keepdim=True)).T
    ap = 100.0 * query_metrics_scores(s, ql, gl, same_split)["mAP"]
    return ap if rows is None else ap[rows]


@pytest.mark.parametrize("d, stride", [(12, 2), (6, 1)])
def test_evaluate_set_matches_naive_references(d: int, stride: int) -> None:
    P, f, t, y = _random(1, d=d)
    q, g, ql, gl = f[:30], f[30:], y[:30], y[30:]
    feats = SetFeatures(q, g, P.project_image(q), P.project_image(g), f[:40], t[:40])
    res = evaluate_set(P, feats, ql, gl, "image", stride=stride, name="toy")
    grid = _grid(P, stride)
    naive = {b: naive_band_metrics(P, q, g, ql, gl, b, "image")["mAP"] for b in grid}
    assert res.mean("CLIP") == pytest.approx(
        evaluate(P.project_image(q), P.project_image(g), ql, gl)["mAP"], abs=1e-6)
    cq, cg = mean_center(P.project_image(q), P.project_image(g))
    assert res.mean("mean-centred") == pytest.approx(evaluate(cq, cg, ql, gl)["mAP"], abs=1e-6)
    assert res.mean("IsoCLIP (oracle)") == pytest.approx(max(naive.values()), abs=1e-3)
    assert naive[res.bands["oracle"]] == pytest.approx(res.mean("IsoCLIP (oracle)"), abs=1e-3)
    auto = select_band(P, "isotropy")
    assert res.bands["automatic"] == auto
    assert res.mean("IsoCLIP (automatic)") == pytest.approx(
        naive_band_metrics(P, q, g, ql, gl, auto, "image")["mAP"], abs=1e-3)
    agree = select_band(P, "agreement", image_preproj=f[:40], text_preproj=t[:40],
                        modality="image", stride=stride)
    assert res.bands["agreement"] == agree
    # held-out: each query scored with the band chosen on the other half (a naive loop)
    even, odd = torch.arange(0, 30, 2), torch.arange(1, 30, 2)
    expected = torch.zeros(30, dtype=torch.float64)
    for chooser, scored in ((even, odd), (odd, even)):
        by_band = {b: naive_band_metrics(P, q[chooser], g, ql[chooser], gl, b, "image")["mAP"]
                   for b in grid}
        best = max(grid, key=lambda b: (round(by_band[b], 6), -grid.index(b)))
        expected[scored] = _per_query_naive(P, q, g, ql, gl, best, rows=scored)
    assert torch.allclose(res.ap["IsoCLIP (held-out)"], expected, atol=1e-3)
    # with equal halves and every query relevant, it is the regime study's held-out number
    bm = band_metrics(P, q, g, ql, gl, "image", stride=stride)
    assert res.mean("IsoCLIP (held-out)") == pytest.approx(bm["oracle_heldout_mAP"], abs=1e-3)
    assert res.mean("IsoCLIP (oracle)") == pytest.approx(bm["oracle_mAP"], abs=1e-3)


def test_same_split_sets_exclude_the_query_everywhere() -> None:
    P, f, _t, y = _random(2, n=40)
    feats = SetFeatures(f, f, P.project_image(f), P.project_image(f))
    g = torch.Generator().manual_seed(0)
    rows = torch.tensor([1, 4, 5, 20])
    inv = torch.randn(4, P.d, generator=g)
    res = evaluate_set(P, feats, y, y, "image", same_split=True, stride=2,
                       inverted=(rows, inv), inversion="OTI")
    assert math.isnan(res.mean("IsoCLIP (agreement)")) or "agreement" not in res.bands
    assert res.mean("CLIP") == pytest.approx(
        evaluate(P.project_image(f), P.project_image(f), y, y, same_split=True)["mAP"], abs=1e-6)
    grid = _grid(P, 2)
    naive = {b: naive_band_metrics(P, f, f, y, y, b, "image", same_split=True)["mAP"]
             for b in grid}
    assert res.mean("IsoCLIP (oracle)") == pytest.approx(max(naive.values()), abs=1e-3)
    # the inverted queries: a loop that drops each query's own gallery item by hand
    gp = torch.nn.functional.normalize(P.project_image(f).double(), dim=1)
    for k, (i, v) in enumerate(zip(rows.tolist(), inv)):
        s = torch.nn.functional.normalize(v.double(), dim=0) @ gp.T
        keep = torch.arange(len(f)) != i
        order = torch.argsort(s[keep], descending=True)
        rel = (y[keep] == y[i])[order].double()
        hits = torch.cumsum(rel, 0)
        ap = float((hits / torch.arange(1, len(rel) + 1) * rel).sum() / rel.sum())
        assert float(res.inv_ap[k]) == pytest.approx(100 * ap, abs=1e-3)


def test_evaluate_set_errors() -> None:
    P, f, _t, y = _random(3)
    feats = SetFeatures(f[:20], f[20:], P.project_image(f[:20]), P.project_image(f[20:]))
    with pytest.raises(ValueError, match="stride"):
        evaluate_set(P, feats, y[:20], y[20:], "image", stride=0)
    with pytest.raises(ValueError, match="modality"):
        evaluate_set(P, feats, y[:20], y[20:], "audio")
    one = SetFeatures(f[:1], f[20:], P.project_image(f[:1]), P.project_image(f[20:]))
    with pytest.raises(ValueError, match="at least 2 queries"):
        evaluate_set(P, one, y[:1], y[20:], "image")


def _fake(name: str, clip: list[float], other: list[float], fine: bool | None,
          family: str = "toy") -> SetResult:
    ap = {m: torch.tensor(clip, dtype=torch.float64) for m in METHODS}
    ap["IsoCLIP (held-out)"] = torch.tensor(other, dtype=torch.float64)
    return SetResult(name=name, modality="image", n_query=len(clip), n_gallery=5,
                     same_split=False, ap=ap, bands={},
                     meta={"family": family, "label": name, "fine_grained": fine})


def test_average_gain_weighs_sets_equally_and_covers_the_point() -> None:
    a = _fake("a", [50.0, 60.0, 70.0], [60.0, 70.0, 80.0], True)   # +10
    b = _fake("b", [90.0] * 9, [91.0, 89.0, 92.0, 90.0, 90.0, 91.0, 90.0, 90.0, 90.0], True)
    out = average_gain([a, b], "IsoCLIP (held-out)", n_boot=500, seed=1)
    gain_b = float(np.mean([1, -1, 2, 0, 0, 1, 0, 0, 0]))
    assert out["delta"] == pytest.approx((10.0 + gain_b) / 2)
    assert out["lo"] <= out["delta"] <= out["hi"] and out["n_sets"] == 2
    assert out == average_gain([a, b], "IsoCLIP (held-out)", n_boot=500, seed=1)
    same = average_gain([a], "mean-centred", n_boot=100)
    assert same["delta"] == same["lo"] == same["hi"] == 0.0
    with pytest.raises(ValueError, match="at least one set"):
        average_gain([], "CLIP")


def test_suite_table_averages_only_the_fine_grained_sets() -> None:
    sets = [_fake("whole", [40.0, 50.0], [41.0, 52.0], False),
            _fake("s1", [92.0, 100.0], [99.0, 100.0], True),
            _fake("s2", [50.0, 70.0], [50.0, 70.0], True),
            _fake("cub", [30.0, 40.0], [30.0, 42.0], None, family="paper")]
    tab = suite_table(sets)
    assert list(tab["kind"]) == ["whole", "fine-grained", "fine-grained", "dataset", "average",
                                 "average"]
    assert list(tab["family"].iloc[-2:]) == ["toy", "paper"]
    assert tab.iloc[-1]["CLIP"] == pytest.approx(35.0)  # a paper dataset: its own average
    avg = tab.iloc[-2]
    assert avg["CLIP"] == pytest.approx((96.0 + 60.0) / 2)
    assert avg["delta"] == pytest.approx((3.5 + 0.0) / 2)
    assert avg["n"] == 4 and avg["family"] == "toy"
    assert list(tab["near_ceiling"]) == [False, True, False, False, False, False]
    assert tab.loc[0, "headroom"] == pytest.approx(55.0)


def test_revisited_ranker_matches_the_revisited_metrics() -> None:
    from isoclip.evaluate.retrieval import evaluate_revisited_scores
    from isoclip.studies.suite import RevisitedRanker

    rng = np.random.default_rng(0)
    q, g = 7, 40
    gnd = []
    for i in range(q):
        perm = rng.permutation(g)
        gnd.append({"easy": perm[:3], "hard": perm[3:6] if i != 2 else perm[:0],
                    "junk": perm[6:8]})
    gnd[4] = {"easy": [], "hard": [], "junk": [1]}  # no positive at all: NaN, skipped
    scores = torch.tensor(rng.normal(size=(q, g)), dtype=torch.float32)
    ref = evaluate_revisited_scores(scores, gnd)
    for setting in ("easy", "medium", "hard"):
        ap = RevisitedRanker(gnd, g, setting).per_query(scores)["mAP"]
        assert torch.isnan(ap[4]) and (setting != "hard" or torch.isnan(ap[2]))
        assert 100 * float(ap[~torch.isnan(ap)].mean()) == pytest.approx(ref[f"mAP_{setting}"])
    with pytest.raises(ValueError, match="setting"):
        RevisitedRanker(gnd, g, "medium-hard")
    with pytest.raises(ValueError, match="scores"):
        RevisitedRanker(gnd, g, "easy").per_query(scores[:, :5])


def test_evaluate_set_with_a_revisited_ranker() -> None:
    from isoclip.evaluate.retrieval import evaluate_revisited_scores
    from isoclip.studies.suite import RevisitedRanker

    P, f, _t, _y = _random(4)
    rng = np.random.default_rng(1)
    gnd = [{"easy": rng.choice(60, 4, replace=False) + 0, "hard": [], "junk": []}
           for _ in range(30)]
    for e in gnd:
        e["hard"], e["junk"] = e["easy"][2:], e["easy"][:0]
        e["easy"] = e["easy"][:2]
    q, gal = f[:30], f[30:]
    feats = SetFeatures(q, gal, P.project_image(q), P.project_image(gal))
    res = evaluate_set(P, feats, None, None, "image", stride=2,
                       ranker=RevisitedRanker(gnd, 60, "medium"))
    s = torch.nn.functional.normalize(feats.query, dim=1) @ \
        torch.nn.functional.normalize(feats.gallery, dim=1).T
    assert res.mean("CLIP") == pytest.approx(evaluate_revisited_scores(s, gnd)["mAP_medium"],
                                             abs=1e-4)
    naive = max(100 * float(RevisitedRanker(gnd, 60, "medium").per_query(
        _per_query_scores(P, q, gal, b))["mAP"].mean()) for b in _grid(P, 2))
    assert res.mean("IsoCLIP (oracle)") == pytest.approx(naive, abs=1e-3)


def _per_query_scores(P, q, g, band):
    from isoclip.method.bands import iso_projectors

    iso = iso_projectors(P.double(), band)
    qp = torch.nn.functional.normalize(iso.project_image(q.double()), dim=1)
    gp = torch.nn.functional.normalize(iso.project_image(g.double()), dim=1)
    return qp @ gp.T


def test_payload_round_trip_is_plain_data(tmp_path) -> None:
    from isoclip.common.cache import load_payload
    from isoclip.studies.suite import result_from_payload, result_payload

    P, f, _t, y = _random(5)
    feats = SetFeatures(f[:40], f[40:], P.project_image(f[:40]), P.project_image(f[40:]))
    rows = torch.tensor([0, 3, 5])
    res = evaluate_set(P, feats, y[:40], y[40:], "image", stride=2, name="toy",
                       inverted=(rows, torch.randn(3, P.d)), inversion="OTI")
    res.meta = {"family": "toy", "fine_grained": True, "label": "toy", "protocol": ""}
    path = tmp_path / "r.pt"
    torch.save(result_payload(res), path)
    back = result_from_payload(load_payload(path))  # weights_only: plain data only
    assert back.bands == res.bands and back.meta == res.meta and back.inversion == "OTI"
    assert set(back.ap) == set(res.ap)
    for m in res.ap:
        assert torch.equal(back.ap[m], res.ap[m]) or (
            torch.isnan(back.ap[m]).all() and torch.isnan(res.ap[m]).all())
    assert torch.equal(back.inv_rows, res.inv_rows) and torch.equal(back.inv_ap, res.inv_ap)


def test_key_material_changes_with_every_setting() -> None:
    from isoclip.studies.suite import InversionSettings, code_fingerprint, set_key_material

    base = {"family": "synthetic", "data": {"config": 1}, "stride": 2, "calibration_pairs": 1000,
                "seed": 0, "inversion": InversionSettings(), "code": "c"}
    k0 = set_key_material("m", "synthetic/world", "image", **base)
    assert set_key_material("m", "synthetic/world", "image", **base) == k0
    changed = [set_key_material("m2", "synthetic/world", "image", **base),
               set_key_material("m", "synthetic/shape=circle", "image", **base),
               set_key_material("m", "synthetic/world", "text", **base)]
    for k, v in (("stride", 4), ("calibration_pairs", 0), ("seed", 1), ("code", "d"),
                 ("data", {"config": 2}), ("inversion", None),
                 ("inversion", InversionSettings(oti_steps=10)),
                 ("inversion", InversionSettings(per_class={"synthetic": {"image": 3}}))):
        changed.append(set_key_material("m", "synthetic/world", "image", **{**base, k: v}))
    from isoclip.common.cache import entry_key

    keys = {entry_key(k) for k in [k0, *changed]}
    assert len(keys) == len(changed) + 1
    # the emoji template does not change a synthetic set's key
    other = InversionSettings(templates={"emoji": "x {}"})
    assert set_key_material("m", "synthetic/world", "image", **{**base, "inversion": other}) == k0
    fp = code_fingerprint()
    assert len(fp) == 64 and fp == code_fingerprint() and fp != code_fingerprint(
        ("isoclip.studies.suite",))
    with pytest.raises(ValueError, match="modules"):
        code_fingerprint(("sys",))  # built in: no source file
