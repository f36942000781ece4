"""One figure style for the whole book, and the figures more than one chapter draws.

The standard every figure of the book meets (:func:`figure_problems` checks it):

- sized for the page: :func:`page_figure` makes figures :data:`PAGE_WIDTH_IN` wide (the book's
  text column at a 1280 px window, in CSS inches) or a fraction of it, so text set in points is
  shown at that size; no text below :data:`MIN_FONT_PT` at display width;
- legends outside the data (:func:`legend_below`, :func:`legend_right`);
- a colour bar on every heatmap (:func:`heatmap`), cells that were not run hatched, not grey;
- markers visible on every colormap: a black edge and a white halo (:func:`mark`);
- math in labels as LaTeX (``$\\Psi_i$``, ``$\\sigma_j/\\sigma_1$``), never a raw ``_``.

The chapters' central figures are functions here (:func:`spectrum_figure`,
:func:`band_grid_figure`, :func:`relative_gain_figure`, :func:`regime_heatmap`,
:func:`regime_gains`, :func:`regime_diagnostics`, :func:`direction_shares`), so a notebook
cell that draws one is a single call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text

from isoclip.data.base import ImageDataset

#: Width of a figure in the book at a 1280 px window (sphinx-book-theme), in CSS pixels.
PAGE_WIDTH_PX = 672
#: CSS pixels per inch: a figure ``PAGE_WIDTH_IN`` wide shows its text at its point size.
CSS_DPI = 96
PAGE_WIDTH_IN = PAGE_WIDTH_PX / CSS_DPI
#: Rendering resolution: a full-width figure is rendered 1.5 times wider than the column and
#: shown scaled to it (sharp on high-density screens; its text at its point size).
DPI = 144
#: Smallest text size at display width, in points.
MIN_FONT_PT = 9.0

#: Colours by method, so CLIP / OTI / OVI / IsoCLIP look the same in every chapter.
METHOD_COLOURS = {
    "CLIP": "#4C72B0",
    "OTI": "#DD8452",
    "OVI": "#DD8452",
    "IsoCLIP": "#55A868",
    "whitening": "#8172B3",
    "pre-projection": "#937860",
}

#: Colours of the three regions of the spectrum (top, middle = kept, bottom).
BAND_COLOURS = {"top": "#C44E52", "middle": "#55A868", "bottom": "#4C72B0"}

#: Marker, fill and size of each band choice drawn on a heatmap (:func:`band_grid_figure`):
#: sizes decrease so that choices on the same cell stay visible, nested.
CHOICE_MARKERS: dict[str, tuple[str, str, float]] = {
    "oracle": ("*", "white", 19.0),
    "automatic": ("o", "#F28E2B", 12.0),
    "paper": ("s", "#E15759", 9.5),
    "paper-scaled": ("s", "#E15759", 9.5),
    "agreement": ("D", "#76B7F2", 7.0),
}


def use_style() -> None:
    """Set the book's matplotlib/seaborn style (call once at the top of a notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "figure.figsize": (PAGE_WIDTH_IN, 0.6 * PAGE_WIDTH_IN),
        "figure.constrained_layout.use": True,
        "font.size": 10,
        "axes.titlesize": 10.5,
        "axes.labelsize": 10,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "legend.fontsize": 9,
        "legend.title_fontsize": 9.5,
        "mathtext.fontset": "cm",
        "axes.spines.top": False,
        "axes.spines.right": False,
    })


def page_figure(nrows: int = 1, ncols: int = 1, *, width: float = 1.0,
                height: float | None = None, aspect: float = 0.6,
                **subplots_kw: Any) -> tuple[Figure, Any]:
    """``plt.subplots`` sized for the page with constrained layout.

    Args:
        width: fraction of the text column (1: full width).
        height: height in inches; default ``aspect`` × the width (one row) times
            ``nrows ** 0.8`` (rows share the height a little).
        subplots_kw: passed to ``plt.subplots`` (``sharex``, ``gridspec_kw``, ...).
    """
    if not 0 < width <= 1:
        raise ValueError(f"width: fraction of the page in (0, 1], got {width}")
    w = width * PAGE_WIDTH_IN
    h = height if height is not None else aspect * w * nrows ** 0.8
    subplots_kw.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(w, h), **subplots_kw)


