"""The reference CSV of the papers' numbers and the chapter 7/8 helpers of isoclip.studies.world."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from isoclip.evaluate.classification import cosine_logits, evaluate_iso_ncm, evaluate_ncm
from isoclip.evaluate.stats import (
    compare_accuracy,
    compare_retrieval,
    correct_top1,
    paired_bootstrap,
    relative_gain,
)
from isoclip.method.projectors import Projectors
from isoclip.studies.classification import ncm_correct
from isoclip.studies.reference import (
    PAPER_ARTEFACTS,
    REFERENCE_COLUMNS,
    cited_artefact,
    load_paper_numbers,
    paper_comparison,
)

# ---------------------------------------------------------------------------------------------
# reference CSV


def test_reference_csv_columns_and_types() -> None:
    ref = load_paper_numbers()
    assert tuple(ref.columns) == REFERENCE_COLUMNS
    assert len(ref) > 0
    assert ref["value"].dtype == float
    assert ref["verified"].dtype == bool
    assert str(ref["n_datasets"].dtype) == "Int64"
    for c in ("paper", "task", "backbone", "method", "metric", "source"):
        assert (ref[c].str.len() > 0).all(), c
    assert ref["source"].str.contains("poster").all()  # every number names the authors' artefact
    assert ref["value"].between(0, 100).all()


def _raw_csv() -> pd.DataFrame:
    from importlib import resources
    path = resources.files("isoclip") / "data" / "reference" / "paper_numbers.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_every_reference_number_cites_its_papers_own_artefact() -> None:
    """Each row names the authors' artefact of its paper (repository, file, part); the
    numbers are printed there with one decimal, so they are kept as written (no re-rounding).
    The artefacts are a poster image and a poster PDF: their figures cannot be read by a test,
    so what is checked is the citation, the transcription format and the caveats below."""
    ref = load_paper_numbers()
    for row in ref.itertuples(index=False):
        assert cited_artefact(row.source) == PAPER_ARTEFACTS[row.paper], row
        assert row.verified  # read off the authors' own artefact, not a secondary summary
    raw = _raw_csv()
    assert raw["value"].str.fullmatch(r"\d{1,2}\.\d").all(), raw["value"].tolist()
    assert set(ref["paper"]) == set(PAPER_ARTEFACTS)
    with pytest.raises(ValueError, match="source"):
        cited_artefact("IsoCLIP poster, average-mAP bars")


def test_reference_caveats_hold_in_the_numbers() -> None:
    """What the caveat column states about a row is true of the table."""
    ref = load_paper_numbers()
    for row in ref.itertuples(index=False):
        m = re.search(r"average over the (\d+) image datasets", row.caveat)
        if m:
            assert row.n_datasets == int(m.group(1)), row
        m = re.fullmatch(r"average over ([\w]+(?:, [\w]+)+) \(.*", row.caveat)
        if m:  # a list of named datasets
            assert row.n_datasets == len(m.group(1).split(", ")), row
    # Cross the Gap's text-text averages use IsoCLIP's three caption sets: the two posters
    # must then agree wherever they report the same backbone and method
    key = ["task", "backbone", "method"]
    same = ref[ref["caveat"].str.startswith("same 3 caption datasets as IsoCLIP")]
    assert len(same) > 0
    iso = ref[ref["paper"] == "IsoCLIP"].set_index(key)["value"]
    both = [r for r in same.itertuples(index=False) if (r.task, r.backbone, r.method) in iso.index]
    assert {r.backbone for r in both} == {"OpenAI ViT-B/32", "OpenAI ViT-L/14"}
    for row in both:
        assert row.value == iso.loc[(row.task, row.backbone, row.method)], row
    # every (paper, task, backbone) has exactly one baseline row to compare against
    for (paper, task, backbone), g in ref.groupby(["paper", "task", "backbone"]):
        base = "zero-shot" if task == "zero-shot classification" else "CLIP"
        assert (g["method"] == base).sum() == 1, (paper, task, backbone)


def test_reference_loader_rejects_missing_source(tmp_path) -> None:
    ref = load_paper_numbers()
    bad = ref.copy()
    bad.loc[0, "source"] = ""
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(ValueError, match="source"):
        load_paper_numbers(path)
    ref.drop(columns=["verified"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing columns"):
        load_paper_numbers(path)


def test_paper_comparison_naive() -> None:
    ref = load_paper_numbers()
    g = paper_comparison(ref, "image-image")
    for row in g.itertuples(index=False):
        base = ref[(ref.paper == row.paper) & (ref.backbone == row.backbone)
                   & (ref.task == "image-image") & (ref.method == "CLIP")]["value"].iloc[0]
        assert row.baseline == base
        assert row.gain_points == pytest.approx(row.value - base)
        assert row.gain_relative == pytest.approx(100 * (row.value - base) / base)
    assert set(g["method"]) == {"OTI", "IsoCLIP"}


def test_relative_gain() -> None:
    assert relative_gain(45.1, 40.9) == pytest.approx(100 * 4.2 / 40.9)
    np.testing.assert_allclose(relative_gain([2.0, 3.0], [1.0, 2.0]), [100.0, 50.0])


# ---------------------------------------------------------------------------------------------
# chapter 7: retrieval comparison against a naive AP


def _naive_ap(q: np.ndarray, g: np.ndarray, ql: np.ndarray, gl: np.ndarray) -> np.ndarray:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    out = []
    for i in range(len(q)):
        order = np.argsort(-(gn @ qn[i]), kind="stable")
        rel = (gl[order] == ql[i]).astype(float)
        hits = np.cumsum(rel)
        out.append(100.0 * float((rel * hits / np.arange(1, len(rel) + 1)).sum() / rel.sum()))
    return np.array(out)


def test_compare_retrieval_against_naive() -> None:
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(30, 8)), rng.normal(size=(50, 8))
    q2 = q + 0.5 * rng.normal(size=q.shape)
    ql, gl = rng.integers(0, 4, 30), rng.integers(0, 4, 50)
    t = compare_retrieval({"CLIP": (torch.tensor(q).float(), torch.tensor(g).float()),
                           "other": (torch.tensor(q2).float(), torch.tensor(g).float())},
                          ql, gl, n_boot=500, seed=3).set_index("method")
    a, b = _naive_ap(q, g, ql, gl), _naive_ap(q2, g, ql, gl)
    assert t.loc["CLIP", "mAP"] == pytest.approx(a.mean(), abs=1e-3)
    assert t.loc["other", "mAP"] == pytest.approx(b.mean(), abs=1e-3)
    assert t.loc["other", "delta"] == pytest.approx((b - a).mean(), abs=1e-3)
    ref = paired_bootstrap(a, b, n_boot=500, seed=3)
    assert t.loc["other", "lo"] == pytest.approx(ref["lo"], abs=1e-3)
    assert np.isnan(t.loc["CLIP", "delta"])
    assert list(t.columns[:6]) == ["queries", "mAP", "mAP@R", "P@R", "R@1", "delta"]
    with pytest.raises(ValueError, match="baseline"):
        compare_retrieval({"x": (torch.tensor(q).float(), torch.tensor(g).float())}, ql, gl)


# ---------------------------------------------------------------------------------------------
# chapter 8: classification helpers against naive computations


def test_correct_top1_and_compare_accuracy() -> None:
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    c = correct_top1(logits, [1, 1, 1])
    assert c.tolist() == [100.0, 0.0, 100.0]
    t = compare_accuracy({"a": torch.tensor([100.0, 0, 0, 100]),
                          "b": torch.tensor([100.0, 100, 0, 100])}, baseline="a", n_boot=200)
    t = t.set_index("method")
    assert t.loc["a", "top1"] == 50.0 and t.loc["b", "top1"] == 75.0
    assert t.loc["b", "delta"] == pytest.approx(25.0)


def test_cosine_logits_naive() -> None:
    x, w = torch.randn(5, 3), torch.randn(4, 3)
    naive = torch.tensor([[float(F.cosine_similarity(a, b, dim=0)) for b in w] for a in x])
    torch.testing.assert_close(cosine_logits(x, w), naive, atol=1e-6, rtol=1e-5)


def test_ncm_correct_matches_evaluators_and_naive() -> None:
    torch.manual_seed(0)
    c, d = 3, 6
    ytr = torch.arange(c).repeat(10)
    tr = torch.randn(len(ytr), d) + 2 * F.one_hot(ytr, d).float()
    yte = torch.arange(c).repeat(7)
    te = torch.randn(len(yte), d) + 2 * F.one_hot(yte, d).float()
    got = ncm_correct(tr, ytr, te, yte)
    # naive: class means in a loop, argmax cosine
    protos = torch.stack([tr[ytr == k].mean(0) for k in range(c)])
    pred = [int(np.argmax([float(F.cosine_similarity(t, p, dim=0)) for p in protos])) for t in te]
    naive = 100.0 * (torch.tensor(pred) == yte).double()
    assert torch.equal(got, naive)
    assert float(got.mean()) == pytest.approx(evaluate_ncm(tr, ytr, te, yte)["top1"])
    P = Projectors(W_i=torch.randn(4, d), W_t=torch.randn(4, 5), b_i=None, b_t=None)
    iso = ncm_correct(tr, ytr, te, yte, project=P.project_image)
    assert float(iso.mean()) == pytest.approx(evaluate_iso_ncm(tr, ytr, te, yte, P)["top1"])


def test_compare_accuracy_rejects_unknown_baseline() -> None:
    with pytest.raises(ValueError, match="baseline"):
        compare_accuracy({"a": torch.zeros(3)}, baseline="b")
