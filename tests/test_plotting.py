"""isoclip.studies.plotting: the book's figures meet the figure standard, and the check that
says so fails on figures that do not."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from isoclip.studies import plotting


@pytest.fixture(autouse=True)
def _style():
    plotting.use_style()
    yield
    plt.close("all")


def _runs(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        row = {"run": f"run-{i}", "world_name": ["default", "rich"][i % 2],
               "tau": ["learned", "0.01", "0.1"][i % 3], "cone_image": rng.random(),
               "gap": rng.random(), "flatness_mid_ratio": rng.random() + 0.5,
               "zero_shot_acc": 100 * rng.random()}
        for dom in ("", "in_shape_", "in_colour_"):
            row[f"i2i_{dom}mAP"] = 50 + 10 * rng.random()
            row[f"i2i_{dom}gain_heldout"] = rng.normal()
            row[f"i2i_{dom}gain_oracle"] = rng.normal() + 1
            g = rng.normal()
            row[f"oti_{dom}gain"], row[f"oti_{dom}lo"], row[f"oti_{dom}hi"] = g, g - 1, g + 1
        rows.append(row)
    runs = pd.DataFrame(rows)
    runs.loc[0, "oti_in_shape_gain"] = np.nan  # a value that was not measured
    return runs


def _sweep(r: int = 16, stride: int = 2) -> pd.DataFrame:
    ks = range(0, r, stride)
    return pd.DataFrame([{"k_top": a, "k_bottom": b, "mAP": np.nan if a + b >= r else 30 + a - b}
                         for a in ks for b in ks])


def _chapter_figures() -> dict[str, plt.Figure]:
    r = 32
    s = np.linspace(1, 0.1, r)
    choices = pd.DataFrame([{"choice": c, "k_top": k, "k_bottom": 0, "mAP": 40.0} for c, k in
                            (("oracle", 2), ("automatic", 2), ("paper-scaled", 4),
                             ("agreement", 2))])
    gains = pd.DataFrame({"label": ["paper A", "paper B", "this run"],
                              "method": ["IsoCLIP", "OTI / OVI", "IsoCLIP"],
                              "gain": [5.0, -2.0, 0.5], "ours": [False, False, True]})
    shares = pd.DataFrame({"direction": range(10), "eta2_shape": np.linspace(0, 1, 10),
                               "eta2_colour": np.linspace(1, 0, 10), "sigma_rel": np.linspace(1, .1, 10)})
    runs = _runs()
    return {
        "spectrum": plotting.spectrum_figure(s, 4, 2, window_centers=np.arange(r - 3) + 1.5,
                                             decay=np.full(r - 3, 0.05),
                                             isotropy=np.full(r - 3, 0.8), window=4),
        "band grid": plotting.band_grid_figure({"image→image": _sweep(), "text→text": _sweep()},
                                               {"image→image": choices, "text→text": choices},
                                               stride=2),
        "gains": plotting.relative_gain_figure(
            {"image→image": gains, "text→text": gains},
            {"IsoCLIP": plotting.METHOD_COLOURS["IsoCLIP"],
             "OTI / OVI": plotting.METHOD_COLOURS["OTI"]}),
        "regime heatmap": plotting.regime_heatmap(runs),
        "regime gains": plotting.regime_gains(runs),
        "regime diagnostics": plotting.regime_diagnostics(runs),
        "direction shares": plotting.direction_shares(shares, ("shape", "colour"), k_top=3),
        "band regions": plotting.band_regions_figure(*_regions(), {"image": "image→image",
                                                                   "text": "text→text"}),
    }


def _regions() -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(0)
    rows, samples = [], {}
    for mod in ("image", "text"):
        for region, kept in (("top", 4), ("middle", 20), ("bottom", 8)):
            rows.append({"modality": mod, "region": region, "kept": kept,
                         "overlap": rng.random(), "mAP": 100 * rng.random()})
            samples[(mod, region)] = tuple(rng.normal(size=50) for _ in range(3))
    return pd.DataFrame(rows), samples


def test_chapter_figures_meet_the_standard():
    for name, fig in _chapter_figures().items():
        assert plotting.figure_problems(fig) == [], name
        assert plotting.display_font_pt(fig) >= plotting.MIN_FONT_PT - 0.2, name
        assert fig.get_size_inches()[0] <= plotting.PAGE_WIDTH_IN + 1e-9, name


def test_heatmap_has_colour_bar_hatched_missing_cells_and_no_negative_zero():
    _fig, ax = plotting.page_figure()
    grid = pd.DataFrame([[1.0, np.nan], [-0.04, 2.0]], index=["a", "b"], columns=["x", "y"])
    im = plotting.heatmap(ax, grid, cbar_label="gain", center=0.0, fmt="{:+.1f}")
    assert im.colorbar is not None
    texts = [t.get_text() for t in ax.texts]
    assert "0.0" in texts and "-0.0" not in texts and len(texts) == 3
    assert any(p.get_hatch() for p in ax.patches)  # the missing cell
    # cell text is black on light cells and white on dark ones
    assert plotting.text_colour((1, 1, 1, 1)) == "black"
    assert plotting.text_colour((0, 0, 0.3, 1)) == "white"


def test_figure_problems_flags_each_breach():
    fig, ax = plt.subplots(figsize=(12, 4))  # wider than the page: shown scaled down
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_xlabel("Psi_i")                   # raw subscript
    ax.legend(loc="upper left")              # over the data
    fig3, ax3 = plotting.page_figure()
    ax3.imshow(np.random.default_rng(0).random((3, 3)))  # heatmap without colour bar
    problems = "\n".join(plotting.figure_problems(fig) + plotting.figure_problems(fig3))
    assert "pt (<" in problems
    assert "raw '_'" in problems
    assert "colour bar" in problems
    assert "legend" in problems
    fig2, ax2 = plotting.page_figure()
    ax2.set_xlabel(r"$\Psi_i$ and $\sigma_j/\sigma_1$")
    assert plotting.figure_problems(fig2) == []


def test_page_figure_rejects_bad_width():
    with pytest.raises(ValueError, match="width"):
        plotting.page_figure(width=1.5)