def legend_below(fig: Figure, handles: Sequence[Any] | None = None,
                 labels: Sequence[str] | None = None, *, ncol: int | None = None,
                 title: str | None = None, ax: Axes | None = None) -> Any:
    """A figure legend below the axes (outside the data; needs constrained layout).
    Handles and labels default to those of ``ax`` (or the first axes)."""
    if handles is None:
        handles, labels = (ax or fig.axes[0]).get_legend_handles_labels()
    n = len(handles)
    return fig.legend(list(handles), list(labels or []), loc="outside lower center",
                      ncol=ncol or min(n, 3), title=title, frameon=False)


def legend_right(fig: Figure, handles: Sequence[Any] | None = None,
                 labels: Sequence[str] | None = None, *, title: str | None = None,
                 ax: Axes | None = None) -> Any:
    """A figure legend right of the axes (outside the data; needs constrained layout)."""
    if handles is None:
        handles, labels = (ax or fig.axes[0]).get_legend_handles_labels()
    return fig.legend(list(handles), list(labels or []), loc="outside right upper", title=title,
                      frameon=False)


def halo(width: float = 3.0) -> list[Any]:
    """Path effects drawing a white outline under an artist (visible on any background)."""
    return [pe.Stroke(linewidth=width, foreground="white"), pe.Normal()]


def mark(ax: Axes, x: float, y: float, *, marker: str, colour: str, size: float,
         label: str | None = None, zorder: float = 5) -> Line2D:
    """One marker visible on every colormap: fill ``colour``, black edge, white halo."""
    line: Line2D
    (line,) = ax.plot([x], [y], linestyle="none", marker=marker, ms=size, mfc=colour,
                      mec="black", mew=1.2, label=label, zorder=zorder,
                      path_effects=halo(3.5))
    return line


def text_colour(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on the colour ``rgba`` (relative luminance)."""
    r, g, b = (float(c) for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def heatmap(ax: Axes, grid: pd.DataFrame, *, cbar_label: str, cmap: str = "viridis",
            vmin: float | None = None, vmax: float | None = None, center: float | None = None,
            fmt: str = "{:.1f}", annotate: bool = True, colorbar: bool = True,
            missing: str = "not run") -> AxesImage:
    """Heatmap of ``grid`` (rows: index, columns: columns) with a colour bar, cell values
    written in black or white by the cell's luminance, and missing (NaN) cells hatched.

    Args:
        center: a diverging norm centred there (e.g. 0 for gains).
        missing: what a hatched cell means (legend text of :func:`missing_patch`).
    Returns:
        The image (``fig.colorbar(image, ...)`` for a shared colour bar with ``colorbar=False``).
    """
    values = grid.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    lo = float(finite.min()) if vmin is None and finite.size else vmin
    hi = float(finite.max()) if vmax is None and finite.size else vmax
    lo = 0.0 if lo is None else lo
    hi = lo + 1.0 if hi is None or hi <= lo else hi
    norm: Normalize = (TwoSlopeNorm(center, min(lo, center - 1e-9), max(hi, center + 1e-9))
                       if center is not None else Normalize(lo, hi))
    im: AxesImage = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm,
                              aspect="auto", interpolation="nearest")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(values.shape[0]), [str(i) for i in grid.index])
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    cm = plt.get_cmap(cmap)
    for i, j in zip(*np.nonzero(~np.isfinite(values))):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", edgecolor="0.55",
                               hatch="///", lw=0, zorder=2, label=missing))
    if annotate:
        for i, j in zip(*np.nonzero(np.isfinite(values))):
            v = values[i, j]
            label = fmt.format(v)
            if float(label.replace("−", "-").rstrip("%")) == 0:  # no "-0.0"
                label = label.lstrip("+-−")
            ax.text(j, i, label, ha="center", va="center", fontsize=9.5,
                    color=text_colour(cm(norm(v))), zorder=3)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=cbar_label, fraction=0.08, pad=0.02)
    return im


def missing_patch(label: str = "not run") -> Patch:
    """Legend entry of the hatched cells of :func:`heatmap`."""
    return Patch(facecolor="white", edgecolor="0.55", hatch="///", label=label)


def glue_figure(name: str, fig: Figure) -> None:
    """Glue ``fig`` under ``name`` (for a ``{glue:figure}`` with a caption) and close it, so
    the cell does not show it a second time, uncaptioned."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


# --------------------------------------------------------------------------- checks

_MATH = re.compile(r"(?<!\\)\$.*?(?<!\\)\$")


def _texts(fig: Figure) -> list[Text]:
    """The visible, non-empty texts of ``fig`` (titles, labels, tick labels, legends, notes)."""
    return [t for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()
            and (t.axes is None or t.axes.get_visible())]


def display_scale(fig: Figure, container_px: float = PAGE_WIDTH_PX) -> float:
    """Displayed CSS pixels per point of ``fig``'s text in the book: the PNG (``fig.dpi``,
    tight bounding box) is shown at its pixel size unless wider than the container, then
    scaled down to fit."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    bbox = fig.get_tightbbox(renderer)
    natural_px = bbox.width * fig.dpi
    shrink = min(1.0, container_px / natural_px)
    return float(fig.dpi) / 72 * shrink


def display_font_pt(fig: Figure, container_px: float = PAGE_WIDTH_PX) -> float:
    """Smallest text size of ``fig`` as a reader sees it in the book (CSS points)."""
    scale = display_scale(fig, container_px)
    sizes = [float(t.get_fontsize()) for t in _texts(fig)]
    return min(sizes) * scale * 0.75 if sizes else float("inf")


def figure_problems(fig: Figure, container_px: float = PAGE_WIDTH_PX,
                    min_font_pt: float = MIN_FONT_PT) -> list[str]:
    """What in ``fig`` breaks the book's figure standard (empty list: none).

    Checks: text below ``min_font_pt`` at display width, a raw ``_`` outside ``$...$`` in any
    text (a subscript written as plain text), a scalar-mapped image without a colour bar, a
    legend overlapping the data area of an axes.
    """
    problems = []
    scale = display_scale(fig, container_px)
    for t in _texts(fig):
        pt = float(t.get_fontsize()) * scale * 0.75
        if pt < min_font_pt - 1e-6:
            problems.append(f"text {t.get_text()!r} shows at {pt:.1f} pt (< {min_font_pt})")
        if "_" in _MATH.sub("", t.get_text()):
            problems.append(f"text {t.get_text()!r} has a raw '_' (write it as $x_i$)")
    for ax in fig.axes:
        for im in ax.get_images():
            if np.ndim(np.asarray(im.get_array())) == 2 and im.colorbar is None:
                problems.append(f"heatmap in axes {ax.get_title()!r} has no colour bar")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legends = list(fig.legends) + [leg for ax in fig.axes if (leg := ax.get_legend())]
    data_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for leg in legends:
        lb = leg.get_window_extent(renderer)
        for ax in data_axes:
            if lb.overlaps(ax.get_window_extent(renderer)):
                problems.append(f"legend {leg.get_title().get_text()!r} overlaps the axes "
                                f"{ax.get_title()!r}")
    return problems


# --------------------------------------------------------------------------- shared figures

def sample_grid(dataset: ImageDataset, per_class: int = 1, max_classes: int = 24,
                ncols: int = 6, caption_width: int = 16, seed: int = 0) -> Figure:
    """A grid of images with their captions (one random sample per class, seeded), page wide
    with captions at 9 pt."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    captions = list(dataset.captions or [])
    classes = np.unique(labels)[:max_classes]
    picks = [int(rng.choice(np.flatnonzero(labels == c)))
             for c in classes for _ in range(per_class)]
    nrows = int(np.ceil(len(picks) / ncols))
    fig, axes = page_figure(nrows, ncols, height=1.75 * nrows, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), picks):
        ax.imshow(dataset.image(i), interpolation="nearest")
        text = captions[i] if captions else list(dataset.class_names or [])[int(labels[i])]
        ax.set_title(_wrap(str(text), caption_width), fontsize=9)
    return fig


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines)


def training_curves(log: pd.DataFrame, smooth: int = 5) -> Figure:
    """Loss and temperature against step from a training log (columns step, loss, temperature)."""
    fig, (a, b) = page_figure(1, 2, aspect=0.36)
    a.plot(log["step"], log["loss"], alpha=0.35, color="C0", label="per step")
    a.plot(log["step"], log["loss"].rolling(smooth, min_periods=1).mean(), color="C0",
           label=f"mean of {smooth} steps")
    a.set(xlabel="step", ylabel="CLIP loss", title="training loss")
    b.plot(log["step"], log["temperature"], color="C1")
    b.set(xlabel="step", ylabel=r"$\tau$", title=r"temperature $\tau$", yscale="log")
    legend_below(fig, ax=a)
    return fig


def bar_compare(df: pd.DataFrame, x: str, y: str, hue: str,
                order: Sequence[str] | None = None, ax: Axes | None = None) -> Axes:
    """Grouped bars with the book's method colours where the hue is a method name."""
    ax = ax or plt.gca()
    colours = {h: METHOD_COLOURS.get(h) for h in df[hue].unique()}
    palette = None if any(v is None for v in colours.values()) else colours
    sns.barplot(df, x=x, y=y, hue=hue, order=order, palette=palette, ax=ax)
    return ax


# --------------------------------------------------------------------------- chapter figures

def _shade_bands(ax: Axes, r: int, k_top: int, k_bottom: int, labels: bool = True) -> None:
    """Shade the top / middle / bottom regions of an index axis of length ``r``."""
    spans = [("top", -0.5, k_top - 0.5, "top band (anisotropic)"),
             ("middle", k_top - 0.5, r - k_bottom - 0.5, "middle band (kept by IsoCLIP)"),
             ("bottom", r - k_bottom - 0.5, r - 0.5, "bottom band (anisotropic)")]
    for name, a, b, label in spans:
        if b > a:
            ax.axvspan(a, b, color=BAND_COLOURS[name], alpha=0.16, lw=0,
                       label=label if labels else None)


def spectrum_figure(normalized: Sequence[float], k_top: int, k_bottom: int, *,
                    window_centers: Sequence[float], decay: Sequence[float],
                    isotropy: Sequence[float], window: int) -> Figure:
    """The spectrum of Ψ with its three bands (IsoCLIP's spectrum figure) and, beside it, the
    two local flatness measures on their own axes (no twin axis).

    Args:
        normalized: [r] σ_j/σ_1 of Ψ. k_top, k_bottom: the shaded band.
        window_centers, decay, isotropy: [r - window + 1] centre of each window, decay rate of
            log σ per index (−slope, 0 = flat) and σ_min/σ_max in the window (1 = isotropic).
    """
    s = np.asarray(normalized, dtype=float)
    r = len(s)
    fig = plt.figure(figsize=(PAGE_WIDTH_IN, 0.62 * PAGE_WIDTH_IN), layout="constrained")
    axd = fig.subplot_mosaic([["spec", "decay"], ["spec", "iso"]], width_ratios=[1.55, 1])
    ax = axd["spec"]
    _shade_bands(ax, r, k_top, k_bottom)
    ax.plot(np.arange(r), s, color="black", lw=1.6, marker="o", ms=2.5,
            label=r"$\sigma_j/\sigma_1$")
    ax.set(xlabel=r"singular value index $j$", ylabel=r"$\sigma_j/\sigma_1$",
           title=r"spectrum of $\Psi = W_i^\top W_t$", xlim=(-0.5, r - 0.5), ylim=(0, 1.04))
    c = np.asarray(window_centers, dtype=float)
    for key, y, label, ref in (("decay", decay, r"decay of $\log\sigma_j$ per index", 0.0),
                               ("iso", isotropy, r"$\sigma_{\min}/\sigma_{\max}$ in window",
                                1.0)):
        a = axd[key]
        _shade_bands(a, r, k_top, k_bottom, labels=False)
        a.plot(c, np.asarray(y, dtype=float), color="black", lw=1.4)
        a.axhline(ref, color="0.45", lw=0.8, ls="--")
        a.set(ylabel=label, xlim=(-0.5, r - 0.5))
        a.yaxis.label.set_fontsize(9)
    axd["decay"].set_title(f"local flatness (window of {window})")
    axd["decay"].tick_params(labelbottom=False)
    axd["iso"].set(xlabel=r"window centre $j$", ylim=(0, 1.04))
    legend_below(fig, ax=ax, ncol=2)
    return fig


def band_grid_figure(grids: Mapping[str, pd.DataFrame], choices: Mapping[str, pd.DataFrame],
                     *, stride: int) -> Figure:
    """mAP of every band of a (k_top, k_bottom) sweep, one panel per task, with a colour bar
    and the band choices marked (visible on the whole colormap, nested when they coincide).

    Args:
        grids: task title → sweep with columns ``k_top, k_bottom, mAP`` (a regular grid of
            step ``stride``; missing cells: nothing kept).
        choices: task title → rows with columns ``choice, k_top, k_bottom, mAP``; a choice's
            marker comes from :data:`CHOICE_MARKERS` (unknown choices are skipped).
    """
    n = len(grids)
    fig, axes = page_figure(1, n, aspect=0.42, squeeze=False)
    labels: dict[str, Line2D] = {}
    for ax, (title, sw) in zip(axes[0], grids.items()):
        grid = sw.pivot(index="k_bottom", columns="k_top", values="mAP")
        ks_x, ks_y = grid.columns.to_numpy(), grid.index.to_numpy()
        im = ax.imshow(grid.to_numpy(float), origin="lower", aspect="auto", cmap="viridis",
                       interpolation="nearest",
                       extent=[ks_x[0] - stride / 2, ks_x[-1] + stride / 2,
                               ks_y[0] - stride / 2, ks_y[-1] + stride / 2])
        fig.colorbar(im, ax=ax, label="mAP (%)", fraction=0.08, pad=0.02)
        ax.grid(False)
        d = choices[title]
        for z, (name, (marker, colour, size)) in enumerate(CHOICE_MARKERS.items()):
            hit = d[d["choice"] == name]
            if not hit.empty:
                line = mark(ax, hit.iloc[0]["k_top"], hit.iloc[0]["k_bottom"], marker=marker,
                            colour=colour, size=size, label=name, zorder=5 + z)
                line.set_clip_on(False)
                labels.setdefault(name, line)
        ax.set(xlabel=r"$k_{top}$ (top directions dropped)",
               ylabel=r"$k_{bottom}$ (bottom directions dropped)", title=f"{title} mAP")
    legend_below(fig, list(labels.values()), list(labels), ncol=len(labels))
    return fig


def relative_gain_figure(panels: Mapping[str, pd.DataFrame], colours: Mapping[str, str]
                         ) -> Figure:
    """Horizontal bars of gains over CLIP, one panel per task (stacked): one row per label,
    one bar per method in that row (side by side, coloured by method, with a legend); this
    run's bars hatched.

    Args:
        panels: task title → rows with columns ``label`` (the row's name), ``method`` (a key
            of ``colours``), ``gain`` (percent of CLIP's mAP) and ``ours`` (bool: this run).
        colours: method → colour, one legend entry each, in bar order.
    """
    labels = {t: list(dict.fromkeys(p["label"])) for t, p in panels.items()}
    sizes = [len(v) for v in labels.values()]
    fig, axes = page_figure(len(panels), 1, height=0.3 * sum(sizes) + 1.1 * len(panels),
                            gridspec_kw={"height_ratios": sizes}, sharex=True)
    axes = np.atleast_1d(axes)
    height = 0.8 / len(colours)
    for ax, (title, p) in zip(axes, panels.items()):
        order = list(colours)
        for i, lab in enumerate(labels[title]):  # the row's bars side by side, centred
            d = p[p["label"] == lab].copy()
            d["k"] = d["method"].map(order.index)
            d = d.sort_values("k")
            for j, rec in enumerate(d.itertuples(index=False)):
                y = i + (j - (len(d) - 1) / 2) * height
                (bar,) = ax.barh([y], [float(rec.gain)], height=height,
                                 color=colours[rec.method],
                                 edgecolor="black" if rec.ours else "none")
                if rec.ours:
                    bar.set_hatch("///")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(labels[title])), labels[title])
        ax.set_ylim(len(labels[title]) - 0.5, -0.5)
        ax.set_title(title, loc="left")
        ax.grid(axis="y", visible=False)
    axes[-1].set_xlabel("gain over CLIP (% of CLIP's mAP)")
    handles = [Patch(color=c, label=m) for m, c in colours.items()]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="///",
                         label="this run (tiny model)"))
    legend_below(fig, handles, [str(h.get_label()) for h in handles], ncol=len(handles))
    return fig


#: Columns of the regime heatmap: study column → column label.
REGIME_PANELS: tuple[tuple[str, str], ...] = (
    ("i2i_gain_heldout", "IsoCLIP\nwhole world"),
    ("i2i_in_shape_gain_heldout", "IsoCLIP\nwithin a shape"),
    ("oti_gain", "OTI\nwhole world"),
    ("oti_in_shape_gain", "OTI\nwithin a shape"))


def _tau_label(tau: Any) -> str:
    return "learned τ" if tau == "learned" else f"τ = {tau}"


def regime_heatmap(runs: pd.DataFrame, panels: Sequence[tuple[str, str]] = REGIME_PANELS
                   ) -> Figure:
    """The regime map: one row per run of the study, one column per gain of ``panels``
    (image→image, mAP points over CLIP), values written in the cells, a diverging colour bar
    centred at 0 and missing values hatched."""
    grid = pd.DataFrame({label: runs[col].astype(float).to_numpy() for col, label in panels},
                        index=runs["run"].to_numpy())
    lim = max(1.0, float(np.nanmax(np.abs(grid.to_numpy()))))
    fig, ax = page_figure(height=0.27 * len(grid) + 1.6)
    heatmap(ax, grid, cbar_label="gain over CLIP (mAP points)", cmap="RdBu_r", vmin=-lim,
            vmax=lim, center=0.0, fmt="{:+.1f}")
    ax.xaxis.tick_top()
    ax.tick_params(axis="both", length=0)
    ax.set_ylabel("run of the study")
    if grid.isna().to_numpy().any():
        legend_below(fig, [missing_patch()], ["not run"])
    return fig


def regime_gains(runs: pd.DataFrame, task: str = "i2i") -> Figure:
    """Small multiples, one panel per domain of the regime study: for every run (rows),
    IsoCLIP's held-out band gain (filled), its oracle band gain (open) and, for image→image,
    OTI's gain with its 95 % interval, in mAP points over CLIP."""
    from isoclip.studies.regimes import DOMAIN_LABELS

    y = np.arange(len(runs))[::-1]
    fig, axes = page_figure(1, len(DOMAIN_LABELS), height=0.25 * len(runs) + 2.0, sharey=True)
    for ax, (dom, label) in zip(axes, DOMAIN_LABELS.items()):
        ax.axvline(0, color="0.4", lw=0.8)
        ax.scatter(runs[f"{task}_{dom}gain_oracle"].astype(float), y, facecolors="none",
                   edgecolors=METHOD_COLOURS["IsoCLIP"], s=34, label="IsoCLIP, oracle band")
        ax.scatter(runs[f"{task}_{dom}gain_heldout"].astype(float), y,
                   color=METHOD_COLOURS["IsoCLIP"], s=20, zorder=3,
                   label="IsoCLIP, held-out band")
        if task == "i2i" and f"oti_{dom}gain" in runs:
            g = runs[f"oti_{dom}gain"].astype(float)
            err = np.vstack([g - runs[f"oti_{dom}lo"].astype(float),
                             runs[f"oti_{dom}hi"].astype(float) - g])
            ax.errorbar(g, y - 0.25, xerr=err, fmt="s", ms=3.5, lw=0.9,
                        color=METHOD_COLOURS["OTI"], label="OTI (95 % interval)")
        clip = runs[f"{task}_{dom}mAP"].astype(float)
        ax.set_title(f"{label}\nCLIP: {clip.min():.0f}–{clip.max():.0f} mAP")
        ax.set_xlabel("gain (mAP points)")
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y, runs["run"])
    legend_below(fig, ax=axes[0])
    return fig


def regime_diagnostics(runs: pd.DataFrame, domain: str = "in_shape_", task: str = "i2i",
                       diagnostics: Sequence[tuple[str, str]] = (
                           ("cone_image", "image cone (mean cosine)"),
                           ("gap", "modality gap"),
                           ("flatness_mid_ratio", "flatness (middle / ends decay)"),
                           ("zero_shot_acc", "zero-shot accuracy (%)"))) -> Figure:
    """IsoCLIP's held-out band gain in ``domain`` against each diagnostic of the runs, small
    multiples in a 2 × 2 grid; colour: world, marker: temperature, legends outside."""
    from isoclip.studies.regimes import DOMAIN_LABELS

    worlds = list(dict.fromkeys(runs["world_name"]))
    taus = sorted(runs["tau"].unique(), key=lambda t: (t != "learned", str(t)))
    palette = dict(zip(worlds, sns.color_palette("deep", len(worlds))))
    markers = dict(zip(taus, ["o", "s", "^", "D", "v", "P"]))
    gain = runs[f"{task}_{domain}gain_heldout"].astype(float)
    ncols = 2
    nrows = int(np.ceil(len(diagnostics) / ncols))
    fig, axes = page_figure(nrows, ncols, height=2.5 * nrows + 0.3, sharey=True,
                            squeeze=False)
    for ax, (col, label) in zip(axes.ravel(), diagnostics):
        x = runs[col].astype(float)
        for w in worlds:
            for t in taus:
                sel = (runs["world_name"] == w) & (runs["tau"] == t)
                if sel.any():
                    ax.scatter(x[sel], gain[sel], color=palette[w], marker=markers[t], s=42,
                               edgecolors="black", linewidths=0.5)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xlabel(label)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"IsoCLIP gain, {DOMAIN_LABELS[domain]}\n(mAP points)")
    for ax in axes.ravel()[len(diagnostics):]:
        ax.set_visible(False)
    w_handles = [Line2D([], [], ls="none", marker="o", color=palette[w], mec="black", mew=0.5,
                        ms=7, label=w) for w in worlds]
    t_handles = [Line2D([], [], ls="none", marker=markers[t], color="0.5", mec="black",
                        mew=0.5, ms=7, label=_tau_label(t)) for t in taus]
    fig.legend(handles=w_handles, loc="outside right upper", title="world", frameon=False)
    fig.legend(handles=t_handles, loc="outside right lower", title="temperature",
               frameon=False)
    return fig


def direction_shares(shares: pd.DataFrame, factors: Sequence[str],
                     k_top: int | None = None) -> Figure:
    """η² of each factor per singular direction of Ψ (columns ``direction``,
    ``eta2_<factor>``, ``sigma_rel``), σ_j/σ_1 dashed on the same 0–1 axis, the dropped top
    directions shaded; legend below."""
    fig, ax = page_figure(aspect=0.45)
    if k_top:
        ax.axvspan(-0.5, k_top - 0.5, color="0.88", zorder=0, lw=0,
                   label=f"top {k_top} directions (dropped)")
    for f in factors:
        ax.plot(shares["direction"], shares[f"eta2_{f}"], marker="o", ms=3.5, lw=1.2,
                label=rf"$\eta^2$ of {f}")
    ax.plot(shares["direction"], shares["sigma_rel"], color="0.25", ls="--", lw=1.1,
            label=r"$\sigma_j/\sigma_1$")
    ax.set(xlabel=r"singular direction $j$ of $\Psi$ (by decreasing $\sigma_j$)",
           ylabel=r"share of variance / $\sigma_j/\sigma_1$", ylim=(0, 1.03))
    legend_below(fig, ax=ax, ncol=4)
    return fig


def band_regions_figure(table: pd.DataFrame,
                        samples: Mapping[tuple[str, str], tuple[Any, Any, Any]],
                        titles: Mapping[str, str], *, bins: int = 60) -> Figure:
    """IsoCLIP's band figure, one row per task: histograms of all similarities per region,
    of the positive (solid) and negative (dotted) pairs, and the mAP per region with the
    overlap of the two histograms.

    Args:
        table: :class:`isoclip.studies.band_study.RegionStudy` table (modality, region, kept,
            overlap, mAP). samples: its (modality, region) → (all, positive, negative) cosines.
        titles: modality → task title, in row order.
    """
    fig, axes = page_figure(len(titles), 3, height=2.45 * len(titles) + 0.5, squeeze=False)
    for row, (mod, title) in enumerate(titles.items()):
        d = table[table["modality"] == mod]
        for rec in d.itertuples(index=False):
            s_all, pos, neg = samples[(mod, rec.region)]
            c = BAND_COLOURS[rec.region]
            axes[row, 0].hist(s_all, bins=bins, density=True, histtype="step", color=c, lw=1.3)
            axes[row, 1].hist(pos, bins=bins, density=True, histtype="step", color=c, lw=1.3)
            axes[row, 1].hist(neg, bins=bins, density=True, histtype="step", color=c, lw=1.3,
                              ls=":")
        axes[row, 0].set(xlabel="cosine", ylabel=f"{title}\ndensity")
        axes[row, 1].set(xlabel="cosine")
        ax = axes[row, 2]
        ax.bar(d["region"], d["mAP"], color=[BAND_COLOURS[n] for n in d["region"]])
        for x, (m, o) in enumerate(zip(d["mAP"], d["overlap"])):
            ax.text(x, m, f"{m:.1f}\nov {o:.2f}", ha="center", va="bottom", fontsize=9)
        ax.set(ylabel="mAP (%)", ylim=(0, 1.35 * max(float(d["mAP"].max()), 1e-9)))
        ax.grid(axis="x", visible=False)
        if row == 0:
            for a, t in zip(axes[0], ("all pairs", "positive / negative pairs", "mAP per band")):
                a.set_title(t)
    regions = list(dict.fromkeys(table["region"]))
    handles: list[Any] = [Line2D([], [], color=BAND_COLOURS[n], lw=2, label=f"{n} band only")
                          for n in regions]
    handles += [Line2D([], [], color="0.3", lw=1.3, label="positive pairs"),
                Line2D([], [], color="0.3", lw=1.3, ls=":", label="negative pairs")]
    legend_below(fig, handles, [str(h.get_label()) for h in handles], ncol=3)
    return fig
